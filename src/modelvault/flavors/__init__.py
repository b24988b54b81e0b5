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
    # features per input row, when the model says (checked before predicting)
    n_features: int | None = None


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
    width = getattr(model, "n_features_in_", None)
    return LoadedModel(
        "sklearn",
        model,
        lambda rows: _plain(model.predict(rows)),
        int(width) if width is not None else None,
    )


def _load_onnx(root: Path, trusted: bool) -> LoadedModel:
    try:
        import numpy as np
        import onnxruntime
    except ImportError:
        raise InvalidInput(
            "ONNX models need onnxruntime: pip install 'modelvault[onnx]'", field="flavor"
        ) from None
    path = _single(root, ".onnx")
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    try:
        session = onnxruntime.InferenceSession(
            str(path), options, providers=["CPUExecutionProvider"]
        )
    except Exception as exc:  # onnxruntime raises its own untyped errors for bad files
        raise InvalidInput(
            f"{path.name} is not a loadable ONNX model: {exc}", field="flavor"
        ) from None
    first = session.get_inputs()[0]
    shape = first.shape
    width = shape[1] if len(shape) == 2 and isinstance(shape[1], int) else None
    name = first.name
    dtype = np.int64 if "int64" in first.type else np.float32

    def predict(rows: Sequence[Sequence[Any]]) -> list[Any]:
        out = session.run(None, {name: np.asarray(rows, dtype=dtype)})[0]
        return _plain(out)

    return LoadedModel("onnx", session, predict, width)


def _load_python(root: Path, trusted: bool) -> LoadedModel:
    """A ``.py`` entry point defining ``predict(rows)``, or ``load(root)`` returning an object
    with ``predict``; run only when the project marks its code trusted."""
    if not trusted:
        raise Forbidden(
            "python-flavor models run their own code; refusing unless the project marks its "
            "code trusted (policy: trusted_code = true)",
            flavor="python",
        )
    import importlib.util
    import uuid

    path = _single(root, ".py")
    spec = importlib.util.spec_from_file_location(f"modelvault_entry_{uuid.uuid4().hex}", path)
    if spec is None or spec.loader is None:
        raise InvalidInput(f"cannot import {path.name}", field="flavor")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    target: Any = module.load(root) if hasattr(module, "load") else module
    if not callable(getattr(target, "predict", None)):
        raise InvalidInput(f"{path.name} defines no predict(rows)", field="flavor")
    width = getattr(target, "N_FEATURES", None) or getattr(target, "n_features_in_", None)
    return LoadedModel(
        "python",
        target,
        lambda rows: _plain(target.predict(rows)),
        int(width) if width is not None else None,
    )


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
    "onnx": _load_onnx,
    "python": _load_python,
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
