"""The events half of ``Registry``: the audit log as a stream, and webhooks."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from ..domain import AuditEvent
from .records import CreatedWebhook, DeadLetter, Webhook

if TYPE_CHECKING:
    from ..service.context import Context
    from ..settings import Settings

POLL_S = 0.1


class EventsMethods:
    _ctx: Context
    settings: Settings

    def _events_project(self, project: str | None) -> str:
        from ..limits import check_name

        return check_name(project or self.settings.project, what="project name")

    def events(
        self,
        after: int = 0,
        *,
        limit: int = 100,
        project: str | None = None,
        wait: float = 0.0,
    ) -> list[AuditEvent]:
        """Audit events of the project with a sequence number above *after*, oldest first.
        With *wait*, block up to that many seconds until there is at least one (long poll)."""
        from ..errors import InvalidInput
        from ..service.auditing import list_events

        if isinstance(after, bool) or not isinstance(after, int) or after < 0:
            raise InvalidInput("after must be a sequence number >= 0", field="after")
        if not 1 <= limit <= 10_000:
            raise InvalidInput("limit must be from 1 to 10000", field="limit")
        if not 0 <= wait <= 300:
            raise InvalidInput("wait must be from 0 to 300 seconds", field="wait")
        deadline = time.monotonic() + wait
        while True:
            found = list_events(
                self._ctx, project=self._events_project(project), after_seq=after, limit=limit
            )
            if found or time.monotonic() >= deadline:
                return found
            time.sleep(POLL_S)

    def add_webhook(
        self,
        name: str,
        url: str,
        *,
        events: Sequence[str] = ("*",),
        secret: str | None = None,
        max_attempts: int = 8,
        timeout_ms: int = 10_000,
        from_seq: int | None = None,
        project: str | None = None,
    ) -> CreatedWebhook:
        """POST every event of the project whose action matches one of *events* (glob
        patterns such as ``stage.*``) to *url*, signed with the returned secret."""
        from ..service.webhooks import add_webhook

        hook, key = add_webhook(
            self._ctx,
            self._events_project(project),
            name,
            url,
            actions=events,
            secret=secret,
            max_attempts=max_attempts,
            timeout_ms=timeout_ms,
            from_seq=from_seq,
        )
        return CreatedWebhook(webhook=hook, secret=key)

    def webhooks(self, *, project: str | None = None) -> list[Webhook]:
        from ..service.webhooks import list_webhooks

        return list_webhooks(self._ctx, self._events_project(project))

    def remove_webhook(self, name: str, *, project: str | None = None) -> None:
        from ..service.webhooks import remove_webhook

        remove_webhook(self._ctx, self._events_project(project), name)

    def replay_webhook(self, name: str, from_seq: int, *, project: str | None = None) -> Webhook:
        from ..service.webhooks import replay

        return replay(self._ctx, self._events_project(project), name, from_seq)

    def dead_letters(self, name: str, *, project: str | None = None) -> list[DeadLetter]:
        from ..service.webhooks import dead_letters

        return dead_letters(self._ctx, self._events_project(project), name)

    def deliver_webhooks(self) -> int:
        """Deliver what is due now (the server does this continuously); returns how many
        deliveries succeeded."""
        from .delivery import Deliverer

        deliverer = Deliverer(self._ctx)
        try:
            return deliverer.run_once()
        finally:
            deliverer.close()
