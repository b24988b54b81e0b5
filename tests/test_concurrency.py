"""Many processes writing at once, on every metadata backend: gap-free numbers, one
production version, and a schema migrated exactly once however many processes start."""

from __future__ import annotations

import itertools
import multiprocessing
import time
from pathlib import Path

from sqlalchemy import select, text

from modelvault.store import schema
from modelvault.store.migrations import HEAD

from .backends import engine_for
from .workers import open_registry, promote_one, register_many, upgrade_at


def test_eight_processes_register_gap_free(home: Path, db_url: str, tmp_path: Path) -> None:
    with open_registry(str(home), "setup", db_url) as setup:
        setup.init()
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(8) as pool:
        results = pool.starmap(
            register_many, [(str(home), w, 50, str(tmp_path), db_url) for w in range(8)]
        )
    numbers = sorted(n for r in results for n in r)
    assert numbers == list(range(1, 401))
    reg = open_registry(str(home), "checker", db_url)
    assert [v.number for v in reg.versions("race")] == list(range(1, 401))
    assert len(reg.audit(action="version.register", limit=None)) == 400
    assert reg.verify_audit().ok
    reg.close()


def test_racing_promotions_leave_one_production_version(
    home: Path, db_url: str, tmp_path: Path
) -> None:
    alice = open_registry(str(home), "alice", db_url)
    bob = open_registry(str(home), "bob", db_url)
    for i in range(8):
        path = tmp_path / f"m{i}.bin"
        path.write_bytes(b"model %d" % i)
        alice.register("race", path, capture_code=False, capture_environment=False)
        alice.promote(f"race:{i + 1}", "staging")
        bob.approve(f"race:{i + 1}")
    ctx = multiprocessing.get_context("spawn")
    start = time.time() + 3
    with ctx.Pool(8) as pool:
        seqs = pool.starmap(promote_one, [(str(home), n, start, db_url) for n in range(1, 9)])
    assert len(set(seqs)) == 8
    engine = engine_for(db_url)
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


def test_processes_starting_on_a_new_store_migrate_it_once(home: Path, db_url: str) -> None:
    ctx = multiprocessing.get_context("spawn")
    start = time.time() + 3
    with ctx.Pool(6) as pool:
        applied = pool.starmap(upgrade_at, [(str(home), w, start, db_url) for w in range(6)])
    ran = [a for a in applied if a]
    assert len(ran) == 1, applied  # one process migrated; the others waited, then found it done
    assert ran[0][-1] == HEAD
    engine = engine_for(db_url)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalars().all() == [
            HEAD
        ]
    engine.dispose()
    with open_registry(str(home), "checker", db_url) as reg:
        assert [v.number for v in reg.versions("started")] == list(range(1, 7))
        assert reg.verify_audit().ok
