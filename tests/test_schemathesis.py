"""Every operation of the server's OpenAPI document, fed inputs generated from the document
itself (schemathesis) and sent to a live server over loopback: no answer is a 5xx, and every
error is the one JSON envelope with its code in ``X-Error-Code``.

The operations are read from the committed docs/openapi.json so that each is its own test
(schemathesis' fixture-based loader does not run on this pytest); the fixture checks that the
live server serves exactly that document. Half of the generated path and reference values are
swapped for ones that exist (by a hash of the generated value, so runs repeat), so the
handlers behind the 404s are reached too.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from modelvault import Settings

from .conftest import write_model
from .server_fixtures import LiveServer, live_server

DOCUMENT = Path(__file__).parent.parent / "docs" / "openapi.json"
EXAMPLES = 5  # per operation and phase; the whole module stays under a minute
schema = schemathesis.openapi.from_path(DOCUMENT)


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LiveServer, dict[str, Any]]]:
    """A server on SQLite holding a model with a version in production and an alias, an
    admin's token, and values that exist for each kind of path parameter."""
    home = tmp_path_factory.mktemp("schemathesis") / "mvhome"
    env = {"MODELVAULT_DB": f"sqlite:///{home / 'registry.db'}"}
    conf = Settings.from_env(env=env, home=home, actor="alice")
    with live_server(conf) as live:
        alice, bob = live.client("alice"), live.client("bob")
        for i in range(2):
            alice.register("fraud", write_model(home.parent, f"m{i}", b"w%d" % i))
        alice.promote("fraud:1", "staging")
        bob.approve("fraud:1")
        alice.promote("fraud:1", "production", reason="seed")
        alice.set_alias("fraud", "champion", "1")
        served = httpx.get(f"{live.url}/api/v1/openapi.json").json()
        assert served == json.loads(DOCUMENT.read_text()), "docs/openapi.json is stale"
        real = {
            "token": live.token("alice"),
            "project": ["default"],
            "model": ["fraud"],
            "alias": ["champion"],
            "environment": ["production", "staging"],
            "ref": ["fraud:1", "fraud:2", "fraud@production", "fraud@champion"],
            "digest": [alice.manifest("fraud:1").files[0].digest],
        }
        yield live, real


def _number(value: Any) -> bool:
    try:
        float(value)
    except (TypeError, ValueError):
        return False
    return True


def _existing(case: Any, real: dict[str, Any]) -> None:
    """Swap half of the generated path values for ones that exist."""
    for name, value in (case.path_parameters or {}).items():
        choices = real.get(name)
        pick = zlib.crc32(repr(value).encode())
        if choices and pick % 2:
            case.path_parameters[name] = choices[pick // 2 % len(choices)]


@schema.parametrize()
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    suppress_health_check=list(HealthCheck),
)
def test_no_operation_answers_5xx(case: Any, seeded: tuple[LiveServer, dict[str, Any]]) -> None:
    live, real = seeded
    _existing(case, real)
    if _number(wait := (case.query or {}).get("wait")) and float(wait) > 0.1:
        case.query["wait"] = "0.1"  # the event stream's long poll holds up to a minute
    response = case.call(base_url=live.url, headers={"Authorization": f"Bearer {real['token']}"})
    what = f"{case.method} {case.formatted_path} {case.query} -> {response.status_code}"
    assert response.status_code < 500, f"{what}: {response.text}"
    if response.status_code < 400:
        return
    if not str((case.headers or {}).get("content-length", "0")).isdigit():
        return  # uvicorn itself refuses a malformed Content-Length, with a plain 400
    headers = response.headers  # schemathesis' own: lowercase names, lists of values
    assert headers.get("content-type") == ["application/json"], what
    code = headers.get("x-error-code", [""])[0]
    assert code, what
    if case.method != "HEAD":
        error = response.json()["error"]
        assert error["code"] == code, f"{what}: {response.text}"
        assert isinstance(error["message"], str) and error["message"], what
