"""What a metadata store's URL says, without loading SQLAlchemy."""

from __future__ import annotations


def scheme(url: str) -> str:
    """The URL's scheme without its driver (``postgresql+psycopg://`` -> ``postgresql``)."""
    return url.split(":", 1)[0].split("+", 1)[0].lower()


def sqlite_path(url: str) -> str | None:
    """The database file of a SQLite store's URL (None for any other store)."""
    if scheme(url) != "sqlite":
        return None
    return url[len("sqlite:///") :] or None
