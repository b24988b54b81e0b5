"""The ``modelvault`` command: parse, call one Registry method, render. Nothing else."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import typer

from .. import __version__
from ..errors import InvalidInput
from . import output, render

if TYPE_CHECKING:
    from ..registry import Registry

app = typer.Typer(
    name="modelvault",
    help="Version, track, evaluate, approve, promote, roll back and audit machine-learning models.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
alias_app = typer.Typer(
    help="Named pointers to versions, moved with compare-and-set.", no_args_is_help=True
)
audit_app = typer.Typer(help="The append-only, hash-chained audit log.")
db_app = typer.Typer(
    help="The metadata database: its schema revision and migrations.", no_args_is_help=True
)
app.add_typer(alias_app, name="alias")
app.add_typer(audit_app, name="audit")
app.add_typer(db_app, name="db")

Json = Annotated[bool, typer.Option("--json", help="Print one JSON document to stdout.")]


class _State:
    actor: str | None = None
    project: str | None = None
    home: Path | None = None
    registry: Registry | None = None


state = _State()


def registry() -> Registry:
    if state.registry is None:
        from ..registry import Registry

        state.registry = Registry(state.home, actor=state.actor, project=state.project)
    return state.registry


def _version_callback(value: bool) -> None:
    if value:
        print(f"modelvault {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    actor: Annotated[
        str | None,
        typer.Option(
            "--actor", envvar="MODELVAULT_ACTOR", help="Who is acting (default: the OS user)."
        ),
    ] = None,
    project: Annotated[
        str | None,
        typer.Option(
            "--project", "-p", envvar="MODELVAULT_PROJECT", help="Project (default: default)."
        ),
    ] = None,
    home: Annotated[
        Path | None,
        typer.Option(
            "--home", envvar="MODELVAULT_HOME", help="Store directory (default ~/.modelvault)."
        ),
    ] = None,
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version_callback, is_eager=True, help="Print the version."
        ),
    ] = False,
) -> None:
    state.actor, state.project, state.home = actor, project, home


def _pairs(values: list[str] | None, what: str, numeric: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in values or []:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise InvalidInput(f"--{what} {item!r}: use KEY=VALUE", field=what)
        if key in out:
            raise InvalidInput(f"--{what} {key!r} is given twice", field=what)
        if numeric:
            try:
                out[key] = float(raw)
            except ValueError:
                raise InvalidInput(
                    f"--{what} {key}={raw!r}: the value must be a number", field=what
                ) from None
        else:
            out[key] = raw
    return out


@app.command()
def init(json_: Json = False) -> None:
    """Create the registry store (metadata database, at the schema this release expects, and
    blob store) if it does not exist."""
    where = registry().init()
    if json_:
        output.emit_json(where)
    else:
        output.message(f"registry ready at {where['home']}")


@app.command()
def register(
    model: Annotated[str, typer.Argument(help="Model name, or PROJECT/MODEL.")],
    path: Annotated[
        Path | None,
        typer.Argument(help="File or directory to register (a config file for --kind config)."),
    ] = None,
    param: Annotated[list[str] | None, typer.Option("--param", help="KEY=VALUE")] = None,
    metric: Annotated[list[str] | None, typer.Option("--metric", help="KEY=NUMBER")] = None,
    tag: Annotated[list[str] | None, typer.Option("--tag", help="KEY=VALUE")] = None,
    dataset: Annotated[
        list[str] | None, typer.Option("--dataset", help="[NAME=]DIGEST, PATH or pinned URI")
    ] = None,
    parent: Annotated[
        list[str] | None, typer.Option("--parent", help="REF it derives from")
    ] = None,
    component: Annotated[
        list[str] | None, typer.Option("--component", help="REF a system version pins")
    ] = None,
    label: Annotated[str | None, typer.Option("--label", help="Semantic version label")] = None,
    kind: Annotated[str, typer.Option("--kind", help="model, config or system")] = "model",
    description: Annotated[str | None, typer.Option("--description")] = None,
    flavor: Annotated[str | None, typer.Option("--flavor", help="sklearn, onnx, python")] = None,
    feature_pipeline: Annotated[str | None, typer.Option("--feature-pipeline")] = None,
    inference_config: Annotated[
        str | None, typer.Option("--inference-config", help="REF of a config version")
    ] = None,
    seed: Annotated[int | None, typer.Option("--seed", help="Random seed used")] = None,
    no_capture: Annotated[
        bool, typer.Option("--no-capture", help="Do not capture git state and environment.")
    ] = False,
    run: Annotated[
        str | None,
        typer.Option(
            "--run",
            help="Run ID: carry its params, final metrics, datasets, code and environment; "
            "PATH defaults to the model it logged",
        ),
    ] = None,
    json_: Json = False,
) -> None:
    """Register a new immutable version from PATH (its bytes are copied into the store)."""
    project, _, name = model.rpartition("/")
    with output.progress_bars(not json_, "storing") as progress:
        version = registry().register(
            name,
            path,
            kind=kind,
            params=_pairs(param, "param"),
            metrics=_pairs(metric, "metric", numeric=True),
            tags=_pairs(tag, "tag"),
            datasets=dataset or [],
            parents=parent or [],
            components=component or [],
            label=label,
            description=description,
            flavor=flavor,
            feature_pipeline=feature_pipeline,
            inference_config=inference_config,
            seed=seed,
            capture_code=not no_capture,
            capture_environment=not no_capture,
            project=project or None,
            progress=progress,
            run=run,
        )
    if json_:
        output.emit_json(version)
    else:
        output.message(f"registered {version.model}:{version.number}  {version.digest}")


@app.command()
def models(json_: Json = False) -> None:
    """List the models of the project."""
    found = registry().models()
    if json_:
        output.emit_json(found)
    else:
        render.models(found)


@app.command()
def versions(model: str, json_: Json = False) -> None:
    """List the versions of MODEL with their stages."""
    project, _, name = model.rpartition("/")
    found = registry().versions(name, project=project or None)
    if json_:
        output.emit_json(found)
    else:
        render.versions(found)


@app.command()
def show(
    ref: Annotated[str, typer.Argument(help="MODEL:N, MODEL@ALIAS, MODEL@production ...")],
    at: Annotated[str | None, typer.Option("--at", help="As of this time (ISO 8601 or 2d)")] = None,
    json_: Json = False,
) -> None:
    """Show one version: its record, stage, approvals."""
    reg = registry()
    version = reg.get(ref, at=at)
    if json_:
        output.emit_json(version)
    else:
        render.version(version, reg.approvals(version.ref))


@app.command()
def history(model: str, json_: Json = False) -> None:
    """Stage history of MODEL: which version held which stage, from when to when."""
    intervals = registry().stage_history(model)
    if json_:
        output.emit_json(intervals)
    else:
        render.stage_history(intervals)


@app.command()
def search(
    query: Annotated[str, typer.Argument(help="e.g. 'metrics.auc > 0.9 and tags.team = \"x\"'")],
    all_projects: Annotated[bool, typer.Option("--all-projects")] = False,
    limit: Annotated[int, typer.Option("--limit", min=1, max=100000)] = 1000,
    json_: Json = False,
) -> None:
    """Find versions with the search language (docs/search.md)."""
    found = registry().search(query, all_projects=all_projects, limit=limit)
    if json_:
        output.emit_json(found)
    else:
        render.versions(found)


@app.command()
def promote(
    ref: str,
    to: Annotated[str, typer.Option("--to", help="Target stage")],
    reason: Annotated[str | None, typer.Option("--reason", help="Required for production")] = None,
    override: Annotated[
        bool,
        typer.Option(
            "--override", help="Admin only: pass failed metric rules (not approvals); audited"
        ),
    ] = False,
    json_: Json = False,
) -> None:
    """Move a version to another stage if its gate passes (production needs a reason)."""
    done = registry().promote(ref, to, reason=reason, override=override)
    if json_:
        output.emit_json(done)
    else:
        render.transition(done)


@app.command()
def approve(
    ref: str, comment: Annotated[str | None, typer.Option("--comment")] = None, json_: Json = False
) -> None:
    """Approve a version (for production); its creator cannot."""
    done = registry().approve(ref, comment=comment)
    if json_:
        output.emit_json(done)
    else:
        output.message(f"{done.approver} approved {done.model}:{done.version}")


@app.command()
def rollback(
    model: str,
    reason: Annotated[str, typer.Option("--reason", help="Why (required)")],
    to: Annotated[
        int | None, typer.Option("--to", help="Earlier production version number")
    ] = None,
    env: Annotated[
        str | None,
        typer.Option("--env", "-e", help="Roll the deployment in this environment back too"),
    ] = None,
    feature: Annotated[
        str | None, typer.Option("--feature", help="With --env: only this feature's route")
    ] = None,
    json_: Json = False,
) -> None:
    """Make the previous production version production again, in one transaction. With
    --env, the deployment's traffic goes back to its previous release (hot standby)."""
    if env is not None:
        if to is not None:
            raise InvalidInput("--to does not combine with --env", field="to")
        dep = registry().rollback_deployment(model, env, reason=reason, feature=feature)
        if json_:
            output.emit_json(dep)
        else:
            arms = ", ".join(f"{a.release} {a.weight:g}%" for a in dep.spec.arms)
            output.message(f"rolled back {dep.name} (revision {dep.revision}): {arms}")
        return
    if feature is not None:
        raise InvalidInput("--feature needs --env", field="feature")
    done = registry().rollback(model, reason=reason, to=to)
    if json_:
        output.emit_json(done)
    else:
        render.transition(done)


@app.command()
def diff(a: str, b: str, json_: Json = False) -> None:
    """Show how version B differs from version A."""
    result = registry().diff(a, b)
    if json_:
        output.emit_json(result)
    else:
        render.diff(result)


@app.command()
def pull(
    ref: str,
    dest: Annotated[Path | None, typer.Argument()] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite")] = False,
    restore: Annotated[
        bool,
        typer.Option(
            "--restore", help="Only bring an archived version back from the cold tier (no DEST)"
        ),
    ] = False,
    json_: Json = False,
) -> None:
    """Write the version's files under DEST, verifying every digest; an archived version is
    restored from the cold tier first."""
    if restore or dest is None:
        if dest is not None or not restore:
            raise InvalidInput("give DEST to pull, or --restore without DEST to only restore")
        _restore(ref, json_)
        return
    with output.progress_bars(not json_, "pulling") as progress:
        result = registry().pull(ref, dest, overwrite=overwrite, progress=progress)
    if json_:
        output.emit_json(result)
    else:
        output.message(
            f"pulled {len(result.files)} file(s), {result.bytes} bytes, into "
            f"{result.dest} (verified)"
        )


def _restore(ref: str, json_: bool) -> None:
    done = registry().restore(ref)
    if json_:
        output.emit_json(done)
    elif done["restored"]:
        output.message(
            f"restored {done['version']} from the cold tier: {done['blobs']} blob(s), "
            f"{done['bytes']:,} bytes (verified)"
        )
    else:
        output.message(f"{done['version']} is not archived; nothing to restore")


@app.command("restore")
def restore(ref: str, json_: Json = False) -> None:
    """Bring an archived version's artifact back from the cold tier, every blob verified."""
    _restore(ref, json_)


@alias_app.command("set")
def alias_set(
    model: str,
    alias: str,
    ref: Annotated[str, typer.Argument(help="Version number or REF")],
    expect: Annotated[
        str | None,
        typer.Option(
            "--expect", help="Only if the alias points at this version now ('none': unset)"
        ),
    ] = None,
    json_: Json = False,
) -> None:
    """Point ALIAS of MODEL at a version (compare-and-set with --expect)."""
    done = registry().set_alias(model, alias, ref, expect=_expect(expect))
    if json_:
        output.emit_json(done)
    else:
        output.message(f"{done.model}@{done.alias} -> {done.model}:{done.version}")


@alias_app.command("rm")
def alias_rm(
    model: str,
    alias: str,
    expect: Annotated[str | None, typer.Option("--expect")] = None,
    json_: Json = False,
) -> None:
    """Remove ALIAS from MODEL (its history is kept)."""
    done = registry().remove_alias(model, alias, expect=_expect(expect))
    if json_:
        output.emit_json(done)
    else:
        output.message(f"removed {done.model}@{done.alias} (was {done.model}:{done.version})")


@alias_app.command("history")
def alias_history(
    model: str, alias: Annotated[str | None, typer.Argument()] = None, json_: Json = False
) -> None:
    """Every assignment of the aliases of MODEL, oldest first."""
    found = registry().alias_history(model, alias)
    if json_:
        output.emit_json(found)
    else:
        render.alias_history(found)


def _expect(value: str | None) -> int | Literal["none"] | None:
    if value is None:
        return None
    if value == "none":
        return "none"
    if not value.isdigit():
        raise InvalidInput(f"--expect {value!r}: give a version number or 'none'", field="expect")
    return int(value)


@audit_app.callback(invoke_without_command=True)
def audit_default(ctx: typer.Context) -> None:
    if ctx.invoked_subcommand is None:
        audit_list(
            model=None, actor=None, action=None, since=None, until=None, limit=100, json_=False
        )


@audit_app.command("list")
def audit_list(
    model: Annotated[str | None, typer.Option("--model")] = None,
    actor: Annotated[str | None, typer.Option("--by", help="Only events by this actor")] = None,
    action: Annotated[
        str | None, typer.Option("--action", help="e.g. stage.promote, stage.*")
    ] = None,
    since: Annotated[str | None, typer.Option("--since")] = None,
    until: Annotated[str | None, typer.Option("--until")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1)] = 100,
    json_: Json = False,
) -> None:
    """List audit events, oldest first (filters combine)."""
    events = registry().audit(
        model=model, actor=actor, action=action, since=since, until=until, limit=limit
    )
    if json_:
        output.emit_json(events)
    else:
        render.audit(events)


@audit_app.command("verify")
def audit_verify(json_: Json = False) -> None:
    """Check the hash chain, the Merkle tree, checkpoint signatures and the witness; exit 8
    naming the first bad sequence number and the check that failed."""
    result = registry().verify_audit()
    if json_:
        output.emit_json(result)
    if not result.ok:
        from ..errors import AuditChainBroken

        where = f" at event {result.first_bad_seq}" if result.first_bad_seq else ""
        head = "audit chain broken" if result.check in (None, "chain") else "audit check failed"
        raise AuditChainBroken(
            f"{head}{where} ({result.check or 'chain'}): {result.problem}",
            seq=result.first_bad_seq,
        )
    if not json_:
        output.message(
            f"audit log verified: {result.events} events, head {result.head_hash}, "
            f"{result.checkpoints} signed checkpoints agree with the tree and the witness"
        )


@db_app.command("upgrade")
def db_upgrade(json_: Json = False) -> None:
    """Migrate the metadata database to this release's schema (safe to run from many places
    at once: one migrates, the others wait)."""
    done = registry().upgrade_schema()
    if json_:
        output.emit_json(done)
        return
    steps = [f"existing schema recorded as revision {done.stamped}"] if done.stamped else []
    if done.applied:
        steps.append(f"applied {', '.join(done.applied)}")
    steps.append(f"now at {done.revision}" if steps else f"already at {done.revision} (head)")
    output.message(f"{done.db}: {'; '.join(steps)}")


@db_app.command("current")
def db_current(json_: Json = False) -> None:
    """Print the schema revision of the metadata database, changing nothing."""
    found = registry().schema_status()
    if json_:
        output.emit_json(found)
    else:
        print(found.revision or "none")
        output.message(f"{found.db}: {found.state} (this release's head is {found.head})")


# Command groups kept in their own modules register themselves on ``app`` when imported.
from . import deploy as _deploy  # noqa: E402
from . import events as _events  # noqa: E402
from . import identity as _identity  # noqa: E402
from . import retention as _retention  # noqa: E402
from . import server as _server  # noqa: E402
from . import sync as _sync  # noqa: E402
from . import tracking as _tracking  # noqa: E402
from . import transparency as _transparency  # noqa: E402

del _deploy, _events, _identity, _retention, _server, _sync, _tracking, _transparency
