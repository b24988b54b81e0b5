"""SIGKILL at random moments while a process registers, approves, promotes, rolls back,
moves aliases and logs runs: after every kill the store opens and every invariant holds."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from .conftest import scaled
from .invariants import check_store

ROOT = Path(__file__).parent.parent.parent


def test_random_kills_across_operations(tmp_path: Path) -> None:
    home = tmp_path / "home"
    rng = random.Random(20261122)
    kills = scaled(ci=100, full=300)
    killed = 0
    for trial in range(kills):
        proc = subprocess.Popen(
            [sys.executable, "-m", "tests.reliability.driver", str(home), str(trial)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
        )
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == b"ready"
        time.sleep(rng.uniform(0.0, 0.4))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            killed += 1
        proc.wait()
        proc.stdout.close()
        check_store(home, verify_all_blobs=trial % 20 == 0)
    counts = check_store(home, verify_all_blobs=True)
    assert killed == kills, "the driver must still be running when it is killed"
    assert counts["versions"] > 0 and counts["events"] > counts["versions"]
    assert counts["metric_points"] > 0, "the driver never got to log metrics"
    assert counts["checkpoints"] > 0, "no checkpoint was ever signed between the kills"
