"""The alembic environment: migrations run on the connection ``modelvault.store.migrate``
hands over, inside the transaction that holds the migration lock."""

from alembic import context

from modelvault.store.schema import compared_on, metadata

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError(
        "modelvault migrations run through `modelvault db upgrade` or "
        "`python -m modelvault.store.migrate`, not the alembic command"
    )
context.configure(
    connection=connection,
    target_metadata=metadata,
    # SQLite cannot ALTER most things; batch mode rebuilds the table instead
    render_as_batch=True,
    compare_type=True,
    include_object=compared_on(connection.dialect.name),
)
with context.begin_transaction():
    context.run_migrations()
