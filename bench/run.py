"""`python -m bench [WORKLOAD ...] [--quick] [--repeat N]`: modelvault's own figures.

Prints a table and writes bench/results/bench.json with the machine, versions, every
repetition and the medians. `python -m bench.compare` runs the same workloads side by side
with MLflow and DVC.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

from bench.harness import fmt, machine, print_table, repeat, write_json
from bench.workloads import PENDING, WORKLOADS


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("workloads", nargs="*", help=f"any of: {', '.join(WORKLOADS)}")
    parser.add_argument("--quick", action="store_true", help="small sizes, one repetition")
    parser.add_argument("--repeat", type=int, default=None, help="repetitions (default 3)")
    args = parser.parse_args(argv)
    unknown = [w for w in args.workloads if w not in WORKLOADS and w not in PENDING]
    if unknown:
        parser.error(f"unknown workload {unknown[0]!r}; choose from {', '.join(WORKLOADS)}")
    args.workloads = args.workloads or list(WORKLOADS)
    args.repeat = args.repeat or (1 if args.quick else 3)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    results = {"machine": machine(), "repeat": args.repeat, "quick": args.quick, "workloads": {}}
    rows = []
    cwd = os.getcwd()
    with tempfile.TemporaryDirectory(prefix="mv-bench-") as tmp:
        os.chdir(tmp)  # outside any git work tree
        try:
            for name in args.workloads:
                if name in PENDING:
                    rows.append([name, "—", f"not built yet: {PENDING[name]}"])
                    continue
                run, units = WORKLOADS[name]
                load_before = os.getloadavg()[0]  # a shared machine's figures need their load
                outcome = repeat(
                    "modelvault", name, lambda run=run: run(Path(tmp), args.quick), args.repeat
                )
                load = [round(load_before, 2), round(os.getloadavg()[0], 2)]
                results["workloads"][name] = {
                    "figures": outcome.figures,
                    "runs": outcome.runs,
                    "load_average": load,
                }
                rows.append([name, "load average (1 min) before, after", f"{load[0]}, {load[1]}"])
                for key, (unit, _) in units.items():
                    rows.append([name, key, fmt(outcome.figures.get(key), unit)])
        finally:  # a failed workload must not leave the caller in a removed directory
            os.chdir(cwd)
    print_table(["workload", "figure", "modelvault (median)"], rows)
    print(f"\nwritten to {write_json('bench', results)}")
    return 0
