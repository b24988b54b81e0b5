"""A real modelvault server on loopback for tests: uvicorn in a thread over the test's own
stores, and tokens for the people a test acts as."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import httpx
import pytest
import uvicorn

from modelvault import Registry, Settings
from modelvault.server import create_app
from modelvault.server.protocol import uvicorn_options
from modelvault.service import identity


@dataclass
class LiveServer:
    url: str
    app: Any
    tokens: dict[str, str] = field(default_factory=dict)
    opened: list[Registry] = field(default_factory=list)

    @property
    def registry(self) -> Registry:
        reg: Registry = self.app.state.registry
        return reg

    def local(self, user: str) -> Registry:
        """The server's own registry acting as *user* in project ``default``: what a remote
        answer is compared with."""
        return self.registry._acting_as(user, "default")

    def token(self, user: str, *, admin: bool = True, project: str | None = None) -> str:
        """A token for *user* (created with the user on first use)."""
        key = f"{user}/{project}/{admin}"
        if key not in self.tokens:
            ctx = self.registry._ctx
            if user not in {u["name"] for u in identity.users(ctx)}:
                identity.create_user(ctx, user, admin=admin)
            secret, _ = identity.create_token(ctx, user, project=project)
            self.tokens[key] = secret
        return self.tokens[key]

    def client(self, user: str, **kwargs: Any) -> Registry:
        """A remote registry acting as *user* (closed when the server stops)."""
        reg = Registry(self.url, token=self.token(user), **kwargs)
        self.opened.append(reg)
        return reg

    def api(self, token: str | None) -> httpx.Client:
        """A plain HTTP client on the API carrying *token* (None: no credential at all)."""
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url + "/api/v1", headers=headers, timeout=30)

    def remote(self, token: str) -> Registry:
        reg = Registry(self.url, token=token)
        self.opened.append(reg)
        return reg


@contextmanager
def live_server(
    settings: Settings, clock: Any = None, *, lifespan: str = "off"
) -> Iterator[LiveServer]:
    """With ``lifespan="on"`` the server also runs its background work (webhook delivery)."""
    app = create_app(settings, clock=clock)
    config = uvicorn.Config(app, host="127.0.0.1", port=0, lifespan=lifespan, **uvicorn_options())
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the test server did not start")
        time.sleep(0.005)
    port = server.servers[0].sockets[0].getsockname()[1]
    live = LiveServer(url=f"http://127.0.0.1:{port}", app=app)
    try:
        yield live
    finally:
        for reg in live.opened:
            reg.close()
        server.should_exit = True
        thread.join(timeout=20)
        if lifespan == "off":
            app.state.registry.close()


def pool_calls(monkeypatch: pytest.MonkeyPatch, module: ModuleType) -> list[Any]:
    """The functions *module* hands to the thread pool (its ``run_in_threadpool``) from here
    on, in order."""
    handed: list[Any] = []
    pool = module.run_in_threadpool

    async def counted(func: Any, *args: Any, **kwargs: Any) -> Any:
        handed.append(func)
        return await pool(func, *args, **kwargs)

    monkeypatch.setattr(module, "run_in_threadpool", counted)
    return handed
