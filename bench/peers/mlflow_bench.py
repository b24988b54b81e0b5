"""MLflow side of the side-by-side benchmark.

Runs one workload against MLflow, either embedded (the client writes a SQLite store itself) or
through `mlflow server` on loopback, and writes the figures as JSON. Run with the peers
virtualenv (bench/.venv-peers), never with the project's own:

    bench/.venv-peers/bin/python bench/peers/mlflow_bench.py --mode embedded \
        --workload registry --quick --out /tmp/mlflow-registry.json

Everything it writes (store, artifacts, MLflow's own config and temp files) lives in one fresh
temporary directory that is removed at the end; only --out is written elsewhere.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

SERVER_START_TIMEOUT_S = 60.0
SERVER_SETTLE_TIMEOUT_S = 90.0
SERVER_STOP_TIMEOUT_S = 15.0
MODEL = "bench"
TEAMS = ("vision", "nlp", "speech", "ranking")
KIB = 1024
MIB = 1024 * KIB


class BenchError(Exception):
    """A failure reported as one line."""


# ---------------------------------------------------------------- environment


def isolate_environment(tmp: Path) -> dict[str, str]:
    """Point every place MLflow might write to (home, XDG dirs, temp) inside `tmp`.

    Also turns telemetry off. Must run before mlflow is imported. Returns the environment for
    child processes (the tracking server).
    """
    home = tmp / "home"
    scratch = tmp / "scratch"
    for d in (home, home / ".config", home / ".cache", home / ".local/share", scratch):
        d.mkdir(parents=True, exist_ok=True)
    settings = {
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "XDG_CACHE_HOME": str(home / ".cache"),
        "XDG_DATA_HOME": str(home / ".local/share"),
        "TMPDIR": str(scratch),
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "DO_NOT_TRACK": "true",
        "MLFLOW_ENABLE_ASYNC_LOGGING": "false",
        "GIT_PYTHON_REFRESH": "quiet",
        # Loopback only: never through a proxy.
        "NO_PROXY": "127.0.0.1,localhost,::1",
        "no_proxy": "127.0.0.1,localhost,::1",
    }
    # Nothing should point the client at another server or store.
    for var in (
        "MLFLOW_TRACKING_URI",
        "MLFLOW_REGISTRY_URI",
        "MLFLOW_EXPERIMENT_NAME",
        "MLFLOW_EXPERIMENT_ID",
        "MLFLOW_RUN_ID",
        "MLFLOW_TRACKING_TOKEN",
    ):
        os.environ.pop(var, None)
    os.environ.update(settings)
    tempfile.tempdir = str(scratch)
    return dict(os.environ)


def free_loopback_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def mlflow_server(tmp: Path, env: dict[str, str]) -> Iterator[tuple[str, Path, bool]]:
    """Start `mlflow server` on 127.0.0.1 and stop it (its whole process group) at the end."""
    port = free_loopback_port()
    db = tmp / "server" / "mlflow.db"
    artifacts = tmp / "server" / "artifacts"
    artifacts.mkdir(parents=True)
    log_path = tmp / "server" / "server.log"
    cmd = [
        sys.executable, "-m", "mlflow", "server",
        "--host", "127.0.0.1",
        "--port", str(port),
        "--backend-store-uri", f"sqlite:///{db}",
        "--artifacts-destination", str(artifacts),
    ]  # fmt: skip
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            cmd,
            cwd=tmp / "server",
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    no_proxy = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        deadline = time.monotonic() + SERVER_START_TIMEOUT_S
        while True:
            if proc.poll() is not None:
                raise BenchError(
                    f"mlflow server exited with {proc.returncode} before answering: "
                    f"{last_line(log_path)}"
                )
            try:
                with no_proxy.open(f"{url}/health", timeout=2) as resp:
                    if resp.status == 200:
                        break
            except (urllib.error.URLError, OSError):
                pass
            if time.monotonic() > deadline:
                raise BenchError(
                    f"mlflow server did not answer within {SERVER_START_TIMEOUT_S:.0f} s: "
                    f"{last_line(log_path)}"
                )
            time.sleep(0.25)
        # /health answers as soon as the first worker is up; the other workers and the job
        # runner go on importing for a while. Wait for the process group to go quiet so
        # that start-up does not land in the timings.
        settled = wait_until_idle(proc.pid, deadline=time.monotonic() + SERVER_SETTLE_TIMEOUT_S)
        yield url, artifacts, settled
    finally:
        stop_process_group(proc)


def group_cpu_seconds(pgid: int) -> float:
    """CPU time (user + system) used so far by the live processes of one process group."""
    ticks = 0
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid:
            ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def wait_until_idle(pgid: int, deadline: float) -> bool:
    """True once the group used under 10 % of one core over a second; False at the deadline."""
    before = group_cpu_seconds(pgid)
    while time.monotonic() < deadline:
        time.sleep(1.0)
        now = group_cpu_seconds(pgid)
        if now - before < 0.1:
            return True
        before = now
    return False


def stop_process_group(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        return
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=SERVER_STOP_TIMEOUT_S)
            return
        except subprocess.TimeoutExpired:
            continue


def last_line(path: Path) -> str:
    try:
        lines = [ln for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return "(no server log)"
    return lines[-1].strip() if lines else "(empty server log)"


# ---------------------------------------------------------------- helpers


def median_ms(fn: Callable[[], object], times: int) -> float:
    samples = []
    for _ in range(times):
        t0 = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t0)
    return statistics.median(samples) * 1000.0


def tree_bytes(root: Path) -> int:
    total = 0
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(dirpath, name)).st_size
    return total


def write_random_file(path: Path, size: int) -> None:
    chunk = 16 * MIB
    with open(path, "wb") as f:
        left = size
        while left > 0:
            n = min(chunk, left)
            f.write(os.urandom(n))
            left -= n


# ---------------------------------------------------------------- workloads


class Context:
    def __init__(self, mode: str, tmp: Path, tracking_uri: str, artifact_dir: Path) -> None:
        import mlflow
        from mlflow import MlflowClient

        self.mode = mode
        self.tmp = tmp
        self.artifact_dir = artifact_dir
        mlflow.set_tracking_uri(tracking_uri)
        mlflow.set_registry_uri(tracking_uri)
        self.client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
        # Embedded: the experiment's artifact root is a local directory under tmp (otherwise
        # it would default to ./mlruns). Server: the server chooses (mlflow-artifacts:/ proxied
        # to --artifacts-destination).
        location = None if mode == "server" else artifact_dir.as_uri()
        self.experiment_id = self.client.create_experiment("bench", artifact_location=location)
        self.warm_up(location)
        mlflow.set_experiment(experiment_id=self.experiment_id)

    def warm_up(self, location: str | None) -> None:
        """One untimed run and version in their own experiment and model, so that first-call
        costs (imports, connections, context providers) stay out of the timings."""
        import mlflow

        experiment_id = self.client.create_experiment("warm-up", artifact_location=location)
        path = self.tmp / "warm-up.bin"
        write_random_file(path, 4 * KIB)
        with mlflow.start_run(experiment_id=experiment_id) as run:
            mlflow.log_params({"p": "1"})
            mlflow.log_metrics({"m": 1.0})
            mlflow.set_tags({"t": "1"})
            mlflow.log_artifact(str(path))
        self.client.create_registered_model("warm-up")
        self.client.create_model_version(
            "warm-up", source=f"{run.info.artifact_uri}/warm-up.bin", run_id=run.info.run_id
        )
        self.client.get_model_version("warm-up", "1")
        path.unlink()


def workload_registry(ctx: Context, quick: bool, notes: list[str]) -> dict[str, Any]:
    import mlflow

    n_versions = 100 if quick else 1000
    n_search = 20 if quick else 200
    n_alias = 50 if quick else 500
    n_lookup = 100 if quick else 1000
    rng = random.Random(42)
    client = ctx.client

    files_dir = ctx.tmp / "inputs"
    files_dir.mkdir()
    files = []
    for i in range(n_versions):
        path = files_dir / f"v{i:05d}" / "weights.bin"
        path.parent.mkdir()
        write_random_file(path, 64 * KIB)
        files.append(path)
    client.create_registered_model(MODEL)

    t0 = time.perf_counter()
    for i, path in enumerate(files):
        params = {f"p{j}": rng.choice(["a", "b", "c"]) + str(rng.randint(0, 99)) for j in range(10)}
        metrics = {f"m{j}": rng.random() for j in range(20)}
        tags = {"team": TEAMS[i % len(TEAMS)]} | {f"t{j}": f"value-{i}-{j}" for j in range(1, 5)}
        with mlflow.start_run() as run:
            mlflow.log_params(params)
            mlflow.log_metrics(metrics)
            mlflow.set_tags(tags)
            mlflow.log_artifact(str(path))
            source = f"{run.info.artifact_uri}/weights.bin"
        client.create_model_version(MODEL, source=source, run_id=run.info.run_id, tags=tags)
    elapsed = time.perf_counter() - t0
    figures: dict[str, Any] = {"register_per_s": n_versions / elapsed}

    team = TEAMS[1]
    expected = sum(1 for i in range(n_versions) if TEAMS[i % len(TEAMS)] == team)
    found = client.search_model_versions(f"name='{MODEL}' and tags.team='{team}'")
    if len(found) != expected:
        raise BenchError(f"search_model_versions found {len(found)} versions, want {expected}")
    figures["search_tag_ms"] = median_ms(
        lambda: client.search_model_versions(f"name='{MODEL}' and tags.team='{team}'"), n_search
    )

    runs = client.search_runs([ctx.experiment_id], filter_string="metrics.m0 > 0.5")
    notes.append(
        f"search_metric_ms: search_runs returns {len(runs)} of {n_versions} runs "
        "(default max_results 1000), each with its params, metrics and tags"
    )
    figures["search_metric_ms"] = median_ms(
        lambda: client.search_runs([ctx.experiment_id], filter_string="metrics.m0 > 0.5"),
        n_search,
    )

    counter = iter(range(10**9))

    def move_and_lookup() -> None:
        version = str(next(counter) % n_versions + 1)
        client.set_registered_model_alias(MODEL, "champion", version)
        got = client.get_model_version_by_alias(MODEL, "champion")
        if str(got.version) != version:
            raise BenchError(f"alias champion -> {got.version}, want {version}")

    figures["alias_move_lookup_ms"] = median_ms(move_and_lookup, n_alias)

    client.set_registered_model_alias(MODEL, "production", str(n_versions))
    figures["production_lookup_ms"] = median_ms(
        lambda: client.get_model_version_by_alias(MODEL, "production"), n_lookup
    )
    figures["production_at_time"] = None
    notes.append(
        "production_at_time: not answerable with MLflow: a registered-model alias holds only "
        "its current version (moving it keeps no history of when it pointed where), and the "
        "registry has no approval records, so 'which version was in production at time T and "
        "who approved it' has no API"
    )
    notes.append(
        "register_per_s includes the run per version (start_run, log_params, log_metrics, "
        "set_tags, log_artifact of a 64 KiB file, end_run) because MLflow keeps params and "
        "metrics on runs, not on model versions; the random input files are written before "
        "timing starts"
    )
    return figures


def workload_metrics(ctx: Context, quick: bool, notes: list[str]) -> dict[str, Any]:
    import mlflow
    from mlflow.entities import Metric

    n_batch_points = 10_000 if quick else 100_000
    batch = 1000
    n_single = 200 if quick else 2000
    rng = random.Random(7)
    client = ctx.client

    with mlflow.start_run() as run:
        run_id = run.info.run_id
        base_ms = int(time.time() * 1000)
        batches = []
        for b in range(n_batch_points // batch):
            batches.append(
                [
                    Metric(f"m{i % 10}", rng.random(), base_ms + k, k)
                    for i in range(batch)
                    for k in [b * batch + i]
                ]
            )
        t0 = time.perf_counter()
        for metrics in batches:
            client.log_batch(run_id, metrics=metrics)
        batch_s = time.perf_counter() - t0

        values = [rng.random() for _ in range(n_single)]
        t0 = time.perf_counter()
        for step, value in enumerate(values):
            mlflow.log_metric("single", value, step=step)
        single_s = time.perf_counter() - t0

    history = client.get_metric_history(run_id, "m0")
    if len(history) != n_batch_points // 10:
        raise BenchError(f"metric history has {len(history)} points, want {n_batch_points // 10}")
    notes.append(
        f"batch: {n_batch_points} points in {n_batch_points // batch} MlflowClient.log_batch calls "
        f"of {batch} (MLflow's per-request maximum), 10 keys; single: {n_single} synchronous "
        "mlflow.log_metric calls"
    )
    return {
        "batch_points_per_s": n_batch_points / batch_s,
        "single_points_per_s": n_single / single_s,
    }


def workload_artifacts(ctx: Context, quick: bool, notes: list[str]) -> dict[str, Any]:
    import mlflow

    size = (64 if quick else 512) * MIB
    reps = 3
    client = ctx.client
    src_dir = ctx.tmp / "inputs"
    src_dir.mkdir()
    src = src_dir / "model.bin"
    client.create_registered_model(MODEL)

    def register() -> tuple[float, str]:
        t0 = time.perf_counter()
        with mlflow.start_run() as run:
            mlflow.log_artifact(str(src))
            source = f"{run.info.artifact_uri}/model.bin"
        client.create_model_version(MODEL, source=source, run_id=run.info.run_id)
        return time.perf_counter() - t0, run.info.run_id

    def pull(run_id: str) -> float:
        dst = ctx.tmp / "pulled"
        dst.mkdir()
        try:
            t0 = time.perf_counter()
            local = mlflow.artifacts.download_artifacts(
                run_id=run_id, artifact_path="model.bin", dst_path=str(dst)
            )
            elapsed = time.perf_counter() - t0
            if os.path.getsize(local) != size:
                raise BenchError(f"downloaded {os.path.getsize(local)} bytes, want {size}")
            return elapsed
        finally:
            shutil.rmtree(dst)

    register_s, pull_s = [], []
    for _ in range(reps):
        write_random_file(src, size)  # fresh bytes each repetition
        elapsed, run_id = register()
        register_s.append(elapsed)
        pull_s.append(pull(run_id))
    figures: dict[str, Any] = {
        "register_mb_s": size / 1e6 / statistics.median(register_s),
        "pull_mb_s": size / 1e6 / statistics.median(pull_s),
    }

    before = tree_bytes(ctx.artifact_dir)
    again_s, _run_id = register()  # the same bytes as the last repetition
    figures["reregister_identical_s"] = again_s
    figures["reregister_extra_bytes"] = tree_bytes(ctx.artifact_dir) - before
    notes.append(
        f"{size // MIB} MiB file, median of {reps} repetitions with fresh bytes each; MB/s are "
        "10**6 bytes/s; register = start_run + log_artifact + end_run + "
        "create_model_version; pull = mlflow.artifacts.download_artifacts(run_id, path) into a "
        "fresh directory; MLflow computes and verifies no checksum on either side"
    )
    notes.append(
        "re-registering identical bytes stores a second full copy: MLflow artifacts are "
        "addressed by run, not by content"
    )
    if ctx.mode == "server":
        notes.append(
            "server: artifacts go through the tracking server's HTTP proxy (mlflow-artifacts:/) "
            "into --artifacts-destination, which is the directory measured"
        )
    return figures


WORKLOADS: dict[str, Callable[[Context, bool, list[str]], dict[str, Any]]] = {
    "registry": workload_registry,
    "metrics": workload_metrics,
    "artifacts": workload_artifacts,
}


# ---------------------------------------------------------------- main


def run(mode: str, workload: str, quick: bool) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="mv-peer-mlflow-")).resolve()
    cwd = os.getcwd()
    try:
        env = isolate_environment(tmp)
        os.chdir(tmp)  # outside any git work tree; nothing relative lands elsewhere
        import mlflow

        notes: list[str] = []
        if quick:
            notes.append("quick: reduced sizes, a smoke run")
        with contextlib.ExitStack() as stack:
            if mode == "server":
                url, artifact_dir, settled = stack.enter_context(mlflow_server(tmp, env))
                ctx = Context(mode, tmp, url, artifact_dir)
                notes.append(
                    "server: `mlflow server` on 127.0.0.1 with its defaults (4 uvicorn workers, "
                    "job runner on), SQLite backend store, artifacts proxied to a local "
                    "directory; timing starts once its processes have gone idle after start-up"
                )
                notes.append(
                    "server: every REST call costs about 50 ms here although the server answers "
                    "in a few ms: it sends headers and body as two writes and, on the client's "
                    "kept-alive connection, the body arrives ~40 ms later (seen with strace; "
                    "Nagle meeting delayed ACK). The figures are what the stock client and "
                    "server give on loopback, untuned"
                )
                if not settled:
                    notes.append(
                        f"server was still busy {SERVER_SETTLE_TIMEOUT_S:.0f} s after start; "
                        "timings may include its start-up"
                    )
            else:
                artifact_dir = tmp / "artifacts"
                artifact_dir.mkdir()
                ctx = Context(mode, tmp, f"sqlite:///{tmp / 'mlflow.db'}", artifact_dir)
                notes.append(
                    "embedded: client writes sqlite:///TMP/mlflow.db and a local artifact dir"
                )
            figures = WORKLOADS[workload](ctx, quick, notes)
        return {
            "tool": f"mlflow-{mode}",
            "version": mlflow.__version__,
            "workload": workload,
            "figures": figures,
            "notes": notes,
        }
    finally:
        os.chdir(cwd)
        shutil.rmtree(tmp, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=["embedded", "server"], required=True)
    parser.add_argument("--workload", choices=sorted(WORKLOADS), required=True)
    parser.add_argument("--quick", action="store_true", help="small sizes, a smoke run")
    parser.add_argument("--out", type=Path, required=True, help="JSON file to write")
    args = parser.parse_args(argv)
    out = args.out.resolve()
    # A terminated run still stops its server and removes its temp dir (finally blocks).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("mlflow_bench: error: terminated"))
    try:
        # MLflow prints progress to stdout; keep stdout for the JSON alone.
        with contextlib.redirect_stdout(sys.stderr):
            result = run(args.mode, args.workload, args.quick)
        out.write_text(json.dumps(result, indent=2) + "\n")
    except Exception as exc:
        print(f"mlflow_bench: error: {type(exc).__name__}: {exc}".splitlines()[0], file=sys.stderr)
        return 1
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
