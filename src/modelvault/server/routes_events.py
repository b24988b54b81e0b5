"""Webhooks of a project over the wire (project admins): add, list, remove, replay from a
sequence number, and the dead-letter list. The server delivers them from its outbox in the
background (``deliver_in_background``)."""

from __future__ import annotations

import threading
from typing import Annotated

from fastapi import Depends, Query
from fastapi.responses import Response
from pydantic import Field

from ..events.records import CreatedWebhook, DeadLetter, Webhook
from ..registry import Registry
from .auth import Caller, caller
from .bodies import INT_MAX, Body, ok
from .routing import documented_router

router = documented_router("/api/v1/projects/{project}/webhooks")
Who = Annotated[Caller, Depends(caller)]


class WebhookBody(Body):
    name: str
    url: str
    events: list[str] = Field(default_factory=lambda: ["*"])
    secret: str | None = None
    max_attempts: int = Field(8, ge=1, le=50)
    timeout_ms: int = Field(10_000, ge=100, le=120_000)
    from_seq: int | None = Field(None, ge=0, le=INT_MAX)


class ReplayBody(Body):
    from_seq: int = Field(ge=0, le=INT_MAX)


@router.post("", status_code=201, responses={201: {"model": CreatedWebhook}})
def add(project: str, body: WebhookBody, who: Who) -> Response:
    """Add a webhook; its signing secret is in this answer only."""
    reg = who.need(project, "admin")
    created = reg.add_webhook(
        body.name,
        body.url,
        events=body.events,
        secret=body.secret,
        max_attempts=body.max_attempts,
        timeout_ms=body.timeout_ms,
        from_seq=body.from_seq,
        project=project,
    )
    return ok(created, status=201)


@router.get("", responses={200: {"model": list[Webhook]}})
def listing(project: str, who: Who) -> Response:
    return ok(who.need(project, "admin").webhooks(project=project))


@router.delete("/{name}", status_code=204)
def remove(project: str, name: str, who: Who) -> Response:
    who.need(project, "admin").remove_webhook(name, project=project)
    return Response(status_code=204)


@router.post("/{name}/replay", responses={200: {"model": Webhook}})
def replay(project: str, name: str, body: ReplayBody, who: Who) -> Response:
    """Deliver again every matching event after ``from_seq``."""
    return ok(who.need(project, "admin").replay_webhook(name, body.from_seq, project=project))


@router.get("/{name}/dead-letters", responses={200: {"model": list[DeadLetter]}})
def dead_letters(
    project: str, name: str, who: Who, limit: Annotated[int, Query(ge=1, le=INT_MAX)] = 1000
) -> Response:
    return ok(who.need(project, "admin").dead_letters(name, project=project)[:limit])


DELIVERY_DELAY_S = 1.0


def deliver_in_background(registry: Registry, stop: threading.Event) -> threading.Thread:
    """Deliver due webhooks until *stop* is set (several servers may run this at once: each
    event goes out once per webhook, see docs/events.md)."""

    def run() -> None:
        # Imported here, with httpx (and the Rich and Pygments its command line pulls in),
        # and only once the server has had time to start: loading them takes a few hundred
        # ms of CPU the start would otherwise share. Due events wait in the outbox meanwhile.
        if stop.wait(DELIVERY_DELAY_S):
            return
        from ..events.delivery import Deliverer

        deliverer = Deliverer(registry._ctx)
        try:
            deliverer.run_forever(stop)
        finally:
            deliverer.close()

    thread = threading.Thread(target=run, name="modelvault-webhooks", daemon=True)
    thread.start()
    return thread
