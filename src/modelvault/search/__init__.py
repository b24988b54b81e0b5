"""The search language over versions (docs/search.md)."""

from __future__ import annotations

from sqlalchemy import ColumnElement

from .compile import compile_query
from .parser import parse_query


def search_clause(text: str) -> ColumnElement[bool]:
    """Parse *text* and compile it into a WHERE clause (QuerySyntaxError on bad input)."""
    return compile_query(parse_query(text))


__all__ = ["compile_query", "parse_query", "search_clause"]
