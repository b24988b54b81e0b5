"""The immutable version record: how it is written as canonical JSON and read back as a
``Version``. The record's digest is the version's digest, so any edit of a stored record is
detectable."""

from __future__ import annotations

import json
from dataclasses import asdict
from datetime import datetime
from typing import Any

from ..domain import CodeRef, DatasetRef, EnvironmentInfo, Version, as_json, frozen_map
from ..timeutil import from_text

RECORD_FORMAT = "modelvault.version/1"


def make_record(
    *,
    project: str,
    model: str,
    number: int,
    kind: str,
    label: str | None,
    artifact_digest: str,
    size: int,
    file_count: int,
    params: dict[str, Any],
    metrics: dict[str, float],
    tags: dict[str, str],
    datasets: list[DatasetRef],
    code: CodeRef | None,
    environment: EnvironmentInfo | None,
    parents: list[str],
    components: list[str],
    config: dict[str, Any] | None,
    feature_pipeline: str | None,
    inference_config: str | None,
    description: str | None,
    flavor: str | None,
    created_by: str,
    created_at: str,
    run: str | None = None,
) -> dict[str, Any]:
    record = {
        "format": RECORD_FORMAT,
        "project": project,
        "model": model,
        "number": number,
        "kind": kind,
        "label": label,
        "artifact_digest": artifact_digest,
        "size": size,
        "file_count": file_count,
        "params": params,
        "metrics": metrics,
        "tags": tags,
        "datasets": [asdict(d) for d in datasets],
        "code": asdict(code) if code else None,
        "environment": as_json(environment) if environment else None,
        "parents": parents,
        "components": components,
        "config": config,
        "feature_pipeline": feature_pipeline,
        "inference_config": inference_config,
        "description": description,
        "flavor": flavor,
        "created_by": created_by,
        "created_at": created_at,
    }
    if run is not None:  # only when set, so records made before runs existed keep their form
        record["run"] = run
    return record


def _environment(data: dict[str, Any] | None) -> EnvironmentInfo | None:
    if data is None:
        return None
    return EnvironmentInfo(**{**data, "gpus": tuple(data.get("gpus") or ())})


def version_from_row(row: Any, *, stage: str | None = None) -> Version:
    record = json.loads(row.record)
    code = record.get("code")
    config = record.get("config")
    created_at: datetime = from_text(row.created_at)
    return Version(
        project=row.project_name,
        model=row.model_name,
        number=row.number,
        kind=row.kind,
        digest=row.digest,
        artifact_digest=row.artifact_digest,
        created_by=row.created_by,
        created_at=created_at,
        stage=stage or row.stage or "unknown",
        label=row.label,
        size=row.size,
        file_count=row.file_count,
        params=frozen_map(record.get("params")),
        metrics=frozen_map(record.get("metrics")),
        tags=frozen_map(record.get("tags")),
        datasets=tuple(DatasetRef(**d) for d in record.get("datasets") or ()),
        code=CodeRef(**code) if code else None,
        environment=_environment(record.get("environment")),
        parents=tuple(record.get("parents") or ()),
        components=tuple(record.get("components") or ()),
        config=frozen_map(config) if config is not None else None,
        feature_pipeline=record.get("feature_pipeline"),
        inference_config=record.get("inference_config"),
        description=record.get("description"),
        flavor=record.get("flavor"),
        run_id=record.get("run"),
    )
