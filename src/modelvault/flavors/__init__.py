"""Flavors: how a version's files become a model that predicts. Detected from the files
(``.skops``, ``.onnx``) or declared at registration; each flavor verifies nothing itself —
the caller materializes files from the blob store, digests checked, before loading.

Pickle is refused unless explicitly trusted; code is run only when the caller trusts it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import Forbidden, InvalidInput

Predict = Callable[[Sequence[Sequence[Any]]], Sequence[Any]]


@dataclass(frozen=True, slots=True)
class LoadedModel:
    flavor: str
    model: Any
    predict: Predict


def _plain(values: Any) -> list[Any]:
    """Predictions as plain Python values (NumPy arrays and scalars converted)."""
    out = values.tolist() if hasattr(values, "tolist") else list(values)
    return list(out)


def _single(root: Path, suffix: str) -> Path:
    found = sorted(
        p for p in ([root] if root.is_file() else root.rglob(f"*{suffix}")) if p.suffix == suffix
    )
    if len(found) != 1:
        raise InvalidInput(
            f"expected exactly one {suffix} file in the version, found {len(found)}",
            field="flavor",
        )
    return found[0]


def _load_sklearn(root: Path, trusted: bool) -> LoadedModel:
    import skops.io

    path = _single(root, ".skops")
    untrusted = skops.io.get_untrusted_types(file=path)
    foreign = [t for t in untrusted if not t.startswith(("sklearn.", "numpy.", "scipy."))]
    if foreign and not trusted:
        raise Forbidden(
            f"{path.name} holds types outside scikit-learn, NumPy and SciPy "
            f"({', '.join(foreign[:5])}); load it only if you trust its author (trusted=True)",
            types=foreign,
        )
    model = skops.io.load(path, trusted=untrusted)
    return LoadedModel("sklearn", model, lambda rows: _plain(model.predict(rows)))


def _load_pickle(root: Path, trusted: bool) -> LoadedModel:
    if not trusted:
        raise Forbidden(
            "pickle files run arbitrary code when loaded; refusing unless trusted=True",
            flavor="pickle",
        )
    import pickle

    path = _single(root, ".pkl")
    with open(path, "rb") as fh:
        model = pickle.load(fh)
    return LoadedModel("pickle", model, lambda rows: _plain(model.predict(rows)))


LOADERS: dict[str, Callable[[Path, bool], LoadedModel]] = {
    "sklearn": _load_sklearn,
    "pickle": _load_pickle,
}


def load(root: Path, flavor: str | None, *, trusted: bool = False) -> LoadedModel:
    """Load the model whose files are under *root* with *flavor*."""
    if flavor is None:
        raise InvalidInput(
            "the version has no flavor (no .skops or .onnx file, none declared); "
            "register it with --flavor",
            field="flavor",
        )
    loader = LOADERS.get(flavor)
    if loader is None:
        raise InvalidInput(
            f"flavor {flavor!r} cannot be loaded here; loadable: {', '.join(sorted(LOADERS))}",
            field="flavor",
        )
    return loader(root, trusted)
