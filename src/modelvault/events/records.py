"""Records of the events feature: webhooks and dead letters."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True, slots=True)
class Webhook:
    """A webhook of a project. ``cursor`` is the last event sequence number delivered (or
    dead-lettered); ``attempts`` counts failures at the next one."""

    project: str
    name: str
    url: str
    actions: tuple[str, ...]
    cursor: int
    attempts: int
    max_attempts: int
    timeout_ms: int
    created_by: str
    created_at: datetime
    next_attempt_at: datetime | None = None
    last_error: str | None = None


@dataclass(frozen=True, slots=True)
class CreatedWebhook:
    """A new webhook and its signing secret, shown this once."""

    webhook: Webhook
    secret: str


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """An event a webhook gave up on after its last attempt; ``replay`` sends it again."""

    webhook: str
    seq: int
    attempts: int
    last_error: str
    dead_at: datetime
