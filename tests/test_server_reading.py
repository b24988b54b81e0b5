"""How the server reads a local blob for a download: from the page cache when the blob is
there (a model every replica pulls), past it (``O_DIRECT``) when it is not."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from modelvault.server import reading


def _blob(tmp_path: Path, size: int) -> tuple[Path, bytes]:
    data = os.urandom(size)
    path = tmp_path / "blob"
    with open(path, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())  # clean pages: the cache may drop them
    return path, data


def _read_all(path: Path) -> tuple[bytes, int]:
    reader = reading._Reader(path)
    try:
        out = bytearray()
        while block := reader.read():
            out += block
        return bytes(out), reader.direct_reads
    finally:
        reader.close()


def _evict(path: Path, start: int = 0) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, start, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


SIZE = 2 * reading.READ + 12_345  # two whole reads and a tail that is no whole page


def test_a_blob_not_in_the_page_cache_is_read_past_it(tmp_path: Path) -> None:
    path, data = _blob(tmp_path, SIZE)
    _evict(path)
    got, direct = _read_all(path)
    assert got == data
    assert direct == 3


def test_a_blob_in_the_page_cache_is_read_from_it(tmp_path: Path) -> None:
    path, data = _blob(tmp_path, SIZE)
    assert path.read_bytes() == data  # now cached
    got, direct = _read_all(path)
    assert got == data
    assert direct == 0


def test_a_blob_half_in_the_cache_is_read_both_ways_and_whole(tmp_path: Path) -> None:
    path, data = _blob(tmp_path, SIZE)
    assert path.read_bytes() == data
    _evict(path, start=reading.READ)  # the first read's worth stays cached
    got, direct = _read_all(path)
    assert got == data
    assert direct == 2


def test_without_a_way_to_ask_the_cache_a_blob_is_read_directly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path, data = _blob(tmp_path, SIZE)
    assert path.read_bytes() == data
    monkeypatch.setattr(reading, "_NOWAIT", 0)
    got, direct = _read_all(path)
    assert got == data and direct == 3
