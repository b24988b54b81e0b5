"""Offline first: versions registered with no server reachable, pushed later, keeping their
numbers, times, authors and digests; pushing twice creates nothing new."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from modelvault import Conflict, Forbidden, Registry, Settings
from modelvault.remote import RemoteRegistry
from modelvault.service import identity
from modelvault.sync import push

from .conftest import FakeClock, write_model
from .server_fixtures import LiveServer, live_server


@pytest.fixture
def server(tmp_path: Path) -> Iterator[LiveServer]:
    home = tmp_path / "server-home"
    settings = Settings.from_env(env={"MODELVAULT_DB": f"sqlite:///{home}/r.db"}, home=home)
    with live_server(settings) as live:
        yield live


@pytest.fixture
def offline(tmp_path: Path) -> Iterator[Registry]:
    home = tmp_path / "laptop"
    settings = Settings.from_env(env={"MODELVAULT_DB": f"sqlite:///{home}/r.db"}, home=home)
    clock = FakeClock(datetime(2026, 2, 1, 8, 0, tzinfo=UTC))
    with Registry(settings=settings, actor="alice", clock=clock) as reg:
        data = tmp_path / "data"
        data.mkdir()
        (data / "train.csv").write_text("a,b\n1,2\n")
        reg.register("fraud", write_model(tmp_path, "m1", b"one"), params={"lr": 0.1})
        clock.advance(days=1)
        reg.register(
            "fraud",
            write_model(tmp_path, "m2", b"two" * 1000),
            metrics={"auc": 0.93},
            tags={"team": "risk"},
            parents=["fraud:1"],
            datasets=[f"train={data}"],
        )
        clock.advance(days=1)
        reg.register("ranker", write_model(tmp_path, "r1", b"rank"), label="1.0.0")
        yield reg


def test_push_keeps_identity_and_twice_creates_nothing(
    offline: Registry, server: LiveServer, tmp_path: Path
) -> None:
    remote = server.client("alice")
    assert isinstance(remote, RemoteRegistry)
    first = push(offline, remote)
    assert first["pushed"] == ["default/fraud:1", "default/fraud:2", "default/ranker:1"]
    for ref in first["pushed"]:
        mine, theirs = offline.get(ref), remote.get(ref)
        assert (theirs.digest, theirs.number, theirs.created_at, theirs.created_by) == (
            mine.digest,
            mine.number,
            mine.created_at,
            mine.created_by,
        )
    assert remote.get("fraud:2").parents == ("default/fraud:1",)
    remote.pull("fraud:2", tmp_path / "out")
    assert (tmp_path / "out" / "model.bin").read_bytes() == b"two" * 1000
    events = len(server.registry.audit(limit=None))
    second = push(offline, remote)
    assert second["pushed"] == [] and len(second["skipped"]) == 3
    assert second["blobs_sent"] == 0
    assert len(server.registry.audit(limit=None)) == events  # nothing new, not even events
    pushed_event = server.registry.audit(action="version.register")[0]
    assert pushed_event.actor == "alice" and (pushed_event.after or {})["pushed"] is True


def test_a_number_taken_by_another_version_stops_the_push(
    offline: Registry, server: LiveServer, tmp_path: Path
) -> None:
    remote = server.client("alice")
    remote.register("fraud", write_model(tmp_path, "else", b"someone else's"))
    with pytest.raises(Conflict, match="another version"):
        push(offline, remote)
    assert [v.number for v in remote.versions("fraud")] == [1]


def test_keeping_another_authors_name_needs_a_project_admin(
    offline: Registry, server: LiveServer, tmp_path: Path
) -> None:
    ctx = server.registry._ctx
    identity.create_user(ctx, "carl")
    identity.grant(ctx, "default", "carl", "contributor")
    carl = server.remote(identity.create_token(ctx, "carl")[0])
    assert isinstance(carl, RemoteRegistry)
    with pytest.raises(Forbidden, match="admin"):
        push(offline, carl)  # the versions were registered by alice
    assert server.registry.models() == []


def test_a_tampered_record_is_refused(
    offline: Registry, server: LiveServer, tmp_path: Path
) -> None:
    remote = server.client("alice")
    assert isinstance(remote, RemoteRegistry)
    from modelvault.errors import IntegrityError
    from modelvault.sync import _blobs_of, _body, _send_blobs

    v = offline.get("fraud:1")
    digests, extra = _blobs_of(offline, v)
    _send_blobs(offline, remote, digests)
    body = _body(v, extra)
    body["params"] = {"lr": 0.2}  # not what was registered
    with pytest.raises(IntegrityError, match="does not hash"):
        remote._http.call("POST", "/projects/default/models/fraud/versions", json=body)
    assert server.registry.models() == []


def test_cli_sync_push(
    offline: Registry,
    server: LiveServer,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from modelvault.cli import main

    monkeypatch.setenv("MODELVAULT_HOME", str(offline.settings.home))
    monkeypatch.setenv("MODELVAULT_DB", offline.settings.db)
    monkeypatch.setenv("MODELVAULT_TOKEN", server.token("alice"))
    assert main(["sync", "push", "--to", server.url, "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)["pushed"]) == 3
    assert main(["sync", "push", "--to", server.url]) == 0
    assert "pushed 0 version(s)" in " ".join(capsys.readouterr().err.split())
