"""`python -m bench.compare [WORKLOAD ...] [--quick] [--repeat N]` (`make bench-compare`):
the same workloads through modelvault, MLflow (embedded and server) and DVC, in one run.

Peers run in their own virtualenv (bench/.venv-peers, made by bench/peers/setup.sh), never in
the project's. Each repetition runs modelvault and then each peer; ratios are computed pair
by pair and their median is reported. Where a peer cannot do something the row says so.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench.harness import Figures, fmt, machine, print_table, write_json
from bench.run import parse
from bench.workloads import PENDING, WORKLOADS

HERE = Path(__file__).parent
PEER_PYTHON = HERE / ".venv-peers" / "bin" / "python"
PEERS: dict[str, list[tuple[str, list[str]]]] = {
    "registry": [
        ("mlflow-embedded", ["mlflow_bench.py", "--mode", "embedded"]),
        ("mlflow-server", ["mlflow_bench.py", "--mode", "server"]),
    ],
    "metrics": [
        ("mlflow-embedded", ["mlflow_bench.py", "--mode", "embedded"]),
        ("mlflow-server", ["mlflow_bench.py", "--mode", "server"]),
    ],
    "artifacts": [
        ("mlflow-embedded", ["mlflow_bench.py", "--mode", "embedded"]),
        ("mlflow-server", ["mlflow_bench.py", "--mode", "server"]),
    ],
    "snapshot": [("dvc", ["dvc_bench.py"])],
}
GOALS: dict[tuple[str, str, str], float] = {
    ("registry", "register_per_s", "mlflow-embedded"): 10,
    ("registry", "register_per_s", "mlflow-server"): 20,
    ("registry", "production_lookup_ms", "mlflow-embedded"): 10,
    ("registry", "production_lookup_ms", "mlflow-server"): 10,
    ("metrics", "batch_points_per_s", "mlflow-embedded"): 5,
    ("metrics", "single_points_per_s", "mlflow-embedded"): 5,
    ("artifacts", "register_mb_s", "mlflow-embedded"): 3,
    ("artifacts", "pull_mb_s", "mlflow-embedded"): 3,
    ("snapshot", "snapshot_cold_s", "dvc"): 3,
    ("snapshot", "snapshot_warm_s", "dvc"): 10,
}
REFERENCES = {"sha256_mb_s", "cp_mb_s", "sha256_evicted_mb_s", "sha256sum_s"}
METRIC_UNITS = {"batch_points_per_s": ("/s", "high"), "single_points_per_s": ("/s", "high")}


def run_peer(workload: str, argv: list[str], quick: bool, out: Path) -> dict[str, Any]:
    cmd = [
        str(PEER_PYTHON),
        str(HERE / "peers" / argv[0]),
        *argv[1:],
        "--workload",
        workload,
        "--out",
        str(out),
    ]
    if quick:
        cmd.append("--quick")
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=3600)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        return {"figures": {}, "notes": [f"failed: {tail[0]}"]}
    data: dict[str, Any] = json.loads(out.read_text())
    return data


def ratio(mv: float | None, peer: float | None, better: str) -> float | None:
    if mv is None or peer is None or mv == 0 or peer == 0:
        return None
    return mv / peer if better == "high" else peer / mv


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    setup = subprocess.run(["bash", str(HERE / "peers" / "setup.sh")], check=False)
    if setup.returncode != 0:
        print("error: could not set up the peers' virtualenv (bench/peers/setup.sh)")
        return 1
    report: dict[str, Any] = {
        "machine": machine(),
        "repeat": args.repeat,
        "quick": args.quick,
        "workloads": {},
    }
    tables: list[tuple[str, list[str], list[list[str]], list[str]]] = []
    cwd = os.getcwd()
    with tempfile.TemporaryDirectory(prefix="mv-compare-") as tmp:
        os.chdir(tmp)  # outside any git work tree; restored below
        for name in args.workloads:
            peers = PEERS.get(name, [])
            mv_runs: list[Figures] = []
            peer_runs: dict[str, list[Figures]] = {p: [] for p, _ in peers}
            notes: list[str] = []
            for rep in range(args.repeat):
                if name in WORKLOADS:
                    mv_runs.append(WORKLOADS[name][0](Path(tmp), args.quick))
                for peer, peer_argv in peers:
                    data = run_peer(name, peer_argv, args.quick, Path(tmp) / f"{peer}-{rep}.json")
                    peer_runs[peer].append(data.get("figures", {}))
                    notes += [f"{peer}: {n}" for n in data.get("notes", []) if rep == 0]
            units = WORKLOADS[name][1] if name in WORKLOADS else METRIC_UNITS
            headers = ["figure", "modelvault"]
            for peer, _ in peers:
                headers += [peer, "ratio"]
            rows = []
            summary = {"modelvault": mv_runs, **peer_runs, "ratios": {}}
            for key, (unit, better) in units.items():
                mv_values = [r.get(key) for r in mv_runs]
                mv_med = _median(mv_values)
                row = [key, fmt(mv_med, unit) if name in WORKLOADS else "not built yet"]
                peer_has_key = False
                for peer, _ in peers:
                    values = [r.get(key) for r in peer_runs[peer]]
                    peer_has_key |= any(v is not None for v in values) or key in (
                        peer_runs[peer][0] if peer_runs[peer] else {}
                    )
                    pairs = [ratio(m, p, better) for m, p in zip(mv_values, values, strict=False)]
                    med = _median(pairs)
                    summary["ratios"][f"{key}/{peer}"] = med
                    goal = GOALS.get((name, key, peer))
                    shown = "—" if med is None else f"{med:.1f}x"
                    if goal is not None and med is not None:
                        shown += f" ({'meets' if med >= goal else 'misses'} ≥{goal:g}x)"
                    peer_med = _median(values)
                    row += [fmt(peer_med, unit) if peer_med is not None else "cannot", shown]
                rows.append(row)
            if name in PENDING:
                notes.append(f"modelvault: {PENDING[name]}")
            report["workloads"][name] = summary
            tables.append((name, headers, rows, notes))
        os.chdir(cwd)
    for name, headers, rows, notes in tables:
        print(f"\n== {name}")
        print_table(headers, rows)
        for note in notes:
            print(f"  note: {note}")
    print(f"\nwritten to {write_json('compare', report)}")
    return 0


def _median(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


if __name__ == "__main__":
    sys.exit(main())
