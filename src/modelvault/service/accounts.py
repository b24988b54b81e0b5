"""Users, API tokens and roles per project, as the operator manages them (``modelvault user``,
``token``, ``member``) and the server's admin endpoints call them. Each change commits with
its audit event; a token's secret is shown once and only its SHA-256 is stored.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import string
from collections.abc import Mapping
from datetime import timedelta
from types import MappingProxyType
from typing import Any

from sqlalchemy import Connection, delete, insert, select, update

from ..audit import EventDraft, append
from ..errors import AlreadyExists, Conflict, InvalidInput, NotFound
from ..limits import check_name, check_text
from ..store import schema
from ..timeutil import to_text
from .context import Context

U, T, MB = schema.users, schema.tokens, schema.members

ROLES = ("viewer", "contributor", "approver", "deployer", "admin")
PERMISSIONS = ("read", "register", "log", "approve", "promote", "deploy", "rollback", "admin")
ROLE_PERMISSIONS: Mapping[str, frozenset[str]] = MappingProxyType(
    {
        "viewer": frozenset({"read"}),
        "contributor": frozenset({"read", "register", "log"}),
        "approver": frozenset({"read", "approve"}),
        "deployer": frozenset({"read", "promote", "deploy", "rollback"}),
        "admin": frozenset(PERMISSIONS),
    }
)
USER_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._@+|:-]{0,127}$"
TOKEN_PREFIX = "mvt_"
TOKEN_ID_CHARS = 12
MAX_TOKEN_CHARS = 16384  # room for a large JWT; anything longer is not a credential
BOOTSTRAP_USER = "admin"

_USER = re.compile(USER_PATTERN)
TOKEN_RE = re.compile(rf"^mvt_([a-z0-9]{{{TOKEN_ID_CHARS}}})_([A-Za-z0-9_-]{{43,128}})$")
_TOKEN_ID = re.compile(rf"^[a-z0-9]{{{TOKEN_ID_CHARS}}}$")
_ID_ALPHABET = string.ascii_lowercase + string.digits


def check_permission(permission: str) -> None:
    if permission not in PERMISSIONS:
        raise InvalidInput(
            f"unknown permission {permission!r}: use one of {', '.join(PERMISSIONS)}",
            field="permission",
        )


def check_role(role: str) -> str:
    if role not in ROLES:
        raise InvalidInput(
            f"unknown role {str(role)[:64]!r}: use one of {', '.join(ROLES)}", field="role"
        )
    return role


def check_user(name: str) -> str:
    if not isinstance(name, str) or not _USER.match(name):
        shown = repr(str(name)[:80])
        raise InvalidInput(
            f"invalid user name {shown}: use 1-128 letters, digits, '.', '_', '@', '+', '|', "
            "':' or '-', starting with a letter or digit",
            field="user",
        )
    return name


def secret_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode("ascii")).hexdigest()


def user_row(conn: Connection, name: str) -> Any:
    row = conn.execute(select(U).where(U.c.name == name)).first()
    if row is None:
        raise NotFound(f"user {name!r} does not exist", user=name)
    return row


# -- users ------------------------------------------------------------------------------------


def _user_json(row: Any) -> dict[str, Any]:
    return {
        "name": row.name,
        "admin": bool(row.admin),
        "created_by": row.created_by,
        "created_at": row.created_at,
        "disabled_at": row.disabled_at,
    }


def create_user_in(conn: Connection, ctx: Context, name: str, admin: bool) -> dict[str, Any]:
    if conn.execute(select(U.c.id).where(U.c.name == name)).first() is not None:
        raise AlreadyExists(f"user {name!r} exists already", user=name)
    at = ctx.now()
    values = {"name": name, "admin": admin, "created_by": ctx.actor, "created_at": to_text(at)}
    conn.execute(insert(U).values(**values))
    append(
        conn,
        EventDraft("user.create", f"user:{name}", after={"user": name, "admin": admin}),
        actor=ctx.actor,
        at=at,
    )
    return _user_json(conn.execute(select(U).where(U.c.name == name)).one())


def create_user(ctx: Context, name: str, *, admin: bool = False) -> dict[str, Any]:
    check_user(name)
    with ctx.store.write() as conn:
        return create_user_in(conn, ctx, name, bool(admin))


def disable_user(ctx: Context, name: str) -> dict[str, Any]:
    """Refuse every token of *name* from now on (and its OIDC logins); kept for the record."""
    check_user(name)
    with ctx.store.write() as conn:
        row = user_row(conn, name)
        if row.disabled_at is not None:
            raise Conflict(f"user {name!r} is already disabled", user=name)
        at = ctx.now()
        conn.execute(update(U).where(U.c.name == name).values(disabled_at=to_text(at)))
        append(
            conn,
            EventDraft(
                "user.disable", f"user:{name}", before={"disabled": False}, after={"disabled": True}
            ),
            actor=ctx.actor,
            at=at,
        )
        return _user_json(conn.execute(select(U).where(U.c.name == name)).one())


def users(ctx: Context) -> list[dict[str, Any]]:
    with ctx.store.read() as conn:
        return [_user_json(r) for r in conn.execute(select(U).order_by(U.c.name))]


# -- tokens -----------------------------------------------------------------------------------


def _token_json(row: Any) -> dict[str, Any]:
    return {
        "token_id": row.token_id,
        "user": row.user,
        "project": row.project,
        "description": row.description,
        "created_by": row.created_by,
        "created_at": row.created_at,
        "expires_at": row.expires_at,
        "revoked_at": row.revoked_at,
        "revoked_by": row.revoked_by,
    }


def create_token_in(
    conn: Connection,
    ctx: Context,
    user: str,
    project: str | None,
    expires_in: timedelta | None,
    description: str,
) -> tuple[str, dict[str, Any]]:
    owner = user_row(conn, user)
    if owner.disabled_at is not None:
        raise Conflict(f"user {user!r} is disabled", user=user)
    at = ctx.now()
    token_id = "".join(secrets.choice(_ID_ALPHABET) for _ in range(TOKEN_ID_CHARS))
    secret = secrets.token_urlsafe(32)
    expires_at = to_text(at + expires_in) if expires_in is not None else None
    conn.execute(
        insert(T).values(
            token_id=token_id,
            user=user,
            secret_sha256=secret_hash(secret),
            project=project,
            description=description,
            created_by=ctx.actor,
            created_at=to_text(at),
            expires_at=expires_at,
        )
    )
    record = _token_json(conn.execute(select(T).where(T.c.token_id == token_id)).one())
    append(
        conn,
        EventDraft(
            "token.create",
            f"token:{token_id}",
            project=project,
            after={k: record[k] for k in ("token_id", "user", "project", "expires_at")},
            reason=description or None,
        ),
        actor=ctx.actor,
        at=at,
    )
    return f"{TOKEN_PREFIX}{token_id}_{secret}", record


def create_token(
    ctx: Context,
    user: str,
    *,
    project: str | None = None,
    expires_in: timedelta | None = None,
    description: str = "",
) -> tuple[str, dict[str, Any]]:
    """A new token for *user*: the plaintext (shown once, never stored) and its record."""
    check_user(user)
    if project is not None:
        check_name(project, what="project name")
    if expires_in is not None and expires_in <= timedelta(0):
        raise InvalidInput("a token's lifetime must be positive", field="expires")
    check_text(description, limit="description_chars", what="description")
    with ctx.store.write() as conn:
        return create_token_in(conn, ctx, user, project, expires_in, description)


def tokens(ctx: Context, user: str | None = None) -> list[dict[str, Any]]:
    query = select(T).order_by(T.c.created_at, T.c.id)
    with ctx.store.read() as conn:
        if user is not None:
            user_row(conn, check_user(user))
            query = query.where(T.c.user == user)
        return [_token_json(r) for r in conn.execute(query)]


def revoke_token(ctx: Context, token_id: str) -> dict[str, Any]:
    if not isinstance(token_id, str) or not _TOKEN_ID.match(token_id):
        raise InvalidInput(
            f"invalid token id {str(token_id)[:40]!r}: it is the {TOKEN_ID_CHARS} characters "
            "after 'mvt_' (see `modelvault token list`)",
            field="token_id",
        )
    with ctx.store.write() as conn:
        row = conn.execute(select(T).where(T.c.token_id == token_id)).first()
        if row is None:
            raise NotFound(f"token {token_id} does not exist", token_id=token_id)
        if row.revoked_at is not None:
            raise Conflict(f"token {token_id} was revoked at {row.revoked_at}", token_id=token_id)
        at = ctx.now()
        conn.execute(
            update(T)
            .where(T.c.token_id == token_id)
            .values(revoked_at=to_text(at), revoked_by=ctx.actor)
        )
        append(
            conn,
            EventDraft(
                "token.revoke",
                f"token:{token_id}",
                project=row.project,
                before={"revoked": False},
                after={"token_id": token_id, "user": row.user, "revoked": True},
            ),
            actor=ctx.actor,
            at=at,
        )
        return _token_json(conn.execute(select(T).where(T.c.token_id == token_id)).one())


# -- roles per project ------------------------------------------------------------------------


def grant(ctx: Context, project: str, user: str, role: str) -> dict[str, Any]:
    check_name(project, what="project name")
    check_role(role)
    check_user(user)
    with ctx.store.write() as conn:
        user_row(conn, user)
        held = conn.execute(
            select(MB.c.id).where(MB.c.project == project, MB.c.user == user, MB.c.role == role)
        ).first()
        if held is not None:
            raise AlreadyExists(
                f"{user} already has the role {role} on project {project!r}",
                project=project,
                user=user,
                role=role,
            )
        at = ctx.now()
        conn.execute(
            insert(MB).values(
                project=project, user=user, role=role, created_by=ctx.actor, created_at=to_text(at)
            )
        )
        append(
            conn,
            EventDraft("member.grant", f"{project}:{user}", project=project, after={"role": role}),
            actor=ctx.actor,
            at=at,
        )
    return {"project": project, "user": user, "role": role, "by": ctx.actor, "at": to_text(at)}


def revoke_role(ctx: Context, project: str, user: str, role: str) -> dict[str, Any]:
    check_name(project, what="project name")
    check_role(role)
    check_user(user)
    with ctx.store.write() as conn:
        gone = conn.execute(
            delete(MB).where(MB.c.project == project, MB.c.user == user, MB.c.role == role)
        )
        if gone.rowcount != 1:
            raise NotFound(
                f"{user} does not have the role {role} on project {project!r}",
                project=project,
                user=user,
                role=role,
            )
        at = ctx.now()
        append(
            conn,
            EventDraft(
                "member.revoke", f"{project}:{user}", project=project, before={"role": role}
            ),
            actor=ctx.actor,
            at=at,
        )
    return {"project": project, "user": user, "role": role, "by": ctx.actor, "at": to_text(at)}


def members(ctx: Context, project: str) -> list[dict[str, Any]]:
    check_name(project, what="project name")
    with ctx.store.read() as conn:
        rows = conn.execute(
            select(MB).where(MB.c.project == project).order_by(MB.c.user, MB.c.role)
        ).all()
    return [
        {
            "project": r.project,
            "user": r.user,
            "role": r.role,
            "by": r.created_by,
            "at": r.created_at,
        }
        for r in rows
    ]
