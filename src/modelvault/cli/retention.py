"""Retention commands: deleting artifacts, pruning, legal holds, garbage collection."""

from __future__ import annotations

from typing import Annotated

import typer

from ..deploy.spec import parse_duration
from . import output
from .app import Json, app, registry

retention_app = typer.Typer(help="The retention policy file (docs/gc.md).", no_args_is_help=True)
app.add_typer(retention_app, name="retention")

hold_app = typer.Typer(
    help="Legal holds: a held version's artifact cannot be deleted.", no_args_is_help=True
)
app.add_typer(hold_app, name="hold")

Reason = Annotated[str, typer.Option("--reason", help="Why (written in the audit log)")]


@app.command("delete-artifact")
def delete_artifact(
    ref: Annotated[str, typer.Argument()], reason: Reason, json_: Json = False
) -> None:
    """Delete a version's artifact; its record and audit history stay. Refused for versions in
    production, deployed, held, or in production or deployed within the retention window
    (docs/gc.md). `gc` frees the bytes."""
    done = registry().delete_artifact(ref, reason=reason)
    if json_:
        output.emit_json(done)
    else:
        output.message(f"deleted the artifact of {done['version']}; `modelvault gc` frees it")


@app.command("prune")
def prune(
    model: Annotated[str, typer.Argument()],
    keep_last: Annotated[int, typer.Option("--keep-last", help="Versions to keep")],
    reason: Annotated[str | None, typer.Option("--reason")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only say what would go")] = False,
    json_: Json = False,
) -> None:
    """Delete the artifacts of all but the newest N versions of MODEL (protected versions are
    kept and the output says why)."""
    lines = registry().prune(model, keep_last=keep_last, reason=reason, dry_run=dry_run)
    if json_:
        output.emit_json(lines)
        return
    for line in lines:
        print(f"{line['action']:>12}  {line['version']}  ({line['why']})")
    output.message(f"{sum(1 for x in lines if x['action'] != 'kept')} artifacts affected")


@hold_app.command("add")
def hold_add(ref: Annotated[str, typer.Argument()], reason: Reason, json_: Json = False) -> None:
    """Put a version under a legal hold."""
    done = registry().hold(ref, reason=reason)
    if json_:
        output.emit_json(done)
    else:
        output.message(f"{done['version']} is held")


@hold_app.command("rm")
def hold_rm(ref: Annotated[str, typer.Argument()], reason: Reason, json_: Json = False) -> None:
    """Release a legal hold."""
    done = registry().release_hold(ref, reason=reason)
    if json_:
        output.emit_json(done)
    else:
        output.message(f"{done['version']} is no longer held")


@hold_app.command("list")
def hold_list(json_: Json = False) -> None:
    """Every held version."""
    found = registry().holds()
    if json_:
        output.emit_json(found)
        return
    for h in found:
        print(f"{h['version']}  held by {h['by']} at {h['at']}: {h['reason']}")


@app.command("gc")
def gc(
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Report, delete nothing")] = False,
    grace: Annotated[
        str, typer.Option("--grace", help="Keep blobs younger than this (uploads in flight)")
    ] = "1h",
    json_: Json = False,
) -> None:
    """Mark and sweep the blob store: the only command that deletes blobs."""
    seconds = parse_duration(grace, "--grace")
    sweep = registry().gc(dry_run=dry_run, grace_seconds=seconds)
    if json_:
        output.emit_json(sweep)
        return
    for model, figures in sorted(sweep["per_model"].items()):
        print(f"{model}: {figures['blobs']} blobs, {figures['bytes']:,} bytes")
    verb = "would free" if dry_run else "freed"
    output.message(
        f"gc {verb} {sweep['blobs']} blobs ({sweep['bytes']:,} bytes); kept {sweep['live']} live"
        f" and {sweep['kept_young']} younger than {grace}"
    )


@retention_app.command("apply")
def retention_apply(
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only say what would go")] = False,
    json_: Json = False,
) -> None:
    """Delete the artifacts the retention policy does not keep (their records stay; `gc`
    then frees the bytes), or move them to the cold tier when MODELVAULT_COLD_BLOBS is set."""
    lines = registry().apply_retention(dry_run=dry_run)
    if json_:
        output.emit_json(lines)
        return
    for line in lines:
        print(f"{line['action']:>12}  {line['version']}  ({line['why']})")
    output.message(f"{sum(1 for x in lines if x['action'] != 'kept')} artifacts affected")
