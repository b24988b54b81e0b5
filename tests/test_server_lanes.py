"""Registrations answered outside FastAPI's request machinery (``server.lanes``): the same
answers as the route gives, for every outcome, and FastAPI's router never consulted."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from modelvault import Settings
from modelvault.server import create_app
from modelvault.server.app import MAX_JSON_BYTES
from modelvault.server.lanes import Lanes
from modelvault.service import accounts

from .conftest import write_model
from .server_fixtures import LiveServer

_PATH = "/api/v1/projects/default/models/m/versions"


@contextmanager
def _app(home: Path, *, lanes: bool) -> Iterator[tuple[TestClient, dict[str, str]]]:
    """A client of a server at *home*, with its lanes or (``lanes=False``) without them, and
    tokens: an admin, a viewer of ``default``, a user of another project only."""
    app = create_app(Settings.from_env(env={}, home=home))
    if not lanes:  # (the middleware stack is built on the first request)
        app.user_middleware = [m for m in app.user_middleware if m.cls is not Lanes]
    ctx = app.state.registry._ctx
    tokens = {}
    for user, admin in (("admin", True), ("viewer", False), ("stranger", False)):
        accounts.create_user(ctx, user, admin=admin)
    accounts.grant(ctx, "default", "viewer", "viewer")
    accounts.grant(ctx, "other", "stranger", "contributor")
    for user in ("admin", "viewer", "stranger"):
        tokens[user], _ = accounts.create_token(ctx, user)
    try:
        with TestClient(app, raise_server_exceptions=False) as client:
            yield client, tokens
    finally:
        app.state.registry.close()


def _requests(tokens: dict[str, str]) -> list[tuple[str, dict[str, Any]]]:
    good = json.dumps({"kind": "config", "config": {"a": 1}, "params": {"lr": 0.1}}).encode()
    auth = {"Authorization": f"Bearer {tokens['admin']}"}
    js = {"Content-Type": "application/json"}
    return [
        ("no token", {"content": good, "headers": js}),
        ("malformed token", {"content": good, "headers": {**js, "Authorization": "Bearer x"}}),
        ("unknown token", {"content": good, "headers": {**js, "Authorization": "Bearer mvt_a_b"}}),
        (
            "viewer",
            {"content": good, "headers": {**js, "Authorization": f"Bearer {tokens['viewer']}"}},
        ),
        (
            "stranger",
            {"content": good, "headers": {**js, "Authorization": f"Bearer {tokens['stranger']}"}},
        ),
        ("bad json", {"content": b"{nope", "headers": {**js, **auth}}),
        ("unknown field", {"content": b'{"nope": 1}', "headers": {**js, **auth}}),
        ("no manifest", {"content": b'{"kind": "model"}', "headers": {**js, **auth}}),
        ("not json", {"content": good, "headers": {"Content-Type": "text/plain", **auth}}),
        (
            "bad name",
            {"content": good, "headers": {**js, **auth}, "path": _PATH.replace("/m/", "/m%20x/")},
        ),
        ("too large", {"content": b"x" * (MAX_JSON_BYTES + 1), "headers": {**js, **auth}}),
        (
            "too large, streamed",
            {"content": iter([b"x" * (1 << 20)] * 17), "headers": {**js, **auth}},
        ),
        ("registered", {"content": good, "headers": {**js, **auth}}),
        ("again", {"content": good, "headers": {**js, **auth}}),
    ]


def _answers(home: Path, *, lanes: bool) -> dict[str, tuple[int, str | None, Any]]:
    got = {}
    with _app(home, lanes=lanes) as (client, tokens):
        for case, request in _requests(tokens):
            path = request.pop("path", _PATH)
            answer = client.post(path, **request)
            body = answer.json()
            if answer.status_code == 201:  # (times and digests differ between the two)
                body = {k: body[k] for k in ("project", "model", "number", "params")}
            got[case] = (answer.status_code, answer.headers.get("x-error-code"), body)
            assert answer.headers["content-type"] == "application/json", case
    return got


def test_the_lane_answers_every_outcome_as_the_route_does(tmp_path: Path) -> None:
    through_lane = _answers(tmp_path / "a", lanes=True)
    through_route = _answers(tmp_path / "b", lanes=False)
    assert through_lane == through_route
    statuses = {case: status for case, (status, _, _) in through_lane.items()}
    assert statuses == {
        "no token": 401,
        "malformed token": 401,
        "unknown token": 401,
        "viewer": 403,
        "stranger": 404,
        "bad json": 400,
        "unknown field": 400,
        "no manifest": 400,
        "not json": 400,
        "bad name": 400,
        "too large": 413,
        "too large, streamed": 413,
        "registered": 201,
        "again": 201,
    }
    assert through_lane["again"][2]["number"] == 2


def test_registrations_never_reach_fastapis_router(
    server: LiveServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tried: list[str] = []
    matches = APIRoute.matches

    def counted(self: APIRoute, scope: Any) -> Any:
        tried.append(scope["path"])
        return matches(self, scope)

    monkeypatch.setattr(APIRoute, "matches", counted)
    alice = server.client("alice")
    version = alice.register("m", write_model(tmp_path, "m", b"weights"))
    assert not [p for p in tried if p.endswith("/versions")]
    assert alice.get("m:1") == version
    assert tried  # the read went through the router
