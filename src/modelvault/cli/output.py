"""How the CLI prints: data to stdout (one JSON document with --json, else Rich tables),
messages to stderr, and progress bars for large transfers."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from rich.console import Console
from rich.table import Table

from ..domain import as_json

PROGRESS_THRESHOLD = 50 * 1024 * 1024

stdout = Console(soft_wrap=True)
stderr = Console(stderr=True)


def emit_json(value: Any) -> None:
    sys.stdout.write(json.dumps(as_json(value), indent=2, sort_keys=False, ensure_ascii=False))
    sys.stdout.write("\n")


def emit_json_line(value: Any) -> None:
    """One JSON document on one line (a stream of them, for --follow)."""
    sys.stdout.write(json.dumps(as_json(value), ensure_ascii=False) + "\n")
    sys.stdout.flush()


def message(text: str) -> None:
    stderr.print(text, highlight=False)


def table(title: str | None, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    t = Table(title=title, title_justify="left", show_edge=False, pad_edge=False)
    for c in columns:
        t.add_column(c)
    for r in rows:
        t.add_row(*("" if v is None else str(v) for v in r))
    stdout.print(t)


def fields(pairs: Sequence[tuple[str, Any]]) -> None:
    t = Table(show_header=False, show_edge=False, pad_edge=False, box=None)
    t.add_column(style="bold")
    t.add_column()
    for k, v in pairs:
        if v not in (None, "", [], {}):
            t.add_row(k, str(v))
    stdout.print(t)


@contextmanager
def progress_bars(
    enabled: bool, label: str
) -> Iterator[Callable[[int], Callable[[int], None] | None]]:
    """A progress factory: given a byte total, a callback advancing a bar (only > 50 MB)."""
    started: list[Any] = []

    def factory(total: int) -> Callable[[int], None] | None:
        if not enabled or total < PROGRESS_THRESHOLD:
            return None
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TransferSpeedColumn,
        )

        bar = Progress(
            "[progress.description]{task.description}",
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            console=stderr,
            transient=True,
        )
        bar.start()
        started.append(bar)
        task = bar.add_task(label, total=total)
        return lambda n: bar.advance(task, n)

    try:
        yield factory
    finally:
        for bar in started:
            bar.stop()
