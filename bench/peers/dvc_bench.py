"""DVC side of the side-by-side benchmark: snapshotting a directory tree with `dvc add`.

Run with the peers virtualenv (bench/.venv-peers), never with the project's own:

    bench/.venv-peers/bin/python bench/peers/dvc_bench.py --workload snapshot --quick \
        --out /tmp/dvc-snapshot.json

In a fresh temporary directory it makes a git + DVC repository and a `data/` tree (20,000 files
of 4 KiB in folders of 1,000, plus one 1 GiB file; 2,000 files and 64 MiB with --quick), then
times `dvc add data` twice: cold, and again after one small file changed. DVC's config, site
cache and temp files are kept in that directory too, which is removed at the end; only --out is
written elsewhere.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

MIB = 1024 * 1024
COMMAND_TIMEOUT_S = 1800.0  # one `dvc add` of the full tree takes well under a minute here


class BenchError(Exception):
    """A failure reported as one line."""


def isolated_env(tmp: Path) -> dict[str, str]:
    """An environment whose home, config, cache and temp dirs all lie inside `tmp`."""
    home = tmp / "home"
    dirs = {
        "HOME": home,
        "XDG_CONFIG_HOME": home / ".config",
        "XDG_CACHE_HOME": home / ".cache",
        "XDG_DATA_HOME": home / ".local/share",
        "TMPDIR": tmp / "scratch",
        "DVC_GLOBAL_CONFIG_DIR": tmp / "dvc-global",
        "DVC_SYSTEM_CONFIG_DIR": tmp / "dvc-system",
        "DVC_SITE_CACHE_DIR": tmp / "dvc-site-cache",
    }
    for d in dirs.values():
        d.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DVC_", "GIT_"))}
    env.update({k: str(v) for k, v in dirs.items()})
    env.update(
        {
            "DVC_NO_ANALYTICS": "1",
            "ITERATIVE_DO_NOT_TRACK": "1",
            "DO_NOT_TRACK": "1",
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_AUTHOR_NAME": "bench",
            "GIT_AUTHOR_EMAIL": "bench@localhost",
            "GIT_COMMITTER_NAME": "bench",
            "GIT_COMMITTER_EMAIL": "bench@localhost",
        }
    )
    return env


def run_cmd(cmd: list[str], cwd: Path, env: dict[str, str]) -> float:
    """Run one command, return its wall time; raise BenchError with its last line on failure."""
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(
            cmd,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise BenchError(f"`{' '.join(cmd)}` did not finish within {exc.timeout:.0f} s") from exc
    elapsed = time.perf_counter() - t0
    if proc.returncode != 0:
        lines = [ln for ln in (proc.stderr + proc.stdout).splitlines() if ln.strip()]
        raise BenchError(
            f"`{' '.join(cmd)}` exited with {proc.returncode}: "
            f"{lines[-1].strip() if lines else '(no output)'}"
        )
    return elapsed


def make_tree(data: Path, small: int, big_bytes: int) -> None:
    for i in range(small):
        sub = data / f"d{i // 1000:03d}"
        sub.mkdir(parents=True, exist_ok=True)
        (sub / f"f{i:05d}.bin").write_bytes(os.urandom(4096))
    with open(data / "big.bin", "wb") as f:
        left = big_bytes
        while left > 0:
            n = min(16 * MIB, left)
            f.write(os.urandom(n))
            left -= n


def tree_bytes(root: Path) -> int:
    total = 0
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(dirpath, name)).st_size
    return total


def dvc_version(dvc: list[str], env: dict[str, str], cwd: Path) -> tuple[str, float]:
    """DVC's version and the wall time of `dvc --version` (the CLI's start-up cost)."""
    t0 = time.perf_counter()
    proc = subprocess.run(
        [*dvc, "--version"],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if proc.returncode != 0 or not proc.stdout.strip():
        raise BenchError(f"`dvc --version` failed: {(proc.stderr or proc.stdout).strip()}")
    return proc.stdout.strip().splitlines()[-1], time.perf_counter() - t0


def workload_snapshot(quick: bool) -> dict[str, Any]:
    small, big_bytes = (2000, 64 * MIB) if quick else (20_000, 1024 * MIB)
    tmp = Path(tempfile.mkdtemp(prefix="mv-peer-dvc-")).resolve()
    try:
        env = isolated_env(tmp)
        repo = tmp / "repo"
        data = repo / "data"
        data.mkdir(parents=True)
        dvc = [sys.executable, "-m", "dvc"]
        version, _ = dvc_version(dvc, env, tmp)  # the first start-up fills the OS caches
        _, startup_s = dvc_version(dvc, env, tmp)

        use_git = shutil.which("git") is not None
        if use_git:
            run_cmd(["git", "init", "-q"], repo, env)
            run_cmd([*dvc, "init", "-q"], repo, env)
        else:
            run_cmd([*dvc, "init", "-q", "--no-scm"], repo, env)
        run_cmd([*dvc, "config", "core.analytics", "false"], repo, env)
        run_cmd([*dvc, "config", "core.check_update", "false"], repo, env)

        make_tree(data, small, big_bytes)

        cold_s = run_cmd([*dvc, "add", "-q", "data"], repo, env)
        cache_after_cold = tree_bytes(repo / ".dvc" / "cache")
        (data / "d000" / "f00000.bin").write_bytes(os.urandom(4096))
        warm_s = run_cmd([*dvc, "add", "-q", "data"], repo, env)
        cache_growth = tree_bytes(repo / ".dvc" / "cache") - cache_after_cold

        notes = []
        if quick:
            notes.append("quick: reduced sizes, a smoke run")
        notes += [
            f"tree: {small} files of 4 KiB in folders of 1,000 plus one "
            f"{big_bytes // MIB} MiB file; each figure is the wall time of one `dvc add data` "
            "CLI process, as a user runs it, so it includes the CLI's start-up "
            f"(`dvc --version` takes {startup_s:.2f} s here)",
            "cold: first add, hashes every file (MD5) and copies it into .dvc/cache "
            "(default cache.type reflink,copy; a copy on this file system); "
            f"cache holds {cache_after_cold} bytes after it",
            "warm: one 4 KiB file rewritten, then add again; unchanged files are skipped by "
            "DVC's mtime/inode/size state database; "
            f"the cache grew by {cache_growth} bytes (the new file and a new .dir manifest)",
            f"repository: {'git init + dvc init' if use_git else 'dvc init --no-scm'}; "
            "analytics and update checks off",
        ]
        return {
            "tool": "dvc",
            "version": version,
            "workload": "snapshot",
            "figures": {"snapshot_cold_s": cold_s, "snapshot_warm_s": warm_s},
            "notes": notes,
        }
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workload", choices=["snapshot"], required=True)
    parser.add_argument("--quick", action="store_true", help="small sizes, a smoke run")
    parser.add_argument("--out", type=Path, required=True, help="JSON file to write")
    args = parser.parse_args(argv)
    out = args.out.resolve()
    # A terminated run still removes its temp dir (finally blocks run on SystemExit).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("dvc_bench: error: terminated"))
    try:
        result = workload_snapshot(args.quick)
        out.write_text(json.dumps(result, indent=2) + "\n")
    except Exception as exc:
        print(f"dvc_bench: error: {type(exc).__name__}: {exc}".splitlines()[0], file=sys.stderr)
        return 1
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
