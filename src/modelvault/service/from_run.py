"""From run to version: fill a registration request with what a run recorded (params, final
metrics, datasets, code, environment, seed) and link the version to the run."""

from __future__ import annotations

import math
import tempfile
from dataclasses import replace
from pathlib import Path

from ..domain import DatasetRef
from ..errors import InvalidInput
from ..manifest import safe_dest_path
from .context import Context
from .runs import get_run, run_blobs
from .versions import RegisterRequest

MODEL_PREFIX = "model/"


def materialize_run_model(ctx: Context, run_id: str, project: str) -> Path:
    """The files a run logged under ``model/`` (autolog's fitted model), copied out and
    verified, in a fresh temporary directory."""
    run = get_run(ctx, run_id, project)
    files = [a for a in run.artifacts if a.path.startswith(MODEL_PREFIX)]
    if not files:
        raise InvalidInput(
            f"run {run.id} logged no model under {MODEL_PREFIX!r}; give the PATH to register",
            field="path",
        )
    dest = Path(tempfile.mkdtemp(prefix="mv-run-model-"))
    for artifact in files:
        ctx.blobs.copy_to(artifact.digest, safe_dest_path(dest, artifact.path[len(MODEL_PREFIX) :]))
    return dest


def request_from_run(
    ctx: Context, req: RegisterRequest, run_id: str, project: str
) -> RegisterRequest:
    run = get_run(ctx, run_id, project)
    params = {**run.params, **req.params}
    if req.metrics:
        metrics = dict(req.metrics)
    else:
        bad = sorted(k for k, v in run.metrics.items() if not math.isfinite(v))
        if bad:
            raise InvalidInput(
                f"metric {bad[0]!r} of run {run.id} ended at {run.metrics[bad[0]]}; version "
                "metrics must be finite: pass metrics= (--metric) to choose what to carry",
                field="metric",
            )
        metrics = {k: v for k, v in run.metrics.items() if not k.startswith("system/")}
    datasets = list(req.datasets) + [
        DatasetRef(
            name=i.snapshot.name,
            system=i.snapshot.system,
            uri=i.snapshot.uri,
            digest=i.snapshot.digest,
            role=i.role,
        )
        for i in run.inputs
    ]
    seed = req.seed
    if seed is None and "modelvault.seed" in run.tags:
        seed = int(run.tags["modelvault.seed"])
    environment = run.environment
    if environment is not None and seed is not None:
        environment = replace(environment, seed=seed)
    tags = {k: v for k, v in run.tags.items() if not k.startswith("modelvault.")}
    tags.update(req.tags)
    return replace(
        req,
        params=params,
        metrics=metrics,
        tags=tags,
        datasets=datasets,
        seed=seed,
        code=run.code,
        environment=environment,
        extra_blobs=[*req.extra_blobs, *run_blobs(ctx, run.id, project)],
        run_id=run.id,
        # the version describes how the run made it, not the process registering it now
        capture_code=False,
        capture_environment=False,
    )
