"""Transparency-log commands under `modelvault audit`: checkpoints, the public key, proofs and
the offline bundle."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from . import output
from .app import Json, app, audit_app, registry


@audit_app.command("erase")
def audit_erase(
    actor: Annotated[str, typer.Option("--actor", help="Whose name to erase")],
    reason: Annotated[str, typer.Option("--reason", help="Why (the erasure request)")],
    json_: Json = False,
) -> None:
    """Erase an actor's name from the audit log (personal data): the events keep a hash
    commitment to it and still verify; queries show erased:... instead."""
    done = registry().erase_actor(actor, reason=reason)
    if json_:
        output.emit_json(done)
        return
    output.message(
        f"erased the name from {done['events']} events (audit #{done['audit_seq']}); "
        f"commitment {done['actor_commitment']}, receipt salt {done['receipt_salt']} "
        "(not stored: hand it to whoever asked)"
    )
    if done["kept_in_clear"]:
        output.message(
            f"{done['kept_in_clear']} events from before pseudonymization still name them: "
            "their hashes cover the name itself"
        )


@audit_app.command("checkpoint")
def audit_checkpoint(json_: Json = False) -> None:
    """Sign a checkpoint of the audit log now (tree size, root hash, time)."""
    cp = registry().checkpoint()
    if json_:
        output.emit_json(cp)
    elif cp is None:
        output.message("the audit log is empty: nothing to sign yet")
    else:
        output.message(
            f"checkpoint: {cp['tree_size']} events, root {cp['root']}, key {cp['key_id']}"
        )


@audit_app.command("checkpoints")
def audit_checkpoints(json_: Json = False) -> None:
    """List the signed checkpoints, oldest first."""
    found = registry().checkpoints()
    if json_:
        output.emit_json(found)
        return
    for cp in found:
        print(f"{cp['tree_size']:>10}  {cp['ts']}  {cp['root']}  {cp['key_id']}")


@audit_app.command("public-key")
def audit_public_key() -> None:
    """Print the PEM public key that verifies this log's checkpoints."""
    sys.stdout.write(registry().audit_public_key().decode("ascii"))


@audit_app.command("proof")
def audit_proof(
    seq: Annotated[int, typer.Argument(help="Audit sequence number")],
    tree_size: Annotated[
        int | None, typer.Option("--size", help="Checkpoint tree size (default: the newest)")
    ] = None,
) -> None:
    """Print the inclusion proof of one event against a signed checkpoint (JSON)."""
    output.emit_json(registry().inclusion_proof(seq, tree_size=tree_size))


@audit_app.command("consistency")
def audit_consistency(
    old: Annotated[int, typer.Argument(help="Older checkpoint's tree size")],
    new: Annotated[int, typer.Argument(help="Newer checkpoint's tree size")],
) -> None:
    """Print the proof that one checkpointed log is a prefix of a later one (JSON)."""
    output.emit_json(registry().consistency_proof(old, new))


@audit_app.command("export")
def audit_export(
    out: Annotated[Path, typer.Option("--out", help="New directory for the bundle")],
    model: Annotated[str | None, typer.Option("--model")] = None,
    since: Annotated[str | None, typer.Option("--since")] = None,
    until: Annotated[str | None, typer.Option("--until")] = None,
    json_: Json = False,
) -> None:
    """Write an offline bundle: events, checkpoints, proofs and the public key, checked by
    `python -m modelvault.verify BUNDLE` with no database and no server."""
    summary = registry().export_audit(out, model=model, since=since, until=until)
    if json_:
        output.emit_json(summary)
    else:
        output.message(
            f"wrote {summary['events']} events under {out}, signed at tree size "
            f"{summary['checkpoint']['tree_size']} (key {summary['key_id']}); "
            f"check with: python -m modelvault.verify {out}"
        )


@app.command("explain")
def explain(
    ref: Annotated[str, typer.Argument(help="MODEL@production, MODEL@ALIAS or MODEL:N")],
    env: Annotated[
        str | None, typer.Option("--env", help="Environment whose traffic split to show")
    ] = None,
    at: Annotated[str | None, typer.Option("--at", help="A past time (default: now)")] = None,
    fmt: Annotated[str, typer.Option("--format", help="text, markdown, json or html")] = "text",
) -> None:
    """One incident report: which version served (and the traffic split), since when and who
    put it there, approvals, gates with their numbers, data/code/params/environment, the diff
    against the previous production version, rollbacks around that time, and an audit proof
    for every fact cited."""
    from ..explain import render

    if fmt not in ("text", "markdown", "json", "html"):
        from ..errors import InvalidInput

        raise InvalidInput(f"--format {fmt!r}: use text, markdown, json or html", field="format")
    sys.stdout.write(render(registry().explain(ref, env=env, at=at), fmt))
