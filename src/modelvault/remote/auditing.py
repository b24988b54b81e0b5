"""The remote registry's audit log and webhooks: queries, the event stream, verification,
checkpoints, proofs, ``explain``, and webhook management through the server."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from ..domain import (
    AuditEvent,
    AuditVerification,
)
from ..events.records import CreatedWebhook, DeadLetter, Webhook
from ..timeutil import to_text
from ..wire import from_json
from .base import RemoteBase, seg


class RemoteAudit(RemoteBase):
    """Audit log and webhook methods of :class:`~modelvault.remote.RemoteRegistry`."""

    # -- audit ------------------------------------------------------------------------------
    def audit(
        self,
        *,
        model: str | None = None,
        project: str | None = None,
        actor: str | None = None,
        action: str | None = None,
        since: datetime | str | None = None,
        until: datetime | str | None = None,
        after_seq: int = 0,
        limit: int | None = 1000,
        newest_first: bool = False,
    ) -> list[AuditEvent]:
        name = None
        if model is not None:
            project, name = self._model(model)
        start, end = self._time(since), self._time(until)
        data = self._http.call(
            "GET",
            f"/projects/{self._p(project)}/audit",
            params={
                "model": name,
                "actor": actor,
                "action": action,
                "since": to_text(start) if start else None,
                "until": to_text(end) if end else None,
                "after": after_seq,
                "limit": limit,
                "newest_first": newest_first,
            },
        )
        return [from_json(AuditEvent, e) for e in data]

    def events(
        self, after: int = 0, *, limit: int = 100, project: str | None = None, wait: float = 0.0
    ) -> list[AuditEvent]:
        data = self._http.call(
            "GET",
            f"/projects/{self._p(project)}/events",
            params={"after": after, "limit": limit, "wait": wait},
        )
        return [from_json(AuditEvent, e) for e in data]

    def verify_audit(self) -> AuditVerification:
        return from_json(AuditVerification, self._http.call("GET", "/audit/verify"))

    def checkpoint(self) -> dict[str, Any] | None:
        result: dict[str, Any] | None = self._http.call("POST", "/audit/checkpoint")
        return result

    def audit_public_key(self) -> bytes:
        return self._http.request("GET", "/audit/public-key").content

    def checkpoints(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._http.call("GET", "/audit/checkpoints")
        return result

    def inclusion_proof(self, seq: int, *, tree_size: int | None = None) -> dict[str, Any]:
        result: dict[str, Any] = self._http.call(
            "GET", "/audit/proofs/inclusion", params={"seq": seq, "tree_size": tree_size}
        )
        return result

    def consistency_proof(self, old_size: int, new_size: int) -> dict[str, Any]:
        result: dict[str, Any] = self._http.call(
            "GET", "/audit/proofs/consistency", params={"old": old_size, "new": new_size}
        )
        return result

    def explain(
        self, ref: str, *, env: str | None = None, at: datetime | str | None = None
    ) -> dict[str, Any]:
        project, rest = self._split(ref)
        when = self._time(at)
        result: dict[str, Any] = self._http.call(
            "GET",
            f"/projects/{seg(project)}/refs/{seg(rest)}/explain",
            params={"env": env, "at": to_text(when) if when else None},
        )
        return result

    # -- webhooks ---------------------------------------------------------------------------
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
        data = self._http.call(
            "POST",
            f"/projects/{self._p(project)}/webhooks",
            json={
                "name": name,
                "url": url,
                "events": list(events),
                "secret": secret,
                "max_attempts": max_attempts,
                "timeout_ms": timeout_ms,
                "from_seq": from_seq,
            },
        )
        return from_json(CreatedWebhook, data)

    def webhooks(self, *, project: str | None = None) -> list[Webhook]:
        data = self._http.call("GET", f"/projects/{self._p(project)}/webhooks")
        return [from_json(Webhook, w) for w in data]

    def remove_webhook(self, name: str, *, project: str | None = None) -> None:
        self._http.request("DELETE", f"/projects/{self._p(project)}/webhooks/{seg(name)}")

    def replay_webhook(self, name: str, from_seq: int, *, project: str | None = None) -> Webhook:
        data = self._http.call(
            "POST",
            f"/projects/{self._p(project)}/webhooks/{seg(name)}/replay",
            json={"from_seq": from_seq},
        )
        return from_json(Webhook, data)

    def dead_letters(self, name: str, *, project: str | None = None) -> list[DeadLetter]:
        data = self._http.call(
            "GET", f"/projects/{self._p(project)}/webhooks/{seg(name)}/dead-letters"
        )
        return [from_json(DeadLetter, d) for d in data]

    def deliver_webhooks(self) -> int:
        self._unsupported("delivering webhooks by hand (the server delivers them)")
