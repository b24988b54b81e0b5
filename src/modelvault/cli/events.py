"""Event commands: the audit log as a stream (`events`) and webhooks (`webhooks …`)."""

from __future__ import annotations

import time
from typing import Annotated

import typer

from . import output, render
from .app import Json, app, registry

webhooks_app = typer.Typer(
    help="Webhooks: every matching audit event POSTed, signed, at least once.",
    no_args_is_help=True,
)
app.add_typer(webhooks_app, name="webhooks")


@app.command()
def events(
    after: Annotated[int, typer.Option("--after", help="Sequence number to start after")] = 0,
    limit: Annotated[int, typer.Option("--limit")] = 100,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep waiting for new events (Ctrl-C stops)")
    ] = False,
    wait: Annotated[float, typer.Option("--wait", help="Long-poll up to this many seconds")] = 0.0,
    json_: Json = False,
) -> None:
    """Audit events of the project after a sequence number, as a stream."""
    reg = registry()
    cursor = after
    while True:
        found = reg.events(cursor, limit=limit, wait=wait if not follow else 30.0)
        if json_ and not follow:
            output.emit_json(found)
            return
        if found:
            if json_:
                for event in found:
                    output.emit_json_line(event)
            else:
                render.audit(found)
            cursor = found[-1].seq
        if not follow:
            return


@webhooks_app.command("add")
def webhooks_add(
    name: str,
    url: str,
    event: Annotated[
        list[str] | None, typer.Option("--event", help="Action pattern, e.g. 'stage.*' (repeat)")
    ] = None,
    secret: Annotated[
        str | None, typer.Option("--secret", help="Signing secret (default: generated)")
    ] = None,
    max_attempts: Annotated[int, typer.Option("--max-attempts")] = 8,
    timeout_ms: Annotated[int, typer.Option("--timeout-ms")] = 10_000,
    from_seq: Annotated[
        int | None, typer.Option("--from-seq", help="Also deliver past events from here")
    ] = None,
    json_: Json = False,
) -> None:
    """Add a webhook; its signing secret is printed this once."""
    created = registry().add_webhook(
        name,
        url,
        events=event or ["*"],
        secret=secret,
        max_attempts=max_attempts,
        timeout_ms=timeout_ms,
        from_seq=from_seq,
    )
    if json_:
        output.emit_json(created)
    else:
        print(created.secret)
        output.message(
            f"webhook {name} delivers to {url} from event {created.webhook.cursor + 1}; "
            "the secret above is shown once"
        )


@webhooks_app.command("list")
def webhooks_list(json_: Json = False) -> None:
    """The project's webhooks and where each one's delivery stands."""
    found = registry().webhooks()
    if json_:
        output.emit_json(found)
    else:
        output.table(
            None,
            ["name", "url", "events", "delivered up to", "failing attempts", "last error"],
            [
                (w.name, w.url, ", ".join(w.actions), w.cursor, w.attempts, w.last_error)
                for w in found
            ],
        )


@webhooks_app.command("rm")
def webhooks_rm(name: str, json_: Json = False) -> None:
    """Remove a webhook (its dead letters go with it)."""
    registry().remove_webhook(name)
    if json_:
        output.emit_json({"removed": name})
    else:
        output.message(f"webhook {name} removed")


@webhooks_app.command("replay")
def webhooks_replay(
    name: str,
    from_seq: Annotated[int, typer.Option("--from", help="First sequence number to resend")],
    json_: Json = False,
) -> None:
    """Deliver again every matching event from a sequence number on."""
    hook = registry().replay_webhook(name, from_seq)
    if json_:
        output.emit_json(hook)
    else:
        output.message(f"webhook {name} will deliver again from event {from_seq}")


@webhooks_app.command("dead-letters")
def webhooks_dead_letters(name: str, json_: Json = False) -> None:
    """Events the webhook gave up on after its last attempt."""
    found = registry().dead_letters(name)
    if json_:
        output.emit_json(found)
    else:
        output.table(
            None,
            ["seq", "attempts", "dead since", "last error"],
            [(d.seq, d.attempts, d.dead_at, d.last_error) for d in found],
        )


@webhooks_app.command("deliver")
def webhooks_deliver(
    follow: Annotated[
        bool, typer.Option("--follow", help="Keep delivering (Ctrl-C stops)")
    ] = False,
    json_: Json = False,
) -> None:
    """Deliver what is due now (a server delivers continuously by itself)."""
    reg = registry()
    total = 0
    while True:
        total += reg.deliver_webhooks()
        if not follow:
            break
        time.sleep(0.5)
    if json_:
        output.emit_json({"delivered": total})
    else:
        output.message(f"{total} deliveries made")
