"""Inclusion proofs in one round trip: the checkpoint, the event's hash and the tree nodes of
the proof come back from a single statement.

The nodes a proof needs depend on the checkpoint's tree size, which is only known once the
checkpoint is read; the size last seen for this store is used as a guess (checkpoints only
grow), and when the newest checkpoint turns out to be another one, its nodes are read in a
second statement. The guess is never trusted for the answer: the checkpoint returned is
always the one read in the same statement as the nodes.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection

from .. import checkpoints as cps
from .. import merkle
from ..errors import IntegrityError, InvalidInput, NotFound
from ..store import schema
from .context import Context

_E, _T, _C = (t.name for t in (schema.audit_events, schema.audit_tree, schema.audit_checkpoints))
_CP_COLUMNS = "tree_size, root, ts, key_id, signature"
_CHECKPOINT, _EVENT, _NODE = 0, 1, 2  # the first column says what a row is; nodes: 2 + level

# store URL -> tree size of the newest checkpoint a proof was last made against (a guess)
_last_size: dict[str, int] = {}


def _node_keys(seq: int, size: int) -> list[tuple[int, int]]:
    ranges = merkle.inclusion_ranges(seq - 1, size)
    return sorted({merkle.perfect_node(a, b) for r in ranges for a, b in merkle.decompose(*r)})


def _marker(conn: Connection) -> str:
    return "?" if conn.dialect.paramstyle == "qmark" else "%s"


def _node_branches(keys: list[tuple[int, int]], mark: str) -> tuple[list[str], list[int]]:
    # one indexed lookup per node (a row-value IN would scan the table on SQLite); the
    # statement's text depends only on how many nodes there are, so the driver's statement
    # cache serves it again instead of compiling it (which costs more than running it)
    branch = f"SELECT {_NODE} + level, idx, hash, NULL, NULL, NULL FROM {_T}"
    branch += f" WHERE level = {mark} AND idx = {mark}"
    return [branch] * len(keys), [v for key in keys for v in key]


def _fetch(
    conn: Connection, seq: int, size: int | None, guess: int | None
) -> tuple[Any, str | None, dict[tuple[int, int], bytes]]:
    """(checkpoint row or None, event hash or None, nodes for a tree of size *guess*)."""
    mark = _marker(conn)
    where = "" if size is None else f" WHERE tree_size = {mark}"
    branches = [
        f"SELECT {_CHECKPOINT}, {_CP_COLUMNS} FROM"
        f" (SELECT {_CP_COLUMNS} FROM {_C}{where} ORDER BY tree_size DESC LIMIT 1) newest",
        f"SELECT {_EVENT}, seq, hash, NULL, NULL, NULL FROM {_E} WHERE seq = {mark}",
    ]
    params = ([] if size is None else [size]) + [seq]
    if guess is not None and seq <= guess:
        more, values = _node_branches(_node_keys(seq, guess), mark)
        branches += more
        params += values
    cp_row, event_hash, nodes = None, None, {}
    for row in conn.exec_driver_sql(" UNION ALL ".join(branches), tuple(params)).all():
        kind = row[0]
        if kind == _CHECKPOINT:
            cp_row = row[1:]
        elif kind == _EVENT:
            event_hash = row[2]
        else:
            nodes[(kind - _NODE, int(row[1]))] = bytes.fromhex(row[2])
    return cp_row, event_hash, nodes


def _nodes_only(conn: Connection, seq: int, size: int) -> dict[tuple[int, int], bytes]:
    branches, params = _node_branches(_node_keys(seq, size), _marker(conn))
    rows = conn.exec_driver_sql(" UNION ALL ".join(branches), tuple(params)).all()
    return {(int(r[0]) - _NODE, int(r[1])): bytes.fromhex(r[2]) for r in rows}


def inclusion_proof(ctx: Context, seq: int, *, size: int | None = None) -> dict[str, Any]:
    """Proof that event *seq* is in the log as signed by a checkpoint (the newest by default)."""
    if seq < 1:
        raise InvalidInput("an audit sequence number starts at 1", field="seq")
    url = ctx.store.url
    guess = size if size is not None else _last_size.get(url)
    # no snapshot needed: checkpoints, events and tree nodes are never changed once written
    with ctx.store.read(snapshot=False) as conn:
        cp_row, event_hash, nodes = _fetch(conn, seq, size, guess)
        if cp_row is None:
            if size is None:
                raise NotFound(
                    f"no checkpoint covers event {seq} yet; run `modelvault audit checkpoint`"
                )
            raise NotFound(f"there is no checkpoint of tree size {size}")
        cp = cps.Checkpoint(int(cp_row[0]), cp_row[1], cp_row[2], cp_row[3], cp_row[4])
        if cp.tree_size < seq:
            if size is None:
                raise NotFound(
                    f"no checkpoint covers event {seq} yet; run `modelvault audit checkpoint`"
                )
            raise InvalidInput(f"event {seq} is not in the checkpoint of size {size}")
        if event_hash is None:
            raise NotFound(f"audit event {seq} does not exist")
        if size is None:
            _last_size[url] = cp.tree_size
        if guess != cp.tree_size:  # a newer checkpoint than the guess: its nodes now
            nodes = _nodes_only(conn, seq, cp.tree_size)
    ranges = merkle.inclusion_ranges(seq - 1, cp.tree_size)
    keys = _node_keys(seq, cp.tree_size)
    missing = [k for k in keys if k not in nodes]
    if missing:
        raise IntegrityError(
            f"audit tree node {missing[0]} is missing; run `modelvault audit verify`"
        )
    path = [merkle.range_hash(a, b, lambda lv, ix: nodes[(lv, ix)]) for a, b in ranges]
    return {
        "seq": seq,
        "event_hash": event_hash,
        "tree_size": cp.tree_size,
        "path": [h.hex() for h in path],
        "checkpoint": cp.to_json(),
    }
