"""The chain and tree part of `audit verify`, fast: the log is cut into ranges of whole
blocks, each range checked by ``auditscan`` (the first in this process, the others in
processes of their own when the log is big), and the results joined.

Ranges are joined in order while each one is good to its end and links to the one before;
``audit.verify`` then resumes the event-by-event walk where that run stops (at the end of the
log when nothing is wrong), so the verdict, the first bad sequence number and the message are
the walk's own. The roots at the checkpoints' sizes are put together from the blocks' hashes.
If the scans stop short of a problem the walk does not find (they should not), the whole
check is made again the reference way.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pickle
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, select

from .. import merkle
from ..audit import erased_seqs
from ..audit import verify as verify_chain
from ..auditscan import BLOCK, Segment, scan
from ..domain import AuditVerification
from ..store import schema
from ..store.engine import GENESIS_HASH
from ..store.urls import sqlite_path
from .context import Context

PARALLEL_MIN = 200_000  # events from which ranges are checked in parallel processes
_SERVE = (
    "import pickle, sys; sys.path[:] = pickle.load(sys.stdin.buffer); "
    "from modelvault.auditscan import serve; serve()"
)
log = logging.getLogger("modelvault")


@dataclass(slots=True)
class ChainAndTree:
    """The chain's verdict, the first event whose stored leaf is wrong, and the roots of the
    tree at each wanted size (and 0), computed from the events."""

    chain: AuditVerification
    bad_leaf: int | None
    roots: dict[int, bytes]


def _processes(total: int) -> int:
    if total < PARALLEL_MIN:
        return 1
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on every platform
        cores = os.cpu_count() or 1
    return max(1, min(cores, 8))


def _ranges(total: int, parts: int) -> list[tuple[int, int]]:
    """Events 1..total cut into at most *parts* ranges of whole blocks (none when empty)."""
    blocks = -(-total // BLOCK)
    per = max(1, -(-blocks // max(1, parts))) * BLOCK
    return [(start + 1, min(start + per, total)) for start in range(0, total, per)]


class _Worker:
    """``auditscan.scan_store`` in a new interpreter: arguments pickled to its stdin, the
    Segment pickled back on its stdout. (Not multiprocessing: its spawn re-runs the caller's
    main script in the child, which an unguarded script using the SDK would not survive.)"""

    def __init__(self, args: tuple[Any, ...]) -> None:
        self.errors = tempfile.TemporaryFile()  # noqa: SIM115 - closed by result() or stop()
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-c", _SERVE],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=self.errors,
            )
        except OSError:
            self.errors.close()
            raise
        assert self.proc.stdin is not None
        with contextlib.suppress(OSError):  # a worker that died at once fails in result()
            # this interpreter's import path first, so the worker imports the same modelvault
            self.proc.stdin.write(pickle.dumps(sys.path) + pickle.dumps(args))
        with contextlib.suppress(OSError):
            self.proc.stdin.close()

    def result(self) -> Segment | None:
        assert self.proc.stdout is not None
        with self.proc.stdout:
            out = self.proc.stdout.read()
        code = self.proc.wait()
        segment = None
        if code == 0:
            with contextlib.suppress(Exception):
                segment = pickle.loads(out)
        if not isinstance(segment, Segment):
            self.errors.seek(0)
            lines = self.errors.read().decode("utf-8", "replace").strip().splitlines()
            log.warning("modelvault: an audit verify worker failed (%s)", lines[-1:] or code)
            segment = None
        self.errors.close()
        return segment

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self.errors.close()


def _scan_all(
    ctx: Context, conn: Connection, total: int, tree_size: int, wanted: list[int], parts: int
) -> list[Segment]:
    erased = erased_seqs(conn)
    ranges = _ranges(total, parts)
    cursor: Any = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    path = sqlite_path(ctx.store.url)

    def here(start: int, end: int) -> Segment:
        prev = GENESIS_HASH if start == 1 else None
        return scan(
            cursor,
            start,
            end,
            prev=prev,
            tree_size=tree_size,
            wanted=wanted,
            erased=erased,
            path=path,
        )

    workers: list[_Worker | None] = []
    try:
        for a, b in ranges[1:]:
            try:
                workers.append(_Worker((ctx.store.url, ctx.settings, a, b, tree_size, wanted)))
            except OSError:  # no process to be had: that range is checked here
                workers.append(None)
        out = [here(*ranges[0])] if ranges else []
        for worker, (a, b) in zip(workers, ranges[1:], strict=True):
            segment = worker.result() if worker is not None else None
            out.append(segment if segment is not None else here(a, b))
        return out
    finally:
        for worker in workers:
            if worker is not None:
                worker.stop()
        cursor.close()


def _roots(segments: list[Segment], wanted: list[int], count: int) -> dict[int, bytes]:
    blocks = [b for s in segments for b in s.blocks]
    parts = {n: p for s in segments for n, p in s.parts.items()}
    memo: dict[tuple[int, int], bytes] = {}

    def perfect(start: int, size: int) -> bytes:  # a perfect subtree of whole blocks
        key = (start, size)
        if key not in memo:
            if size == BLOCK:
                memo[key] = blocks[start // BLOCK]
            else:
                half = size // 2
                memo[key] = merkle.node_hash(perfect(start, half), perfect(start + half, half))
        return memo[key]

    roots = {0: merkle.EMPTY_ROOT}
    for n in wanted:
        if not 0 < n <= count:
            continue
        hashes = [perfect(a, b - a) for a, b in merkle.decompose(0, n) if b - a >= BLOCK]
        hashes += parts.get(n, []) if n % BLOCK else []
        result = hashes[-1]
        for part in reversed(hashes[:-1]):
            result = merkle.node_hash(part, result)
        roots[n] = result
    return roots


def check_chain_and_tree(
    ctx: Context,
    conn: Connection,
    personal: list[tuple[int, str]],
    *,
    tree_size: int,
    wanted: list[int],
    processes: int | None = None,
) -> ChainAndTree | None:
    """The chain verdict (as ``audit.verify`` gives it), the first bad stored leaf and the
    roots at *wanted* sizes; None when the scans and the walk disagree (the caller then
    checks everything the reference way). The first personal-data problem goes to
    *personal*, as ``audit.verify`` does it."""
    head = conn.execute(select(schema.audit_head.c.seq)).scalar_one()
    total = max(int(head), 0)
    parts = _processes(total) if processes is None else max(1, processes)
    segments = _scan_all(ctx, conn, total, tree_size, sorted(set(wanted)), parts)
    good, good_hash = 0, GENESIS_HASH
    joined: list[Segment] = []
    for segment in segments:
        if segment.good < segment.start or segment.first_prev != good_hash:
            break
        joined.append(segment)
        good, good_hash = segment.good, segment.good_hash or GENESIS_HASH
        if segment.good < segment.end:
            break
    found = [s.personal for s in joined if s.personal is not None and s.personal[0] <= good]
    if found:
        personal.append(found[0])
    chain = verify_chain(conn, personal, resume=(good, good_hash))
    if not chain.ok:
        return ChainAndTree(chain, None, {})
    if chain.events != good or len(joined) != len(segments):
        return None
    leaves = [s.bad_leaf for s in segments if s.bad_leaf is not None]
    roots = _roots(segments, sorted(set(wanted)), chain.events)
    return ChainAndTree(chain, leaves[0] if leaves else None, roots)
