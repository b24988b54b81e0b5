"""Processes racing alias compare-and-set, on every metadata backend: no update is lost,
history is one chain."""

from __future__ import annotations

import itertools
import multiprocessing
from pathlib import Path

from modelvault import Registry, Settings

from .cas_worker import bump
from .conftest import scaled
from .invariants import check_store


def test_alias_cas_is_never_lost(tmp_path: Path, home: Path, db_url: str) -> None:
    env = {"MODELVAULT_DB": db_url}
    reg = Registry(settings=Settings.from_env(env=env, home=home, actor="setup"))
    for i in range(8):
        f = tmp_path / f"{i}.bin"
        f.write_bytes(b"%d" % i)
        reg.register("cas", f, capture_code=False, capture_environment=False)
    reg.set_alias("cas", "counter", "1")
    workers, rounds = 6, scaled(ci=15, full=60)
    with multiprocessing.get_context("spawn").Pool(workers) as pool:
        pool.starmap(bump, [(str(home), w, rounds, db_url) for w in range(workers)])
    history = reg.alias_history("cas", "counter")
    assert len(history) == 1 + workers * rounds  # every successful CAS is one interval
    for earlier, later in itertools.pairwise(history):
        assert later.version == earlier.version % 8 + 1, "an update was based on a stale read"
        assert earlier.valid_to == later.valid_from
    events = reg.audit(action="alias.set", limit=None)
    assert len(events) == len(history)
    for event in events[1:]:
        assert event.before is not None and event.after is not None
        assert event.after["version"] == event.before["version"] % 8 + 1
    reg.close()
    check_store(home, db=db_url)
