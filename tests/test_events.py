"""Durable events: the audit log as a long-polled stream, and webhooks delivered at least
once, in order, signed, retried with backoff, dead-lettered, replayable, restart-safe."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from modelvault import AlreadyExists, InvalidInput, NotFound, Registry
from modelvault.events.signing import HEADER, verify

from .clitool import CLI
from .conftest import FakeClock, write_model


class Receiver:
    """A real HTTP endpoint on loopback that records deliveries; *plan* decides the status
    of each request (or a delay in seconds to time the sender out)."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        self.plan: Callable[[dict[str, Any]], int | float] = lambda _: 200
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                item = {"body": body, "headers": dict(self.headers), "doc": json.loads(body)}
                decision = outer.plan(item)
                if isinstance(decision, float):
                    time.sleep(decision)
                    decision = 200
                if decision == 200:
                    outer.received.append(item)
                self.send_response(decision)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def seqs(self) -> list[int]:
        return [r["doc"]["event"]["seq"] for r in self.received]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


def story(reg: Registry, tmp_path: Path, as_user: Callable[[str], Registry]) -> None:
    reg.register("fraud", write_model(tmp_path, "a", b"a"))
    reg.promote("fraud:1", "staging")
    as_user("bob").approve("fraud:1")
    reg.promote("fraud:1", "production", reason="launch")


def test_event_stream_after_a_cursor(
    reg: Registry, tmp_path: Path, as_user: Callable[[str], Registry]
) -> None:
    story(reg, tmp_path, as_user)
    everything = reg.events(0)
    assert [e.seq for e in everything] == list(range(1, len(everything) + 1))
    tail = reg.events(everything[2].seq, limit=2)
    assert [e.seq for e in tail] == [everything[3].seq, everything[4].seq]
    assert reg.events(everything[-1].seq) == []
    assert reg.events(0, project="other") == []
    with pytest.raises(InvalidInput):
        reg.events(-1)


def test_long_poll_returns_when_an_event_arrives(reg: Registry, tmp_path: Path) -> None:
    reg.register("fraud", write_model(tmp_path, "a", b"a"))
    head = reg.events(0)[-1].seq
    timer = threading.Timer(0.3, lambda: reg.register("fraud", write_model(tmp_path, "b", b"b")))
    timer.start()
    t0 = time.monotonic()
    found = reg.events(head, wait=10)
    assert found and found[0].action == "version.register"
    assert time.monotonic() - t0 < 5
    timer.join()
    t0 = time.monotonic()
    assert reg.events(found[-1].seq, wait=0.3) == []
    assert time.monotonic() - t0 >= 0.25


def test_webhook_delivers_matching_events_in_order_signed(
    reg: Registry, tmp_path: Path, as_user: Callable[[str], Registry], receiver: Receiver
) -> None:
    created = reg.add_webhook("ops", receiver.url, events=["stage.*", "version.approve"])
    story(reg, tmp_path, as_user)
    assert reg.deliver_webhooks() == 3
    actions = [r["doc"]["event"]["action"] for r in receiver.received]
    assert actions == ["stage.promote", "version.approve", "stage.promote"]
    assert receiver.seqs() == sorted(receiver.seqs())
    first = receiver.received[0]
    assert verify(created.secret, first["headers"][HEADER], first["body"])
    assert not verify("another secret 123", first["headers"][HEADER], first["body"])
    assert first["headers"]["X-Modelvault-Event"] == "stage.promote"
    assert first["doc"]["delivery"] == f"default/ops/{receiver.seqs()[0]}"
    assert reg.deliver_webhooks() == 0  # nothing twice
    (hook,) = reg.webhooks()
    assert hook.cursor == reg.events(0, limit=1000)[-1].seq  # moved past non-matching events


def test_failing_receiver_is_retried_then_dead_lettered(
    reg: Registry,
    clock: FakeClock,
    tmp_path: Path,
    as_user: Callable[[str], Registry],
    receiver: Receiver,
) -> None:
    reg.add_webhook("ops", receiver.url, events=["stage.promote"], max_attempts=3)
    story(reg, tmp_path, as_user)
    refused = {"count": 0}

    def first_event_fails(item: dict[str, Any]) -> int:
        if item["doc"]["event"]["after"]["stage"] == "staging":
            refused["count"] += 1
            return 500
        return 200

    receiver.plan = first_event_fails
    assert reg.deliver_webhooks() == 0
    (hook,) = reg.webhooks()
    assert hook.attempts == 1 and hook.last_error == "HTTP 500: "
    assert reg.deliver_webhooks() == 0  # backing off: not due yet, nothing sent
    assert refused["count"] == 1
    clock.advance(seconds=1.5)
    assert reg.deliver_webhooks() == 0
    clock.advance(seconds=2.5)
    assert reg.deliver_webhooks() == 1  # third failure dead-letters it; the next goes through
    assert refused["count"] == 3
    (dead,) = reg.dead_letters("ops")
    assert dead.attempts == 3 and dead.last_error.startswith("HTTP 500")
    assert [r["doc"]["event"]["after"]["stage"] for r in receiver.received] == ["production"]
    # replay sends the dead letter again once the receiver is fixed
    receiver.plan = lambda _: 200
    reg.replay_webhook("ops", dead.seq)
    assert reg.deliver_webhooks() == 2
    assert [r["doc"]["event"]["after"]["stage"] for r in receiver.received][-2:] == [
        "staging",
        "production",
    ]


def test_timeout_counts_as_a_failure(reg: Registry, tmp_path: Path, receiver: Receiver) -> None:
    reg.add_webhook("slow", receiver.url, timeout_ms=200, max_attempts=1)
    receiver.plan = lambda _: 1.0
    reg.register("fraud", write_model(tmp_path, "a", b"a"))
    t0 = time.monotonic()
    assert reg.deliver_webhooks() == 0
    assert time.monotonic() - t0 < 5
    assert [d.last_error.split(":")[0] for d in reg.dead_letters("slow")] == ["ReadTimeout"] * 3


def test_a_restart_loses_nothing_and_repeats_nothing(
    reg: Registry,
    as_user: Callable[[str], Registry],
    tmp_path: Path,
    receiver: Receiver,
) -> None:
    reg.add_webhook("ops", receiver.url)
    reg.register("fraud", write_model(tmp_path, "a", b"a"))
    reg.deliver_webhooks()
    delivered = receiver.seqs()
    reg.register("fraud", write_model(tmp_path, "b", b"b"))
    reg.close()
    again = as_user("alice")  # a new process: a fresh engine on the same store
    assert again.deliver_webhooks() == 1
    assert receiver.seqs() == [*delivered, delivered[-1] + 1]


def test_concurrent_workers_deliver_each_event_once(
    reg: Registry, as_user: Callable[[str], Registry], tmp_path: Path, receiver: Receiver
) -> None:
    reg.add_webhook("ops", receiver.url)
    for i in range(10):
        reg.register("fraud", write_model(tmp_path, f"m{i}", bytes([i])))
    workers = [as_user("alice") for _ in range(3)]
    threads = [threading.Thread(target=w.deliver_webhooks) for w in workers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    while reg.deliver_webhooks():
        pass
    assert sorted(receiver.seqs()) == sorted(set(receiver.seqs()))
    assert len(receiver.seqs()) == len(reg.events(0, limit=1000)) - 1  # all after project.create


def test_webhook_configuration_is_audited_and_checked(reg: Registry, receiver: Receiver) -> None:
    reg.add_webhook("ops", receiver.url)
    with pytest.raises(AlreadyExists):
        reg.add_webhook("ops", receiver.url)
    for url in ("ftp://x/y", "not a url", ""):
        with pytest.raises(InvalidInput, match="http"):
            reg.add_webhook("bad", url)
    with pytest.raises(InvalidInput, match="max_attempts"):
        reg.add_webhook("bad", receiver.url, max_attempts=0)
    with pytest.raises(InvalidInput, match="secret"):
        reg.add_webhook("bad", receiver.url, secret="short")
    reg.remove_webhook("ops")
    with pytest.raises(NotFound):
        reg.remove_webhook("ops")
    actions = [e.action for e in reg.audit(action="webhook.*")]
    assert actions == ["webhook.add", "webhook.remove"]
    assert reg.verify_audit().ok


def test_cli_webhooks_and_events(cli: CLI, receiver: Receiver, tmp_path: Path) -> None:
    created = cli.json("webhooks", "add", "ops", receiver.url, "--event", "version.*")
    assert len(created["secret"]) >= 32 and created["webhook"]["actions"] == ["version.*"]
    cli.json("register", "fraud", str(write_model(tmp_path, "a", b"a")))
    assert cli.json("webhooks", "deliver") == {"delivered": 1}
    assert [w["name"] for w in cli.json("webhooks", "list")] == ["ops"]
    events = cli.json("events", "--after", "0")
    assert events[-1]["action"] == "version.register"
    code, _, err = cli.run("webhooks", "replay", "nope", "--from", "1")
    assert code == 3 and "webhook nope does not exist" in err
