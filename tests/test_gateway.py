"""The gateway, in process: predictions with the serving version named, input schema errors
(400 naming the field, counted as client errors), sticky and preview routing, configs, ONNX,
releases that fail to load never routed to, shadows that crash or hang never touching the
caller, and readiness when the store goes away."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import update
from starlette.testclient import TestClient

from modelvault import Registry
from modelvault.store import schema

from .deploy_helpers import (
    ROWS,
    python_dir,
    register_model,
    to_production,
    trusted_policy,
)

Opener = Callable[[str], Registry]
Client = Callable[..., TestClient]


@pytest.fixture
def live(reg: Registry, as_user: Opener, tmp_path: Path) -> Registry:
    bob = as_user("bob")
    for c in (1.0, 0.01):
        register_model(reg, tmp_path, "fraud", c)
    to_production(reg, bob, "fraud:1")
    to_production(reg, bob, "fraud:2")
    reg.deploy_release("fraud:1", "production", reason="launch")
    return reg


@pytest.fixture
def client(live: Registry) -> Iterator[Client]:
    opened: list[TestClient] = []

    def open_client(env: str = "production", **options: Any) -> TestClient:
        app = live.gateway_app(env, background=False, **options)
        c = TestClient(app)
        c.__enter__()
        opened.append(c)
        return c

    yield open_client
    for c in opened:
        c.__exit__(None, None, None)


def _gw(c: TestClient) -> Any:
    return c.app.state.gateway  # type: ignore[attr-defined]


def test_predict_names_the_version_that_served(client: Client) -> None:
    c = client()
    r = c.post("/v1/models/fraud/predict", json={"inputs": ROWS})
    assert r.status_code == 200
    body = r.json()
    assert body["version"] == "fraud:1" and r.headers["X-Model-Version"] == "fraud:1"
    assert body["outputs"] == [0, 0, 1, 1, 0, 1]
    assert c.get("/readyz").status_code == 200
    assert c.post("/v1/models/nope/predict", json={"inputs": ROWS}).status_code == 404


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        ({}, "inputs", 'missing field "inputs"'),
        ({"inputs": []}, "inputs", "non-empty"),
        ({"inputs": [[1, 2], [3, "x"]]}, "inputs[1][1]", 'inputs[1][1] must be a number, not "x"'),
        ({"inputs": [[1, 2, 3]]}, "inputs[0]", "inputs[0] has 3 features; the model expects 2"),
        ({"inputs": [[1, 2], 5]}, "inputs[1]", "inputs[1] must be a list"),
        ({"inputs": [[True, 2]]}, "inputs[0][0]", "must be a number"),
    ],
)
def test_wrong_schema_is_a_400_naming_the_field(
    client: Client, body: dict[str, Any], field: str, message: str
) -> None:
    c = client()
    r = c.post("/v1/models/fraud/predict", json=body)
    assert r.status_code == 400
    error = r.json()["error"]
    assert error["field"] == field and message in error["message"]
    totals = c.get("/metrics").text
    assert 'modelvault_client_errors_total{model="fraud",role="arm",release="fraud:1"} 1' in totals
    assert 'modelvault_errors_total{model="fraud",role="arm",release="fraud:1"} 0' in totals


def test_malformed_json_is_a_400(client: Client) -> None:
    r = client().post("/v1/models/fraud/predict", content=b"{nope")
    assert r.status_code == 400 and r.json()["error"]["field"] == "body"


def test_sticky_keys_keep_their_arm_and_preview_reaches_the_preview(
    live: Registry, client: Client
) -> None:
    live.deploy(
        "fraud",
        "production",
        {
            "arms": [{"release": "fraud:2", "weight": 50}, {"release": "fraud:1", "weight": 50}],
            "sticky": "header:x-user-id",
        },
    )
    c = client()
    seen: dict[str, set[str]] = {}
    for i in range(40):
        for _ in range(3):
            r = c.post(
                "/v1/models/fraud/predict", json={"inputs": ROWS}, headers={"x-user-id": f"u{i}"}
            )
            seen.setdefault(f"u{i}", set()).add(r.headers["X-Model-Version"])
    assert all(len(v) == 1 for v in seen.values())
    assert {next(iter(v)) for v in seen.values()} == {"fraud:1", "fraud:2"}
    live.deploy_release("fraud:2", "production", preview=True)
    _gw(c).refresh()
    plain = c.post("/v1/models/fraud/predict", json={"inputs": ROWS}, headers={"x-user-id": "u1"})
    preview = c.post(
        "/v1/models/fraud/predict",
        json={"inputs": ROWS},
        headers={"x-user-id": "u1", "X-Model-Preview": "1"},
    )
    assert preview.headers["X-Model-Version"] == "fraud:2"
    assert preview.headers["X-Model-Route"] == "preview"
    assert plain.headers["X-Model-Route"] == "arm"


def test_configs_are_served(live: Registry, client: Client, tmp_path: Path) -> None:
    cfg = tmp_path / "prompt.json"
    cfg.write_text('{"model": "gpt-x-2026-01-01", "temperature": 0.2}')
    live.register("prompts", cfg, kind="config", capture_code=False, capture_environment=False)
    live.deploy_release("fraud:1", "staging", config="prompts:1")
    live.deploy_release("prompts:1", "staging")
    c = client("staging")
    r = c.get("/v1/configs/prompts")
    assert r.status_code == 200 and r.json()["config"]["temperature"] == 0.2
    with_model = c.post("/v1/models/fraud/predict", json={"inputs": ROWS})
    assert with_model.json()["config"] == "prompts:1"
    assert c.get("/v1/configs/fraud").json()["config_version"] == "prompts:1"


def test_onnx_flavor_serves(reg: Registry, tmp_path: Path) -> None:
    import numpy as np
    from skl2onnx import to_onnx
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression().fit(np.array(ROWS, dtype=np.float32), [0, 0, 1, 1, 0, 1])
    d = tmp_path / "onnx"
    d.mkdir()
    (d / "model.onnx").write_bytes(
        to_onnx(
            model, np.array(ROWS, dtype=np.float32), options={"zipmap": False}
        ).SerializeToString()
    )
    v = reg.register("lr", d, capture_code=False, capture_environment=False)
    assert v.flavor == "onnx"
    reg.deploy_release("lr:1", "staging")
    with TestClient(reg.gateway_app("staging", background=False)) as c:
        r = c.post("/v1/models/lr/predict", json={"inputs": ROWS})
        assert r.status_code == 200 and r.json()["outputs"] == [0, 0, 1, 1, 0, 1]
        bad = c.post("/v1/models/lr/predict", json={"inputs": [[1.0]]})
        assert bad.status_code == 400 and bad.json()["error"]["field"] == "inputs[0]"


def test_a_release_failing_its_digest_on_load_is_never_routed_to(
    live: Registry, client: Client
) -> None:
    live.deploy(
        "fraud",
        "production",
        {"arms": [{"release": "fraud:2", "weight": 50}, {"release": "fraud:1", "weight": 50}]},
    )
    digest = live.manifest("fraud:2").files[0].digest
    t = schema.inline_blobs  # a small model file is kept in the metadata store
    with live._ctx.store.write() as conn:
        tampered = conn.execute(update(t).where(t.c.digest == digest).values(data=b"x"))
    assert tampered.rowcount == 1
    c = client()
    table = c.get("/v1/models").json()["models"]["fraud"]
    assert table["loaded"] == ["fraud:1"] and "fraud:2" in table["failed"]
    versions = {
        c.post("/v1/models/fraud/predict", json={"inputs": ROWS}).headers["X-Model-Version"]
        for _ in range(30)
    }
    assert versions == {"fraud:1"}
    assert c.get("/readyz").status_code == 200


def _trusted(live: Registry) -> None:
    trusted_policy(live.settings.policy)


def test_shadows_compare_and_never_touch_the_caller(
    live: Registry, client: Client, tmp_path: Path
) -> None:
    _trusted(live)
    flag = tmp_path / "release-hung-shadow"
    crash = python_dir(tmp_path, "crash", "def predict(rows):\n    raise RuntimeError('boom')\n")
    hang = python_dir(
        tmp_path,
        "hang",
        "import os, time\n"
        f"FLAG = {str(flag)!r}\n"
        "def predict(rows):\n"
        "    time.sleep(0.2)\n"
        "    while not os.path.exists(FLAG):\n"
        "        time.sleep(0.01)\n"
        "    return [0 for _ in rows]\n",
    )
    ones = python_dir(tmp_path, "ones", "def predict(rows):\n    return [1 for _ in rows]\n")
    for d in (crash, hang, ones):
        live.register("fraud", d, flavor="python", capture_code=False, capture_environment=False)
    # fraud:2 agrees with fraud:1, fraud:3 crashes, fraud:4 hangs, fraud:5 half disagrees
    doc = {
        "release": "fraud:1",
        "shadows": [
            {"release": "fraud:2", "sample": 1.0},
            {"release": "fraud:3", "sample": 1.0},
            {"release": "fraud:4", "sample": 1.0},
            {"release": "fraud:5", "sample": 1.0},
        ],
    }
    live.deploy("fraud", "production", doc)
    c = client(shadow_workers=2, shadow_timeout_s=0.1)
    gw = _gw(c)
    try:
        for _ in range(30):
            r = c.post("/v1/models/fraud/predict", json={"inputs": ROWS})
            assert r.status_code == 200 and r.headers["X-Model-Version"] == "fraud:1"
    finally:
        flag.touch()
    gw.drain_shadows()
    gw.flush()
    status = live.rollout_status("fraud", "production")
    shadows = {s.release: s for s in status.shadows}
    # every mirrored request is accounted for: compared (per row), or counted as an error
    assert shadows["fraud:3"].shadow_errors == 30 and shadows["fraud:3"].shadow_compared == 0
    assert shadows["fraud:4"].shadow_errors == 30 and shadows["fraud:4"].shadow_compared == 0
    agree = shadows["fraud:2"]
    assert agree.shadow_compared // len(ROWS) + agree.shadow_errors == 30
    assert agree.shadow_compared > 0
    assert agree.shadow_agreement == 1.0
    half = shadows["fraud:5"]  # answers 1 everywhere: agrees on 3 rows of 6
    assert half.shadow_compared > 0 and half.shadow_agreement == pytest.approx(0.5)
    kept = c.get("/v1/shadows/fraud").json()
    assert set(kept) == {"fraud:2", "fraud:3", "fraud:4", "fraud:5"}
    assert kept["fraud:2"] == [] and kept["fraud:3"] == []
    sample = kept["fraud:5"][0]
    assert sample["served"] == [0, 0, 1, 1, 0, 1] and sample["shadow"] == [1] * 6


def test_a_gateway_that_loses_its_store_keeps_serving_and_is_not_ready(
    live: Registry, client: Client, backend: str
) -> None:
    from sqlalchemy import create_engine

    c = client()
    gw = _gw(c)
    real = gw.ctx.store.engine
    gone = (
        "postgresql+psycopg://nobody@127.0.0.1:1/none"
        if backend == "postgresql"
        else "sqlite:////nonexistent-dir/none.db"
    )
    gw.ctx.store.engine = create_engine(gone)
    try:
        assert gw.refresh() is False
        assert c.get("/readyz").status_code == 503
        r = c.post("/v1/models/fraud/predict", json={"inputs": ROWS})
        assert r.status_code == 200 and r.headers["X-Model-Version"] == "fraud:1"
        gw.flush()  # measurements wait for the store
        assert gw._pending
    finally:
        gw.ctx.store.engine.dispose()
        gw.ctx.store.engine = real
    gw.refresh()
    assert c.get("/readyz").status_code == 200
    gw.flush()
    assert not gw._pending


def test_rollback_to_the_hot_standby_is_a_pointer_swap(live: Registry, client: Client) -> None:
    c = client()
    gw = _gw(c)
    standby = gw.routes["fraud"].loaded[gw.routes["fraud"].router.stable]
    live.deploy_release("fraud:2", "production", reason="v2")
    gw.refresh()
    route = gw.routes["fraud"]
    assert route.router.stable.key == "fraud:2"
    assert route.loaded[standby.release] is standby  # the previous release stays loaded
    live.rollback_deployment("fraud", "production", reason="pager")
    gw.refresh()
    assert gw.routes["fraud"].loaded[standby.release] is standby  # nothing was reloaded
    r = c.post("/v1/models/fraud/predict", json={"inputs": ROWS})
    assert r.headers["X-Model-Version"] == "fraud:1"


def test_feature_routes_and_segments_in_the_gateway(live: Registry, client: Client) -> None:
    live.deploy(
        "fraud",
        "production",
        {
            "release": "fraud:1",
            "features": {"checkout": "fraud:2"},
            "segments": [{"name": "fr", "match": {"json:country": "FR"}, "release": "fraud:2"}],
        },
    )
    c = client()
    url = "/v1/models/fraud/predict"
    feature = c.post(url, json={"inputs": ROWS}, headers={"X-Feature": "checkout"})
    assert feature.headers["X-Model-Route"] == "feature:checkout"
    assert feature.headers["X-Model-Version"] == "fraud:2"
    segment = c.post(url, json={"inputs": ROWS, "country": "FR"})
    assert (segment.headers["X-Model-Route"], segment.headers["X-Model-Version"]) == (
        "segment:fr",
        "fraud:2",
    )
    other = c.post(url, json={"inputs": ROWS, "country": "DE"}, headers={"X-Feature": "search"})
    assert other.headers["X-Model-Version"] == "fraud:1"


def test_delayed_feedback_is_counted_for_the_release_that_answered(
    live: Registry, client: Client
) -> None:
    live.deploy_release("fraud:2", "production", canary="50,100")
    c = client()
    gw = _gw(c)
    r = c.post("/v1/models/fraud/predict", json={"inputs": ROWS}, headers={"x-request-id": "q1"})
    outputs = r.json()["outputs"]
    truth = [1 - outputs[0], *outputs[1:]]  # one row of six wrong
    done = c.post("/v1/feedback", json={"request_id": "q1", "labels": truth})
    assert done.status_code == 200 and done.json()["release"] == r.headers["X-Model-Version"]
    again = c.post("/v1/feedback", json={"request_id": "q1", "labels": truth})
    assert again.status_code == 404 and again.json()["error"]["field"] == "request_id"
    c.post("/v1/models/fraud/predict", json={"inputs": ROWS}, headers={"x-request-id": "q2"})
    short = c.post("/v1/feedback", json={"request_id": "q2", "labels": [1]})
    assert (
        short.status_code == 400
        and "one value per input row (6)" in short.json()["error"]["message"]
    )
    gw.flush()
    arms = {s.release: s for s in live.rollout_status("fraud", "production").arms}
    served = arms[r.headers["X-Model-Version"]]
    assert served.feedback_rows == 6 and served.accuracy == pytest.approx(5 / 6)
