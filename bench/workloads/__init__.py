"""modelvault's side of each named workload; each returns one repetition's figures."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from bench.harness import Figures

from . import artifacts, audit, auditquery, gateway, metrics, registry, server, snapshot

# name -> (run(work_dir, quick) -> figures, {figure: (unit, better)}) ; better: "high" | "low"
WORKLOADS: dict[str, tuple[Callable[[Path, bool], Figures], dict[str, tuple[str, str]]]] = {
    "registry": (registry.run, registry.FIGURES),
    "metrics": (metrics.run, metrics.FIGURES),
    "artifacts": (artifacts.run, artifacts.FIGURES),
    "snapshot": (snapshot.run, snapshot.FIGURES),
    "gateway": (gateway.run, gateway.FIGURES),
    "audit": (audit.run, audit.FIGURES),
    "audit-queries": (auditquery.run, auditquery.FIGURES),
    "server": (server.run, server.FIGURES),
    "server-pg": (server.run_pg, server.PG_FIGURES),
}

# Workloads whose modelvault side does not exist yet, and why (shown in the tables).
PENDING: dict[str, str] = {}
