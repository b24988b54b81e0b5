"""Who is calling, and what they may do: every API route but the health checks asks for a
``Caller``, which authenticates the bearer token (401 otherwise) and hands out a registry
acting as that user only for the projects and permissions the token carries.

Projects are tenants: a caller that may not read a project gets the same 404 for it whether
it exists or not, so nothing about another tenant can be inferred. A caller that may read a
project but lacks a permission gets a 403 naming it; both denials are audited.
"""

from __future__ import annotations

from contextlib import suppress
from dataclasses import dataclass

from fastapi import Request
from starlette.concurrency import run_in_threadpool

from ..errors import Forbidden, NotFound
from ..limits import check_name
from ..registry import Registry
from ..service import identity
from ..service.identity import Principal


@dataclass(slots=True)
class Caller:
    principal: Principal
    base: Registry

    @property
    def user(self) -> str:
        return self.principal.user

    def readable(self) -> frozenset[str] | None:
        """The projects this caller may read (None: every project)."""
        return self.principal.projects("read")

    def read(self, project: str) -> Registry:
        """A registry acting as the caller, once they may read *project* (404 otherwise)."""
        project = check_name(project, what="project name")
        if not self.principal.can(project, "read"):
            with suppress(Forbidden):  # records the denial in the audit log
                identity.authorize(self.base._ctx, self.principal, project, "read")
            raise NotFound(
                f"project {project} does not exist or this token may not see it",
                project=project,
            )
        return self.base._acting_as(self.user, project)

    def need(self, project: str, permission: str) -> Registry:
        """A registry acting as the caller, once they hold *permission* on *project*."""
        reg = self.read(project)
        identity.authorize(self.base._ctx, self.principal, project, permission)
        return reg

    def admin(self) -> Registry:
        """A registry acting as the caller, for server-wide operations (global admins)."""
        identity.authorize_global(self.base._ctx, self.principal)
        return self.base._acting_as(self.user)


def bearer(request: Request) -> str | None:
    header = request.headers.get("authorization")
    if header is None:
        return None
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" else header


async def caller(request: Request) -> Caller:
    """The FastAPI dependency: authenticate the request's bearer token. It runs on the event
    loop (one indexed read), saving every request a hand-off to the thread pool."""
    base: Registry = request.app.state.registry
    token = bearer(request)
    if token is not None and not token.startswith("mvt_"):  # OIDC may fetch the issuer's keys
        principal = await run_in_threadpool(identity.authenticate, base._ctx, token)
    else:
        principal = identity.authenticate(base._ctx, token)
    return Caller(principal=principal, base=base)
