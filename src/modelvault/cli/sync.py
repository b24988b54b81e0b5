"""``modelvault sync push``: send versions registered offline to a server (docs/server.md)."""

from __future__ import annotations

from typing import Annotated

import typer

from . import output
from .app import Json, app, state

sync_app = typer.Typer(help="Move what was recorded offline to a server.", no_args_is_help=True)
app.add_typer(sync_app, name="sync")


@sync_app.command("push")
def push(
    to: Annotated[str, typer.Option("--to", help="The server's URL (http://host:7310)")],
    token: Annotated[
        str | None,
        typer.Option("--token", help="API token (default $MODELVAULT_TOKEN)", show_default=False),
    ] = None,
    json_: Json = False,
) -> None:
    """Push the local project's versions the server lacks, keeping their numbers, times,
    authors and digests; pushing twice creates nothing new."""
    from dataclasses import replace

    from ..registry import Registry
    from ..remote import RemoteRegistry
    from ..settings import Settings
    from ..sync import push as do_push

    settings = Settings.from_env(home=state.home) if state.home else Settings.from_env()
    if state.actor:
        settings = replace(settings, actor=state.actor)
    with Registry(settings=replace(settings, url=""), project=state.project) as local:
        remote = RemoteRegistry(to, token=token or settings.token or None, settings=settings)
        try:
            done = do_push(local, remote, project=state.project)
        finally:
            remote.close()
    if json_:
        output.emit_json(done)
        return
    output.message(
        f"pushed {len(done['pushed'])} version(s) of project {done['project']} to {to} "
        f"({len(done['skipped'])} already there, {done['blobs_sent']} blob(s) sent)"
    )
