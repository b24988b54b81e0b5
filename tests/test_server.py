"""The server: tokens and roles, tenancy through every read endpoint, the error envelope,
transfers (digests, resumable chunks, cut-off uploads) and bad input, over real HTTP."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import socket
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from modelvault import Forbidden, IntegrityError, NotFound, Settings
from modelvault.domain import FileEntry
from modelvault.errors import StoreError, Unauthenticated
from modelvault.manifest import manifest_bytes
from modelvault.remote import INLINE_FILE, RemoteRegistry
from modelvault.service import identity

from .conftest import FakeClock, write_model
from .server_fixtures import LiveServer, live_server, pool_calls


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def test_health_needs_no_token_and_everything_else_does(server: LiveServer) -> None:
    with httpx.Client(base_url=server.url) as raw:
        assert raw.get("/healthz").json() == {"status": "ok"}
        assert raw.get("/readyz").json()["status"] == "ready"
        missing = raw.get("/api/v1/projects/default/models")
    assert missing.status_code == 401
    assert missing.headers["X-Error-Code"] == "unauthenticated"
    assert missing.headers["WWW-Authenticate"] == "Bearer"
    assert missing.json()["error"]["code"] == "unauthenticated"


@pytest.mark.parametrize(
    "token",
    ["", "mvt_", "mvt_x", "mvt_abc_def", "not-a-token", "mvt_\x00_x", "x" * 10_000],
)
def test_malformed_and_unknown_tokens_are_401(server: LiveServer, token: str) -> None:
    server.token("alice")  # a real user exists; these are not its token
    with httpx.Client(base_url=server.url) as raw:
        try:
            answer = raw.get(
                "/api/v1/projects/default/models", headers={"Authorization": f"Bearer {token}"}
            )
        except httpx.LocalProtocolError:  # the client itself refuses a NUL in a header
            return
    assert answer.status_code == 401, answer.text
    assert answer.json()["error"]["code"] == "unauthenticated"


def test_expired_and_revoked_tokens_stop_working(server: LiveServer, clock: FakeClock) -> None:
    from datetime import timedelta

    ctx = server.registry._ctx
    identity.create_user(ctx, "carol")
    identity.grant(ctx, "default", "carol", "viewer")
    short, _ = identity.create_token(ctx, "carol", expires_in=timedelta(hours=1))
    revoked, record = identity.create_token(ctx, "carol")
    with server.api(short) as c:
        assert c.get("/projects/default/models").status_code == 200
    with server.api(revoked) as c:
        assert c.get("/projects/default/models").status_code == 200
    identity.revoke_token(ctx, record["token_id"])
    clock.advance(hours=2)
    for token, word in ((short, "expired"), (revoked, "revoked")):
        with server.api(token) as c:
            answer = c.get("/projects/default/models")
        assert answer.status_code == 401
        assert word in answer.json()["error"]["message"]


def test_remote_sdk_round_trip(server: LiveServer, tmp_path: Path) -> None:
    alice = server.client("alice")
    assert isinstance(alice, RemoteRegistry)
    src = write_model(tmp_path, "m", b"weights" * 1000)
    (src / "sub").mkdir()
    (src / "sub" / "cfg.json").write_text('{"a": 1}')
    v = alice.register("fraud", src, params={"lr": 0.1}, metrics={"auc": 0.9})
    assert (v.number, v.created_by, v.params["lr"]) == (1, "alice", 0.1)
    local = server.registry
    assert local.get("fraud:1") == v  # the same record, the same type
    sent: list[str] = []
    alice._http.on_request.append(lambda method, path: sent.append(method))
    again = alice.register("fraud", src, capture_environment=False)
    assert again.artifact_digest == v.artifact_digest
    assert "PUT" not in sent  # the server had every blob: nothing was uploaded again
    out = alice.pull("fraud:1", tmp_path / "out")
    assert (tmp_path / "out" / "model.bin").read_bytes() == b"weights" * 1000
    assert sorted(out.files) == ["model.bin", "sub/cfg.json"]
    with pytest.raises(NotFound):
        alice.get("fraud:9")
    with pytest.raises(Forbidden):  # four-eyes: the creator cannot approve
        alice.approve("fraud:1")
    bob = server.client("bob")
    assert bob.approve("fraud:1", comment="ok").approver == "bob"
    alice.promote("fraud:1", "staging")
    assert alice.promote("fraud:1", "production", reason="r").to_stage == "production"
    assert [e.action for e in alice.audit(model="fraud")][-1] == "stage.promote"


def test_roles_and_audited_denials(server: LiveServer, tmp_path: Path) -> None:
    ctx = server.registry._ctx
    server.client("alice").register("fraud", write_model(tmp_path, "m", b"1"))
    for user, role in (("vic", "viewer"), ("cora", "contributor"), ("dan", "deployer")):
        identity.create_user(ctx, user)
        identity.grant(ctx, "default", user, role)
    vic = server.remote(identity.create_token(ctx, "vic")[0])
    assert vic.get("fraud:1").number == 1
    with pytest.raises(Forbidden, match="approve"):
        vic.approve("fraud:1")
    with pytest.raises(Forbidden, match="register"):
        vic.register("fraud", write_model(tmp_path, "n", b"2"))
    cora = server.remote(identity.create_token(ctx, "cora")[0])
    assert cora.register("fraud", write_model(tmp_path, "n", b"2")).number == 2
    with pytest.raises(Forbidden, match="promote"):
        cora.promote("fraud:2", "staging")
    dan = server.remote(identity.create_token(ctx, "dan")[0])
    assert dan.promote("fraud:2", "staging").to_stage == "staging"
    denied = server.registry.audit(action="access.denied")
    assert {(e.actor, (e.after or {}).get("permission")) for e in denied} >= {
        ("vic", "approve"),
        ("vic", "register"),
        ("cora", "promote"),
    }


def _read_endpoints(project: str) -> list[str]:
    p = f"/projects/{project}"
    return [
        f"{p}/models",
        f"{p}/models/fraud/versions",
        f"{p}/refs/fraud:1",
        f"{p}/refs/fraud@latest",
        f"{p}/refs/fraud:1/manifest",
        f"{p}/refs/fraud:1/approvals",
        f"{p}/diff?a=fraud:1&b=fraud:1",
        f"{p}/search?q=metrics.auc > 0",
        f"{p}/models/fraud/stages",
        f"{p}/models/fraud/aliases",
        f"{p}/audit",
        f"{p}/events",
        f"{p}/environments",
        f"{p}/deployments",
        f"{p}/deployments?environment=production",
        f"{p}/refs/fraud:1/evaluations",
        f"{p}/refs/fraud:1/gate",
        f"{p}/refs/fraud:1/lineage",
        f"{p}/refs/fraud:1/openlineage",
        f"{p}/snapshots",
        f"{p}/refs/fraud:1/archive",
    ]


def test_a_token_of_project_a_learns_nothing_about_project_b(
    server: LiveServer, tmp_path: Path
) -> None:
    admin = server.client("root")
    secret = write_model(tmp_path, "b", b"project b secret weights")
    vb = admin.register("fraud", secret, project="bank-b", metrics={"auc": 0.9})
    admin.register("fraud", write_model(tmp_path, "a", b"a weights"), project="bank-a")
    ctx = server.registry._ctx
    identity.create_user(ctx, "ann")
    identity.grant(ctx, "bank-a", "ann", "admin")
    identity.grant(ctx, "bank-b", "ann", "viewer")  # the user could, but the token is scoped
    token, _ = identity.create_token(ctx, "ann", project="bank-a")
    with server.api(token) as c:
        for path in _read_endpoints("bank-a"):
            assert c.get(path).status_code == 200, path
        for path in _read_endpoints("bank-b"):
            existing, absent = c.get(path), c.get(path.replace("bank-b", "bank-zz"))
            assert existing.status_code == absent.status_code == 404, path
            body = existing.json()["error"]
            assert body == json.loads(absent.text.replace("bank-zz", "bank-b"))["error"], path
        everywhere = c.get("/search", params={"q": "metrics.auc > 0"}).json()
        assert everywhere == []  # bank-b's version matches, but is not this token's to see
        assert c.post("/blobs/missing", json={"digests": [vb.artifact_digest]}).json() == {
            "missing": [vb.artifact_digest]
        }
        assert c.get(f"/blobs/{vb.artifact_digest}").status_code == 404
        assert c.post("/projects/bank-b/refs/fraud:1/approvals", json={}).status_code == 404
        as_parent = c.post(
            "/projects/bank-a/models/child/versions",
            json={"kind": "system", "components": ["bank-b/fraud:1"]},
        )
        assert as_parent.status_code == 404  # not even as a component of ann's own version
        # naming bank-b's blob in a manifest of ann's own, without ever sending its bytes:
        # refused exactly as a digest stored nowhere, so it neither reads nor reveals it
        nowhere = sha(b"stored nowhere")
        answers = []
        for digest in (vb.artifact_digest, nowhere):
            claim = manifest_bytes([FileEntry("w.bin", 24, digest, 0o644)]).decode()
            answers.append(
                c.post("/projects/bank-a/models/thief/versions", json={"manifest_text": claim})
            )
        assert [a.status_code for a in answers] == [404, 404], [a.text for a in answers]
        assert answers[0].json()["error"]["message"] == answers[1].json()["error"][
            "message"
        ].replace(nowhere, vb.artifact_digest)
        snaps = []
        for digest in (vb.artifact_digest, nowhere):  # nor as a file of a stored snapshot
            claim = manifest_bytes([FileEntry("w.bin", 24, digest, 0o644)]).decode()
            body = {"name": "loot", "manifest_text": claim, "stored": True}
            snaps.append(c.post("/projects/bank-a/snapshots", json=body))
        assert [a.status_code for a in snaps] == [404, 404], [a.text for a in snaps]
        assert snaps[0].json()["error"]["message"] == snaps[1].json()["error"]["message"].replace(
            nowhere, vb.artifact_digest
        )
        run_id = c.post("/projects/bank-a/runs", json={}).json()["id"]
        arts = []
        for digest in (vb.artifact_digest, nowhere):  # nor as an artifact of ann's own run
            files = [{"path": "model/w.bin", "digest": digest, "size": 24}]
            arts.append(c.post(f"/projects/bank-a/runs/{run_id}/artifacts", json={"files": files}))
        assert [a.status_code for a in arts] == [404, 404], [a.text for a in arts]
        assert arts[0].json()["error"]["message"] == arts[1].json()["error"]["message"].replace(
            nowhere, vb.artifact_digest
        )
    assert [m.name for m in admin.models(project="bank-a")] == ["fraud"]
    # whoever holds the same bytes may register them: a file too big to go inline is
    # reported missing (bank-b's copy is not ann's to see), sent once, and then named
    big = os.urandom(INLINE_FILE + 1)
    admin.register("big", write_model(tmp_path, "big-b", big), project="bank-b")
    ann = server.remote(token)
    sent: list[str] = []
    assert isinstance(ann, RemoteRegistry)
    ann._http.on_request.append(lambda method, path: sent.append(f"{method} {path.split('/')[1]}"))
    mine = ann.register("copy", write_model(tmp_path, "big-a", big), project="bank-a")
    assert sent[:2] == ["POST blobs", "PUT blobs"] and sent[-1] == "POST projects", sent
    assert ann.pull(mine.ref, tmp_path / "copy").files == ("model.bin",)
    assert (tmp_path / "copy" / "model.bin").read_bytes() == big


def test_error_envelope_for_unknown_routes_bad_json_and_oversized_bodies(
    server: LiveServer,
) -> None:
    with server.api(server.token("alice")) as c:
        unknown = c.get("/nothing-here")
        bad = c.post(
            "/projects/default/refs/x:1/promote",
            content=b"{not json",
            headers={"Content-Type": "application/json"},
        )
        wrong = c.post("/projects/default/refs/x:1/promote", json={"to": 3, "extra": 1})
        big = c.post(
            "/projects/default/refs/x:1/promote",
            content=b'{"to": "' + b"x" * (17 << 20) + b'"}',
            headers={"Content-Type": "application/json"},
        )
    for answer, status, code in (
        (unknown, 404, "not_found"),
        (bad, 400, "invalid_input"),
        (wrong, 400, "invalid_input"),
        (big, 413, "too_large"),
    ):
        assert answer.status_code == status, answer.text
        assert answer.headers["X-Error-Code"] == code
        assert set(answer.json()) == {"error"}
        assert answer.json()["error"]["code"] == code
        assert answer.json()["error"]["message"]


def test_an_upload_that_does_not_match_its_digest_stores_nothing(server: LiveServer) -> None:
    data = b"the real bytes"
    claimed = sha(b"other bytes")
    with server.api(server.token("alice")) as c:
        answer = c.put(f"/blobs/{claimed}", content=data)
        assert answer.status_code == 422
        assert answer.json()["error"]["code"] == "integrity"
        assert c.put(f"/blobs/{sha(data)}", content=data).status_code == 201
    blobs = server.registry._ctx.blobs
    assert not blobs.exists(claimed)
    assert blobs.exists(sha(data))


def test_an_upload_cut_off_mid_stream_stores_nothing(server: LiveServer) -> None:
    data = b"z" * 100_000
    digest = sha(data)
    host, port = server.url.removeprefix("http://").split(":")
    head = (
        f"PUT /api/v1/blobs/{digest} HTTP/1.1\r\nHost: x\r\n"
        f"Authorization: Bearer {server.token('alice')}\r\n"
        f"Content-Length: {len(data)}\r\n\r\n"
    ).encode()
    with socket.create_connection((host, int(port))) as sock:
        sock.sendall(head + data[:40_000])
    with server.api(server.token("alice")) as c:  # the server is unaffected
        assert c.get("/projects/default/models").status_code == 200
    assert not server.registry._ctx.blobs.exists(digest)
    staging = server.registry._ctx.blobs.root / "tmp"  # bytes go straight beside the blobs
    deadline = time.monotonic() + 15  # the server notices the hang-up on its own time
    while [p for p in staging.iterdir() if p.name.endswith(".partial")]:
        assert time.monotonic() < deadline, "the cut-off upload's spool file was left behind"
        time.sleep(0.05)
    assert not server.registry._ctx.blobs.exists(digest)


def test_a_small_registration_is_one_request(server: LiveServer, tmp_path: Path) -> None:
    """Small files travel inline with the version; a larger one is asked about and uploaded
    first; the environment's package list is asked about once per client, known blobs not
    again."""
    alice = server.client("alice")
    assert isinstance(alice, RemoteRegistry)
    alice.register("fraud", write_model(tmp_path, "a", b"first"))
    sent: list[str] = []
    alice._http.on_request.append(
        lambda method, path: sent.append(f"{method} {path.split('/')[1]}")
    )
    v = alice.register("fraud", write_model(tmp_path, "b", b"second"), metrics={"auc": 0.9})
    assert sent == ["POST projects"], sent
    assert v.environment is not None and v.environment.packages_digest
    assert alice.pull(v.ref, tmp_path / "out").files == ("model.bin",)
    assert (tmp_path / "out" / "model.bin").read_bytes() == b"second"
    sent.clear()
    alice.register("fraud", write_model(tmp_path, "c", b"second"))  # identical bytes
    assert sent == ["POST projects"]
    sent.clear()
    big = os.urandom(INLINE_FILE + 1)
    w = alice.register("fraud", write_model(tmp_path, "d", big))
    assert sent == ["POST blobs", "PUT blobs", "POST projects"], sent
    assert alice.pull(w.ref, tmp_path / "out-d").files == ("model.bin",)
    assert (tmp_path / "out-d" / "model.bin").read_bytes() == big


def test_inline_files_are_stored_only_under_their_own_digest(
    server: LiveServer, tmp_path: Path
) -> None:
    token = server.token("alice")
    blobs = server.registry._ctx.blobs
    good, evil = b"honest bytes", b"other bytes"
    body = {"manifest_text": None, "blobs": {sha(good): base64.b64encode(evil).decode()}}
    with server.api(token) as c:
        answer = c.post("/projects/default/models/m/versions", json=body)
        assert answer.status_code == 422, answer.text
        assert answer.json()["error"]["code"] == "integrity"
        assert "hashes to" in answer.json()["error"]["message"]
        bad = c.post(
            "/projects/default/models/m/versions", json={"blobs": {sha(good): "not base64!"}}
        )
        assert bad.status_code == 400, bad.text
        assert "not valid base64" in bad.json()["error"]["message"]
    assert not blobs.exists(sha(good)) and not blobs.exists(sha(evil))
    assert server.registry.models() == []  # nothing half-registered


def test_chunked_upload_resumes_without_resending_finished_chunks(
    server: LiveServer, tmp_path: Path
) -> None:
    alice = server.client("alice")
    assert isinstance(alice, RemoteRegistry)
    big = tmp_path / "big.bin"
    big.write_bytes(bytes(range(256)) * (3 * 4096 + 100))  # a bit over 3 MiB
    data = big.read_bytes()
    digest, size, chunk = sha(data), len(data), 1 << 20
    blobs = alice._blobs
    sent: list[str] = []
    alice._http.on_request.append(lambda method, path: sent.append(path))
    # the first attempt dies after two chunks
    session = alice._http.call(
        "POST", "/uploads", json={"digest": digest, "size": size, "chunk_size": chunk}
    )
    for index in (0, 1):
        alice._http.call(
            "PUT",
            f"/uploads/{session['id']}/chunks/{index}",
            content=data[index * chunk : (index + 1) * chunk],
        )
    sent.clear()
    result = blobs.upload_chunked(big, digest, size, None, chunk=chunk)
    assert result["digest"] == digest
    chunk_puts = sorted(p.rsplit("/", 1)[1] for p in sent if "/chunks/" in p)
    assert chunk_puts == ["2", "3"]
    assert server.registry._ctx.blobs.read_bytes(digest) == data


def test_chunks_that_do_not_add_up_are_refused(server: LiveServer) -> None:
    data = b"a" * (1 << 20) + b"b" * 10
    with server.api(server.token("alice")) as c:
        s = c.post(
            "/uploads", json={"digest": sha(b"other"), "size": len(data), "chunk_size": 1 << 20}
        ).json()
        c.put(f"/uploads/{s['id']}/chunks/0", content=data[: 1 << 20])
        assert c.post(f"/uploads/{s['id']}/complete").json()["error"]["code"] == "invalid_input"
        c.put(f"/uploads/{s['id']}/chunks/1", content=data[1 << 20 :])
        done = c.post(f"/uploads/{s['id']}/complete")
        assert done.status_code == 422
        wrong = c.put(f"/uploads/{s['id']}/chunks/0", content=b"x")
        assert wrong.status_code == 404  # the failed session is gone
    assert not server.registry._ctx.blobs.exists(sha(b"other"))


@pytest.mark.parametrize("path", ["../evil", "/etc/passwd", "a/../../b", "nul\x00byte"])
def test_a_manifest_with_a_bad_path_is_refused(server: LiveServer, path: str) -> None:
    entry = {"path": path, "size": 1, "digest": sha(b"x"), "mode": 0o644}
    manifest = json.dumps({"files": [entry], "format": 1}).encode()
    with server.api(server.token("alice")) as c:
        c.put(f"/blobs/{sha(b'x')}", content=b"x")
        c.put(f"/blobs/{sha(manifest)}", content=manifest)
        answer = c.post("/projects/default/models/m/versions", json={"manifest": sha(manifest)})
    assert answer.status_code in (400, 422), answer.text
    assert server.registry.models() == []


def test_sql_metacharacters_in_names_and_queries(server: LiveServer, tmp_path: Path) -> None:
    alice = server.client("alice")
    alice.register("m", write_model(tmp_path, "m", b"1"), tags={"team": "o'brien"})
    with server.api(server.token("alice")) as c:
        bad_name = c.get("/projects/default/models/x';DROP TABLE mv_versions;--/versions")
        assert bad_name.status_code in (400, 404)
        query = c.get("/projects/default/search", params={"q": 'tags.team = "o\'brien"'})
        assert [v["model"] for v in query.json()] == ["m"]
        broken = c.get("/projects/default/search", params={"q": "auc > ' OR 1=1 --"})
        assert broken.status_code == 400
    assert alice.get("m:1").number == 1


def test_cli_works_against_a_server(
    server: LiveServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    from modelvault.cli import main

    monkeypatch.setenv("MODELVAULT_URL", server.url)
    monkeypatch.setenv("MODELVAULT_TOKEN", server.token("alice"))
    monkeypatch.setenv("MODELVAULT_HOME", str(tmp_path / "client-home"))
    assert main(["register", "cli-model", str(write_model(tmp_path, "m", b"cli"))]) == 0
    assert main(["show", "cli-model:1", "--json"]) == 0
    out = capsys.readouterr().out
    assert json.loads(out)["created_by"] == "alice"
    assert server.registry.get("cli-model:1").created_by == "alice"
    monkeypatch.setenv("MODELVAULT_TOKEN", "mvt_bad_token")
    assert main(["show", "cli-model:1"]) == Unauthenticated.exit_code
    assert "token" in capsys.readouterr().err


def test_openapi_spec_is_committed_and_current() -> None:
    from modelvault.server.openapi import document

    committed = Path(__file__).parent.parent / "docs" / "openapi.json"
    assert json.loads(committed.read_text()) == document(), (
        "docs/openapi.json is stale: run make docs"
    )


def test_remote_errors_keep_their_class(server: LiveServer) -> None:
    alice = server.client("alice")
    with pytest.raises(IntegrityError):
        alice._blobs.transport.call("PUT", f"/blobs/{sha(b'a')}", content=b"b")


def test_webhooks_through_the_server_deliver_retry_and_dead_letter(
    settings: Settings, clock: FakeClock, tmp_path: Path
) -> None:
    import time

    from .test_events import Receiver

    good, bad = Receiver(), Receiver()
    bad.plan = lambda _: 500
    try:
        with live_server(settings, clock, lifespan="on") as server:
            alice = server.client("alice")
            created = alice.add_webhook("ci", good.url, events=["version.*"])
            assert created.secret and created.webhook.name == "ci"
            alice.add_webhook("broken", bad.url, max_attempts=2)
            v = alice.register("m", write_model(tmp_path, "m", b"1"))
            deadline = time.monotonic() + 20
            while not good.received and time.monotonic() < deadline:
                time.sleep(0.05)
            doc = good.received[0]["doc"]
            assert doc["event"]["action"] == "version.register"
            assert doc["event"]["subject"] == v.ref
            while not alice.dead_letters("broken") and time.monotonic() < deadline:
                clock.advance(hours=1)  # past every backoff
                time.sleep(0.1)
            assert alice.dead_letters("broken")  # retried, then dead-lettered
            assert alice.get("m:1").number == 1  # the server is unaffected
            assert [w.name for w in alice.webhooks()] == ["broken", "ci"]
            bob = server.remote(server.token("bob", admin=False))
            with pytest.raises(NotFound):  # bob holds no role in the project
                bob.webhooks()
    finally:
        good.close()
        bad.close()


def test_event_stream_long_poll_over_http(server: LiveServer, tmp_path: Path) -> None:
    import threading
    import time

    alice = server.client("alice")
    alice.register("m", write_model(tmp_path, "m", b"1"))
    head = alice.events()[-1].seq
    later = threading.Timer(
        0.5, lambda: server.registry.register("m", write_model(tmp_path, "n", b"2"))
    )
    started = time.monotonic()
    later.start()
    try:
        got = alice.events(head, wait=10)
    finally:
        later.join()
    assert time.monotonic() - started < 9
    assert got and got[0].seq > head and got[0].action in ("version.register", "model.create")


def test_server_wide_operations_need_a_global_admin(server: LiveServer) -> None:
    ctx = server.registry._ctx
    identity.create_user(ctx, "pat")
    identity.grant(ctx, "default", "pat", "admin")
    pat = server.remote(identity.create_token(ctx, "pat")[0])
    with pytest.raises(Forbidden, match="global admins"):
        pat.verify_audit()
    assert server.client("alice").verify_audit().ok
    assert server.registry.audit(action="access.denied")[-1].actor == "pat"


def test_presigned_urls_move_bytes_straight_to_and_from_s3(
    home: Path, moto_endpoint: str, s3_bucket: str, tmp_path: Path
) -> None:
    from .s3_helpers import s3_env

    env = {"MODELVAULT_DB": f"sqlite:///{home}/r.db", **s3_env(moto_endpoint, s3_bucket)}
    settings = Settings.from_env(env=env, home=home)
    with live_server(settings) as server:
        alice = server.client("alice")
        v = alice.register("m", write_model(tmp_path, "m", b"weights on s3"))
        file_digest = alice.manifest("m:1").files[0].digest
        with server.api(server.token("alice")) as c:
            signed = c.get(f"/blobs/{file_digest}/url", params={"method": "GET"}).json()
            got = httpx.get(signed["url"], headers=signed["headers"])
            assert got.content == b"weights on s3"
            fresh = b"uploaded without the server in the path"
            put = c.get(f"/blobs/{sha(fresh)}/url", params={"method": "PUT"}).json()
            assert httpx.put(put["url"], content=fresh, headers=put["headers"]).status_code == 200
            assert c.post(put["complete"].removeprefix("/api/v1")).status_code == 201
            assert (
                c.get(f"/blobs/{v.artifact_digest}/url", params={"method": "DELETE"}).status_code
                == 400
            )
        assert server.registry._ctx.blobs.read_bytes(sha(fresh)) == fresh


def test_a_permitted_get_is_answered_without_a_hand_off_to_the_thread_pool(
    server: LiveServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the hottest read stays on the event loop on either backend, as the token lookup before
    # it does; a denied one goes to the pool, since its denial is written to the audit log
    from modelvault.server import routes_registry

    handed = pool_calls(monkeypatch, routes_registry)
    alice = server.client("alice")
    alice.register("m", write_model(tmp_path, "m", b"weights"))
    handed.clear()
    assert alice.get("m:1").number == 1
    assert handed == []
    outsider = server.remote(server.token("bob", admin=False))
    with pytest.raises((Forbidden, NotFound)):
        outsider.get("m:1")
    assert len(handed) == 1


def test_presigned_urls_need_the_s3_backend(server: LiveServer, tmp_path: Path) -> None:
    v = server.client("alice").register("m", write_model(tmp_path, "m", b"1"))
    with server.api(server.token("alice")) as c:
        answer = c.get(f"/blobs/{v.artifact_digest}/url")
    assert answer.status_code == 400
    assert "S3" in answer.json()["error"]["message"]


def test_explain_and_proofs_through_the_server(server: LiveServer, tmp_path: Path) -> None:
    alice, bob = server.client("alice"), server.client("bob")
    alice.register("m", write_model(tmp_path, "m", b"1"))
    alice.promote("m:1", "staging")
    bob.approve("m:1")
    alice.promote("m:1", "production", reason="launch")
    alice.register("m", write_model(tmp_path, "x", b"2"), project="other")
    first = alice.checkpoint()
    assert first is not None
    alice.register("m", write_model(tmp_path, "y", b"3"))
    assert alice.checkpoint() is not None
    local = server.registry
    at = "2026-03-01T10:00Z"
    remote_report = alice.explain("m@production", at=at)
    local_report = json.loads(json.dumps(local.explain("default/m@production", at=at), default=str))
    assert remote_report["query"]["ref"] == "default/m@production"
    assert remote_report == local_report
    assert alice.checkpoints() == local.checkpoints()
    promote = alice.audit(action="stage.promote")[-1].seq
    assert alice.inclusion_proof(promote) == local.inclusion_proof(promote)
    old, size = first["tree_size"], alice.checkpoints()[-1]["tree_size"]
    assert alice.consistency_proof(old, size) == local.consistency_proof(old, size)
    other_seq = local.audit(project="other")[-1].seq
    ctx = local._ctx
    identity.create_user(ctx, "ann")
    identity.grant(ctx, "default", "ann", "viewer")
    ann = server.remote(identity.create_token(ctx, "ann", project="default")[0])
    assert ann.inclusion_proof(promote)["seq"] == promote
    with pytest.raises(NotFound):
        ann.inclusion_proof(other_seq)


def test_leftovers_of_interrupted_uploads_are_swept(tmp_path: Path) -> None:
    import os
    import time

    from modelvault.blobs.local import LocalBlobStore
    from modelvault.server import transfers

    home = tmp_path / "h"
    spool = transfers.spool_dir(home)
    old_spool, new_spool = spool / ".in-old", spool / ".in-new"
    old_spool.write_bytes(b"x")
    new_spool.write_bytes(b"y")
    blobs = LocalBlobStore(home / "blobs")
    stale = transfers.open_session(home, blobs, "alice", sha(b"a"), 1, None)
    fresh = transfers.open_session(home, blobs, "alice", sha(b"b"), 1, None)
    long_ago = time.time() - 30 * 86_400
    os.utime(old_spool, (long_ago, long_ago))
    for p in (stale.path / "session.json", stale.path):
        os.utime(p, (long_ago, long_ago))
    for session in (stale, fresh):
        session.data.write_bytes(b"chunk bytes")
    os.utime(stale.data, (long_ago, long_ago))
    assert transfers.sweep(home, blobs) == 2
    assert sorted(p.name for p in spool.iterdir()) == sorted([".in-new", fresh.path.name])
    assert not stale.data.exists() and fresh.data.exists()  # the session's bytes went with it


@pytest.mark.parametrize(
    "digest",
    ["..%2F..%2Fetc%2Fpasswd", "sha256:" + "0" * 63 + "%00", "sha256:../../x", "/etc/passwd"],
)
def test_blob_paths_that_are_not_digests_are_refused(server: LiveServer, digest: str) -> None:
    with server.api(server.token("alice")) as c:
        got = c.get(f"/blobs/{digest}")
        put = c.put(f"/blobs/{digest}", content=b"x")
    for answer in (got, put):
        assert answer.status_code in (400, 404), answer.text
        assert answer.json()["error"]["code"] in ("invalid_input", "not_found")


def test_runs_are_tracked_through_the_server(server: LiveServer) -> None:
    alice = server.client("alice")
    with alice.start_run("fraud", name="baseline", capture_code=False) as run:
        run.log_params({"lr": 0.1, "depth": 6})
        run.set_tags({"team": "risk"})
        for step in range(50):
            run.log_metric("loss", 1.0 / (step + 1), step=step)
        run.log_metric("auc", 0.91)
    stored = server.registry.get_run(run.id)
    assert stored.created_by == "alice" and stored.status == "finished"
    assert dict(stored.params) == {"lr": 0.1, "depth": 6}
    assert stored.metrics["auc"] == 0.91 and stored.tags["team"] == "risk"
    assert stored.environment is not None  # captured on the client
    assert alice.get_run(run.id) == stored
    assert [p.step for p in alice.metric_history(run.id, "loss")] == list(range(50))
    assert [r.id for r in alice.runs(experiment="fraud")] == [run.id]
    ctx = server.registry._ctx
    identity.create_user(ctx, "vic")
    identity.grant(ctx, "default", "vic", "viewer")
    vic = server.remote(identity.create_token(ctx, "vic")[0])
    assert vic.get_run(run.id).id == run.id
    with pytest.raises(Forbidden, match="'log'"):
        vic.start_run("fraud", capture_code=False, capture_environment=False)


def test_a_manifest_sent_inline_must_match_its_declared_digest(server: LiveServer) -> None:
    text = json.dumps({"files": [], "format": 1})
    with server.api(server.token("alice")) as c:
        answer = c.post(
            "/projects/default/models/m/versions",
            json={"manifest_text": text, "manifest": sha(b"something else")},
        )
    assert answer.status_code == 422, answer.text
    assert server.registry.models() == []


def test_a_bad_manifest_sent_inline_is_refused_before_anything_is_stored(
    server: LiveServer,
) -> None:
    entry = {"digest": sha(b"x"), "mode": 420, "path": "../evil", "size": 1}
    text = json.dumps({"files": [entry], "format": 1}, sort_keys=True, separators=(",", ":"))
    body = {"manifest_text": text, "blobs": {sha(b"x"): base64.b64encode(b"x").decode()}}
    with server.api(server.token("alice")) as c:
        answer = c.post("/projects/default/models/m/versions", json=body)
    assert answer.status_code == 422, answer.text
    blobs = server.registry._ctx.blobs
    assert not blobs.exists(sha(text.encode())) and not blobs.exists(sha(b"x"))
    assert server.registry.models() == []


def test_inline_text_is_base64_only_not_json_escapes(server: LiveServer) -> None:
    data = b"ABC"
    escaped = "\\u0051UJD"  # decodes as JSON to "QUJD", the base64 of b"ABC"
    with server.api(server.token("alice")) as c:
        answer = c.post("/projects/default/models/m/versions", json={"blobs": {sha(data): escaped}})
    assert answer.status_code == 400, answer.text
    assert "not valid base64" in answer.json()["error"]["message"]
    assert not server.registry._ctx.blobs.exists(sha(data))


def test_an_inline_file_that_cannot_be_stored_fails_the_whole_registration(
    server: LiveServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # sent inline but larger than MODELVAULT_INLINE_BLOB_MAX: a blob file, written first
    blobs = server.registry._ctx.blobs
    stored = blobs.put_bytes
    weights = b"w" * (64 * 1024 + 1)

    def full(data: bytes) -> Any:
        if data == weights:
            raise StoreError("blob store: no space left on device")
        return stored(data)

    monkeypatch.setattr(blobs, "put_bytes", full)
    alice = server.client("alice")
    with pytest.raises(StoreError, match="no space"):
        alice.register("fraud", write_model(tmp_path, "m", weights), capture_code=False)
    assert server.registry.models() == []
    assert server.registry.audit(action="version.register") == []


def test_a_download_fills_each_read_across_network_chunks() -> None:
    from modelvault.remote.blobs import _Chunks

    reader = _Chunks(iter([b"ab", b"", b"cde", b"f"]))
    buffer = memoryview(bytearray(4))
    assert reader.readinto(buffer) == 4 and bytes(buffer) == b"abcd"
    assert reader.readinto(buffer) == 2 and bytes(buffer[:2]) == b"ef"
    assert reader.readinto(buffer) == 0


def test_a_registration_body_is_validated_from_its_bytes(
    server: LiveServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # pydantic reads the registration's JSON as it came; FastAPI's json.loads before it cost
    # ≈ 4 % of the server's CPU for a version sending a 64 KiB file inline
    from starlette.requests import Request

    decode = Request.json

    async def decoded(self: Request) -> Any:
        if self.url.path.endswith("/models/m/versions"):
            raise AssertionError("the registration body went through json.loads")
        return await decode(self)

    monkeypatch.setattr(Request, "json", decoded)
    alice = server.client("alice")
    assert alice.register("m", write_model(tmp_path, "m", b"weights")).number == 1


@pytest.mark.parametrize(
    ("content", "content_type", "named"),
    [
        (b"{not json", "application/json", "request"),
        (b'{"params": 3}', "application/json", "params"),
        (b'{"kind": "model", "nope": 1}', "application/json", "nope"),
        (b'{"kind": "model"}', "text/plain", "request"),
        (b"", "application/json", "request"),
    ],
)
def test_a_registration_body_that_does_not_validate_registers_nothing(
    server: LiveServer, content: bytes, content_type: str, named: str
) -> None:
    with server.api(server.token("alice")) as c:
        answer = c.post(
            "/projects/default/models/m/versions",
            content=content,
            headers={"Content-Type": content_type},
        )
        assert answer.status_code == 400, answer.text
        assert answer.headers["X-Error-Code"] == "invalid_input"
        assert answer.json()["error"]["message"].startswith(f"{named}: ")
        assert c.get("/projects/default/models/m/versions").status_code == 404
