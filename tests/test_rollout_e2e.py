"""End to end, with the gateway's own background work running: a canary that fails 30 % of
its requests is rolled back by the controller, with the measured error rates in the audit,
and no request served by the stable release fails; two gateway replicas on one PostgreSQL
follow a manual rollback within a second (pushed by NOTIFY: their polling is 30 s)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from modelvault import Registry, Settings

from .backends import pg_schema
from .deploy_helpers import ROWS, python_dir, register_model, to_production, trusted_policy

Opener = Callable[[str], Registry]

FAULTY = """
import itertools
_calls = itertools.count()
N_FEATURES = 2

def predict(rows):
    if next(_calls) % 10 < 3:
        raise RuntimeError("canary fault")
    return [int(r[0] > 0.5) for r in rows]
"""


def test_a_failing_canary_is_rolled_back_automatically(
    reg: Registry, as_user: Opener, tmp_path: Path
) -> None:
    trusted_policy(reg.settings.policy)
    bob = as_user("bob")
    register_model(reg, tmp_path, "fraud", 1.0)
    reg.register(
        "fraud", python_dir(tmp_path, "faulty", FAULTY), flavor="python", capture_code=False
    )
    to_production(reg, bob, "fraud:1")
    to_production(reg, bob, "fraud:2")
    reg.deploy_release("fraud:1", "production", reason="launch")
    reg.deploy(
        "fraud",
        "production",
        {
            "rollout": {"release": "fraud:2", "steps": [50, 100], "bake": "1h"},
            "sticky": "header:x-user-id",
            "guardrails": [{"rule": "error_rate > 2x baseline", "min_samples": 40}],
        },
    )
    app = reg.gateway_app("production", poll_s=0.05, flush_s=0.05, control_s=0.05)
    canary_failed = stable_served = 0
    with TestClient(app) as c:
        gw = c.app.state.gateway  # type: ignore[attr-defined]
        for i in range(5000):
            r = c.post(
                "/v1/models/fraud/predict", json={"inputs": ROWS}, headers={"x-user-id": f"u{i}"}
            )
            if r.headers["X-Model-Version"] == "fraud:1":
                assert r.status_code == 200, r.text
                stable_served += 1
            elif r.status_code == 500:
                assert r.json()["error"]["code"] == "model_error"
                assert r.headers["X-Model-Version"] == "fraud:2"
                canary_failed += 1
            route = gw.routes["fraud"]
            if route.deployment.spec.rollout.status == "aborted":
                break
        else:
            pytest.fail("the failing canary was never rolled back")
        assert canary_failed > 0 and stable_served > 0
        for i in range(200):  # everyone is back on the stable release
            r = c.post(
                "/v1/models/fraud/predict", json={"inputs": ROWS}, headers={"x-user-id": f"u{i}"}
            )
            assert (r.status_code, r.headers["X-Model-Version"]) == (200, "fraud:1")
    event = reg.audit(action="rollout.abort")[-1]
    assert event.actor == "modelvault-controller"
    assert event.after is not None and event.after["arms"] == {"fraud:1": 100.0}
    rule = event.after["guardrails"][0]
    assert rule["rule"] == "error_rate > 2x baseline" and rule["verdict"] == "breach"
    assert 0.15 <= rule["measured"] <= 0.45 and rule["samples"] >= 40
    assert rule["baseline_release"] == "fraud:1" and rule["baseline_value"] == 0.0
    assert rule["limit"] == pytest.approx(0.01)
    assert rule["window_s"] == 3600 and rule["window_from"] < rule["window_to"]
    assert reg.get("fraud@production").number == 1


@pytest.fixture
def on_postgres(tmp_path: Path) -> Iterator[Opener]:
    """Registries on one throwaway PostgreSQL schema (whatever the backend parameter)."""
    opened: list[Registry] = []
    with pg_schema() as url:
        settings = Settings.from_env(env={"MODELVAULT_DB": url}, home=tmp_path / "pg")

        def open_as(actor: str) -> Registry:
            opened.append(Registry(settings=settings, actor=actor))
            return opened[-1]

        yield open_as
        for r in opened:
            r.close()


def test_two_replicas_follow_a_manual_rollback_within_a_second(
    on_postgres: Opener, tmp_path: Path
) -> None:
    reg, bob, as_user = on_postgres("alice"), on_postgres("bob"), on_postgres
    for c in (1.0, 0.01):
        register_model(reg, tmp_path, "fraud", c)
    to_production(reg, bob, "fraud:1")
    to_production(reg, bob, "fraud:2")
    reg.deploy_release("fraud:1", "production", reason="launch")
    reg.deploy_release("fraud:2", "production", reason="v2")
    replicas = [
        TestClient(as_user(name).gateway_app("production", poll_s=30, controller=False))
        for name in ("gw-a", "gw-b")
    ]
    for client in replicas:
        client.__enter__()
    try:
        gateways = [c.app.state.gateway for c in replicas]  # type: ignore[attr-defined]
        for gw in gateways:
            assert gw.listening.wait(10)
            assert gw.routes["fraud"].router.stable.key == "fraud:2"
        started = time.monotonic()
        reg.rollback_deployment("fraud", "production", reason="pager")
        committed = time.monotonic()
        switched: dict[int, float] = {}
        while len(switched) < 2 and time.monotonic() - committed < 5:
            for i, gw in enumerate(gateways):
                if i not in switched and gw.routes["fraud"].router.stable.key == "fraud:1":
                    switched[i] = time.monotonic() - committed
            time.sleep(0.002)
        assert len(switched) == 2, "a replica did not switch"
        assert max(switched.values()) <= 1.0, switched
        for client in replicas:
            r = client.post("/v1/models/fraud/predict", json={"inputs": ROWS})
            assert r.headers["X-Model-Version"] == "fraud:1"
        assert committed - started < 5
    finally:
        for client in replicas:
            client.__exit__(None, None, None)
