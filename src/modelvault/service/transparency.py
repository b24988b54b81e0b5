"""The audit log as a transparency log: Merkle tree nodes, signed checkpoints, the witness,
inclusion and consistency proofs, full verification and the offline bundle.

The tree is derived data: its nodes are filled in, from the events, whenever a checkpoint is
made (every N events or T seconds after a write commits, or on demand). Checkpoints are signed
with a key kept outside the database and written to the witness directory before they commit.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy import Connection, and_, func, insert, or_, select

from .. import checkpoints as cps
from .. import merkle
from ..audit import verify as verify_chain
from ..domain import AuditVerification
from ..errors import IntegrityError, InvalidInput, ModelVaultError, NotFound
from ..eventhash import COMMITTED
from ..store import schema
from ..store import statements as sql
from ..timeutil import from_text, to_text
from ..witness import Witness, open_witness
from .auditverify import ChainAndTree, check_chain_and_tree
from .autocheckpoint import since_checkpoint
from .context import Context

E, T, C = schema.audit_events, schema.audit_tree, schema.audit_checkpoints
BATCH = 20_000


# -- the tree ---------------------------------------------------------------------------------


def _tree_size(conn: Connection) -> int:
    return int(
        conn.execute(
            select(func.coalesce(func.max(T.c.idx) + 1, 0)).where(T.c.level == 0)
        ).scalar_one()
    )


def _nodes(conn: Connection, keys: Sequence[tuple[int, int]]) -> dict[tuple[int, int], bytes]:
    out: dict[tuple[int, int], bytes] = {}
    unique = sorted(set(keys))
    for i in range(0, len(unique), 200):
        chunk = unique[i : i + 200]
        by_level: dict[int, list[int]] = {}
        for lv, ix in chunk:
            by_level.setdefault(lv, []).append(ix)
        # one indexed lookup per level (a row-value IN would scan the table on SQLite)
        rows = conn.execute(
            select(T.c.level, T.c.idx, T.c.hash).where(
                or_(*[and_(T.c.level == lv, T.c.idx.in_(ixs)) for lv, ixs in by_level.items()])
            )
        ).all()
        out.update({(r.level, r.idx): bytes.fromhex(r.hash) for r in rows})
    missing = [k for k in unique if k not in out]
    if missing:
        raise IntegrityError(
            f"audit tree node {missing[0]} is missing; run `modelvault audit verify`"
        )
    return out


def _range_hashes(conn: Connection, ranges: Sequence[merkle.Range]) -> list[bytes]:
    keys = [merkle.perfect_node(a, b) for r in ranges for a, b in merkle.decompose(*r)]
    nodes = _nodes(conn, keys)
    return [merkle.range_hash(a, b, lambda lv, ix: nodes[(lv, ix)]) for a, b in ranges]


def extend_tree(conn: Connection) -> merkle.Frontier:
    """Add the nodes of every event not in the tree yet; returns the tree's frontier."""
    size = _tree_size(conn)
    keys = merkle.Frontier.nodes_for(size)
    nodes = _nodes(conn, keys) if keys else {}
    frontier = merkle.Frontier(size, [nodes[k] for k in keys])
    while True:
        rows = conn.execute(
            select(E.c.seq, E.c.hash).where(E.c.seq > frontier.size).order_by(E.c.seq).limit(BATCH)
        ).all()
        if not rows:
            return frontier
        made: list[tuple[int, int, bytes]] = []
        for row in rows:
            if row.seq != frontier.size + 1:
                raise IntegrityError(
                    f"audit event {frontier.size + 1} is missing; run `modelvault audit verify`"
                )
            frontier.push(merkle.leaf_hash(bytes.fromhex(row.hash)), made)
        conn.execute(insert(T), [{"level": lv, "idx": ix, "hash": h.hex()} for lv, ix, h in made])


def root_at(conn: Connection, size: int) -> bytes:
    return merkle.EMPTY_ROOT if size == 0 else _range_hashes(conn, [(0, size)])[0]


# -- checkpoints --------------------------------------------------------------------------------


def _row_to_cp(row: Any) -> cps.Checkpoint:
    return cps.Checkpoint(row.tree_size, row.root, row.ts, row.key_id, row.signature)


def list_checkpoints(conn: Connection) -> list[cps.Checkpoint]:
    return [_row_to_cp(r) for r in conn.execute(select(C).order_by(C.c.tree_size)).all()]


def _latest(conn: Connection) -> cps.Checkpoint | None:
    row = conn.execute(select(C).order_by(C.c.tree_size.desc()).limit(1)).first()
    return None if row is None else _row_to_cp(row)


def witness_of(ctx: Context) -> Witness | None:
    """The witness the settings name (a directory or an S3 prefix), or None when off."""
    return open_witness(ctx.settings.audit_witness, ctx.settings)


def public_key(ctx: Context) -> Ed25519PublicKey:
    """The checkpoint-signing key's public half (the key is made on first use)."""
    try:
        return cps.load_or_create_private(Path(ctx.settings.audit_key)).public_key()
    except (OSError, ValueError) as exc:
        raise InvalidInput(str(exc), field="audit_key") from None


def checkpoint(ctx: Context, *, every: int = 0, seconds: float = 0) -> cps.Checkpoint | None:
    """Sign a checkpoint of the whole log now; with *every*/*seconds* only when one is due.

    Returns the newest checkpoint (an existing one when the log has not grown), or None for an
    empty log or when none is due."""
    try:
        key = cps.load_or_create_private(Path(ctx.settings.audit_key))
    except (OSError, ValueError) as exc:
        raise InvalidInput(str(exc), field="audit_key") from None
    with ctx.store.write() as conn:
        head = conn.execute(sql.LOCK_HEAD).one()  # one checkpointer at a time, no appends meanwhile
        last = _latest(conn)
        last_size = last.tree_size if last else 0
        if head.seq in (0, last_size):
            return last if head.seq else None
        if every or seconds:
            grown = head.seq - last_size
            # the time runs from the newest checkpoint, or from the first event before any
            since = since_checkpoint(conn)[1]
            old = since is not None and ctx.now() - from_text(since) >= timedelta(seconds=seconds)
            if not ((every and grown >= every) or (seconds and old)):
                return None
        frontier = extend_tree(conn)
        if frontier.size != head.seq:
            raise IntegrityError(
                "the audit tree does not reach the audit head; run `modelvault audit verify`"
            )
        cp = cps.sign(key, frontier.size, frontier.root().hex(), to_text(ctx.now()))
        witness = witness_of(ctx)
        if witness is not None:  # before the commit: the witness never misses a checkpoint
            witness.write(cp)
        conn.execute(insert(C).values(**cp.to_json()))
    return cp


# -- proofs ---------------------------------------------------------------------------------


def _covering(conn: Connection, size: int | None, at_least: int) -> cps.Checkpoint:
    if size is None:
        cp = _latest(conn)
        if cp is None or cp.tree_size < at_least:
            raise NotFound(
                f"no checkpoint covers event {at_least} yet; run `modelvault audit checkpoint`"
            )
        return cp
    row = conn.execute(select(C).where(C.c.tree_size == size)).first()
    if row is None:
        raise NotFound(f"there is no checkpoint of tree size {size}")
    cp = _row_to_cp(row)
    if cp.tree_size < at_least:
        raise InvalidInput(f"event {at_least} is not in the checkpoint of size {size}")
    return cp


def inclusion_proof(ctx: Context, seq: int, *, size: int | None = None) -> dict[str, Any]:
    """Proof that event *seq* is in the log as signed by a checkpoint (the newest by default)."""
    from .inclusion import inclusion_proof as one_round_trip

    return one_round_trip(ctx, seq, size=size)


def consistency_proof(ctx: Context, old: int, new: int) -> dict[str, Any]:
    """Proof that the checkpointed log of size *old* is a prefix of the one of size *new*."""
    if not 0 < old <= new:
        raise InvalidInput("give two checkpoint sizes, the first not above the second")
    with ctx.store.read() as conn:
        first, second = _covering(conn, old, 0), _covering(conn, new, 0)
        path = _range_hashes(conn, merkle.consistency_ranges(old, new))
    return {"old": first.to_json(), "new": second.to_json(), "path": [h.hex() for h in path]}


# -- verification ---------------------------------------------------------------------------


def _leaves(conn: Connection) -> Iterator[tuple[int, str, str | None]]:
    last = 0
    while True:
        rows = conn.execute(
            select(E.c.seq, E.c.hash, T.c.hash.label("leaf"))
            .select_from(E.outerjoin(T, and_(T.c.level == 0, T.c.idx == E.c.seq - 1)))
            .where(E.c.seq > last)
            .order_by(E.c.seq)
            .limit(BATCH)
        ).all()
        if not rows:
            return
        for r in rows:
            yield r.seq, r.hash, r.leaf
        last = rows[-1].seq


def _walk(
    conn: Connection, personal: list[tuple[int, str]], tree_size: int, wanted: set[int]
) -> ChainAndTree:
    """The reference check: the chain event by event, then every leaf pushed into a frontier
    (what ``check_chain_and_tree`` must agree with, and falls back to)."""
    chain = verify_chain(conn, personal)
    roots: dict[int, bytes] = {0: merkle.EMPTY_ROOT}
    if not chain.ok:
        return ChainAndTree(chain, None, roots)
    frontier = merkle.Frontier()
    for seq, event_hash, leaf in _leaves(conn):
        expected = merkle.leaf_hash(bytes.fromhex(event_hash))
        if seq <= tree_size and (leaf is None or bytes.fromhex(leaf) != expected):
            return ChainAndTree(chain, seq, roots)
        frontier.push(expected)
        if seq in wanted:
            roots[seq] = frontier.root()
    return ChainAndTree(chain, None, roots)


def verify_all(
    ctx: Context, *, processes: int | None = None, reference: bool = False
) -> AuditVerification:
    """Chain, tree, checkpoint signatures and witness agreement; names what failed first.

    *processes*: how many processes check the chain and tree (default: by the log's size);
    *reference*: check them event by event instead (the slow way the fast one must match)."""
    personal: list[tuple[int, str]] = []  # checked with the chain, reported last
    with ctx.store.read() as conn:
        stored = list_checkpoints(conn)
        witness: Witness | None = None
        seen: list[cps.Checkpoint] = []
        unreadable: str | None = None
        try:
            witness = witness_of(ctx)
            seen = witness.read() if witness is not None else []
        except (ValueError, ModelVaultError) as exc:
            unreadable = str(exc)
        tree_size = _tree_size(conn)
        wanted = {c.tree_size for c in stored} | {c.tree_size for c in seen} | {tree_size}
        found = None
        if not reference:
            found = check_chain_and_tree(
                ctx,
                conn,
                personal,
                tree_size=tree_size,
                wanted=sorted(wanted),
                processes=processes,
            )
        if found is None:
            personal.clear()
            found = _walk(conn, personal, tree_size, wanted)
        chain, roots = found.chain, found.roots
        if not chain.ok:
            return _with(chain, "chain")
        count = chain.events

        def bad(seq: int | None, check: str, problem: str) -> AuditVerification:
            return AuditVerification(
                ok=False,
                events=count,
                head_seq=chain.head_seq,
                head_hash=chain.head_hash,
                first_bad_seq=seq,
                problem=problem,
                check=check,
            )

        if unreadable is not None:
            return bad(None, "witness", unreadable)
        if found.bad_leaf is not None:
            seq = found.bad_leaf
            return bad(seq, "tree", f"the tree's leaf for event {seq} does not match the event")
        if tree_size > count:
            return bad(
                count + 1,
                "tree",
                f"the tree holds {tree_size} events but the log only {count}:"
                " events were removed from the end",
            )
        if tree_size and root_at(conn, tree_size) != roots.get(tree_size):
            return bad(None, "tree", "the stored tree nodes do not give the root of the events")
        key: Ed25519PublicKey | None = None
        key_path = Path(ctx.settings.audit_key)
        if stored or seen:
            try:
                key = cps.load_private(key_path).public_key()
            except ValueError as exc:
                return bad(None, "signature", f"cannot check checkpoint signatures: {exc}")
    assert key is not None or not (stored or seen)
    previous = 0
    for cp in stored:
        problem = _check_cp(cp, key, roots, count, previous, "checkpoint")
        if problem is not None:
            return bad(problem[0], problem[1], problem[2])
        previous = cp.tree_size
    if witness is not None:
        by_size = {c.tree_size: c for c in stored}
        previous = 0
        for cp in seen:
            problem = _check_cp(cp, key, roots, count, previous, "witness checkpoint")
            if problem is not None:
                return bad(problem[0], "witness", problem[2])
            mine = by_size.get(cp.tree_size)
            if mine is not None and mine.root != cp.root:
                return bad(None, "witness", f"checkpoint {cp.tree_size} differs from the witness's")
            previous = cp.tree_size
        missing = sorted(set(by_size) - {c.tree_size for c in seen})
        if missing:
            return bad(None, "witness", f"checkpoint {missing[0]} is not in the witness {witness}")
    if personal:
        # last: a consistent rewrite is named by the tree and checkpoints, not by this
        return bad(personal[0][0], "personal", personal[0][1])
    return AuditVerification(
        ok=True,
        events=count,
        head_seq=chain.head_seq,
        head_hash=chain.head_hash,
        checkpoints=len(stored),
    )


def _check_cp(
    cp: cps.Checkpoint,
    key: Ed25519PublicKey | None,
    roots: dict[int, bytes],
    count: int,
    previous: int,
    label: str,
) -> tuple[int | None, str, str] | None:
    if key is None or not cps.signature_ok(key, cp):
        return None, "signature", f"{label} {cp.tree_size} is not signed by this log's key"
    if cp.tree_size > count:
        return (
            count + 1,
            "tree",
            f"{label} {cp.tree_size} was signed over more events than the log holds ({count}):"
            " events were removed from the end",
        )
    if roots.get(cp.tree_size) != bytes.fromhex(cp.root):
        return (
            previous + 1,
            "tree",
            f"{label} {cp.tree_size} does not match the log: an event between {previous + 1}"
            f" and {cp.tree_size} was rewritten",
        )
    return None


def _with(result: AuditVerification, check: str) -> AuditVerification:
    return AuditVerification(
        ok=result.ok,
        events=result.events,
        head_seq=result.head_seq,
        head_hash=result.head_hash,
        first_bad_seq=result.first_bad_seq,
        problem=result.problem,
        check=check,
    )


# -- the offline bundle ---------------------------------------------------------------------


def export_bundle(
    ctx: Context,
    out: Path,
    *,
    model: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> dict[str, Any]:
    """Write events, checkpoints, proofs and the public key under *out* (a new directory)."""
    from .auditing import list_events

    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise InvalidInput(f"{out} exists and is not an empty directory", field="out")
    cp = checkpoint(ctx)
    if cp is None:
        raise InvalidInput("the audit log is empty: there is nothing to export")
    events = [
        e
        for e in list_events(ctx, model=model, since=since, until=until, limit=None, as_hashed=True)
        if e.seq <= cp.tree_size
    ]
    with ctx.store.read() as conn:
        stored = [c for c in list_checkpoints(conn) if c.tree_size <= cp.tree_size]
        proofs = {
            e.seq: [
                h.hex()
                for h in _range_hashes(conn, merkle.inclusion_ranges(e.seq - 1, cp.tree_size))
            ]
            for e in events
        }
        links = []
        previous = 0
        for c in stored:
            path = (
                _range_hashes(conn, merkle.consistency_ranges(previous, c.tree_size))
                if previous
                else []
            )
            links.append(
                {
                    **c.to_json(),
                    "consistency_from": previous,
                    "consistency": [h.hex() for h in path],
                }
            )
            previous = c.tree_size
        salts = _salts(conn, [e.seq for e in events if e.actor_commitment is not None])
    out.mkdir(parents=True, exist_ok=True)
    with (out / "events.jsonl").open("w", encoding="utf-8") as fh:
        for e in events:
            record = {
                "seq": e.seq,
                "ts": to_text(e.ts),
                "actor": e.actor,
                "action": e.action,
                "project": e.project,
                "model": e.model,
                "subject": e.subject,
                "before": _plain(e.before),
                "after": _plain(e.after),
                "reason": e.reason,
                "prev_hash": e.prev_hash,
                "hash": e.hash,
                "proof": proofs[e.seq],
            }
            if e.actor_commitment is not None:
                # the hash covers the commitment; the salt (absent once erased) lets the
                # verifier check the clear actor against it
                record["scheme"] = COMMITTED
                record["actor_commitment"] = e.actor_commitment
                record["actor_salt"] = salts.get(e.seq)
            fh.write(json.dumps(record, sort_keys=True, ensure_ascii=False) + "\n")
    with (out / "checkpoints.jsonl").open("w", encoding="utf-8") as fh:
        for link in links:
            fh.write(json.dumps(link, sort_keys=True) + "\n")
    (out / "public_key.pem").write_bytes(cps.public_pem(public_key(ctx)))
    summary = {
        "format": "modelvault-audit-bundle/1",
        "events": len(events),
        "checkpoint": cp.to_json(),
        "key_id": cp.key_id,
        "filters": {
            "model": model,
            "since": to_text(since) if since else None,
            "until": to_text(until) if until else None,
        },
    }
    (out / "bundle.json").write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
    return summary


def _salts(conn: Connection, seqs: list[int]) -> dict[int, str]:
    AP = schema.audit_personal
    out: dict[int, str] = {}
    for start in range(0, len(seqs), 500):
        chunk = seqs[start : start + 500]
        out.update(
            (r.seq, r.salt)
            for r in conn.execute(select(AP.c.seq, AP.c.salt).where(AP.c.seq.in_(chunk)))
        )
    return out


def _plain(value: Any) -> Any:
    if value is None:
        return None
    return json.loads(json.dumps(value, default=dict))
