"""Alembic migrations of the metadata schema, run by ``modelvault.store.migrate``.

``HEAD`` names the newest revision so that opening a store compares one row with it without
importing alembic; a test keeps it equal to the head of ``versions/``.
"""

HEAD = "0018"
