"""The server keeps freed memory for the next request body instead of faulting fresh pages in
for every piece the network hands over (server/memory.py)."""

from __future__ import annotations

import subprocess
import sys

PIECES = 200
_FAULTS = """
import os, resource, sys
from modelvault.server.memory import keep_freed_memory
if sys.argv[1] == "kept":
    assert keep_freed_memory()
piece = os.urandom(256 << 10)
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range({pieces}):
    copy = bytes(bytearray(piece))  # made and freed, as a body piece is
    del copy
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _faults(mode: str) -> int:
    out = subprocess.run(
        [sys.executable, "-c", _FAULTS.format(pieces=PIECES), mode],
        capture_output=True,
        text=True,
        check=True,
    )
    return int(out.stdout)


def test_freed_body_pieces_are_reused_instead_of_faulted_in_again() -> None:
    pages = PIECES * (256 << 10) // 4096
    assert _faults("default") > pages // 2  # the allocator's own thresholds: fresh pages
    assert _faults("kept") < pages // 20


def test_the_server_sets_the_allocator_up_before_it_serves() -> None:
    probe = (
        "import uvicorn\n"
        "import modelvault.server.main as m\n"
        "import modelvault.server.memory as memory\n"
        "calls = []\n"
        "memory.keep_freed_memory = lambda: calls.append('kept') or True\n"
        "m._open = lambda home: (calls.append('opened'), None)\n"
        "uvicorn.run = lambda *a, **k: print(calls)\n"
        "m.serve(None)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip().splitlines()[-1] == "['kept', 'opened']"
