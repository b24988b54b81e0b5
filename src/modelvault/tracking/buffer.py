"""Metric points buffered on the caller's thread and written in batches by a background one,
so a training loop pays for a deque append, not a database transaction.

A failed write is retried with backoff and its points are kept; if writing keeps failing the
error is raised from the next ``flush()`` (every run end flushes), so nothing is lost
silently. The queue is bounded: a caller that outruns the store waits rather than growing
memory without limit.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Sequence

Point = tuple[str, float, int, int]
Writer = Callable[[Sequence[Point]], object]


class MetricBuffer:
    def __init__(
        self,
        write: Writer,
        *,
        batch: int = 5000,
        interval: float = 0.5,
        max_pending: int = 2_000_000,
        retries: int = 5,
    ) -> None:
        self._write = write
        self._batch = batch
        self._interval = interval
        self._max_pending = max_pending
        self._retries = retries
        self._queue: deque[Point] = deque()
        self._cond = threading.Condition()
        self._wake = threading.Event()
        self._writing = False
        self._closed = False
        self._error: BaseException | None = None
        self.written = 0
        self.blocked_s = 0.0
        self._thread = threading.Thread(target=self._run, name="mv-metrics", daemon=True)
        self._thread.start()

    def add(self, point: Point) -> None:
        queue = self._queue
        queue.append(point)
        n = len(queue)
        if n >= self._batch:
            self._wake.set()
            if n >= self._max_pending:
                self._wait_for_room()

    def extend(self, points: Sequence[Point]) -> None:
        self._queue.extend(points)
        if len(self._queue) >= self._batch:
            self._wake.set()
            if len(self._queue) >= self._max_pending:
                self._wait_for_room()

    def _wait_for_room(self) -> None:
        t0 = time.perf_counter()
        with self._cond:
            while len(self._queue) >= self._max_pending and self._error is None:
                self._wake.set()
                self._cond.wait(0.05)
        self.blocked_s += time.perf_counter() - t0
        self._raise()

    def flush(self) -> None:
        """Return once every point added before the call is written; raise if writing failed."""
        with self._cond:
            self._wake.set()
            while (self._queue or self._writing) and self._error is None:
                if not self._thread.is_alive():
                    break
                self._cond.wait(0.05)
                self._wake.set()
        if self._queue and self._error is None and not self._thread.is_alive():
            self._drain()  # the writer thread is gone (interpreter shutdown): write here
        self._raise()

    def close(self) -> None:
        try:
            self.flush()
        finally:
            self._closed = True
            self._wake.set()
            self._thread.join(timeout=5)

    def _raise(self) -> None:
        if self._error is not None:
            error, self._error = self._error, None
            raise error

    def _take(self) -> list[Point]:
        queue, out = self._queue, []
        for _ in range(min(len(queue), self._batch)):
            out.append(queue.popleft())
        return out

    def _drain(self) -> None:
        while self._queue and self._error is None:
            with self._cond:
                batch = self._take()
                self._writing = True
            try:
                self._write_with_retries(batch)
            except BaseException as exc:  # kept and raised to the caller on flush
                with self._cond:
                    self._queue.extendleft(reversed(batch))
                    self._error = exc
            finally:
                with self._cond:
                    self._writing = False
                    self._cond.notify_all()

    def _write_with_retries(self, batch: list[Point]) -> None:
        delay = 0.05
        for attempt in range(self._retries + 1):
            try:
                self._write(batch)
                self.written += len(batch)
                return
            except Exception:
                if attempt == self._retries:
                    raise
                time.sleep(delay)
                delay = min(delay * 2, 2.0)

    def _run(self) -> None:
        while not (self._closed and not self._queue):
            self._wake.wait(self._interval)
            self._wake.clear()
            if self._error is None:
                self._drain()
            with self._cond:
                self._cond.notify_all()
