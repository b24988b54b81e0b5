"""Identity and access on every metadata backend: users, API tokens (only a hash stored,
expiry, revocation, malformed input), roles per project, scoped tokens, audited denials, the
first admin (once, even when two servers start at once) and the CLI that manages them."""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Callable
from datetime import timedelta

import pytest
from sqlalchemy import select

from modelvault import (
    AlreadyExists,
    Conflict,
    Forbidden,
    InvalidInput,
    NotFound,
    Registry,
    Unauthenticated,
)
from modelvault.service import identity as ident
from modelvault.service.context import Context
from modelvault.store import schema

from .clitool import CLI
from .conftest import FakeClock

# written out by hand, not derived from the code under test
MATRIX: dict[str, set[str]] = {
    "viewer": {"read"},
    "contributor": {"read", "register", "log"},
    "approver": {"read", "approve"},
    "deployer": {"read", "promote", "deploy", "rollback"},
    "admin": {"read", "register", "log", "approve", "promote", "deploy", "rollback", "admin"},
}


def _ctx(reg: Registry) -> Context:
    return reg._ctx


def _events(reg: Registry, action: str) -> list[dict[str, object]]:
    return [
        {"actor": e.actor, "subject": e.subject, "project": e.project, "after": e.after}
        for e in reg.audit(action=action)
    ]


def _everything_stored(ctx: Context) -> str:
    """Every row of the identity tables and the audit log, as one text."""
    out = []
    with ctx.store.read() as conn:
        for table in (schema.users, schema.tokens, schema.members, schema.audit_events):
            out.extend(repr(tuple(row)) for row in conn.execute(select(table)))
    return "\n".join(out)


def test_a_token_authenticates_as_its_user_and_only_its_hash_is_stored(reg: Registry) -> None:
    ctx = _ctx(reg)
    ident.create_user(ctx, "bob")
    token, record = ident.create_token(ctx, "bob", description="ci pipeline")
    assert token.startswith(f"mvt_{record['token_id']}_")
    secret = token[len("mvt_") + 12 + 1 :]
    assert len(secret) >= 43
    assert set(record) == {
        "token_id",
        "user",
        "project",
        "description",
        "created_by",
        "created_at",
        "expires_at",
        "revoked_at",
        "revoked_by",
    }
    who = ident.authenticate(ctx, token)
    assert (who.user, who.token_id, who.project, who.global_admin) == (
        "bob",
        record["token_id"],
        None,
        False,
    )
    assert dict(who.roles) == {}
    stored = _everything_stored(ctx)
    assert secret not in stored and token not in stored
    with ctx.store.read() as conn:
        digest = conn.execute(
            select(schema.tokens.c.secret_sha256).where(
                schema.tokens.c.token_id == record["token_id"]
            )
        ).scalar_one()
    assert digest == hashlib.sha256(secret.encode()).hexdigest()
    # listing never shows a secret either
    assert "secret" not in json.dumps(ident.tokens(ctx)).lower()
    assert secret not in json.dumps(ident.tokens(ctx, "bob"))
    assert [e["subject"] for e in _events(reg, "token.create")] == [f"token:{record['token_id']}"]
    assert _events(reg, "user.create")[0]["after"] == {"user": "bob", "admin": False}


def test_two_tokens_never_share_an_id_or_a_secret(reg: Registry) -> None:
    ctx = _ctx(reg)
    ident.create_user(ctx, "bob")
    made = [ident.create_token(ctx, "bob")[0] for _ in range(20)]
    assert len(set(made)) == 20
    assert len({t[4:16] for t in made}) == 20


def test_an_expired_token_is_refused_saying_so(reg: Registry, clock: FakeClock) -> None:
    ctx = _ctx(reg)
    ident.create_user(ctx, "bob")
    token, record = ident.create_token(ctx, "bob", expires_in=timedelta(hours=1))
    assert record["expires_at"] is not None
    clock.advance(minutes=59)
    assert ident.authenticate(ctx, token).user == "bob"
    clock.advance(minutes=2)
    with pytest.raises(Unauthenticated, match=r"expired at") as caught:
        ident.authenticate(ctx, token)
    assert caught.value.reason == "expired"
    with pytest.raises(InvalidInput, match="positive"):
        ident.create_token(ctx, "bob", expires_in=timedelta(0))


def test_revocation_takes_effect_on_the_next_request(
    reg: Registry, as_user: Callable[[str], Registry]
) -> None:
    ctx = _ctx(reg)
    server = _ctx(as_user("server"))  # another process's view of the same store
    ident.create_user(ctx, "bob")
    token, record = ident.create_token(ctx, "bob")
    assert ident.authenticate(server, token).user == "bob"
    revoked = ident.revoke_token(ctx, record["token_id"])
    assert (revoked["revoked_by"], revoked["revoked_at"] is not None) == ("alice", True)
    with pytest.raises(Unauthenticated, match="revoked at") as caught:
        ident.authenticate(server, token)
    assert caught.value.reason == "revoked"
    assert _events(reg, "token.revoke")[0]["after"] == {
        "token_id": record["token_id"],
        "user": "bob",
        "revoked": True,
    }
    with pytest.raises(Conflict, match="was revoked"):
        ident.revoke_token(ctx, record["token_id"])
    with pytest.raises(NotFound):
        ident.revoke_token(ctx, "a" * 12)
    with pytest.raises(InvalidInput, match="invalid token id"):
        ident.revoke_token(ctx, "../etc")


def test_a_disabled_user_is_refused(reg: Registry) -> None:
    ctx = _ctx(reg)
    ident.create_user(ctx, "bob")
    token, _ = ident.create_token(ctx, "bob")
    ident.disable_user(ctx, "bob")
    with pytest.raises(Unauthenticated, match="disabled"):
        ident.authenticate(ctx, token)
    with pytest.raises(Conflict, match="disabled"):
        ident.create_token(ctx, "bob")
    assert _events(reg, "user.disable")[0]["subject"] == "user:bob"


@pytest.mark.parametrize(
    ("token", "reason"),
    [
        (None, "missing"),
        ("", "missing"),
        (b"mvt_abcdefghijkl_" + b"A" * 43, "malformed"),
        ("mvt_x", "malformed"),
        ("mvt_abcdefghijkl_" + "A" * 42 + "\x00", "malformed"),
        ("\x00" * 64, "malformed"),
        ("x" * 10_240, "malformed"),
        ("mvt_" + "a" * 10_240, "malformed"),
        ("Bearer mvt_abcdefghijkl_" + "A" * 43, "malformed"),
        ("mvt_ABCDEFGHIJKL_" + "A" * 43, "malformed"),
        ("mvt_abcdefghijkl_" + "A" * 43, "unknown"),
        ("' OR 1=1 --", "malformed"),
    ],
)
def test_missing_malformed_and_unknown_tokens_are_refused(
    reg: Registry, token: str | None, reason: str
) -> None:
    with pytest.raises(Unauthenticated) as caught:
        ident.authenticate(_ctx(reg), token)
    assert caught.value.fields.get("reason") == reason
    assert caught.value.code == "unauthenticated" and caught.value.exit_code == 10
    if isinstance(token, str) and len(token) > 100:
        assert token[:60] not in caught.value.message  # never echoed back


def test_a_known_id_with_a_wrong_secret_reads_like_an_unknown_token(reg: Registry) -> None:
    ctx = _ctx(reg)
    ident.create_user(ctx, "bob")
    token, record = ident.create_token(ctx, "bob")
    forged = token[:17] + ("B" if token[17] != "B" else "C") + token[18:]
    with pytest.raises(Unauthenticated) as wrong:
        ident.authenticate(ctx, forged)
    with pytest.raises(Unauthenticated) as unknown:
        ident.authenticate(ctx, "mvt_zzzzzzzzzzzz" + token[16:])
    assert wrong.value.message == f"unknown token {record['token_id']}"
    assert unknown.value.message == "unknown token zzzzzzzzzzzz"
    assert "bob" not in wrong.value.message


@pytest.mark.parametrize("role", sorted(MATRIX))
def test_each_role_allows_exactly_its_permissions(reg: Registry, role: str) -> None:
    ctx = _ctx(reg)
    ident.create_user(ctx, "bob")
    ident.grant(ctx, "fraud", "bob", role)
    who = ident.authenticate(ctx, ident.create_token(ctx, "bob")[0])
    assert dict(who.roles) == {"fraud": frozenset({role})}
    for permission in ident.PERMISSIONS:
        allowed = permission in MATRIX[role]
        assert who.can("fraud", permission) is allowed, (role, permission)
        assert who.can("other", permission) is False
        if allowed:
            ident.authorize(ctx, who, "fraud", permission)
        else:
            with pytest.raises(Forbidden) as caught:
                ident.authorize(ctx, who, "fraud", permission)
            assert caught.value.message == (
                f"token for bob lacks permission {permission!r} on project 'fraud'"
            )
            assert (caught.value.permission, caught.value.project) == (permission, "fraud")
    assert who.projects("read") == frozenset({"fraud"})
    assert who.projects("promote") == (
        frozenset({"fraud"}) if role in ("deployer", "admin") else frozenset()
    )


def test_roles_on_several_projects_add_up_per_project(reg: Registry) -> None:
    ctx = _ctx(reg)
    ident.create_user(ctx, "bob")
    ident.grant(ctx, "a", "bob", "contributor")
    ident.grant(ctx, "a", "bob", "approver")
    ident.grant(ctx, "b", "bob", "viewer")
    who = ident.authenticate(ctx, ident.create_token(ctx, "bob")[0])
    assert who.can("a", "register") and who.can("a", "approve")
    assert not who.can("b", "register") and who.can("b", "read")
    assert who.projects() == frozenset({"a", "b"})
    assert who.projects("approve") == frozenset({"a"})
    ident.revoke_role(ctx, "a", "bob", "approver")
    again = ident.authenticate(ctx, ident.create_token(ctx, "bob")[0])
    assert not again.can("a", "approve") and again.can("a", "register")
    assert [(m["user"], m["role"]) for m in ident.members(ctx, "a")] == [("bob", "contributor")]
    assert _events(reg, "member.revoke")[0]["subject"] == "a:bob"


def test_a_global_admin_can_do_everything_everywhere(reg: Registry) -> None:
    ctx = _ctx(reg)
    ident.create_user(ctx, "root", admin=True)
    who = ident.authenticate(ctx, ident.create_token(ctx, "root")[0])
    assert who.global_admin and who.projects() is None
    for permission in ident.PERMISSIONS:
        ident.authorize(ctx, who, "any-project", permission)


def test_a_token_scoped_to_one_project_is_denied_on_another(reg: Registry) -> None:
    ctx = _ctx(reg)
    ident.create_user(ctx, "bob")
    ident.create_user(ctx, "root", admin=True)
    for project in ("a", "b"):
        ident.grant(ctx, project, "bob", "deployer")
    scoped = ident.authenticate(ctx, ident.create_token(ctx, "bob", project="a")[0])
    assert scoped.project == "a"
    assert scoped.can("a", "promote") and not scoped.can("b", "read")
    assert scoped.projects() == frozenset({"a"})
    with pytest.raises(Forbidden, match="scoped to project 'a'"):
        ident.authorize(ctx, scoped, "b", "read")
    # the scope binds a global admin's token as well
    admin = ident.authenticate(ctx, ident.create_token(ctx, "root", project="a")[0])
    assert admin.projects() == frozenset({"a"}) and not admin.can("b", "read")
    with pytest.raises(Forbidden):
        ident.authorize(ctx, admin, "b", "read")


def test_a_denial_is_audited_though_the_request_fails(reg: Registry) -> None:
    ctx = _ctx(reg)
    ident.create_user(ctx, "bob")
    ident.grant(ctx, "fraud", "bob", "viewer")
    token, record = ident.create_token(ctx, "bob")
    who = ident.authenticate(ctx, token)
    with pytest.raises(Forbidden):
        ident.authorize(ctx, who, "fraud", "promote")
    denied = list(reg.audit(action="access.denied"))
    assert len(denied) == 1
    event = denied[0]
    assert (event.actor, event.project, event.subject) == ("bob", "fraud", "fraud")
    assert dict(event.after or {}) == {
        "permission": "promote",
        "token_id": record["token_id"],
        "scope": None,
    }
    assert event.reason == "token for bob lacks permission 'promote' on project 'fraud'"
    assert token[17:] not in _everything_stored(ctx)
    assert reg.verify_audit().ok
    # an allowed request writes nothing
    ident.authorize(ctx, who, "fraud", "read")
    assert len(list(reg.audit(action="access.denied"))) == 1


def test_bad_input_is_one_clear_error_and_leaves_no_trace(reg: Registry) -> None:
    ctx = _ctx(reg)
    ident.create_user(ctx, "bob")
    before = len(list(reg.audit()))
    with pytest.raises(InvalidInput, match="use one of viewer, contributor, approver, deployer"):
        ident.grant(ctx, "fraud", "bob", "boss")
    with pytest.raises(NotFound, match="user 'carol' does not exist"):
        ident.grant(ctx, "fraud", "carol", "viewer")
    with pytest.raises(NotFound, match="user 'carol' does not exist"):
        ident.create_token(ctx, "carol")
    with pytest.raises(AlreadyExists):
        ident.create_user(ctx, "bob")
    with pytest.raises(InvalidInput, match="invalid user name"):
        ident.create_user(ctx, "bob; DROP TABLE mv_users")
    with pytest.raises(InvalidInput, match="invalid user name"):
        ident.create_user(ctx, "bo\x00b")
    with pytest.raises(InvalidInput, match="invalid project name"):
        ident.grant(ctx, "../x", "bob", "viewer")
    with pytest.raises(NotFound, match="does not have the role"):
        ident.revoke_role(ctx, "fraud", "bob", "viewer")
    with pytest.raises(InvalidInput, match="unknown permission"):
        ident.Principal("bob", None, None, False).can("fraud", "fly")
    assert len(list(reg.audit())) == before
    ident.grant(ctx, "fraud", "bob", "viewer")
    with pytest.raises(AlreadyExists, match="already has the role viewer"):
        ident.grant(ctx, "fraud", "bob", "viewer")
    assert [u["name"] for u in ident.users(ctx)] == ["bob"]


def test_the_first_admin_is_made_once(reg: Registry) -> None:
    ctx = _ctx(reg)
    token = ident.bootstrap_admin(ctx)
    assert token is not None
    who = ident.authenticate(ctx, token)
    assert (who.user, who.global_admin, who.project) == ("admin", True, None)
    assert ident.bootstrap_admin(ctx) is None
    assert [u["name"] for u in ident.users(ctx)] == ["admin"]
    assert len(ident.tokens(ctx)) == 1


def test_two_servers_starting_at_once_make_one_admin_token(
    as_user: Callable[[str], Registry],
) -> None:
    servers = [_ctx(as_user(f"server{i}")) for i in range(2)]
    barrier = threading.Barrier(2)
    results: list[str | None] = []
    errors: list[BaseException] = []

    def start(ctx: Context) -> None:
        barrier.wait()
        try:
            results.append(ident.bootstrap_admin(ctx))
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=start, args=(s,)) for s in servers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors, errors
    made = [r for r in results if r is not None]
    assert len(results) == 2 and len(made) == 1
    assert len(ident.tokens(servers[0])) == 1
    assert ident.authenticate(servers[1], made[0]).global_admin


@pytest.mark.parametrize("backend", ["sqlite"])  # the query plan is read from SQLite
def test_authentication_reads_the_token_by_its_index(reg: Registry) -> None:
    ctx = _ctx(reg)
    ident.create_user(ctx, "bob")
    ident.authenticate(ctx, ident.create_token(ctx, "bob")[0])
    compiled = ident._BY_TOKEN.compile(ctx.store.engine)
    with ctx.store.read() as conn:
        plan = conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {compiled}", ("abcdefghijkl",)).all()
    details = " | ".join(str(row[-1]) for row in plan)
    assert "SCAN mv_tokens" not in details and "SCAN mv_members" not in details, details
    assert "mv_tokens USING INDEX" in details, details


# -- CLI --------------------------------------------------------------------------------------


def test_cli_manages_users_tokens_and_roles(cli: CLI) -> None:
    code, _, err = cli.run("user", "add", "bob")
    assert code == 0 and "created user bob" in err
    assert cli.json("user", "add", "root", "--admin")["admin"] is True
    assert [u["name"] for u in cli.json("user", "list")] == ["bob", "root"]
    code, out, err = cli.run(
        "token", "create", "bob", "--project", "fraud", "--expires", "30d", "--description", "ci"
    )
    assert code == 0, err
    token = out.strip()
    assert token.startswith("mvt_") and "only time it is shown" in err and token not in err
    listed = cli.json("token", "list", "--user", "bob")
    assert [(t["project"], t["description"]) for t in listed] == [("fraud", "ci")]
    assert token[17:] not in json.dumps(listed)
    token_id = listed[0]["token_id"]
    code, out, _ = cli.run("token", "list")
    assert token_id in out and "project fraud" in out
    code, _, err = cli.run("member", "add", "fraud", "bob", "deployer")
    assert code == 0 and "bob is deployer on fraud" in err
    assert [(m["user"], m["role"]) for m in cli.json("member", "list", "fraud")] == [
        ("bob", "deployer")
    ]
    reg = Registry(actor="server")
    try:
        who = ident.authenticate(reg._ctx, token)
        assert (who.user, who.project, who.can("fraud", "promote")) == ("bob", "fraud", True)
    finally:
        reg.close()
    code, _, err = cli.run("member", "rm", "fraud", "bob", "deployer")
    assert code == 0 and "no longer deployer" in err
    assert cli.json("member", "list", "fraud") == []
    revoked = cli.json("token", "revoke", token_id)
    assert revoked["revoked_by"] == "alice"
    created = cli.json("token", "create", "root")
    assert created["token"].startswith(f"mvt_{created['token_id']}_")
    actions = [e["action"] for e in cli.json("audit", "list")]
    for action in ("user.create", "token.create", "member.grant", "member.revoke", "token.revoke"):
        assert action in actions


def test_cli_identity_commands_act_on_the_local_store_even_with_a_server_url(
    cli: CLI, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MODELVAULT_URL", "http://127.0.0.1:9")  # nothing listens there
    code, _, err = cli.run("user", "add", "bob")
    assert code == 0, err
    assert "acting on the store" in err and "MODELVAULT_URL is not used" in err
    monkeypatch.delenv("MODELVAULT_URL")
    assert [u["name"] for u in cli.json("user", "list")] == ["bob"]


@pytest.mark.parametrize(
    ("args", "exit_code", "says"),
    [
        (("member", "add", "fraud", "bob", "boss"), 2, "unknown role 'boss': use one of viewer"),
        (("member", "add", "fraud", "carol", "viewer"), 3, "user 'carol' does not exist"),
        (("token", "create", "carol"), 3, "user 'carol' does not exist"),
        (("token", "create", "bob", "--expires", "soon"), 2, "--expires: cannot read 'soon'"),
        (("token", "create", "bob", "--expires", "0s"), 2, "--expires must be longer than 0"),
        (("token", "create", "bob", "--expires", "400d"), 2, "out of range"),
        (("token", "revoke", "zzzzzzzzzzzz"), 3, "token zzzzzzzzzzzz does not exist"),
        (("user", "add", "bob"), 4, "user 'bob' exists already"),
        (("user", "add", "b o b"), 2, "invalid user name"),
    ],
)
def test_cli_bad_input_is_one_line(
    cli: CLI, args: tuple[str, ...], exit_code: int, says: str
) -> None:
    assert cli.run("user", "add", "bob")[0] == 0
    code, out, err = cli.run(*args)
    assert code == exit_code, err
    assert err.count("\n") == 1 and says in err and "Traceback" not in err
    assert out == ""


def test_server_wide_operations_need_an_unscoped_global_admin(reg: Registry) -> None:
    ctx = _ctx(reg)
    ident.create_user(ctx, "root", admin=True)
    ident.create_user(ctx, "bob")
    ident.grant(ctx, "fraud", "bob", "admin")
    root = ident.authenticate(ctx, ident.create_token(ctx, "root")[0])
    ident.authorize_global(ctx, root)
    ident.authorize(ctx, root, "*", "admin")
    project_admin = ident.authenticate(ctx, ident.create_token(ctx, "bob")[0])
    with pytest.raises(Forbidden) as caught:
        ident.authorize(ctx, project_admin, "*", "admin")
    assert caught.value.message == (
        "token for bob lacks permission 'admin' on the whole registry (global admins only)"
    )
    assert caught.value.fields.get("project") is None
    scoped = ident.authenticate(ctx, ident.create_token(ctx, "root", project="fraud")[0])
    with pytest.raises(Forbidden, match="scoped to one project"):
        ident.authorize_global(ctx, scoped, "register")
    denied = list(reg.audit(action="access.denied"))
    assert [(e.actor, e.project, e.subject) for e in denied] == [
        ("bob", None, "registry"),
        ("root", None, "registry"),
    ]
    assert [dict(e.after or {})["permission"] for e in denied] == ["admin", "register"]
    assert reg.verify_audit().ok
