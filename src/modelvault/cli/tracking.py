"""Tracking commands: runs, dataset snapshots, evaluations, behavioural compare, gates and
lineage. Like every command: parse, call one Registry method, render."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from ..errors import GateFailed, InvalidInput
from . import output
from . import render_tracking as render
from .app import Json, app, registry

runs_app = typer.Typer(
    help="Experiment runs: list them (no subcommand) or compare them.",
    invoke_without_command=True,
)
run_app = typer.Typer(help="One run: show it, or read a metric's history.", no_args_is_help=True)
data_app = typer.Typer(help="Dataset snapshots: take, list, show and diff.", no_args_is_help=True)
eval_app = typer.Typer(help="Evaluation reports: record, run and list them.", no_args_is_help=True)
app.add_typer(runs_app, name="runs")
app.add_typer(run_app, name="run")
app.add_typer(data_app, name="data")
app.add_typer(eval_app, name="eval")


@runs_app.callback()
def runs_list(
    ctx: typer.Context,
    experiment: Annotated[str | None, typer.Option("--experiment", "-e")] = None,
    status: Annotated[
        str | None, typer.Option("--status", help="running, finished, failed or killed")
    ] = None,
    limit: Annotated[int, typer.Option("--limit", help="At most this many, newest first")] = 100,
    json_: Json = False,
) -> None:
    """List runs, newest first."""
    if ctx.invoked_subcommand is not None:
        return
    found = registry().runs(experiment=experiment, status=status, limit=limit)
    if json_:
        output.emit_json(found)
    else:
        render.runs(found)


@runs_app.command("compare")
def runs_compare(
    run_ids: Annotated[list[str], typer.Argument(help="Two or more run ids (or prefixes)")],
    json_: Json = False,
) -> None:
    """Params and final metrics of several runs side by side; differing keys are marked."""
    result = registry().compare_runs(run_ids)
    if json_:
        output.emit_json(result)
    else:
        render.comparison(result)


@run_app.command("show")
def run_show(
    run_id: Annotated[str, typer.Argument(help="Run id or a unique prefix of 6+ characters")],
    json_: Json = False,
) -> None:
    """Everything a run recorded: params, final metrics, inputs, artifacts, code, environment."""
    found = registry().get_run(run_id)
    if json_:
        output.emit_json(found)
    else:
        render.run(found)


@run_app.command("metric")
def run_metric(run_id: str, key: str, json_: Json = False) -> None:
    """The full series of one metric of a run."""
    points = registry().metric_history(run_id, key)
    if json_:
        output.emit_json(points)
    else:
        output.table(
            None, ["step", "value", "time"], [(p.step, p.value, p.timestamp) for p in points]
        )


@data_app.command("snapshot")
def data_snapshot(
    path: Annotated[
        str,
        typer.Argument(
            help="File or directory, or a pinned URI (s3://…?versionId=, lakefs://, "
            "delta://…@N, hf://…@REV, dvc://FILE.dvc)"
        ),
    ],
    name: Annotated[
        str | None, typer.Option("--name", help="Dataset name (default: the path's name)")
    ] = None,
    store: Annotated[
        bool, typer.Option("--store", help="Copy the files into the store too (evaluation sets)")
    ] = False,
    json_: Json = False,
) -> None:
    """Snapshot a dataset: a manifest of every file's size and SHA-256, named by its digest."""
    reg = registry()
    if "://" in path:
        if store:
            raise InvalidInput("--store applies to local paths, not external references")
        snap = reg.snapshot_external(path, name=name)
    else:
        with output.progress_bars(not json_, "hashing") as progress:
            total = (
                sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())
                if Path(path).is_dir()
                else 0
            )
            snap = reg.snapshot(path, name=name, store=store, progress=progress(total))
    if json_:
        output.emit_json(snap)
    else:
        output.message(f"snapshot {snap.name}@{snap.digest} ({snap.file_count or 0} files)")


@data_app.command("list")
def data_list(
    name: Annotated[str | None, typer.Option("--name", help="Only this dataset")] = None,
    json_: Json = False,
) -> None:
    """Snapshots of the project, newest first within each name."""
    found = registry().snapshots(name=name)
    if json_:
        output.emit_json(found)
    else:
        render.snapshots(found)


@data_app.command("show")
def data_show(ref: str, json_: Json = False) -> None:
    """One snapshot: NAME (newest), NAME@DIGEST, or a digest or its prefix."""
    found = registry().get_snapshot(ref)
    if json_:
        output.emit_json(found)
    else:
        render.snapshot(found)


@data_app.command("diff")
def data_diff(a: str, b: str, json_: Json = False) -> None:
    """Files added, removed and changed from snapshot A to snapshot B."""
    result = registry().diff_snapshots(a, b)
    if json_:
        output.emit_json(result)
    else:
        render.snapshot_diff(result)


def _read_document(path: Path, what: str) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"cannot read {what} file {path}: {exc}") from None
    if path.suffix == ".jsonl":
        try:
            return [json.loads(line) for line in text.splitlines() if line.strip()]
        except ValueError as exc:
            raise InvalidInput(f"{what} file {path}: {exc}") from None
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise InvalidInput(
            f"{what} file {path} is neither JSON nor YAML: {exc}".splitlines()[0]
        ) from None


@eval_app.command("record")
def eval_record(
    ref: str,
    eval_set: Annotated[
        str, typer.Option("--eval-set", help="Snapshot reference (NAME, NAME@DIGEST, digest)")
    ],
    metrics: Annotated[
        Path,
        typer.Option(
            "--metrics",
            help="JSON/YAML: {metric: value} or {metrics, latency_ms, cost_per_request}",
        ),
    ],
    outputs: Annotated[
        Path | None, typer.Option("--outputs", help="JSON list or JSONL: one output per example")
    ] = None,
    label_column: Annotated[str, typer.Option("--label-column")] = "label",
    json_: Json = False,
) -> None:
    """Attach an immutable evaluation report measured elsewhere to a version."""
    doc = _read_document(metrics, "metrics")
    if not isinstance(doc, dict):
        raise InvalidInput(f"metrics file {metrics} must hold a mapping")
    structured = "metrics" in doc and isinstance(doc["metrics"], dict)
    unknown = set(doc) - {"metrics", "latency_ms", "cost_per_request"} if structured else set()
    if unknown:
        raise InvalidInput(f"metrics file {metrics}: unknown key {sorted(unknown)[0]!r}")
    values = doc["metrics"] if structured else doc
    outs = _read_document(outputs, "outputs") if outputs is not None else None
    if outs is not None and not isinstance(outs, list):
        raise InvalidInput(f"outputs file {outputs} must hold a list")
    report = registry().record_evaluation(
        ref,
        eval_set,
        metrics=values,
        latency_ms=doc.get("latency_ms") if structured else None,
        cost_per_request=doc.get("cost_per_request") if structured else None,
        outputs=outs,
        label_column=label_column,
    )
    if json_:
        output.emit_json(report)
    else:
        output.message(f"report {report.digest} on {report.eval_set_name}@{report.eval_set}")


@eval_app.command("run")
def eval_run(
    ref: str,
    eval_set: Annotated[str, typer.Option("--eval-set", help="Snapshot reference or a path")],
    metric: Annotated[
        list[str] | None, typer.Option("--metric", help="accuracy, f1, auc, rmse, …")
    ] = None,
    label_column: Annotated[str, typer.Option("--label-column")] = "label",
    batch_size: Annotated[int, typer.Option("--batch-size", help="Examples per request")] = 1,
    trusted: Annotated[
        bool, typer.Option("--trusted", help="Load types outside sklearn/NumPy/SciPy")
    ] = False,
    json_: Json = False,
) -> None:
    """Run a version's own model on an evaluation set and record the report."""
    report = registry().evaluate(
        ref,
        eval_set,
        metrics=metric or None,
        label_column=label_column,
        batch_size=batch_size,
        trusted=trusted,
    )
    if json_:
        output.emit_json(report)
    else:
        render.reports([report])


@eval_app.command("list")
def eval_list(ref: str, json_: Json = False) -> None:
    """A version's evaluation reports; OUTDATED when its set has a newer snapshot."""
    found = registry().evaluations(ref)
    if json_:
        output.emit_json(found)
    else:
        render.reports(found)


@app.command()
def compare(
    a: str,
    b: str,
    eval_set: Annotated[str, typer.Option("--eval-set", help="Snapshot reference or a path")],
    top: Annotated[int, typer.Option("--top", help="How many changed examples to show")] = 10,
    label_column: Annotated[str, typer.Option("--label-column")] = "label",
    trusted: Annotated[bool, typer.Option("--trusted")] = False,
    json_: Json = False,
) -> None:
    """Two versions on one evaluation set: metric deltas, agreement, most changed examples."""
    result = registry().compare(
        a, b, eval_set=eval_set, top=top, label_column=label_column, trusted=trusted
    )
    if json_:
        output.emit_json(result)
    else:
        render.behaviour(result)


@app.command()
def gate(
    ref: str,
    to: Annotated[str, typer.Option("--to", help="staging or production")] = "production",
    json_: Json = False,
) -> None:
    """Check the gate REF faces to enter a stage; exits 7 when it fails (for CI jobs)."""
    report = registry().check_gate(ref, to)
    if json_:
        output.emit_json({**_as_dict(report), "passed": report.passed})
    else:
        render.gate(report)
    if not report.passed:
        raise typer.Exit(GateFailed.exit_code)


def _as_dict(value: Any) -> dict[str, Any]:
    from ..domain import as_json

    data: dict[str, Any] = as_json(value)
    return data


@app.command()
def lineage(
    ref: str,
    format_: Annotated[str, typer.Option("--format", help="tree, json or openlineage")] = "tree",
    json_: Json = False,
) -> None:
    """Upstream (run, datasets, code, parents, reports) and downstream of a version."""
    if format_ not in ("tree", "json", "openlineage"):
        raise InvalidInput(f"--format is tree, json or openlineage, not {format_!r}")
    reg = registry()
    if format_ == "openlineage":
        output.emit_json(reg.openlineage(ref))
        return
    graph = reg.lineage(ref)
    if json_ or format_ == "json":
        output.emit_json(graph)
    else:
        render.lineage(graph)
