"""``modelvault server``: the REST API for a shared registry (docs/server.md)."""

from __future__ import annotations

from typing import Annotated

import typer

from . import output
from .app import app, state


@app.command()
def server(
    host: Annotated[str, typer.Option("--host", help="Address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="Port to listen on")] = 7310,
) -> None:
    """Serve the registry over HTTP under /api/v1 (tokens required; see docs/server.md).

    Migrates the schema first (several replicas starting at once are safe). On the first
    start it creates an admin user and prints its token once."""
    import uvicorn

    from ..server import create_app
    from ..service.identity import bootstrap_admin
    from ..settings import Settings

    settings = Settings.from_env(home=state.home) if state.home else Settings.from_env()
    api = create_app(settings)
    token = bootstrap_admin(api.state.registry._ctx)
    if token is not None:
        output.message("first start: created user admin; its token (shown only this once):")
        print(token, flush=True)
    output.message(f"modelvault server on http://{host}:{port}/api/v1 (docs at /api/v1/docs)")
    uvicorn.run(api, host=host, port=port, log_level="warning", access_log=False)
