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

On SQLite, where the native part is built (``_fastscan.c``, see setup.py), it reads the
log with SQLite's C library and makes the same checks in C, several times faster; it only
ever accepts, and stops at any event it is not sure of, which this module then judges as
above. PostgreSQL logs, and installs without the native part, are scanned here in Python.
"""

from __future__ import annotations

import hashlib
import json
import logging
import pickle
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from json.decoder import JSONDecoder
from json.encoder import c_make_encoder, encode_basestring  # type: ignore[attr-defined]
from types import ModuleType
from typing import Any

from . import merkle
from .eventhash import COMMITTED, erased_in, event_hash, personal_problem

BLOCK = 4096  # leaves per aligned block whose subtree hash a scan returns
BATCH = 20_000
RESUME = 1_000  # events checked here after one the native scan stopped at

# the tables of store/schema.py (named here so that a worker need not load SQLAlchemy)
_E, _P, _T = "mv_audit_events", "mv_audit_personal", "mv_audit_tree"
ERASE_ACTION = "audit.erase"
_SELECT = (
    "SELECT e.seq, e.ts, e.actor, e.action, e.project, e.model, e.subject, e.before, e.after,"
    " e.reason, e.prev_hash, e.hash, e.scheme, e.actor_commitment, p.actor, p.salt, t.hash"
    f" FROM {_E} e LEFT JOIN {_P} p ON p.seq = e.seq"
    f" LEFT JOIN {_T} t ON t.level = 0 AND t.idx = e.seq - 1"
)
_SELECT_RANGE = f"{_SELECT} WHERE e.seq >= ? AND e.seq <= ? ORDER BY e.seq"

log = logging.getLogger("modelvault")

_native: ModuleType | None
try:  # the native part (setup.py): absent when it could not be built
    from . import _fastscan as _native
except ImportError:  # pragma: no cover - depends on the install
    _native = None

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


def _levels(block: bytes) -> list[list[bytes]]:
    """The levels of the Merkle subtree over *block* (leaves of 32 bytes, concatenated), from
    the leaves up to its root."""
    leaves = [block[i : i + 32] for i in range(0, len(block), 32)]
    levels = [leaves]
    if _native is not None and len(leaves) == BLOCK:
        for level in _native.levels(block):
            levels.append([level[i : i + 32] for i in range(0, len(level), 32)])
        return levels
    sha = hashlib.sha256
    current = leaves
    while len(current) > 1:
        current = [
            sha(b"\x01" + a + b).digest() for a, b in zip(current[::2], current[1::2], strict=False)
        ]
        levels.append(current)
    return levels


class _Scan:
    """The state of one scan: where it is in the log, and what it found so far."""

    def __init__(
        self,
        segment: Segment,
        prev: str | None,
        tree_size: int,
        wanted: list[int],
        erased: set[int],
    ) -> None:
        self.segment = segment
        self.prev = prev
        self.tree_size = tree_size
        self.wanted = wanted
        self.erased = erased
        self.expected = segment.start
        self.leaves = bytearray()  # of the block being filled, 32 bytes each
        self.block_first = segment.start - 1

    def _add_leaves(self, nodes: bytes) -> None:
        whole, at = BLOCK * 32, 0
        if self.leaves:  # fill the block begun before
            at = min(len(nodes), whole - len(self.leaves))
            self.leaves += nodes[:at]
            if len(self.leaves) < whole:
                return
            self._block(bytes(self.leaves))
            self.leaves.clear()
        while len(nodes) - at >= whole:
            self._block(nodes[at : at + whole])
            at += whole
        self.leaves += nodes[at:]

    def _block(self, block: bytes) -> None:
        """Hash the block of leaves starting at leaf index block_first: its root when
        complete, and for each wanted tree size n inside it, the perfect subtrees of
        [first, n) (the part of the root of n below the block's level)."""
        first, count = self.block_first, len(block) // 32
        inside = [n for n in self.wanted if first < n < first + BLOCK and n <= first + count]
        if count == BLOCK and _native is not None and not inside:
            self.segment.blocks.append(_native.levels(block)[-1])
        else:
            levels = _levels(block)
            if count == BLOCK:
                self.segment.blocks.append(levels[-1][0])
            for n in inside:
                self.segment.parts[n] = [
                    levels[lv][ix - (first >> lv)]
                    for lv, ix in (merkle.perfect_node(a, b) for a, b in merkle.decompose(first, n))
                ]
        self.block_first += count

    def finish(self) -> Segment:
        if self.leaves:
            self._block(bytes(self.leaves))
            self.leaves.clear()
        return self.segment

    def _personal(self, seq: int, clear: Any, salt: Any, commitment: Any) -> None:
        """The message (or that it was erased) from audit's own check."""
        problem = personal_problem(seq, clear, salt, commitment, self.erased)
        if problem is not None:
            self.segment.personal = (seq, problem)

    def feed(self, row: tuple[Any, ...]) -> bool:
        """Check the next event (a row of _SELECT); False: it is not accepted here."""
        sha, escape, segment = hashlib.sha256, encode_basestring, self.segment
        (seq, ts, actor, action, project, model, subject, before, after, reason) = row[:10]
        prev_hash, digest, scheme, commitment, clear, salt, leaf = row[10:]
        if seq != self.expected:
            return False
        if self.prev is None:
            segment.first_prev = self.prev = prev_hash
        elif seq == segment.start:
            segment.first_prev = prev_hash
        if prev_hash != self.prev:
            return False
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
            return False
        if scheme == COMMITTED and segment.personal is None:
            try:
                fine = sha(bytes.fromhex(salt) + clear.encode()).hexdigest() == commitment
            except (TypeError, ValueError, AttributeError):
                fine = False
            if not fine:
                self._personal(seq, clear, salt, commitment)
        node = sha(b"\x00" + bytes.fromhex(digest)).digest()
        if (
            seq <= self.tree_size
            and segment.bad_leaf is None
            and leaf != node.hex()
            and (leaf is None or bytes.fromhex(leaf) != node)
        ):
            segment.bad_leaf = seq
        self._add_leaves(node)
        segment.good, segment.good_hash = seq, digest
        self.prev = digest
        self.expected += 1
        return True

    def take(
        self,
        cursor: Any,
        accepted: int,
        leaves: bytes,
        fails: tuple[list[int], list[int]],
        bad_leaf: int,
        last: str,
    ) -> None:
        """Take in what the native scan accepted from event self.expected on; *fails*: the
        events whose clear actor does not match their commitment, and those without one."""
        if accepted == 0:
            return
        segment = self.segment
        if segment.bad_leaf is None and bad_leaf:
            segment.bad_leaf = bad_leaf
        mismatched, missing = fails
        absent = set(missing)
        for seq in sorted(mismatched + missing):
            if segment.personal is not None:
                break
            if seq in absent and seq in self.erased:
                continue  # erased, as an audit.erase event says: nothing wrong
            cursor.execute(
                f"SELECT e.actor_commitment, p.actor, p.salt FROM {_E} e"
                f" LEFT JOIN {_P} p ON p.seq = e.seq WHERE e.seq = {int(seq)}"
            )
            commitment, clear, salt = cursor.fetchone()
            self._personal(seq, clear, salt, commitment)
        self._add_leaves(leaves)
        self.expected += accepted
        self.prev = last
        segment.good, segment.good_hash = self.expected - 1, last


def _rows(cursor: Any, after: int | None, end: int, limit: int) -> list[tuple[Any, ...]]:
    """Up to *limit* rows of _SELECT after event *after* (None: from the very first row, any
    sequence number below 1 included) up to *end*."""
    low = "" if after is None else f"e.seq > {int(after)} AND "
    cursor.execute(f"{_SELECT} WHERE {low}e.seq <= {int(end)} ORDER BY e.seq LIMIT {int(limit)}")
    rows: list[tuple[Any, ...]] = cursor.fetchall()
    return rows


def scan(
    cursor: Any,
    start: int,
    end: int,
    *,
    prev: str | None,
    tree_size: int,
    wanted: list[int],
    erased: set[int],
    path: str | None = None,
) -> Segment:
    """Check events start..end (start - 1 a multiple of BLOCK) read through a DBAPI *cursor*.

    *prev* is the hash event *start* must link to (None: whatever it stores, which the caller
    compares with the previous range's last hash). Range 1.. also reads any row before 1.
    With *path* (the SQLite file the cursor reads) and the native part built, events are
    checked natively while they fit its fast path, and any other event here."""
    assert (start - 1) % BLOCK == 0
    segment = Segment(start, end, start - 1)
    state = _Scan(
        segment, prev, tree_size, sorted(n for n in wanted if start - 1 < n <= end), erased
    )
    fast = _native if path is not None else None
    after: int | None = None if start == 1 else start - 1
    # natively, Python still judges the range's first event (it may have no prev to link to)
    # and, after any event the native scan stops at, the next ones up to RESUME
    limit = 1 if fast is not None else BATCH
    while state.expected <= end:
        rows = _rows(cursor, after, end, limit)
        if not rows:
            break
        for row in rows:
            if not state.feed(row):
                return state.finish()
        after = rows[-1][0]
        if fast is None or path is None or state.prev is None or state.expected > end:
            continue
        try:
            accepted, leaves, mismatched, missing, bad_leaf, last = fast.scan(
                path,
                _SELECT_RANGE,
                state.expected,
                end,
                state.prev,
                tree_size,
                segment.bad_leaf is None,
            )
        except OSError as exc:  # the file cannot be opened on its own: all of it here
            log.info("modelvault: audit verify goes on without its native scan (%s)", exc)
            fast, limit = None, BATCH
            continue
        state.take(cursor, accepted, leaves, (mismatched, missing), bad_leaf, last)
        after = state.expected - 1
        limit = RESUME
    return state.finish()


@contextmanager
def _snapshot(url: str, settings: Any) -> Iterator[tuple[Any, set[int], str | None]]:
    """A DBAPI cursor in a read snapshot of the store at *url*, the erasures read in it, and
    the SQLite file (None for another store). SQLite is read with the standard library's
    driver, so that a worker loads no SQLAlchemy."""
    from .store.urls import sqlite_path

    path = sqlite_path(url)
    if path is not None:
        import sqlite3

        lite = sqlite3.connect(path, isolation_level=None, timeout=30)
        try:
            cursor = lite.cursor()
            cursor.execute("BEGIN")
            cursor.execute(f"SELECT after FROM {_E} WHERE action = ?", (ERASE_ACTION,))
            yield cursor, erased_in(after for (after,) in cursor.fetchall()), path
        finally:
            lite.close()
        return

    from .audit import erased_seqs
    from .store.engine import open_metadata_store

    store = open_metadata_store(url, settings)
    try:
        with store.read() as conn:
            raw: Any = conn.connection.dbapi_connection
            dbcursor = raw.cursor()
            try:
                yield dbcursor, erased_seqs(conn), None
            finally:
                dbcursor.close()
    finally:
        store.dispose()


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
    with _snapshot(url, settings) as (cursor, erased, path):
        return scan(
            cursor,
            start,
            end,
            prev=None,
            tree_size=tree_size,
            wanted=wanted,
            erased=erased,
            path=path,
        )


def serve() -> None:
    """A worker process (see ``service.auditverify``): the arguments of ``scan_store``
    pickled on stdin, the Segment it returns pickled on stdout."""
    args = pickle.load(sys.stdin.buffer)
    segment = scan_store(*args)
    sys.stdout.buffer.write(pickle.dumps(segment))
    sys.stdout.buffer.flush()
