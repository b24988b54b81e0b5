"""Many processes writing at once: gap-free numbers and one production version."""

from __future__ import annotations

import itertools
import multiprocessing
import time
from pathlib import Path

from sqlalchemy import create_engine, select

from modelvault import Settings
from modelvault.store import schema

from .workers import open_registry, promote_one, register_many


def test_eight_processes_register_gap_free(tmp_path: Path) -> None:
    home = tmp_path / "home"
    open_registry(str(home), "setup").init()
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(8) as pool:
        results = pool.starmap(register_many, [(str(home), w, 50, str(tmp_path)) for w in range(8)])
    numbers = sorted(n for r in results for n in r)
    assert numbers == list(range(1, 401))
    reg = open_registry(str(home), "checker")
    assert [v.number for v in reg.versions("race")] == list(range(1, 401))
    assert len(reg.audit(action="version.register", limit=None)) == 400
    assert reg.verify_audit().ok
    reg.close()


def test_racing_promotions_leave_one_production_version(tmp_path: Path) -> None:
    home = tmp_path / "home"
    alice = open_registry(str(home), "alice")
    bob = open_registry(str(home), "bob")
    for i in range(8):
        path = tmp_path / f"m{i}.bin"
        path.write_bytes(b"model %d" % i)
        alice.register("race", path, capture_code=False, capture_environment=False)
        alice.promote(f"race:{i + 1}", "staging")
        bob.approve(f"race:{i + 1}")
    ctx = multiprocessing.get_context("spawn")
    start = time.time() + 3
    with ctx.Pool(8) as pool:
        seqs = pool.starmap(promote_one, [(str(home), n, start) for n in range(1, 9)])
    assert len(set(seqs)) == 8
    engine = create_engine(Settings.from_env(env={}, home=home).db)
    s = schema.stage_intervals
    with engine.connect() as conn:
        open_prod = conn.execute(
            select(s.c.version_id).where(s.c.stage == "production", s.c.valid_to.is_(None))
        ).all()
    engine.dispose()
    assert len(open_prod) == 1
    promotions = alice.audit(action="stage.promote", limit=None)
    to_prod = [e for e in promotions if e.after and e.after["stage"] == "production"]
    assert len(to_prod) == 8
    # each promotion displaced exactly the version the previous one installed
    for earlier, later in itertools.pairwise(to_prod):
        assert later.before is not None and earlier.after is not None
        assert later.before["production"] == earlier.before["version"]
    winner = alice.get("race@production").number
    assert winner == to_prod[-1].before["version"]
    assert sum(1 for v in alice.versions("race") if v.stage == "archived") == 7
    assert alice.verify_audit().ok
    alice.close()
    bob.close()
