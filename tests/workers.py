"""Entry points for the multi-process tests (importable by spawned processes)."""

from __future__ import annotations

import sys
from pathlib import Path

from modelvault import Registry, Settings


def open_registry(home: str, actor: str, db: str | None = None) -> Registry:
    env = {"MODELVAULT_DB": db} if db else {}
    return Registry(settings=Settings.from_env(env=env, home=Path(home), actor=actor))


def register_many(home: str, worker: int, count: int, scratch: str, db: str) -> list[int]:
    reg = open_registry(home, f"worker{worker}", db)
    numbers = []
    for i in range(count):
        path = Path(scratch) / f"w{worker}-{i}.bin"
        path.write_bytes(f"worker {worker} item {i}".encode())
        v = reg.register(
            "race",
            path,
            capture_code=False,
            capture_environment=False,
            params={"worker": worker, "i": i},
        )
        numbers.append(v.number)
    reg.close()
    return numbers


def _wait_until(start: float) -> None:
    import time

    while time.time() < start:
        time.sleep(0.001)


def promote_one(home: str, number: int, start: float, db: str) -> int:
    reg = open_registry(home, "deployer", db)
    _wait_until(start)
    t = reg.promote(f"race:{number}", "production", reason=f"race {number}")
    reg.close()
    return t.audit_seq


def upgrade_at(home: str, worker: int, start: float, db: str) -> tuple[str, ...]:
    """Migrate a store that may not exist yet at *start*, then use it; returns the
    migrations this process ran."""
    reg = open_registry(home, f"starter{worker}", db)
    _wait_until(start)
    applied = reg.upgrade_schema().applied
    path = Path(home).parent / f"start-{worker}.bin"
    path.write_bytes(b"started %d" % worker)
    reg.register("started", path, capture_code=False, capture_environment=False)
    reg.close()
    return applied


def register_big(home: str, path: str) -> None:
    """Registers one large file; the crash test kills this process at a random moment."""
    reg = open_registry(home, "crasher")
    reg.init()
    print("ready", flush=True)
    reg.register("big", Path(path), capture_code=False, capture_environment=False)
    reg.close()


if __name__ == "__main__":
    register_big(sys.argv[1], sys.argv[2])
