"""Starting ``modelvault server``: the console command serves without loading the CLI's
command tree, honours the options it is given (anything unusual goes to the full CLI), and
the routes' documentation-only response models are built when the OpenAPI document is."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from fastapi.responses import Response
from fastapi.testclient import TestClient
from pydantic import BaseModel

from modelvault.cli import main
from modelvault.server.main import parse
from modelvault.server.routing import Api, DocumentedRoute, documented_router


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["server"], (None, "127.0.0.1", 7310)),
        (["server", "--port", "9001"], (None, "127.0.0.1", 9001)),
        (["server", "--host=0.0.0.0", "--port=80"], (None, "0.0.0.0", 80)),
        (["--home", "/srv/mv", "server"], (Path("/srv/mv"), "127.0.0.1", 7310)),
        (
            ["--home=/srv/mv", "--actor", "ci", "-p", "x", "server"],
            (Path("/srv/mv"), "127.0.0.1", 7310),
        ),
        (["--project", "server", "server", "--port", "1"], (None, "127.0.0.1", 1)),
    ],
)
def test_plain_server_invocations_are_parsed(
    args: list[str], expected: tuple[Path | None, str, int]
) -> None:
    assert parse(args) == expected


@pytest.mark.parametrize(
    "args",
    [
        ["server", "--help"],
        ["--help", "server"],
        ["server", "--port", "http"],
        ["server", "--port", "٣"],  # a digit to str.isdigit, not to the CLI
        ["server", "--port"],
        ["server", "extra"],
        ["server", "--home", "/x"],  # a global option after the command
        ["--debug", "server"],
        ["register", "server", "model.bin"],
        ["--project", "server"],
        ["--home=", "server"],
        ["-p=x", "server"],
    ],
)
def test_anything_else_is_left_to_the_full_cli(args: list[str]) -> None:
    assert parse(args) is None


def test_a_bad_port_gets_the_cli_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["server", "--port", "http"]) == 2
    assert "Invalid value for '--port'" in capsys.readouterr().err


def test_the_server_command_does_not_load_the_cli_tree(tmp_path: Path) -> None:
    probe = (
        "import sys\n"
        "import modelvault.server.main as m\n"
        "m.serve = lambda *a: print(repr(a), 'typer' in sys.modules, 'rich' in sys.modules)\n"
        "from modelvault.cli import main\n"
        f"main(['--home', {str(tmp_path)!r}, 'server', '--port', '9'])\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == f"({Path(tmp_path)!r}, '127.0.0.1', 9) False False"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_server_process_serves_the_home_it_is_given(tmp_path: Path) -> None:
    home, port = tmp_path / "home", _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODELVAULT_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "modelvault", "--home", str(home), "server", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            assert time.monotonic() < deadline, "the server did not become ready"
            try:
                if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.05)
        assert proc.stdout is not None
        token = proc.stdout.readline().strip()
        models = httpx.get(
            f"http://127.0.0.1:{port}/api/v1/projects/default/models",
            headers={"Authorization": f"Bearer {token}"},
        )
        assert models.status_code == 200 and models.json() == []
        assert (home / "registry.db").is_file()
    finally:
        proc.terminate()
        proc.wait(timeout=20)
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


def test_response_models_are_built_with_the_openapi_document() -> None:
    class Thing(BaseModel):
        name: str

    router = documented_router("/api/v1")

    @router.get("/things/{name}", responses={200: {"model": Thing, "description": "A thing"}})
    def thing(name: str) -> Response:
        return Response(Thing(name=name).model_dump_json(), media_type="application/json")

    route = router.routes[0]
    assert isinstance(route, DocumentedRoute)
    assert route.doc_models == {200: Thing} and not route.response_fields
    app = Api()
    app.mount_routes(router)
    doc = app.openapi()
    assert 200 in route.response_fields and not route.doc_models
    ok = doc["paths"]["/api/v1/things/{name}"]["get"]["responses"]["200"]
    assert ok["description"] == "A thing"
    assert ok["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Thing"}
    assert doc["components"]["schemas"]["Thing"]["required"] == ["name"]
    with TestClient(app) as client:
        assert client.get("/api/v1/things/x").json() == {"name": "x"}


def test_a_migration_run_beside_the_start_hands_its_error_to_the_start() -> None:
    from modelvault.errors import StoreError
    from modelvault.server.main import _Migrating

    class Refusing:
        def upgrade_schema(self) -> None:
            raise StoreError("the metadata store's schema is at revision 9999")

    migrating = _Migrating(Refusing())  # type: ignore[arg-type]
    with pytest.raises(StoreError, match="9999"):
        migrating.wait()


def test_a_first_start_on_sqlite_loads_only_what_it_uses(tmp_path: Path) -> None:
    # The first start creates the schema and writes the admin's bootstrap: neither needs the
    # PostgreSQL dialect nor the checkpoint signer (its Merkle tree, keys, witnesses), which
    # load when a PostgreSQL store is opened or a checkpoint is due.
    probe = (
        "import sys\n"
        "from pathlib import Path\n"
        "from modelvault.server.main import _open\n"
        f"api, token = _open(Path({str(tmp_path / 'home')!r}))\n"
        "assert token is not None\n"
        "heavy = ('sqlalchemy.dialects.postgresql', 'modelvault.service.transparency',\n"
        "         'cryptography')\n"
        "print([m for m in heavy if m in sys.modules])\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODELVAULT_")}
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, env=env
    ).stdout
    assert out.strip() == "[]"
