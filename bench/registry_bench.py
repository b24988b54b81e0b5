"""Core registry benchmark: registration throughput, production lookups, large-file transfer.

Run with `make bench` (or `python bench/registry_bench.py [--quick]`). Prints a table and
writes every figure with machine information to bench/results/registry.json. Figures are
recorded by hand in bench/README.md; nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from modelvault import Registry, Settings


def _registry(home: Path, actor: str = "bench") -> Registry:
    return Registry(settings=Settings.from_env(env={}, home=home, actor=actor))


def bench_register(work: Path, count: int) -> dict[str, Any]:
    reg = _registry(work / "home")
    reg.init()
    files = work / "files"
    files.mkdir()
    params = {f"p{i}": i * 0.5 for i in range(10)}
    tags = {f"t{i}": f"value-{i}" for i in range(5)}
    paths = []
    for i in range(count):
        p = files / f"m{i}.bin"
        p.write_bytes(os.urandom(64 * 1024))
        paths.append(p)
    reg.register("warmup", paths[0], params=params, tags=tags)  # env capture is per process
    start = time.perf_counter()
    for i, p in enumerate(paths):
        metrics = {f"m{j}": (i * 31 + j) % 1000 / 1000 for j in range(20)}
        reg.register("bench", p, params=params, metrics=metrics, tags=tags)
    elapsed = time.perf_counter() - start
    bob = _registry(work / "home", "bob")
    reg.promote("bench:1", "staging")
    bob.approve("bench:1")
    reg.promote("bench:1", "production", reason="bench")
    samples = []
    for _ in range(200):
        reg.get("bench@production")
    for _ in range(5000):
        t0 = time.perf_counter_ns()
        reg.get("bench@production")
        samples.append((time.perf_counter_ns() - t0) / 1e6)
    samples.sort()
    reg.close()
    bob.close()
    return {
        "versions": count,
        "register_seconds": elapsed,
        "versions_per_second": count / elapsed,
        "get_production_p50_ms": samples[len(samples) // 2],
        "get_production_p95_ms": samples[int(len(samples) * 0.95)],
    }


def bench_register_in_git(work: Path, count: int) -> dict[str, Any]:
    """Registration inside a git work tree pays for capturing the code state."""
    repo = work / "repo"
    repo.mkdir()
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    (repo / "train.py").write_text("print(1)\n")
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "b",
        "GIT_AUTHOR_EMAIL": "b@example.com",
        "GIT_COMMITTER_NAME": "b",
        "GIT_COMMITTER_EMAIL": "b@example.com",
    }
    subprocess.run(["git", "-C", str(repo), "add", "."], check=True, env=env)
    subprocess.run(["git", "-C", str(repo), "commit", "-qm", "x"], check=True, env=env)
    reg = _registry(work / "githome")
    p = work / "g.bin"
    p.write_bytes(os.urandom(64 * 1024))
    reg.register("warm", p, code_dir=repo)
    start = time.perf_counter()
    for _ in range(count):
        reg.register("git", p, code_dir=repo)
    elapsed = time.perf_counter() - start
    reg.close()
    return {"versions": count, "versions_per_second": count / elapsed}


def _rate(size: int, seconds: float) -> float:
    return size / seconds / 1e6


def _best(fn: Any, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _evict(path: Path) -> None:
    """Drop a file's pages from the page cache, so the next read comes from the disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def _sha256_file(path: Path) -> None:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)


def bench_large_file(work: Path, size_mib: int, repeat: int) -> dict[str, Any]:
    """Register and pull one large file, next to cp and one-pass SHA-256 of the same bytes.

    Reads are measured both warm (bytes in the page cache) and cold (evicted first), each
    against SHA-256 over the same bytes in the same state: a verified copy cannot beat that.
    """
    from modelvault.blobs import LocalBlobStore

    size = size_mib * 1024 * 1024
    src = work / "large.bin"
    with open(src, "wb") as fh:
        block = os.urandom(1 << 20)
        for _ in range(size_mib):
            fh.write(block)

    def cp() -> None:
        dst = work / "copy.bin"
        subprocess.run(["cp", str(src), str(dst)], check=True)
        dst.unlink()

    sha_s = _best(lambda: _sha256_file(src), repeat)
    cp_s = _best(cp, repeat)
    figures: dict[str, list[float]] = {
        k: [] for k in ("register", "pull_warm", "pull_cold", "sha_cold")
    }
    for i in range(repeat):
        home = work / f"lhome{i}"
        reg = _registry(home)
        reg.init()
        with open(src, "r+b") as fh:  # fresh bytes each time so nothing is deduplicated
            fh.write(os.urandom(32))
        _sha256_file(src)  # source warm, as it is right after training wrote it
        t0 = time.perf_counter()
        reg.register("large", src, capture_code=False, capture_environment=False)
        figures["register"].append(time.perf_counter() - t0)
        blob = LocalBlobStore(home / "blobs").path_of(reg.manifest("large:1").files[0].digest)
        _evict(blob)
        t0 = time.perf_counter()
        _sha256_file(blob)
        figures["sha_cold"].append(time.perf_counter() - t0)
        for label in ("pull_cold", "pull_warm"):
            if label == "pull_cold":
                _evict(blob)
            else:
                _sha256_file(blob)
            dest = work / f"pulled{i}"
            t0 = time.perf_counter()
            reg.pull("large:1", dest)
            figures[label].append(time.perf_counter() - t0)
            shutil.rmtree(dest)
        reg.close()
        shutil.rmtree(home)
    med = {k: statistics.median(v) for k, v in figures.items()}
    return {
        "size_mib": size_mib,
        "sha256_mb_s": _rate(size, sha_s),
        "sha256_cold_mb_s": _rate(size, med["sha_cold"]),
        "cp_mb_s": _rate(size, cp_s),
        "register_mb_s": _rate(size, med["register"]),
        "pull_warm_mb_s": _rate(size, med["pull_warm"]),
        "pull_cold_mb_s": _rate(size, med["pull_cold"]),
        "register_vs_sha256": sha_s / med["register"],
        "pull_warm_vs_sha256": sha_s / med["pull_warm"],
        "pull_cold_vs_sha256_cold": med["sha_cold"] / med["pull_cold"],
    }


def bench_cli_version() -> dict[str, Any]:
    exe = Path(sys.executable).parent / "modelvault"
    times = []
    for _ in range(10):
        t0 = time.perf_counter()
        subprocess.run([str(exe), "--version"], check=True, capture_output=True)
        times.append((time.perf_counter() - t0) * 1000)
    return {"version_ms_median": statistics.median(times)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    args = parser.parse_args()
    count, size_mib, repeat = (100, 64, 1) if args.quick else (1000, 512, 3)
    results: dict[str, Any] = {
        "machine": {
            "python": platform.python_version(),
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
        },
        "date": time.strftime("%Y-%m-%d"),
    }
    with tempfile.TemporaryDirectory(prefix="mv-bench-") as tmp:
        work = Path(tmp)
        os.chdir(work)  # outside any git work tree: measures registration, not git
        results["register"] = bench_register(work, count)
        results["register_in_git"] = bench_register_in_git(work, 50)
        results["large_file"] = bench_large_file(work, size_mib, repeat)
    results["cli"] = bench_cli_version()
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    (out / "registry.json").write_text(json.dumps(results, indent=2))
    r, g, lf = results["register"], results["register_in_git"], results["large_file"]
    rows = [
        (
            "register (10 params, 20 metrics, 5 tags, 64 KiB)",
            f"{r['versions_per_second']:.0f}/s",
            ">= 500/s",
        ),
        ("register inside a git work tree", f"{g['versions_per_second']:.0f}/s", ""),
        ("get('MODEL@production') p50", f"{r['get_production_p50_ms']:.3f} ms", "<= 0.2 ms"),
        ("get('MODEL@production') p95", f"{r['get_production_p95_ms']:.3f} ms", ""),
        (f"sha256 of {lf['size_mib']} MiB (hashlib)", f"{lf['sha256_mb_s']:.0f} MB/s", ""),
        (f"cp of {lf['size_mib']} MiB", f"{lf['cp_mb_s']:.0f} MB/s", ""),
        (
            "register large file",
            f"{lf['register_mb_s']:.0f} MB/s ({lf['register_vs_sha256']:.0%} of sha256)",
            ">= 70 %",
        ),
        (
            "pull large file, blob in page cache",
            f"{lf['pull_warm_mb_s']:.0f} MB/s ({lf['pull_warm_vs_sha256']:.0%} of sha256)",
            ">= 70 %",
        ),
        ("sha256 of the blob, evicted from cache", f"{lf['sha256_cold_mb_s']:.0f} MB/s", ""),
        (
            "pull large file, blob evicted",
            f"{lf['pull_cold_mb_s']:.0f} MB/s "
            f"({lf['pull_cold_vs_sha256_cold']:.0%} of cold sha256)",
            "",
        ),
        ("modelvault --version", f"{results['cli']['version_ms_median']:.0f} ms", "< 300 ms"),
    ]
    width = max(len(a) for a, _, _ in rows)
    for name, value, target in rows:
        print(f"{name:<{width}}  {value:>28}  {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
