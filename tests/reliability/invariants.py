"""Checks that must hold after any crash or race: every one reads the store directly."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from modelvault import Registry, Settings
from modelvault.store import schema

from ..backends import engine_for


def _sha(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 22):
            h.update(chunk)
    return h.hexdigest()


def _check_runs(conn: Any, events: dict[int, Any]) -> int:
    """Runs and their events: a run exists with its start event, has ended exactly when its
    end event exists, holds exactly the params and the metric points its events recorded."""
    by_run: dict[str, dict[str, Any]] = {}
    for event in events.values():
        if event.action.startswith("run."):
            run_id = event.subject.removeprefix("run:")
            entry = by_run.setdefault(run_id, {"start": 0, "end": 0, "points": 0, "params": set()})
            after = json.loads(event.after) if event.after else {}
            if event.action == "run.start":
                entry["start"] += 1
            elif event.action == "run.end":
                entry["end"] += 1
            elif event.action == "run.metrics":
                entry["points"] += after["points"]
            elif event.action == "run.params":
                entry["params"] |= set(after)
    r, rm, rp = schema.runs, schema.run_metrics, schema.run_params
    runs = {row.id: row.status for row in conn.execute(select(r.c.id, r.c.status)).all()}
    assert set(runs) == set(by_run), "a run without its start event, or the reverse"
    points = dict(conn.execute(select(rm.c.run_id, func.count()).group_by(rm.c.run_id)).all())
    params: dict[str, set[str]] = {}
    for run_id, key in conn.execute(select(rp.c.run_id, rp.c.key)).all():
        params.setdefault(run_id, set()).add(key)
    for run_id, entry in by_run.items():
        assert entry["start"] == 1, f"run {run_id} started {entry['start']} times"
        assert (runs[run_id] != "running") == (entry["end"] == 1), f"run {run_id} end"
        assert points.get(run_id, 0) == entry["points"], f"run {run_id}: metric points"
        assert params.get(run_id, set()) == entry["params"], f"run {run_id}: params"
    return sum(points.values())


def check_store(
    home: Path, *, db: str | None = None, verify_all_blobs: bool = False
) -> dict[str, int]:
    """Every invariant of the store (its metadata in *db*, SQLite under *home* by default);
    returns a few counts for the caller's own checks."""
    env = {"MODELVAULT_DB": db} if db else {}
    settings = Settings.from_env(env=env, home=home, actor="checker")
    reg = Registry(settings=settings)
    try:
        result = reg.verify_audit()
        assert result.ok, f"audit {result.check}: {result.problem}"
        checkpoints = result.checkpoints
    finally:
        reg.close()
    engine = engine_for(settings.db)
    s, a, ap, v, e = (
        schema.stage_intervals,
        schema.alias_intervals,
        schema.approvals,
        schema.versions,
        schema.audit_events,
    )
    with engine.connect() as conn:
        events = {r.seq: r for r in conn.execute(select(e)).all()}
        # one open stage interval per version, at most one production per model
        open_counts = conn.execute(
            select(s.c.version_id, func.count())
            .where(s.c.valid_to.is_(None))
            .group_by(s.c.version_id)
        ).all()
        versions = conn.execute(select(v.c.id, v.c.number, v.c.digest, v.c.record)).all()
        assert len(open_counts) == len(versions), "a version has no open stage interval"
        assert all(n == 1 for _, n in open_counts), "a version holds two stages at once"
        prod = conn.execute(
            select(s.c.model_id, func.count())
            .where(s.c.stage == "production", s.c.valid_to.is_(None))
            .group_by(s.c.model_id)
        ).all()
        assert all(n == 1 for _, n in prod), "two production versions"
        # state rows and their events: each row names an event of the right kind
        for table, actions in (
            (s, {"version.register", "stage.promote", "stage.rollback"}),
            (a, {"alias.set"}),
            (ap, {"version.approve"}),
        ):
            for row in conn.execute(select(table.c.audit_seq)).all():
                event = events.get(row.audit_seq)
                assert event is not None, f"{table.name} row without its audit event"
                assert event.action in actions, f"{table.name} row names a {event.action} event"
        # events and their state rows: nothing recorded that did not happen
        stage_seqs = {r[0] for r in conn.execute(select(s.c.audit_seq)).all()}
        alias_seqs = {r[0] for r in conn.execute(select(a.c.audit_seq)).all()}
        approval_seqs = {r[0] for r in conn.execute(select(ap.c.audit_seq)).all()}
        digests = {r.digest for r in versions}
        for seq, event in events.items():
            if event.action in ("stage.promote", "stage.rollback", "version.register"):
                assert seq in stage_seqs, f"event {seq} ({event.action}) without its stage rows"
            if event.action == "version.register":
                assert json.loads(event.after)["digest"] in digests, f"event {seq}: no version"
            if event.action == "alias.set":
                assert seq in alias_seqs, f"event {seq} (alias.set) without its alias row"
            if event.action == "version.approve":
                assert seq in approval_seqs, f"event {seq} (approve) without its approval"
        metric_points = _check_runs(conn, events)
        # every blob a version needs exists (a file, or a row kept with its version), and
        # (optionally) holds the right bytes; a row always does
        blob_root = home / "blobs" / "sha256"
        t = schema.inline_blobs
        inline = {d: bytes(b) for d, b in conn.execute(select(t.c.digest, t.c.data)).all()}
        for digest, data in inline.items():
            assert hashlib.sha256(data).hexdigest() == digest.removeprefix("sha256:"), (
                f"inline blob {digest} holds other bytes"
            )
        for (digest,) in conn.execute(select(schema.version_blobs.c.digest).distinct()).all():
            hexd = digest.removeprefix("sha256:")
            path = blob_root / hexd[:2] / hexd
            if digest in inline and not path.is_file():
                continue
            assert path.is_file(), f"missing blob {digest}"
            if verify_all_blobs:
                assert _sha(path) == hexd, f"corrupt blob {digest}"
        counts = {
            "versions": len(versions),
            "events": len(events),
            "approvals": len(approval_seqs),
            "alias_sets": len(alias_seqs),
            "metric_points": metric_points,
            "checkpoints": checkpoints,
        }
    engine.dispose()
    # nothing under a final blob name ever holds the wrong bytes
    if blob_root.exists():
        for path in blob_root.rglob("*"):
            if path.is_file() and path.stat().st_size < (1 << 20):
                assert _sha(path) == path.name, f"blob {path.name} holds the wrong bytes"
    return counts
