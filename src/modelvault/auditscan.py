"""The fast check of one range of the audit log, for `audit verify`: chain links and hashes,
personal data and the tree's leaves, plus the Merkle hashes of the range's aligned blocks.

Rows are read through the driver's own cursor in large batches. Each event's canonical body
is spliced from its columns (keys are fixed and sorted; strings escaped by the encoder
``canonical_json`` uses; the stored ``before``/``after`` text inserted as it is) and hashed.
The spliced bytes are the canonical body only when that text is itself canonical, so a
matching hash is taken only once the text is seen to be canonical; anything else (a hash
that does not match, a column of an unexpected type) is judged by ``event_hash`` exactly as
``audit.verify`` does. A scan never explains a failure: it stops at the first event it cannot
accept and reports how far the log is good; ``audit.verify`` resumes from there and gives
the verdict, so every message is the event-by-event walk's own.
"""

from __future__ import annotations

import hashlib
import json
import pickle
import sys
from dataclasses import dataclass, field
from json.decoder import JSONDecoder
from json.encoder import c_make_encoder, encode_basestring  # type: ignore[attr-defined]
from typing import Any

from . import merkle
from .audit import personal_problem
from .eventhash import COMMITTED, event_hash
from .store import schema

BLOCK = 4096  # leaves per aligned block whose subtree hash a scan returns
BATCH = 20_000

_E, _P, _T = schema.audit_events.name, schema.audit_personal.name, schema.audit_tree.name
_SELECT = (
    "SELECT e.seq, e.ts, e.actor, e.action, e.project, e.model, e.subject, e.before, e.after,"
    " e.reason, e.prev_hash, e.hash, e.scheme, e.actor_commitment, p.actor, p.salt, t.hash"
    f" FROM {_E} e LEFT JOIN {_P} p ON p.seq = e.seq"
    f" LEFT JOIN {_T} t ON t.level = 0 AND t.idx = e.seq - 1"
)

_scan_json = JSONDecoder().scan_once  # type: ignore[attr-defined]
# canonical_json's encoder (json.dumps with sort_keys, compact separators, ensure_ascii=False,
# allow_nan=False), minus the cycle check, which parsed JSON never needs
_encode_json = (
    c_make_encoder(None, None, encode_basestring, None, ":", ",", True, False, False)
    if c_make_encoder is not None
    else None
)


def _canonical_text(text: str) -> bool:
    """Is *text* exactly what canonical_json gives for the JSON value it holds?"""
    try:
        value, end = _scan_json(text, 0)
        if end != len(text):
            return False
        if _encode_json is not None:
            return "".join(_encode_json(value, 0)) == text
        return (
            json.dumps(
                value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
            )
            == text
        )
    except (StopIteration, ValueError, RecursionError):
        return False


@dataclass(slots=True)
class Segment:
    """What a scan of events start..end found; *good* is the last event of an unbroken,
    verified run from *start* (start - 1 when none)."""

    start: int
    end: int
    good: int
    good_hash: str | None = None
    first_prev: str | None = None  # the prev_hash stored in event *start*
    personal: tuple[int, str] | None = None  # the first personal-data problem
    bad_leaf: int | None = None  # the first event whose stored tree leaf does not match
    blocks: list[bytes] = field(default_factory=list)  # roots of its complete blocks
    parts: dict[int, list[bytes]] = field(default_factory=dict)  # see _block


def _slow_fits(row: tuple[Any, ...]) -> bool:
    """``audit.verify``'s own test of one event (any failure: not accepted here)."""
    seq, ts, actor, action, project, model, subject, before, after, reason = row[:10]
    prev_hash, digest, scheme, commitment = row[10:14]
    try:
        recomputed = event_hash(
            seq=seq,
            ts=ts,
            actor=actor,
            action=action,
            project=project,
            model=model,
            subject=subject,
            before=json.loads(before) if before is not None else None,
            after=json.loads(after) if after is not None else None,
            reason=reason,
            prev_hash=prev_hash,
            scheme=scheme,
            actor_commitment=commitment,
        )
    except Exception:  # audit.verify reports (or raises) it when it resumes here
        return False
    return recomputed == digest and not (scheme == COMMITTED and actor != "")


def _block(segment: Segment, first: int, leaves: list[bytes], wanted: list[int]) -> None:
    """Hash the block of *leaves* starting at leaf index *first*: its root when complete, and
    for each wanted tree size n inside it, the perfect subtrees of [first, n) (the part of
    the root of n below the block's level)."""
    sha = hashlib.sha256
    levels = [leaves]
    current = leaves
    while len(current) > 1:
        current = [
            sha(b"\x01" + a + b).digest() for a, b in zip(current[::2], current[1::2], strict=False)
        ]
        levels.append(current)
    if len(leaves) == BLOCK:
        segment.blocks.append(levels[-1][0])
    for n in wanted:
        if first < n < first + BLOCK and n <= first + len(leaves):
            segment.parts[n] = [
                levels[lv][ix - (first >> lv)]
                for lv, ix in (merkle.perfect_node(a, b) for a, b in merkle.decompose(first, n))
            ]


def scan(
    cursor: Any,
    start: int,
    end: int,
    *,
    prev: str | None,
    tree_size: int,
    wanted: list[int],
    erased: set[int],
) -> Segment:
    """Check events start..end (start - 1 a multiple of BLOCK) read through a DBAPI *cursor*.

    *prev* is the hash event *start* must link to (None: whatever it stores, which the caller
    compares with the previous range's last hash). Range 1.. also reads any row before 1."""
    assert (start - 1) % BLOCK == 0
    segment = Segment(start, end, start - 1)
    sha, escape = hashlib.sha256, encode_basestring
    wanted = sorted(n for n in wanted if start - 1 < n <= end)
    leaves: list[bytes] = []
    block_first = start - 1
    expected, last = start, (None if start == 1 else start - 1)
    while expected <= end:
        low = "" if last is None else f"e.seq > {int(last)} AND "
        cursor.execute(f"{_SELECT} WHERE {low}e.seq <= {int(end)} ORDER BY e.seq LIMIT {BATCH}")
        rows = cursor.fetchall()
        if not rows:
            break
        for row in rows:
            (seq, ts, actor, action, project, model, subject, before, after, reason) = row[:10]
            prev_hash, digest, scheme, commitment, clear, salt, leaf = row[10:]
            if seq != expected:
                return segment
            if prev is None:
                segment.first_prev = prev = prev_hash
            elif seq == start:
                segment.first_prev = prev_hash
            if prev_hash != prev:
                return segment
            try:
                # a column of an unexpected type raises TypeError: the slow path judges it
                if scheme == COMMITTED and actor == "":
                    who, mark = ',"actor_commitment":' + escape(commitment), ',"scheme":2'
                elif scheme == 1:
                    who, mark = ',"actor":' + escape(actor), ""
                else:
                    raise TypeError
                body = (
                    f'{{"action":{escape(action)}{who}'
                    f',"after":{"null" if after is None else after + ""}'
                    f',"before":{"null" if before is None else before + ""}'
                    f',"model":{"null" if model is None else escape(model)}'
                    f',"prev_hash":{escape(prev_hash)}'
                    f',"project":{"null" if project is None else escape(project)}'
                    f',"reason":{"null" if reason is None else escape(reason)}'
                    f'{mark},"seq":{seq},"subject":{escape(subject)},"ts":{escape(ts)}}}'
                )
                fits = (
                    sha(body.encode()).hexdigest() == digest
                    and (after is None or _canonical_text(after))
                    and (before is None or _canonical_text(before))
                )
            except (TypeError, UnicodeEncodeError):
                fits = False
            if not fits and not _slow_fits(row[:14]):
                return segment
            if scheme == COMMITTED and segment.personal is None:
                try:
                    fine = sha(bytes.fromhex(salt) + clear.encode()).hexdigest() == commitment
                except (TypeError, ValueError, AttributeError):
                    fine = False
                if not fine:  # the message (or that it was erased) from audit's own check
                    problem = personal_problem(seq, clear, salt, commitment, erased)
                    if problem is not None:
                        segment.personal = (seq, problem)
            node = sha(b"\x00" + bytes.fromhex(digest)).digest()
            if (
                seq <= tree_size
                and segment.bad_leaf is None
                and leaf != node.hex()
                and (leaf is None or bytes.fromhex(leaf) != node)
            ):
                segment.bad_leaf = seq
            leaves.append(node)
            if len(leaves) == BLOCK:
                _block(segment, block_first, leaves, wanted)
                block_first += BLOCK
                leaves = []
            segment.good, segment.good_hash = seq, digest
            prev = digest
            expected += 1
        last = rows[-1][0]
    if leaves:
        _block(segment, block_first, leaves, wanted)
    return segment


def scan_store(
    url: str,
    settings: Any,
    start: int,
    end: int,
    tree_size: int,
    wanted: list[int],
) -> Segment:
    """``scan`` in a process of its own (its own connection to the store at *url*); the
    erasures are read from the same snapshot as the events, so a concurrent erasure is seen
    with its ``audit.erase`` event or not at all."""
    from .audit import erased_seqs
    from .store.engine import open_metadata_store

    store = open_metadata_store(url, settings)
    try:
        with store.read() as conn:
            erased = erased_seqs(conn)
            cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
            try:
                return scan(
                    cursor,
                    start,
                    end,
                    prev=None,
                    tree_size=tree_size,
                    wanted=wanted,
                    erased=erased,
                )
            finally:
                cursor.close()
    finally:
        store.dispose()


def serve() -> None:
    """A worker process (see ``service.auditverify``): the arguments of ``scan_store``
    pickled on stdin, the Segment it returns pickled on stdout."""
    args = pickle.load(sys.stdin.buffer)
    segment = scan_store(*args)
    sys.stdout.buffer.write(pickle.dumps(segment))
    sys.stdout.buffer.flush()
