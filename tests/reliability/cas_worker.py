"""A process moving an alias with compare-and-set, retrying when it loses a race."""

from __future__ import annotations

from pathlib import Path

from modelvault import Conflict, Registry, Settings


def bump(home: str, worker: int, rounds: int, db: str) -> int:
    env = {"MODELVAULT_DB": db}
    reg = Registry(settings=Settings.from_env(env=env, home=Path(home), actor=f"w{worker}"))
    conflicts = 0
    for _ in range(rounds):
        while True:
            current = reg.get("cas@counter").number
            target = current % 8 + 1
            try:
                reg.set_alias("cas", "counter", str(target), expect=current)
                break
            except Conflict:
                conflicts += 1
    reg.close()
    return conflicts
