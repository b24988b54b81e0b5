"""Users, API tokens and roles per project (docs/server.md). These commands always act on
the local store named by MODELVAULT_HOME / MODELVAULT_DB: they are how an operator manages
the database a server runs on."""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Annotated

import typer

from . import output
from .app import Json, app, state

if TYPE_CHECKING:
    from ..service.context import Context

user_app = typer.Typer(help="Users of a shared registry (server mode).", no_args_is_help=True)
token_app = typer.Typer(
    help="API tokens: shown once at creation, only their hash is stored.", no_args_is_help=True
)
member_app = typer.Typer(
    help="Roles per project: viewer, contributor, approver, deployer, admin.",
    no_args_is_help=True,
)
app.add_typer(user_app, name="user")
app.add_typer(token_app, name="token")
app.add_typer(member_app, name="member")

User = Annotated[str, typer.Argument(help="User name.")]
Project = Annotated[str, typer.Argument(help="Project name.")]
Role = Annotated[str, typer.Argument(help="viewer, contributor, approver, deployer or admin.")]


def _ctx() -> Context:
    """The local store's context, whatever registry the other commands would talk to."""
    from ..registry import Registry
    from ..settings import Settings

    settings = Settings.from_env(home=state.home) if state.home else Settings.from_env()
    local = Registry(settings=settings, actor=state.actor, project=state.project)
    if settings.url:
        output.message(
            f"note: acting on the store {local._ctx.store.display_url} directly; "
            "MODELVAULT_URL is not used by user, token and member commands"
        )
    state.registry = local  # closed by the runner
    return local._ctx


@user_app.command("add")
def user_add(
    name: User,
    admin: Annotated[bool, typer.Option("--admin", help="A global admin (every project)")] = False,
    json_: Json = False,
) -> None:
    """Create a user (then give it roles with `member add` and a token with `token create`)."""
    from ..service.identity import create_user

    done = create_user(_ctx(), name, admin=admin)
    if json_:
        output.emit_json(done)
    else:
        output.message(f"created user {done['name']}" + (" (global admin)" if admin else ""))


@user_app.command("list")
def user_list(json_: Json = False) -> None:
    """Every user."""
    from ..service.identity import users

    found = users(_ctx())
    if json_:
        output.emit_json(found)
        return
    for u in found:
        notes = [" global admin" if u["admin"] else ""]
        if u["disabled_at"]:
            notes.append(f" disabled {u['disabled_at']}")
        print(f"{u['name']}{''.join(notes)}  (created {u['created_at']} by {u['created_by']})")


@user_app.command("disable")
def user_disable(name: User, json_: Json = False) -> None:
    """Refuse every token (and OIDC login) of a user from now on; the user stays on record."""
    from ..service.identity import disable_user

    done = disable_user(_ctx(), name)
    if json_:
        output.emit_json(done)
    else:
        output.message(f"disabled user {done['name']}")


@token_app.command("create")
def token_create(
    user: User,
    project: Annotated[
        str | None, typer.Option("--project", help="Only valid for this project")
    ] = None,
    expires: Annotated[
        str | None, typer.Option("--expires", help="Lifetime, e.g. 30d, 12h (at most 366d)")
    ] = None,
    description: Annotated[str, typer.Option("--description", help="What it is for")] = "",
    json_: Json = False,
) -> None:
    """Create an API token for USER and print it once on stdout; only its hash is kept."""
    from ..deploy.spec import parse_duration
    from ..errors import InvalidInput
    from ..service.identity import create_token

    lifetime = None
    if expires is not None:
        seconds = parse_duration(expires, "--expires")
        if seconds <= 0:
            raise InvalidInput("--expires must be longer than 0", field="expires")
        lifetime = timedelta(seconds=seconds)
    token, record = create_token(
        _ctx(), user, project=project, expires_in=lifetime, description=description
    )
    if json_:
        output.emit_json({"token": token, **record})
    else:
        print(token)
    output.message(
        f"token {record['token_id']} for {record['user']}: this is the only time it is shown; "
        "store it now"
    )


@token_app.command("list")
def token_list(
    user: Annotated[str | None, typer.Option("--user", help="Only this user's tokens")] = None,
    json_: Json = False,
) -> None:
    """Tokens (never their secrets): owner, scope, expiry, revocation."""
    from ..service.identity import tokens

    found = tokens(_ctx(), user)
    if json_:
        output.emit_json(found)
        return
    for t in found:
        state_ = f"revoked {t['revoked_at']}" if t["revoked_at"] else ""
        state_ = state_ or (f"expires {t['expires_at']}" if t["expires_at"] else "no expiry")
        scope = f"project {t['project']}" if t["project"] else "all projects"
        note = f"  {t['description']}" if t["description"] else ""
        print(f"{t['token_id']}  {t['user']}  {scope}  {state_}{note}")


@token_app.command("revoke")
def token_revoke(
    token_id: Annotated[str, typer.Argument(help="The token's id (see `token list`).")],
    json_: Json = False,
) -> None:
    """Revoke a token; the next request that presents it is refused."""
    from ..service.identity import revoke_token

    done = revoke_token(_ctx(), token_id)
    if json_:
        output.emit_json(done)
    else:
        output.message(f"revoked token {done['token_id']} of {done['user']}")


@member_app.command("add")
def member_add(project: Project, user: User, role: Role, json_: Json = False) -> None:
    """Give USER a role on PROJECT."""
    from ..service.identity import grant

    done = grant(_ctx(), project, user, role)
    if json_:
        output.emit_json(done)
    else:
        output.message(f"{done['user']} is {done['role']} on {done['project']}")


@member_app.command("rm")
def member_rm(project: Project, user: User, role: Role, json_: Json = False) -> None:
    """Take a role on PROJECT away from USER."""
    from ..service.identity import revoke_role

    done = revoke_role(_ctx(), project, user, role)
    if json_:
        output.emit_json(done)
    else:
        output.message(f"{done['user']} is no longer {done['role']} on {done['project']}")


@member_app.command("list")
def member_list(project: Project, json_: Json = False) -> None:
    """Who holds which role on PROJECT (global admins hold all of them, unlisted)."""
    from ..service.identity import members

    found = members(_ctx(), project)
    if json_:
        output.emit_json(found)
        return
    for m in found:
        print(f"{m['user']}  {m['role']}  (since {m['at']}, granted by {m['by']})")
