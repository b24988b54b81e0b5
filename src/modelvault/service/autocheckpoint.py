"""Signing audit checkpoints when they are due, after each committed write (docs/audit.md).

Kept apart from ``transparency`` (the Merkle tree, signing keys, witnesses, proofs), which
is loaded only when a checkpoint is actually due: a process that writes now and then, or a
server on its first start (the admin's bootstrap is a write), never pays for loading it.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import Connection, select

from ..errors import ModelVaultError
from ..store import schema
from ..store.engine import in_unwaiting
from ..timeutil import from_text
from .context import Context

log = logging.getLogger("modelvault")
E, C = schema.audit_events, schema.audit_checkpoints


def since_checkpoint(conn: Connection) -> tuple[int, str | None]:
    """(size of the newest checkpoint, the time the clock to the next runs from): that
    checkpoint's time, or the first event's before any checkpoint."""
    last = conn.execute(
        select(C.c.tree_size, C.c.ts).order_by(C.c.tree_size.desc()).limit(1)
    ).first()
    if last is not None:
        return int(last.tree_size), last.ts
    return 0, conn.execute(select(E.c.ts).where(E.c.seq == 1)).scalar()


@dataclass(slots=True)
class AutoCheckpoint:
    """Runs after each committed write: signs a checkpoint when one is due.

    The common case reads nothing: the write says which audit head it left (a lower bound
    when other processes write too; theirs check after their own writes), and the newest
    checkpoint's size and time are remembered, re-read only after a checkpoint was
    attempted. A write that appended no event costs one read of the head."""

    ctx: Context
    busy: bool = False
    checked_seq: int = -1
    last: tuple[int, str | None] | None = None  # (size, time the clock runs from)

    def __call__(self, head: int | None = None) -> None:
        if self.busy:
            return
        try:
            every = max(int(self.ctx.settings.checkpoint_every), 0)
            seconds = max(float(self.ctx.settings.checkpoint_seconds), 0.0)
        except ValueError:
            return
        if not every and not seconds:
            return
        self.busy = True
        handed = False  # to a thread, which clears busy when it ends
        try:
            if head is None or self.last is None:
                with self.ctx.store.read(snapshot=False) as conn:
                    if head is None:
                        head = int(conn.execute(select(schema.audit_head.c.seq)).scalar_one())
                    if self.last is None and head != self.checked_seq:
                        self.last = since_checkpoint(conn)
            if head == self.checked_seq or self.last is None:
                return
            self.checked_seq = head
            size, since = self.last
            due = (every and head - size >= every) or (
                seconds
                and head > size
                and since is not None
                and self.ctx.now() - from_text(since) >= timedelta(seconds=seconds)
            )
            if due:
                self.last = None  # re-read after this attempt, whoever made the checkpoint
                if in_unwaiting():
                    # on a server's event loop: the tree, the signature and a witness's write
                    # are work for a thread, not for every other request's wait
                    threading.Thread(
                        target=self._sign_then_free,
                        args=(every, seconds),
                        name="modelvault-checkpoint",
                    ).start()
                    handed = True
                else:
                    self._sign(every, seconds)
        except (ModelVaultError, OSError) as exc:
            log.warning("modelvault: audit checkpoint not written: %s", exc)
        finally:
            if not handed:
                self.busy = False

    def _sign(self, every: int, seconds: float) -> None:
        from .transparency import checkpoint

        try:
            checkpoint(self.ctx, every=every, seconds=seconds)
        except (ModelVaultError, OSError) as exc:
            log.warning("modelvault: audit checkpoint not written: %s", exc)

    def _sign_then_free(self, every: int, seconds: float) -> None:
        try:
            self._sign(every, seconds)
        finally:
            self.busy = False
