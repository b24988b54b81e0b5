"""Compiles a search AST into a SQL WHERE clause over versions joined to models and projects.

Values are always bound parameters. A comparison on a key a version lacks is false for that
version (so ``not`` of it is true), like SQL's EXISTS.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, and_, exists, not_, or_, select, true

from ..store import schema
from .parser import And, Comparison, Field, InList, Node, Or, Value

_V, _M, _P = schema.versions, schema.models, schema.projects
_PLAIN_COLUMNS: dict[str, Any] = {
    "created_at": _V.c.created_at,
    "created_by": _V.c.created_by,
    "digest": _V.c.digest,
    "kind": _V.c.kind,
    "label": _V.c.label,
    "version": _V.c.number,
    "model": _M.c.name,
    "project": _P.c.name,
}


def _compare(column: Any, op: str, value: Any) -> ColumnElement[bool]:
    result: ColumnElement[bool]
    if op == "=":
        result = column == value
    elif op == "!=":
        result = column != value
    elif op == "<":
        result = column < value
    elif op == "<=":
        result = column <= value
    elif op == ">":
        result = column > value
    else:
        result = column >= value
    return result


def _param_column(value: Value) -> Any:
    t = schema.version_params
    numeric = isinstance(value, int | float) and not isinstance(value, bool)
    return t.c.value_num if numeric else t.c.value_text


def _keyed(field: Field, condition: Any, value: Value) -> ColumnElement[bool]:
    """EXISTS over the key/value table of *field*'s namespace."""
    table = {
        "params": schema.version_params,
        "metrics": schema.version_metrics,
        "tags": schema.version_tags,
    }[field.namespace]
    return exists(
        select(table.c.version_id).where(
            table.c.version_id == _V.c.id, table.c.key == field.key, condition
        )
    )


def _value_column(field: Field, value: Value) -> Any:
    if field.namespace == "params":
        return _param_column(value)
    if field.namespace == "metrics":
        return schema.version_metrics.c.value
    return schema.version_tags.c.value


def _comparison(node: Comparison) -> ColumnElement[bool]:
    field, op, value = node.field, node.op, node.value
    if field.namespace in ("params", "metrics", "tags"):
        return _keyed(field, _compare(_value_column(field, value), op, value), value)
    if field.namespace == "stage":
        s = schema.stage_intervals
        held = exists(
            select(s.c.id).where(
                s.c.version_id == _V.c.id, s.c.valid_to.is_(None), s.c.stage == value
            )
        )
        return held if op == "=" else not_(held)
    if field.namespace == "alias":
        a = schema.alias_intervals
        named = exists(
            select(a.c.id).where(
                a.c.version_id == _V.c.id, a.c.valid_to.is_(None), a.c.name == value
            )
        )
        return named if op == "=" else not_(named)
    column = _PLAIN_COLUMNS[field.namespace]
    return _guarded(column, _compare(column, op, value))


def _guarded(column: Any, condition: ColumnElement[bool]) -> ColumnElement[bool]:
    """A NULL column (a version without a label) fails the test, so ``not`` of it holds."""
    return and_(column.is_not(None), condition) if column.nullable else condition


def _in_list(node: InList) -> ColumnElement[bool]:
    field, values = node.field, node.values
    matched: ColumnElement[bool]
    if field.namespace == "params":
        # one list may mix numbers and text: each compares with its own column
        matched = or_(*(_keyed(field, _param_column(v) == v, v) for v in values))
    elif field.namespace in ("metrics", "tags"):
        matched = _keyed(field, _value_column(field, values[0]).in_(values), values[0])
    elif field.namespace in ("stage", "alias"):
        matched = or_(*(_comparison(Comparison(field, "=", v)) for v in values))
    else:
        column = _PLAIN_COLUMNS[field.namespace]
        matched = _guarded(column, column.in_(values))
    return not_(matched) if node.negated else matched


def compile_query(node: Node) -> ColumnElement[bool]:
    if isinstance(node, Comparison):
        return _comparison(node)
    if isinstance(node, InList):
        return _in_list(node)
    if isinstance(node, And):
        return and_(true(), *(compile_query(n) for n in node.items))
    if isinstance(node, Or):
        return or_(*(compile_query(n) for n in node.items))
    return not_(compile_query(node.item))
