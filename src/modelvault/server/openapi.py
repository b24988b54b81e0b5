"""Print the server's OpenAPI document: ``python -m modelvault.server.openapi``.

docs/openapi.json holds its output; a test fails when the two drift (``make docs`` rewrites it).
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path
from typing import Any

from ..settings import Settings


def document() -> dict[str, Any]:
    from .app import create_app

    with tempfile.TemporaryDirectory() as home:
        settings = Settings.from_env(env={}, home=Path(home))
        app = create_app(settings, migrate=False)
        try:
            return app.openapi()
        finally:
            app.state.registry.close()


def main() -> None:
    sys.stdout.write(json.dumps(document(), indent=2, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
