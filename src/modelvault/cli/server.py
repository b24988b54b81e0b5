"""``modelvault server``: the REST API for a shared registry (docs/server.md)."""

from __future__ import annotations

from typing import Annotated

import typer

from .app import app, state


@app.command()
def server(
    host: Annotated[str, typer.Option("--host", help="Address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="Port to listen on")] = 7310,
) -> None:
    """Serve the registry over HTTP under /api/v1 (tokens required; see docs/server.md).

    Migrates the schema first (several replicas starting at once are safe). On the first
    start it creates an admin user and prints its token once."""
    from ..server.main import serve

    serve(state.home, host, port)
