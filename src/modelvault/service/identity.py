"""Who may do what in server mode (docs/server.md): turning a presented token into a
Principal, checking its permission on a project (and auditing denials), and the first admin.

API tokens read ``mvt_<token_id>_<secret>``. ``authenticate`` runs on every request: one
indexed query by token id, nothing cached, so a revocation takes effect on the next request.
Bearer JWTs from an OIDC issuer are verified in ``oidc.py``; their roles come from the same
table. Users, tokens and roles are managed in ``accounts.py`` (re-exported here).
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from sqlalchemy import bindparam, func, select

from ..audit import EventDraft, append
from ..errors import Forbidden, Unauthenticated
from ..limits import check_name
from ..store import lean, schema
from ..timeutil import from_text
from .accounts import (
    BOOTSTRAP_USER,
    MAX_TOKEN_CHARS,
    PERMISSIONS,
    ROLE_PERMISSIONS,
    ROLES,
    TOKEN_PREFIX,
    TOKEN_RE,
    check_permission,
    create_token,
    create_token_in,
    create_user,
    create_user_in,
    disable_user,
    grant,
    members,
    revoke_role,
    revoke_token,
    secret_hash,
    tokens,
    users,
)
from .context import Context

__all__ = [
    "PERMISSIONS",
    "ROLES",
    "Principal",
    "authenticate",
    "authorize",
    "authorize_global",
    "bootstrap_admin",
    "create_token",
    "create_user",
    "disable_user",
    "grant",
    "members",
    "revoke_role",
    "revoke_token",
    "tokens",
    "users",
]

U, T, MB = schema.users, schema.tokens, schema.members
WHOLE_REGISTRY = "*"  # the project authorize() takes for server-wide operations


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a request acts as: the user, the token it came with and the roles it holds."""

    user: str
    token_id: str | None  # None for OIDC principals
    project: str | None  # the token's project scope (None: not scoped)
    global_admin: bool
    roles: Mapping[str, frozenset[str]] = field(default_factory=lambda: MappingProxyType({}))

    def can(self, project: str, permission: str) -> bool:
        check_permission(permission)
        if self.project is not None and project != self.project:
            return False
        if self.global_admin:
            return True
        held = self.roles.get(project, ())
        return any(permission in ROLE_PERMISSIONS.get(r, frozenset()) for r in held)

    def projects(self, permission: str = "read") -> frozenset[str] | None:
        """The projects this principal has *permission* on; None means all of them."""
        check_permission(permission)
        if self.global_admin:
            return None if self.project is None else frozenset({self.project})
        return frozenset(p for p in self.roles if self.can(p, permission))


# -- authentication and authorization ---------------------------------------------------------

# One statement per request: the token, its user and the user's roles, by the token id's
# unique index (members by their user index).
_BY_TOKEN = (
    select(
        T.c.user,
        T.c.secret_sha256,
        T.c.project.label("scope"),
        T.c.expires_at,
        T.c.revoked_at,
        U.c.admin,
        U.c.disabled_at,
        MB.c.project,
        MB.c.role,
    )
    .select_from(T.join(U, U.c.name == T.c.user).outerjoin(MB, MB.c.user == T.c.user))
    .where(T.c.token_id == bindparam("token_id"))
)
_BY_USER = (
    select(U.c.admin, U.c.disabled_at, MB.c.project, MB.c.role)
    .select_from(U.outerjoin(MB, MB.c.user == U.c.name))
    .where(U.c.name == bindparam("user"))
)


def _roles(rows: Sequence[Any]) -> Mapping[str, frozenset[str]]:
    held: dict[str, set[str]] = {}
    for r in rows:
        if r.project is not None:
            held.setdefault(r.project, set()).add(r.role)
    return MappingProxyType({p: frozenset(rs) for p, rs in held.items()})


def authenticate(ctx: Context, token: str | None) -> Principal:
    """The principal a presented token stands for; Unauthenticated says why it does not."""
    if token is None or token == "":
        raise Unauthenticated(
            "no token given: an API token (mvt_...) or an OIDC token is needed", reason="missing"
        )
    if not isinstance(token, str):
        raise Unauthenticated("malformed token: not text", reason="malformed")
    if len(token) > MAX_TOKEN_CHARS:
        raise Unauthenticated("malformed token: too long", reason="malformed")
    if not token.startswith(TOKEN_PREFIX):
        if ctx.settings.oidc_issuer:
            return _authenticate_oidc(ctx, token)
        raise Unauthenticated(
            "malformed token: modelvault tokens read mvt_<id>_<secret>", reason="malformed"
        )
    match = TOKEN_RE.match(token)
    if match is None:
        raise Unauthenticated(
            "malformed token: modelvault tokens read mvt_<id>_<secret>", reason="malformed"
        )
    token_id, secret = match.groups()
    with ctx.store.read(snapshot=False) as conn:
        rows = lean.run(conn, _BY_TOKEN, {"token_id": token_id}).all()
    # an unknown id and a wrong secret read the same: neither says whether the id exists
    if not rows or not hmac.compare_digest(rows[0].secret_sha256, secret_hash(secret)):
        raise Unauthenticated(f"unknown token {token_id}", token_id=token_id, reason="unknown")
    row = rows[0]
    if row.revoked_at is not None:
        raise Unauthenticated(
            f"token {token_id} was revoked at {row.revoked_at}",
            token_id=token_id,
            reason="revoked",
        )
    if row.expires_at is not None and ctx.now() >= from_text(row.expires_at):
        raise Unauthenticated(
            f"token {token_id} expired at {row.expires_at}", token_id=token_id, reason="expired"
        )
    if row.disabled_at is not None:
        raise Unauthenticated(
            f"token {token_id} belongs to a disabled user", token_id=token_id, reason="disabled"
        )
    return Principal(
        user=row.user,
        token_id=token_id,
        project=row.scope,
        global_admin=bool(row.admin),
        roles=_roles(rows),
    )


def _authenticate_oidc(ctx: Context, token: str) -> Principal:
    from .oidc import verifier_for

    user = verifier_for(ctx.settings).user(token, now=ctx.now())
    with ctx.store.read(snapshot=False) as conn:
        rows = conn.execute(_BY_USER, {"user": user}).all()
    # an identity the issuer vouches for but nobody granted anything: authenticated, powerless
    if rows and rows[0].disabled_at is not None:
        raise Unauthenticated(f"user {user!r} is disabled", reason="disabled")
    admin = bool(rows[0].admin) if rows else False
    return Principal(user=user, token_id=None, project=None, global_admin=admin, roles=_roles(rows))


def _who(principal: Principal) -> str:
    return f"token for {principal.user}" if principal.token_id else f"OIDC user {principal.user}"


def _deny(
    ctx: Context, principal: Principal, project: str | None, permission: str, message: str
) -> Forbidden:
    """Audit a denial in its own transaction (it stays recorded though the request fails)."""
    with ctx.store.write() as conn:
        append(
            conn,
            EventDraft(
                "access.denied",
                project or "registry",
                project=project,
                after={
                    "permission": permission,
                    "token_id": principal.token_id,
                    "scope": principal.project,
                },
                reason=message,
            ),
            actor=principal.user,
            at=ctx.now(),
        )
    return Forbidden(message, permission=permission, project=project, user=principal.user)


def authorize(ctx: Context, principal: Principal, project: str, permission: str) -> None:
    """Return when *principal* may do *permission* on *project* (``"*"``: the registry as a
    whole, for global admins only); otherwise audit the denial and raise Forbidden naming the
    permission and the project."""
    if project == WHOLE_REGISTRY:
        authorize_global(ctx, principal, permission)
        return
    check_name(project, what="project name")
    if principal.can(project, permission):
        return
    message = f"{_who(principal)} lacks permission {permission!r} on project {project!r}"
    if principal.project is not None and principal.project != project:
        message += f" (the token is scoped to project {principal.project!r})"
    raise _deny(ctx, principal, project, permission, message)


def authorize_global(ctx: Context, principal: Principal, permission: str = "admin") -> None:
    """Return when *principal* is a global admin acting with an unscoped credential (what
    server-wide operations such as managing users and tokens need); otherwise audit the
    denial and raise Forbidden."""
    check_permission(permission)
    if principal.global_admin and principal.project is None:
        return
    message = f"{_who(principal)} lacks permission {permission!r} on the whole registry " + (
        "(the token is scoped to one project)" if principal.global_admin else "(global admins only)"
    )
    raise _deny(ctx, principal, None, permission, message)


def bootstrap_admin(ctx: Context) -> str | None:
    """On a store with no users: create the global admin ``admin`` and a token for it, and
    return the token (print it once). Otherwise None. Writers are serialized by the store,
    so of several servers starting at once exactly one creates the token."""
    with ctx.store.write() as conn:
        if conn.execute(select(func.count()).select_from(U)).scalar_one():
            return None
        create_user_in(conn, ctx, BOOTSTRAP_USER, True)
        plaintext, _ = create_token_in(
            conn, ctx, BOOTSTRAP_USER, None, None, "created at first start"
        )
    return plaintext
