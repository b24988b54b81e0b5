"""A process doing every kind of state change in a loop until it is killed."""

from __future__ import annotations

import contextlib
import os
import random
import sys
from pathlib import Path

from modelvault import ModelVaultError, Registry, Settings


def main(home: str, seed: int) -> None:
    rng = random.Random(seed)
    # a checkpoint every few events, so that kills also land while one is signed and witnessed
    env = {"MODELVAULT_CHECKPOINT_EVERY": "5"}
    alice = Registry(settings=Settings.from_env(env=env, home=Path(home), actor="alice"))
    bob = Registry(settings=Settings.from_env(env=env, home=Path(home), actor="bob"))
    alice.init()
    scratch = Path(home).parent / f"scratch-{os.getpid()}"
    scratch.mkdir(exist_ok=True)
    print("ready", flush=True)
    n = 0
    while True:
        n += 1
        versions = alice.versions("crash") if alice.models() else []
        op = rng.choice(
            ["register", "register", "promote", "approve", "ship", "rollback", "alias", "track"]
        )
        try:
            if op == "register" or not versions:
                f = scratch / f"{n}.bin"
                f.write_bytes(os.urandom(rng.choice([100, 5000, 300_000])))
                alice.register(
                    "crash",
                    f,
                    params={"n": n},
                    metrics={"m": rng.random()},
                    capture_code=False,
                    capture_environment=n % 5 == 0,
                )
            elif op == "promote":
                v = rng.choice([v for v in versions if v.stage == "development"] or versions)
                alice.promote(v.ref, "staging")
            elif op == "approve":
                bob.approve(rng.choice(versions).ref, comment=f"ok {n}")
            elif op == "ship":
                staged = [v for v in versions if v.stage == "staging"]
                if staged:
                    v = rng.choice(staged)
                    with contextlib.suppress(ModelVaultError):
                        bob.approve(v.ref)
                    alice.promote(v.ref, "production", reason=f"ship {n}")
            elif op == "track":
                with alice.start_run(
                    experiment="crash", capture_code=False, capture_environment=False
                ) as run:
                    run.log_params({"n": n})
                    points = rng.choice([10, 1000, 6000])
                    run.log_batch([("loss", rng.random(), i) for i in range(points)])
            elif op == "rollback":
                alice.rollback("crash", reason=f"rollback {n}")
            else:
                current = [
                    h for h in alice.alias_history("crash", "champion") if h.valid_to is None
                ]
                expect = current[0].version if current else "none"
                alice.set_alias(
                    "crash", "champion", str(rng.choice(versions).number), expect=expect
                )
        except ModelVaultError:
            pass  # refused operations (illegal transitions, no rollback target) are fine


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
