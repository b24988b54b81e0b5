"""`gateway`: what the gateway adds to a prediction, and how fast a rollback takes effect.

A small scikit-learn model (logistic regression, 4 features) is deployed to production and
served by `modelvault gateway` in its own process (uvicorn). Figures:

- direct predict in this process (the floor), the gateway's own code path called as an
  ASGI app in this process (no network), and HTTP round trips through uvicorn from this
  process (one keep-alive `http.client` connection), each at a fixed rate; overhead =
  gateway minus direct;
- saturation: throughput and latency with 4 client threads as fast as they go;
- rollback under load: 2 client threads keep sending while `rollback --env production` is
  issued; the time from issuing it until every later request is served by the previous
  release, and how many requests failed during the whole run.

The store is SQLite (gateways poll every 0.1 s) unless MODELVAULT_BENCH_DB names a
PostgreSQL URL (gateways are pushed NOTIFY).
"""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from bench.harness import Figures
from modelvault import Registry, Settings

FIGURES = {
    "direct_p50_ms": ("ms", "low"),
    "direct_p99_ms": ("ms", "low"),
    "asgi_overhead_p50_ms": ("ms", "low"),
    "asgi_overhead_p99_ms": ("ms", "low"),
    "http_p50_ms": ("ms", "low"),
    "http_p99_ms": ("ms", "low"),
    "http_overhead_p50_ms": ("ms", "low"),
    "http_overhead_p99_ms": ("ms", "low"),
    "saturation_per_s": ("/s", "high"),
    "saturation_p50_ms": ("ms", "low"),
    "saturation_p99_ms": ("ms", "low"),
    "rollback_to_all_traffic_s": ("s", "low"),
    "rollback_failed_requests": ("", "low"),
    "rollback_requests": ("", "high"),
}
ROW = [[14.1, 20.3, 91.0, 600.0]]


def _pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _settings(home: Path, actor: str) -> Settings:
    env = (
        {"MODELVAULT_DB": os.environ["MODELVAULT_BENCH_DB"]}
        if "MODELVAULT_BENCH_DB" in os.environ
        else {}
    )
    return Settings.from_env(env=env, home=home, actor=actor)


def _setup(home: Path) -> Registry:
    import skops.io
    from sklearn.datasets import load_breast_cancer
    from sklearn.linear_model import LogisticRegression

    data = load_breast_cancer()
    X, y = data.data[:, :4], data.target
    reg = Registry(settings=_settings(home, "bench"))
    approver = Registry(settings=_settings(home, "bench-approver"))
    for i, c in enumerate((1.0, 0.5), start=1):
        d = home / f"model{i}"
        d.mkdir(parents=True)
        skops.io.dump(LogisticRegression(C=c, max_iter=5000).fit(X, y), d / "model.skops")
        reg.register("bench", d, capture_code=False, capture_environment=False)
        reg.promote(f"bench:{i}", "staging")
        approver.approve(f"bench:{i}")
    approver.close()
    reg.deploy_release("bench:1", "production", reason="bench")
    return reg


def _fixed_rate(call: Any, rate: float, seconds: float) -> list[float]:
    """Latencies (ms) of calls issued at *rate* per second (late calls go at once)."""
    samples = []
    interval = 1.0 / rate
    start = time.perf_counter()
    n = int(rate * seconds)
    for i in range(n):
        due = start + i * interval
        wait = due - time.perf_counter()
        if wait > 0:
            time.sleep(wait)
        t0 = time.perf_counter()
        call()
        samples.append((time.perf_counter() - t0) * 1000)
    return samples


def _asgi_call(app: Any, body: bytes) -> Any:
    """One request through the ASGI app, no network: returns a coroutine factory."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/v1/models/bench/predict",
        "raw_path": b"/v1/models/bench/predict",
        "query_string": b"",
        "root_path": "",
        "headers": [(b"content-type", b"application/json")],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 80),
    }

    async def once() -> int:
        status = 0
        sent = False

        async def receive() -> dict[str, Any]:
            nonlocal sent
            if sent:
                return {"type": "http.disconnect"}
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]

        await app(scope, receive, send)
        return status

    return once


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start_gateway(home: Path, port: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, "MODELVAULT_HOME": str(home), "MODELVAULT_ACTOR": "gateway"}
    if "MODELVAULT_BENCH_DB" in os.environ:
        env["MODELVAULT_DB"] = os.environ["MODELVAULT_BENCH_DB"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "modelvault", "gateway", "--env", "production",
         "--port", str(port), "--poll", "0.1"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    proc.kill()
    raise RuntimeError("the gateway did not become ready")


def run(work: Path, quick: bool) -> Figures:
    from modelvault.service.releases import load_release

    home = work / f"gateway-{time.monotonic_ns()}"
    home.mkdir(parents=True)
    reg = _setup(home)
    seconds = 1.0 if quick else 5.0
    rate = 200.0
    body = json.dumps({"inputs": ROW}).encode()

    loaded = load_release(reg._ctx, "default", reg.deployment("bench", "production").spec.stable)
    model = loaded.model
    assert model is not None
    direct = _fixed_rate(lambda: model.predict(ROW), rate, seconds)

    app = reg.gateway_app("production", background=False, controller=False)
    gw = app.state.gateway
    gw.refresh()
    once = _asgi_call(app, body)
    loop = asyncio.new_event_loop()
    try:
        for _ in range(50):
            loop.run_until_complete(once())
        asgi = _fixed_rate(lambda: loop.run_until_complete(once()), rate, seconds)
    finally:
        loop.close()

    port = _free_port()
    proc = _start_gateway(home, port)
    url = f"http://127.0.0.1:{port}/v1/models/bench/predict"
    headers = {"content-type": "application/json"}
    try:
        # a plain keep-alive connection: the lightest client, so the figure is the server's
        conn = http.client.HTTPConnection("127.0.0.1", port)

        def post() -> None:
            conn.request("POST", "/v1/models/bench/predict", body=body, headers=headers)
            response = conn.getresponse()
            response.read()
            if response.status != 200:
                raise RuntimeError(f"the gateway answered {response.status}")

        for _ in range(50):
            post()
        via_http = _fixed_rate(post, rate, seconds)
        conn.close()

        # saturation: 4 closed-loop clients
        sat: list[float] = []
        stop = time.perf_counter() + seconds

        def hammer() -> None:
            with httpx.Client() as c:
                while time.perf_counter() < stop:
                    t0 = time.perf_counter()
                    c.post(url, content=body, headers=headers)
                    sat.append((time.perf_counter() - t0) * 1000)

        threads = [threading.Thread(target=hammer) for _ in range(4)]
        t_sat = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        sat_s = time.perf_counter() - t_sat

        # rollback under load
        reg.deploy_release("bench:2", "production", reason="bench v2")
        deadline = time.monotonic() + 30
        with httpx.Client() as c:
            while (
                c.post(url, content=body, headers=headers).headers.get("x-model-version")
                != "bench:2"
            ):
                if time.monotonic() > deadline:
                    raise RuntimeError("the gateway never served bench:2")
                time.sleep(0.01)
        log: list[tuple[float, int, str]] = []
        running = threading.Event()
        running.set()

        def load() -> None:
            with httpx.Client() as c:
                while running.is_set():
                    sent = time.perf_counter()
                    try:
                        r = c.post(url, content=body, headers=headers)
                        log.append((sent, r.status_code, r.headers.get("x-model-version", "")))
                    except httpx.HTTPError:
                        log.append((sent, 0, ""))

        loaders = [threading.Thread(target=load) for _ in range(2)]
        for t in loaders:
            t.start()
        time.sleep(0.5)
        issued = time.perf_counter()
        reg.rollback_deployment("bench", "production", reason="bench rollback")
        time.sleep(2.0)
        running.clear()
        for t in loaders:
            t.join()
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    last_new = max(
        (sent for sent, _, v in log if v == "bench:2" and sent >= issued), default=issued
    )
    reg.close()
    d50, d99 = statistics.median(direct), _pct(direct, 0.99)
    return {
        "direct_p50_ms": d50,
        "direct_p99_ms": d99,
        "asgi_overhead_p50_ms": statistics.median(asgi) - d50,
        "asgi_overhead_p99_ms": _pct(asgi, 0.99) - d99,
        "http_p50_ms": statistics.median(via_http),
        "http_p99_ms": _pct(via_http, 0.99),
        "http_overhead_p50_ms": statistics.median(via_http) - d50,
        "http_overhead_p99_ms": _pct(via_http, 0.99) - d99,
        "saturation_per_s": len(sat) / sat_s,
        "saturation_p50_ms": statistics.median(sat),
        "saturation_p99_ms": _pct(sat, 0.99),
        "rollback_to_all_traffic_s": last_new - issued,
        "rollback_failed_requests": float(sum(1 for _, status, _ in log if status != 200)),
        "rollback_requests": float(len(log)),
    }
