"""``seed_everything``: seed Python's, NumPy's and (when installed) PyTorch's random number
generators, and remember the seed so runs and versions record it."""

from __future__ import annotations

import importlib.util
import os
import random
from typing import Any

_last: dict[str, Any] = {}


def seed_everything(seed: int) -> dict[str, Any]:
    """Seed every generator available here; returns what was seeded. The seed is recorded on
    the active run (tag ``modelvault.seed``) and on runs started afterwards."""
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**32:
        from ..errors import InvalidInput

        raise InvalidInput("seed must be a whole number from 0 to 2**32-1", field="seed")
    seeded = ["random"]
    random.seed(seed)
    os.environ["PYTHONHASHSEED"] = str(seed)  # reaches child processes, not this one
    if importlib.util.find_spec("numpy") is not None:
        import numpy

        numpy.random.seed(seed)
        seeded.append("numpy")
    if importlib.util.find_spec("torch") is not None:
        import torch

        torch.manual_seed(seed)
        if torch.cuda.is_available():
            torch.cuda.manual_seed_all(seed)
        seeded.append("torch")
    _last.clear()
    _last.update(seed=seed, libraries=seeded)
    from ..tracking.active import active_run

    run = active_run()
    if run is not None:
        run.set_tags({"modelvault.seed": str(seed), "modelvault.seeded": ",".join(seeded)})
    return dict(_last)


def last_seed() -> int | None:
    value = _last.get("seed")
    return int(value) if value is not None else None
