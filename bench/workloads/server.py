"""`server`, `server-pg`: the registry through `modelvault server` over loopback.

The server runs as its own process (`python -m modelvault server --port P`, its own
MODELVAULT_HOME in the work directory); the benchmark reads the admin token it prints on its
first start and acts through `Registry(url, token=...)`. Figures:

- the file system's state: what creating an empty file in the work directory costs;
- start: from spawning the process to `/readyz` answering 200, and its resident memory
  (RSS) once ready and idle;
- registrations through the remote SDK, shaped like the `registry` workload's (10 params,
  20 metrics, 5 tags, a 64 KiB file each, environment captured);
- `get("MODEL@production")` round trips, p50 and p95;
- one large file (1 GiB) registered (uploaded; from 256 MiB in 64 MiB chunks) and pulled
  (downloaded, verified), next to `cp` and one-pass SHA-256 of the same file.

`server` stores metadata in SQLite; `server-pg` in a throwaway schema of the PostgreSQL
server named by MODELVAULT_BENCH_PG (default postgresql://root@127.0.0.1:5432/test), dropped
afterwards; it skips the large file, whose path does not touch the database.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import socket
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import psutil

from bench.harness import Figures
from bench.workloads.artifacts import sha256_file
from modelvault import Registry, Settings

FIGURES = {
    "file_create_us": ("µs", "low"),
    "ready_s": ("s", "low"),
    "idle_rss_mb": ("MB", "low"),
    "register_per_s": ("/s", "high"),
    "register_server_cpu_ms": ("ms", "low"),
    "register_4_clients_per_s": ("/s", "high"),
    "get_p50_ms": ("ms", "low"),
    "get_p95_ms": ("ms", "low"),
    "get_server_cpu_ms": ("ms", "low"),
    "sha256_mb_s": ("MB/s", "high"),
    "cp_mb_s": ("MB/s", "high"),
    "upload_mb_s": ("MB/s", "high"),
    "download_mb_s": ("MB/s", "high"),
}
PG_FIGURES = {k: v for k, v in FIGURES.items() if not k.endswith("mb_s")}
CREATE_PROBE = 200
_CATALOGS = ("pg_attribute", "pg_depend", "pg_class", "pg_type", "pg_index", "pg_constraint")
LARGE_FILE = 64 << 20  # what a repetition removes when it ends (its 1 GiB file's copies)
PG_URL = os.environ.get("MODELVAULT_BENCH_PG", "postgresql://root@127.0.0.1:5432/test")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def serving(home: Path, db: str | None = None) -> Iterator[tuple[str, str, float, psutil.Process]]:
    """A server process on *home*: (url, admin token, seconds to ready, the process)."""
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODELVAULT_")}
    env["MODELVAULT_HOME"] = str(home)
    if db is not None:
        env["MODELVAULT_DB"] = db
    url = f"http://127.0.0.1:{port}"
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "modelvault", "server", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        ready = None
        with httpx.Client(timeout=1) as probe:
            deadline = time.monotonic() + 60
            while ready is None:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError("the server did not become ready")
                try:
                    if probe.get(f"{url}/readyz").status_code == 200:
                        ready = time.perf_counter() - t0
                except httpx.HTTPError:
                    time.sleep(0.005)
        assert proc.stdout is not None
        token = proc.stdout.readline().strip()  # printed before uvicorn starts listening
        if not token.startswith("mvt_"):
            raise RuntimeError(f"expected the admin token on the server's stdout, got {token!r}")
        yield url, token, ready, psutil.Process(proc.pid)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


@contextmanager
def cpu(process: psutil.Process, count: int) -> Iterator[list[float]]:
    """The CPU time *process* spends in the block, in ms per operation (of *count*)."""
    used: list[float] = []
    before = process.cpu_times()
    yield used
    after = process.cpu_times()
    total = (after.user - before.user) + (after.system - before.system)
    used.append(total * 1000 / count)


def _pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _registrations(reg: Registry, files: Path, count: int) -> float:
    paths = []
    files.mkdir(parents=True)
    for i in range(count):
        p = files / f"m{i}.bin"
        p.write_bytes(os.urandom(64 * 1024))
        paths.append(p)
    params = {f"p{i}": i * 0.5 for i in range(10)}
    teams = ["risk", "growth", "ops", "search"]
    reg.register("warmup", paths[0], capture_code=False)  # environment capture is per process
    t0 = time.perf_counter()
    for i, p in enumerate(paths):
        tags = {"team": teams[i % 4], **{f"t{j}": f"v{j}" for j in range(4)}}
        metrics = {f"m{j}": ((i * 31 + j * 7) % 1000) / 1000 for j in range(20)}
        reg.register("bench", p, params=params, metrics=metrics, tags=tags, capture_code=False)
    return count / (time.perf_counter() - t0)


def _client(url: str, token: str, model: str, paths: list[str], start: Any, done: Any) -> None:
    """One of several client processes: register *paths*, timed from a shared start."""
    reg = Registry(url, token=token)
    try:
        reg.register(f"{model}-warmup", paths[0], capture_code=False)
        start.wait()
        for i, p in enumerate(paths):
            metrics = {f"m{j}": ((i * 31 + j * 7) % 1000) / 1000 for j in range(20)}
            tags = {f"t{j}": f"v{j}" for j in range(5)}
            params = {f"p{j}": j * 0.5 for j in range(10)}
            reg.register(model, p, params=params, metrics=metrics, tags=tags, capture_code=False)
        done.put(time.perf_counter())
    finally:
        reg.close()


def _concurrent_registrations(
    url: str, token: str, files: Path, count: int, clients: int = 4
) -> float:
    """*count* registrations shaped as above from *clients* processes at once, each its own
    model: the throughput of the one server process."""
    files.mkdir(parents=True)
    ctx = multiprocessing.get_context("spawn")
    start, done = ctx.Barrier(clients + 1), ctx.Queue()
    procs = []
    for c in range(clients):
        paths = []
        for i in range(count // clients):
            p = files / f"c{c}-{i}.bin"
            p.write_bytes(os.urandom(64 * 1024))
            paths.append(str(p))
        proc = ctx.Process(target=_client, args=(url, token, f"bench-c{c}", paths, start, done))
        proc.start()
        procs.append(proc)
    start.wait()
    t0 = time.perf_counter()
    ends = [done.get(timeout=600) for _ in procs]
    for proc in procs:
        proc.join(60)
    return (count // clients) * clients / (max(ends) - t0)


def _approver(home: Path, db: str | None) -> str:
    """A token for a second admin, made on the server's store as an operator would."""
    from modelvault.service import accounts

    env = {"MODELVAULT_DB": db} if db is not None else {}
    local = Registry(settings=Settings.from_env(env=env, home=home))
    try:
        accounts.create_user(local._ctx, "approver", admin=True)
        secret, _ = accounts.create_token(local._ctx, "approver")
    finally:
        local.close()
    return secret


def _lookups(reg: Registry, approver: Registry, times: int) -> tuple[float, float]:
    reg.promote("bench:1", "staging")
    approver.approve("bench:1")
    reg.promote("bench:1", "production", reason="bench")
    for _ in range(50):
        reg.get("bench@production")
    samples = []
    for _ in range(times):
        t0 = time.perf_counter()
        reg.get("bench@production")
        samples.append((time.perf_counter() - t0) * 1000)
    return statistics.median(samples), _pct(samples, 0.95)


def _large(reg: Registry, base: Path, size_mib: int) -> Figures:
    src = base / "large.bin"
    with open(src, "wb") as fh:
        for _ in range(size_mib):
            fh.write(os.urandom(1 << 20))
    sha256_file(src)  # warm, as right after training wrote it
    t0 = time.perf_counter()
    sha256_file(src)
    sha_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    subprocess.run(["cp", str(src), str(base / "copy.bin")], check=True)
    cp_s = time.perf_counter() - t0
    (base / "copy.bin").unlink()
    t0 = time.perf_counter()
    reg.register("large", src, capture_code=False, capture_environment=False)
    up_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    reg.pull("large:1", base / "pulled")
    down_s = time.perf_counter() - t0
    mb = (size_mib << 20) / 1e6
    return {
        "sha256_mb_s": mb / sha_s,
        "cp_mb_s": mb / cp_s,
        "upload_mb_s": mb / up_s,
        "download_mb_s": mb / down_s,
    }


def file_create_us(where: Path) -> float:
    """What creating an empty file costs in the work directory, in µs (the median of
    ``CREATE_PROBE``): the state of the file system the figures were taken on. On an ext4
    without a journal (this workplace's VMs), a directory near thousands of files deleted in
    the last minutes costs 100-700 µs per new file instead of 5-25, and each registration
    creates files on the server; the probe's files stay until the run ends."""
    where.mkdir()
    took = []
    for i in range(CREATE_PROBE):
        t0 = time.perf_counter()
        os.close(os.open(where / f"f{i}", os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
        took.append(time.perf_counter() - t0)
    return statistics.median(took) * 1e6


def compile_bytecode() -> None:
    """Write modelvault's ``.pyc`` files, as installing a wheel does (pip compiles at install
    time). An editable checkout run with ``PYTHONDONTWRITEBYTECODE=1`` (this workplace sets
    it) never writes them, and then every start compiles ≈ 100 modules from source: 0.1-0.2 s
    of the start measured here, a cost no installed server pays."""
    import compileall

    import modelvault

    compileall.compile_dir(Path(modelvault.__file__).parent, quiet=1)


def measure(work: Path, quick: bool, db: str | None = None) -> Figures:
    compile_bytecode()
    base = work / f"server-{time.monotonic_ns()}"
    base.mkdir()
    try:
        create_us = file_create_us(base / "probe")
        with serving(base / "home", db) as (url, token, ready, server):
            # idle: nothing in flight, and webhook delivery (which starts 1 s after the server,
            # loading httpx) running
            time.sleep(1.5)
            figures: Figures = {
                "file_create_us": create_us,
                "ready_s": ready,
                "idle_rss_mb": server.memory_info().rss / 1e6,
            }
            reg = Registry(url, token=token)
            try:
                count = 100 if quick else 1000
                with cpu(server, count) as used:
                    figures["register_per_s"] = _registrations(reg, base / "files", count)
                figures["register_server_cpu_ms"] = used[0]
                figures["register_4_clients_per_s"] = _concurrent_registrations(
                    url, token, base / "files-4", count
                )
                approver = Registry(url, token=_approver(base / "home", db))
                lookups = 300 if quick else 3000
                try:
                    with cpu(server, lookups + 50) as used:  # and its warm-up
                        p50, p95 = _lookups(reg, approver, lookups)
                    figures["get_server_cpu_ms"] = used[0]
                finally:
                    approver.close()
                figures["get_p50_ms"], figures["get_p95_ms"] = p50, p95
                if db is None:
                    figures |= _large(reg, base, 8 if quick else 1024)
            finally:
                reg.close()
        return figures
    finally:
        _drop_large_files(base)


def _drop_large_files(base: Path) -> None:
    """Free the disk a repetition's 1 GiB files take, and keep its thousands of small files
    until the whole run ends (the run's temporary directory). On a file system without a
    journal (this VM's ext4) the kernel, allocating an inode, steps over every inode freed in
    the last minutes: deleting a repetition's files would make each new file of the next
    repetition cost up to 0.3 ms of kernel CPU, a cost of the benchmark, not of the server."""
    for path in base.rglob("*"):
        with contextlib.suppress(OSError):
            if path.is_file() and path.stat().st_size >= LARGE_FILE:
                path.unlink()


def run(work: Path, quick: bool) -> Figures:
    return measure(work, quick)


@contextmanager
def _pg_schema() -> Iterator[str]:
    import psycopg
    from sqlalchemy import make_url

    name = f"mvbench_{uuid.uuid4().hex[:12]}"
    conninfo = make_url(PG_URL).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(conninfo, autocommit=True) as admin:
        if admin.execute("SHOW autovacuum").fetchone() == ("off",):
            # A server without autovacuum keeps the dead catalog rows of every schema made
            # and dropped before (test suites make hundreds): with millions of them, the
            # server's first start, which creates ~40 tables, took 0.2 s longer here.
            admin.execute("VACUUM " + ", ".join(f"pg_catalog.{t}" for t in _CATALOGS))
        admin.execute(f"CREATE SCHEMA {name}")
    url = make_url(PG_URL).update_query_dict({"options": f"-csearch_path={name}"})
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with psycopg.connect(conninfo, autocommit=True) as admin:
            admin.execute(f"DROP SCHEMA {name} CASCADE")


def run_pg(work: Path, quick: bool) -> Figures:
    with _pg_schema() as url:
        return measure(work, quick, url)
