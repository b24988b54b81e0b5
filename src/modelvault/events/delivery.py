"""The webhook delivery worker: claims due webhooks (a lease, so one replica delivers each),
posts their next events in order, and records each outcome. A receiver that fails or times
out is retried with exponential backoff, then the event is dead-lettered and delivery moves
on; the worker itself never stops because a receiver misbehaves.
"""

from __future__ import annotations

import json
import socket
import threading
import uuid
from datetime import timedelta
from typing import Any

import httpx

from ..domain import as_json
from ..service import webhooks as store
from ..service.context import Context
from .signing import HEADER, sign

LEASE = timedelta(seconds=60)


def payload(project: str, webhook: str, event: Any) -> tuple[str, bytes]:
    delivery = f"{project}/{webhook}/{event.seq}"
    body = json.dumps({"delivery": delivery, "event": as_json(event)}, sort_keys=True)
    return delivery, body.encode("utf-8")


class Deliverer:
    def __init__(self, ctx: Context, *, client: httpx.Client | None = None) -> None:
        self.ctx = ctx
        self.owner = f"{socket.gethostname()}:{uuid.uuid4().hex[:8]}"
        self.client = client or httpx.Client(follow_redirects=False)

    def run_once(self) -> int:
        """Deliver what is due now; returns how many deliveries succeeded."""
        now = self.ctx.now()
        if not store.due(self.ctx, now):
            return 0
        sent = 0
        for webhook_id, _project in store.claim(self.ctx, self.owner, LEASE, now):
            try:
                sent += self._deliver(webhook_id)
            finally:
                store.release(self.ctx, webhook_id, self.owner)
        return sent

    def _deliver(self, webhook_id: int) -> int:
        row, events, scanned = store.pending(self.ctx, webhook_id)
        sent = 0
        for event in events:
            delivery, body = payload(row.project, row.name, event)
            error = self._post(row, event.action, delivery, body)
            if error is None:
                store.delivered(self.ctx, webhook_id, event.seq)
                sent += 1
                continue
            dead = store.failed(self.ctx, webhook_id, event.seq, error, self.ctx.now())
            if not dead:
                return sent  # in order: wait for the backoff before anything later
        if not events or scanned > events[-1].seq:
            store.skip_to(self.ctx, webhook_id, scanned)
        return sent

    def _post(self, row: Any, action: str, delivery: str, body: bytes) -> str | None:
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "modelvault-webhooks",
            "X-Modelvault-Event": action,
            "X-Modelvault-Delivery": delivery,
            HEADER: sign(row.secret, body),
        }
        try:
            response = self.client.post(
                row.url, content=body, headers=headers, timeout=row.timeout_ms / 1000
            )
        except httpx.HTTPError as exc:
            return f"{type(exc).__name__}: {exc}"[:500]
        if 200 <= response.status_code < 300:
            return None
        return f"HTTP {response.status_code}: {response.text[:200]}"

    def run_forever(self, stop: threading.Event, interval: float = 0.5) -> None:
        """Deliver until *stop* is set; errors of one round are reported and retried."""
        while not stop.is_set():
            try:
                self.run_once()
            except Exception as exc:  # the database may be away; try again next round
                print(f"modelvault webhooks: {exc}", flush=True)
            stop.wait(interval)

    def close(self) -> None:
        self.client.close()
