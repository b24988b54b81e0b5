"""Writes on the event loop, when they would not wait.

A route's synchronous work normally goes to the thread pool, so that a wait (for another
writer's lock, for the network) blocks none of the other requests. The hand-off costs: two
thread wake-ups, the pool's bookkeeping and the two threads taking the interpreter lock in
turn: 0.3 to 0.6 ms of a registration's 2.5 to 4 ms of server CPU on a 2-vCPU VM.

A registration against SQLite and a local blob store waits for nothing but the database's
write lock and a local disk: it runs on the loop under ``unwaiting``, whose first write
begins only if no other writer holds the database. When one does, it raises ``WouldWait``
before anything is written, and the route runs again in the pool, where waiting is harmless.
A checkpoint falling due after it is signed in a thread of its own (``autocheckpoint``).
Against PostgreSQL or S3 every statement or request is a network round trip, which may wait
on another transaction's row lock or a slow store: those routes stay in the pool.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from typing import TypeVar

from starlette.concurrency import run_in_threadpool

from ..blobs.base import blob_scheme
from ..registry import Registry
from ..store.engine import WouldWait, unwaiting

T = TypeVar("T")
_LOCAL_BLOBS = ("", "file", "memory")


def loop_may_write(registry: Registry) -> bool:
    """Whether *registry*'s writes wait only for SQLite's lock and a local disk."""
    return waits_only_locally(registry._ctx.store.dialect, registry.settings.blobs)


@cache  # (asked on every registration, of the one registry a server has)
def waits_only_locally(dialect: str, blobs_url: str) -> bool:
    """Whether a metadata store of *dialect* and the blob store at *blobs_url* make a write
    wait for nothing but SQLite's lock and a local disk."""
    return dialect == "sqlite" and blob_scheme(blobs_url) in _LOCAL_BLOBS


async def write_soon(registry: Registry, work: Callable[[], T]) -> T:
    """*work*, a route's synchronous body that writes once: on the event loop when that write
    would not wait, in the thread pool otherwise."""
    if loop_may_write(registry):
        try:
            with unwaiting():
                return work()
        except WouldWait:
            pass
    return await run_in_threadpool(work)
