"""Two server processes on one PostgreSQL database, started at the same moment on an empty
schema (one migrates, the other waits), then eight clients racing registrations and
promotions through both: numbers stay gap-free, one version holds production, and the
audit log verifies."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from modelvault import Conflict, Registry
from modelvault.store import schema

from .backends import engine_for, pg_schema

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    def __init__(self, env: dict[str, str]) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "modelvault", "server", "--port", str(self.port)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: list[str] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.strip())

    def token(self) -> str | None:
        return next((ln for ln in self.lines if ln.startswith("mvt_")), None)

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                err = self.proc.stderr.read() if self.proc.stderr else ""
                raise AssertionError(f"server exited: {err}")
            try:
                if httpx.get(self.url + "/readyz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise AssertionError("server not ready")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[tuple[str, list[Server]]]:
    home = tmp_path / "shared-home"
    policy = tmp_path / "policy.toml"
    policy.write_text("[defaults]\napprovals = 0\n")
    with pg_schema() as url:
        env = {
            **os.environ,
            "MODELVAULT_HOME": str(home),
            "MODELVAULT_DB": url,
            "MODELVAULT_POLICY": str(policy),
        }
        env.pop("MODELVAULT_URL", None)
        servers = [Server(env), Server(env)]  # started together on an empty schema
        try:
            for s in servers:
                s.wait_ready()
            yield url, servers
        finally:
            for s in servers:
                s.stop()


def test_two_servers_eight_clients_keep_every_invariant(
    cluster: tuple[str, list[Server]], tmp_path: Path
) -> None:
    url, servers = cluster
    tokens = [t for s in servers if (t := s.token())]
    assert len(tokens) == 1  # exactly one process created the first admin
    errors: list[BaseException] = []
    promoted: list[int] = []

    def client(index: int) -> None:
        server = servers[index % 2]
        reg = Registry(server.url, token=tokens[0])
        try:
            for round_ in range(4):
                path = tmp_path / f"c{index}-{round_}.bin"
                path.write_bytes(b"client %d round %d" % (index, round_))
                v = reg.register("race", path, capture_code=False, capture_environment=False)
                reg.promote(f"race:{v.number}", "staging")
                try:
                    reg.promote(f"race:{v.number}", "production", reason=f"client {index}")
                    promoted.append(v.number)
                except Conflict:  # another client's promotion got there in between
                    pass
        except BaseException as exc:  # surfaced below
            errors.append(exc)
        finally:
            reg.close()

    threads = [threading.Thread(target=client, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    reg = Registry(servers[0].url, token=tokens[0])
    try:
        assert [v.number for v in reg.versions("race")] == list(range(1, 33))
        assert len(promoted) >= 1
        assert reg.get("race@production").number in promoted
        verdict = reg.verify_audit()
        assert verdict.ok, verdict.problem
        events = reg.audit(limit=None)
        assert [e.seq for e in events] == sorted(e.seq for e in events)
        assert sum(e.action == "version.register" for e in events) == 32
    finally:
        reg.close()
    engine = engine_for(url)
    s = schema.stage_intervals
    with engine.connect() as conn:
        open_prod = conn.execute(
            select(s.c.version_id).where(s.c.stage == "production", s.c.valid_to.is_(None))
        ).all()
    engine.dispose()
    assert len(open_prod) == 1
