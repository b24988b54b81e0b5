"""The gateway's state: the routing table it serves (swapped whole, never edited), the loaded
releases behind it, and the background work — following the control plane (PostgreSQL
LISTEN/NOTIFY, polling as fallback), flushing measurements, judging rollouts, and running
shadows off the response path.

A release enters a routing table only once loaded; a table is replaced by one pointer
assignment, so a request in flight keeps the release it started with. When the store cannot
be read the last table keeps serving and the gateway reports not-ready.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections import OrderedDict, deque
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from ..deploy.records import Deployment, Release
from ..deploy.routing import Router
from ..service.context import Context
from ..service.deployments import CONTROLLER, NOTIFY_CHANNEL, current_rows, deployment_of
from ..service.releases import LoadedRelease, load_release
from ..timeutil import from_text
from .measure import Measurements, window_rows

log = logging.getLogger("modelvault.gateway")
RETENTION_S = 7 * 86400.0  # measurement windows kept this long
PRUNE_EVERY_S = 600.0
DISAGREEMENTS_KEPT = 50


@dataclass(frozen=True, slots=True)
class Route:
    deployment: Deployment
    deployment_id: int
    router: Router
    loaded: Mapping[Release, LoadedRelease]
    failed: Mapping[Release, str]


def compare(served: Sequence[Any], shadow: Sequence[Any]) -> tuple[int, int, list[float]]:
    """Rows compared, rows agreeing, and absolute differences of numeric outputs."""
    compared = agreed = 0
    diffs: list[float] = []
    for a, b in zip(served, shadow, strict=False):
        compared += 1
        agreed += a == b
        if isinstance(a, int | float) and isinstance(b, int | float):
            diffs.append(abs(float(a) - float(b)))
        elif isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
            pairs = [(x, y) for x, y in zip(a, b, strict=True) if isinstance(x, int | float)]
            if pairs and all(isinstance(y, int | float) for _, y in pairs):
                diffs.append(max(abs(float(x) - float(y)) for x, y in pairs))
    return compared, agreed, diffs


class Gateway:
    def __init__(
        self,
        ctx: Context,
        environment: str,
        *,
        project: str | None = None,
        poll_s: float = 0.5,
        flush_s: float = 1.0,
        control_s: float = 1.0,
        controller: bool = True,
        listen: bool = True,
        shadow_workers: int = 2,
        shadow_timeout_s: float = 2.0,
        retry_s: float = 10.0,
        remember: int = 100_000,
        replica: str | None = None,
    ) -> None:
        self.ctx = ctx
        self.control_ctx = replace(ctx, actor=CONTROLLER)
        self.environment = environment
        self.project = project or ctx.settings.project
        self.poll_s, self.flush_s, self.control_s = poll_s, flush_s, control_s
        self.controller, self.listen = controller, listen
        self.shadow_timeout_s, self.retry_s = shadow_timeout_s, retry_s
        self.replica = (
            replica or f"{socket.gethostname()[:40]}-{os.getpid()}-{uuid.uuid4().hex[:4]}"
        )
        self.routes: dict[str, Route] = {}
        self.ready = False
        self.last_error: str | None = None
        self.last_refresh = 0.0
        self.refreshes = 0
        self.measure = Measurements()
        self._signature: tuple[tuple[int, int], ...] | None = None
        self._cache: dict[Release, LoadedRelease] = {}
        self._failed: dict[Release, tuple[str, float]] = {}
        self._failures: dict[str, int] = {}
        self._pending: list[Any] = []
        self._window_start = ctx.now()
        self.shadow_workers = shadow_workers
        # one pool per shadow release, so a hung shadow starves only its own mirroring
        self._pools: dict[Release, tuple[ThreadPoolExecutor, threading.BoundedSemaphore]] = {}
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._refresh_lock = threading.Lock()
        self.listening = threading.Event()  # set while LISTEN is active (PostgreSQL)
        # request id -> (deployment id, release key, outputs): what delayed feedback joins
        self._served: OrderedDict[str, tuple[int, str, list[Any]]] = OrderedDict()
        self.remember = remember
        # the latest requests on which each shadow release disagreed: both outputs
        self.disagreements: dict[str, deque[dict[str, Any]]] = {}

    # -- following the control plane -----------------------------------------------------

    def refresh(self) -> bool:
        """Read the desired state; load what is new, then swap the table. True if it
        changed. On a store failure the table stays and the gateway is not ready."""
        with self._refresh_lock:
            try:
                with self.ctx.store.read() as conn:
                    rows = current_rows(conn, self.project, self.environment)
            except Exception as exc:  # any failure to read means: keep serving, not ready
                if self.ready or self.last_error is None:
                    log.warning("cannot read the routing table: %s", exc)
                self.ready, self.last_error = False, str(exc).splitlines()[0]
                return False
            self.last_refresh = time.monotonic()
            signature = tuple((r.deployment_id, r.revision) for r in rows)
            retry = any(time.monotonic() - at > self.retry_s for _, at in self._failed.values())
            if signature == self._signature and not retry:
                self._set_ready()
                return False
            routes = {}
            now = self.ctx.now()
            for row in rows:
                dep = deployment_of(row)
                routes[dep.model] = self._route(dep, row.deployment_id, now)
                self.measure.names[row.deployment_id] = dep.model
            needed = {r for route in routes.values() for r in route.loaded}
            for release in list(self._cache):
                if release not in needed:
                    del self._cache[release]
            self.routes = routes  # the swap: requests already routed keep their release
            self._signature = signature
            self.refreshes += 1
            self._set_ready()
            return True

    def _set_ready(self) -> None:
        self.last_error = None
        self.ready = all(r.router.stable is not None for r in self.routes.values())

    def _route(self, dep: Deployment, dep_id: int, now: datetime) -> Route:
        spec = dep.spec
        if spec.standby is not None and from_text(spec.standby.until) <= now:
            spec = replace(spec, standby=None)  # its hot-standby time is over
        loaded: dict[Release, LoadedRelease] = {}
        failed: dict[Release, str] = {}
        for release in spec.releases():
            if release not in self._cache:
                earlier = self._failed.get(release)
                if earlier is not None and time.monotonic() - earlier[1] <= self.retry_s:
                    failed[release] = earlier[0]
                    continue
                try:
                    self._cache[release] = load_release(self.ctx, dep.project, release)
                    self._failed.pop(release, None)
                except Exception as exc:  # a release that cannot load is never routed to
                    message = getattr(exc, "message", None) or f"{type(exc).__name__}: {exc}"
                    log.error("release %s failed to load: %s", release, message)
                    self._failed[release] = (message, time.monotonic())
                    failed[release] = message
                    continue
            loaded[release] = self._cache[release]
        return Route(dep, dep_id, Router(spec, dep.salt, loaded), loaded, failed)

    def _listen(self) -> None:
        """Wake the refresher on every NOTIFY (PostgreSQL); reconnect after failures."""
        import psycopg
        from sqlalchemy import make_url

        url = make_url(self.ctx.store.url).set(drivername="postgresql")
        conninfo = url.render_as_string(hide_password=False)
        while not self._stop.is_set():
            try:
                with psycopg.connect(conninfo, autocommit=True, connect_timeout=5) as conn:
                    conn.execute(f"LISTEN {NOTIFY_CHANNEL}")
                    self.listening.set()
                    self._wake.set()  # changes made while not listening
                    while not self._stop.is_set():
                        for _ in conn.notifies(timeout=0.5, stop_after=1):
                            self._wake.set()
            except Exception as exc:  # the fallback is polling; try listening again soon
                self.listening.clear()
                log.info("not listening for routing changes: %s", exc)
                self._stop.wait(1.0)

    def _refresher(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.poll_s)
            self._wake.clear()
            if not self._stop.is_set():
                self.refresh()

    def _worker(self) -> None:
        last_control = last_prune = 0.0
        while not self._stop.wait(self.flush_s):
            self.flush()
            if self.controller and time.monotonic() - last_control >= self.control_s:
                last_control = time.monotonic()
                self.control()
            if time.monotonic() - last_prune >= PRUNE_EVERY_S:
                last_prune = time.monotonic()
                self.prune()

    def prune(self) -> None:
        """Drop measurement windows older than the retention (7 days)."""
        from ..service.rollouts import prune_windows

        try:
            prune_windows(self.ctx, self.ctx.now() - timedelta(seconds=RETENTION_S))
        except Exception as exc:  # the store may be away; try again later
            log.warning("cannot prune measurements: %s", exc)

    def start(self) -> None:
        self.refresh()
        targets = [self._refresher, self._worker]
        if self.listen and self.ctx.store.dialect == "postgresql":
            targets.append(self._listen)
        for target in targets:
            thread = threading.Thread(target=target, name=f"mv-{target.__name__}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        for thread in self._threads:
            thread.join(timeout=5)
        self._threads.clear()
        self.flush()
        for pool, _ in self._pools.values():
            pool.shutdown(wait=False, cancel_futures=True)

    def drain_shadows(self) -> None:
        """Wait for every queued shadow call to finish (tests, benchmarks)."""
        pools, self._pools = self._pools, {}
        for pool, _ in pools.values():
            pool.shutdown(wait=True)

    # -- measuring and judging ------------------------------------------------------------

    def flush(self) -> None:
        """Store this period's measurements; kept for the next try if the store fails."""
        from ..service.rollouts import record_windows

        until = self.ctx.now()
        rows = window_rows(self.measure.take(), self.replica, self._window_start, until)
        self._window_start = until
        self._pending = (self._pending + rows)[-10_000:]
        if not self._pending:
            return
        try:
            record_windows(self.ctx, self._pending)
            self._pending = []
        except Exception as exc:  # keep serving; measurements wait for the store
            log.warning("cannot store measurements: %s", exc)

    def control(self) -> list[Any]:
        """Judge every running rollout this gateway serves (advance, hold or abort)."""
        from ..service.rollouts import tick

        results = []
        for route in list(self.routes.values()):
            plan = route.deployment.spec.rollout
            if plan is None or plan.status != "running":
                continue
            try:
                result = tick(
                    self.control_ctx, route.deployment, route.deployment_id, self._failures
                )
            except Exception as exc:  # the store may be away; judge again next time
                log.warning("cannot judge the rollout of %s: %s", route.deployment.model, exc)
                continue
            results.append(result)
            if result.action in ("abort", "advance", "complete"):
                log.warning("rollout of %s: %s %s", result.model, result.action, result.detail)
                self._wake.set()
        return results

    # -- delayed feedback -----------------------------------------------------------------

    def served(self, request_id: str, deployment_id: int, release: str, outputs: list[Any]) -> None:
        """Remember an answer (the last *remember* of them) for feedback to join."""
        self._served[request_id] = (deployment_id, release, outputs)
        if len(self._served) > self.remember:
            self._served.popitem(last=False)

    def feedback(self, body: Any) -> dict[str, Any]:
        """Score a remembered answer against the truth: ``{"request_id", "labels"}`` (or
        ``"scores"``), one per input row."""
        from ..errors import InvalidInput, NotFound

        if not isinstance(body, dict) or not isinstance(body.get("request_id"), str):
            raise InvalidInput('feedback needs "request_id"', field="request_id")
        found = self._served.pop(body["request_id"], None)
        if found is None:
            raise NotFound(
                f"request {body['request_id']} is unknown here (feedback must reach the replica "
                f"that answered, among its last {self.remember} answers, once)",
                field="request_id",
            )
        dep_id, release, outputs = found
        kinds = [k for k in ("labels", "scores") if k in body]
        if len(kinds) != 1:
            self._served[body["request_id"]] = found
            raise InvalidInput('feedback needs one of "labels" or "scores"', field="labels")
        truth = body[kinds[0]]
        if not isinstance(truth, list) or len(truth) != len(outputs):
            self._served[body["request_id"]] = found
            raise InvalidInput(
                f'"{kinds[0]}" must list one value per input row ({len(outputs)})',
                field=kinds[0],
            )
        correct = 0
        errors: list[float] = []
        for i, (out, want) in enumerate(zip(outputs, truth, strict=True)):
            if kinds[0] == "labels":
                correct += out == want
            elif isinstance(want, bool) or not isinstance(want, int | float):
                self._served[body["request_id"]] = found
                raise InvalidInput(f"scores[{i}] must be a number", field=f"scores[{i}]")
            elif isinstance(out, int | float):
                errors.append(abs(float(out) - float(want)))
        rows = len(outputs) if kinds[0] == "labels" else 0
        self.measure.feedback((dep_id, "arm", release), rows, correct, errors)
        return {"request_id": body["request_id"], "release": release, "rows": len(outputs)}

    # -- shadows --------------------------------------------------------------------------

    def mirror(
        self,
        route: Route,
        shadows: Sequence[Release],
        rows: list[Any],
        outputs: list[Any],
        request_id: str = "",
    ) -> None:
        for release in shadows:
            loaded = route.loaded.get(release)
            key = (route.deployment_id, "shadow", release.key)
            if loaded is None or loaded.model is None:
                continue
            pool = self._pools.get(release)
            if pool is None:
                pool = self._pools.setdefault(
                    release,
                    (
                        ThreadPoolExecutor(self.shadow_workers, thread_name_prefix="mv-shadow"),
                        threading.BoundedSemaphore(self.shadow_workers * 4),
                    ),
                )
            executor, slots = pool
            if not slots.acquire(blocking=False):
                self.measure.shadow_error(key)  # every slot is busy (a hung shadow): dropped
                continue
            try:
                executor.submit(self._shadow, key, loaded, rows, outputs, slots, request_id)
            except RuntimeError:  # shutting down
                slots.release()

    def _shadow(
        self,
        key: tuple[int, str, str],
        loaded: LoadedRelease,
        rows: list[Any],
        outputs: list[Any],
        slots: threading.BoundedSemaphore,
        request_id: str = "",
    ) -> None:
        try:
            started = time.perf_counter()
            assert loaded.model is not None
            out = list(loaded.model.predict(rows))
            took = time.perf_counter() - started
            if took > self.shadow_timeout_s:
                self.measure.shadow_error(key)
                return
            compared, agreed, diffs = compare(outputs, out)
            self.measure.shadow(key, took, compared, agreed, diffs)
            if agreed < compared:
                self.disagreements.setdefault(key[2], deque(maxlen=DISAGREEMENTS_KEPT)).append(
                    {"request_id": request_id, "served": outputs, "shadow": out}
                )
        except Exception:  # a crashing shadow is counted, never seen by the caller
            self.measure.shadow_error(key)
        finally:
            slots.release()
