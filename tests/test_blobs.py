"""Contract tests for the blob stores (local, memory, S3), plus the local on-disk format."""

from __future__ import annotations

import errno
import fcntl
import hashlib
import os
import signal
import stat
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from modelvault.blobs import (
    BlobStore,
    LocalBlobStore,
    MemoryBlobStore,
    PutResult,
    copying,
    open_blob_store,
)
from modelvault.blobs.s3 import S3BlobStore
from modelvault.errors import IntegrityError, InvalidInput, NotFound, StoreError

from .s3_helpers import object_keys, open_uploads, overwrite

HELLO_DIGEST = "sha256:5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03"
SMALL_CHUNK = 64 * 1024


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@pytest.fixture(params=["local", "memory", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> BlobStore:
    if request.param == "local":
        return LocalBlobStore(tmp_path / "store")
    if request.param == "s3":
        s3: S3BlobStore = request.getfixturevalue("s3_store")
        return s3
    return MemoryBlobStore()


@pytest.fixture
def small_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the pipelined path kick in for files of a few hundred KiB."""
    monkeypatch.setattr(copying, "CHUNK", SMALL_CHUNK)
    monkeypatch.setattr(copying, "SYNC_EVERY", 2 * SMALL_CHUNK)


def corrupt(store: BlobStore, digest: str, data: bytes) -> None:
    if isinstance(store, LocalBlobStore):
        path = store.path_of(digest)
        path.chmod(0o644)
        path.write_bytes(data)
    elif isinstance(store, S3BlobStore):
        overwrite(store, digest, data)
    else:
        assert isinstance(store, MemoryBlobStore)
        store._blobs[digest] = data


def blob_files(root: Path) -> list[Path]:
    return sorted(p for p in (root / "sha256").rglob("*") if p.is_file())


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


# --- contract, both stores ---------------------------------------------------------------


def test_put_bytes_round_trip(store: BlobStore) -> None:
    result = store.put_bytes(b"hello\n")
    assert result == PutResult(HELLO_DIGEST, 6, stored=True)
    assert store.exists(HELLO_DIGEST)
    assert store.size(HELLO_DIGEST) == 6
    assert store.read_bytes(HELLO_DIGEST) == b"hello\n"
    assert store.verify(HELLO_DIGEST)


def test_identical_bytes_are_stored_once(store: BlobStore, tmp_path: Path) -> None:
    source = write(tmp_path / "a.bin", b"x" * 1000)
    first = store.put_file(source)
    second = store.put_file(write(tmp_path / "b.bin", b"x" * 1000))
    again = store.put_bytes(b"x" * 1000)
    assert first.stored
    assert not second.stored
    assert not again.stored
    assert first.digest == second.digest == again.digest == digest_of(b"x" * 1000)


@pytest.mark.usefixtures("small_chunks")
@pytest.mark.parametrize("size", [0, 1, SMALL_CHUNK - 1, SMALL_CHUNK, 5 * SMALL_CHUNK + 123])
def test_put_file_and_copy_to_round_trip(store: BlobStore, tmp_path: Path, size: int) -> None:
    data = os.urandom(size)
    seen: list[int] = []
    result = store.put_file(write(tmp_path / "in.bin", data), progress=seen.append)
    assert result == PutResult(digest_of(data), size, stored=True)
    assert sum(seen) == size
    pulled: list[int] = []
    dest = tmp_path / "out" / "deep" / "model.bin"
    assert store.copy_to(result.digest, dest, progress=pulled.append) == size
    assert dest.read_bytes() == data
    assert sum(pulled) == size
    assert [p.name for p in dest.parent.iterdir()] == ["model.bin"]


def test_copy_to_gives_default_mode_and_replaces_existing(store: BlobStore, tmp_path: Path) -> None:
    digest = store.put_bytes(b"new").digest
    dest = write(tmp_path / "f.txt", b"old contents")
    store.copy_to(digest, dest)
    assert dest.read_bytes() == b"new"
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(dest.stat().st_mode) == 0o666 & ~umask


def test_missing_blob(store: BlobStore, tmp_path: Path) -> None:
    missing = digest_of(b"never stored")
    assert not store.exists(missing)
    for call in (
        lambda: store.read_bytes(missing),
        lambda: store.size(missing),
        lambda: store.verify(missing),
        lambda: store.copy_to(missing, tmp_path / "x"),
    ):
        with pytest.raises(NotFound, match=missing):
            call()
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize(
    "bad", ["", "sha256:abc", HELLO_DIGEST.upper(), HELLO_DIGEST + "\n", "md5:" + "0" * 64]
)
def test_malformed_digest_is_invalid_input(store: BlobStore, bad: str) -> None:
    with pytest.raises(InvalidInput):
        store.exists(bad)
    with pytest.raises(InvalidInput):
        store.read_bytes(bad)


@pytest.mark.parametrize("size", [100, 5 * SMALL_CHUNK + 1])
@pytest.mark.usefixtures("small_chunks")
def test_corrupt_blob_is_detected(store: BlobStore, tmp_path: Path, size: int) -> None:
    data = os.urandom(size)
    digest = store.put_bytes(data).digest
    corrupt(store, digest, bytes([data[0] ^ 1]) + data[1:])
    assert not store.verify(digest)
    with pytest.raises(IntegrityError, match=digest):
        store.read_bytes(digest)
    assert store.read_bytes(digest, verify=False) != data
    dest_dir = tmp_path / "pulled"
    dest_dir.mkdir()
    with pytest.raises(IntegrityError, match=digest) as caught:
        store.copy_to(digest, dest_dir / "model.bin")
    assert caught.value.fields["digest"] == digest
    assert list(dest_dir.iterdir()) == []


def test_truncated_blob_is_detected_and_repaired_by_put(store: BlobStore, tmp_path: Path) -> None:
    digest = store.put_bytes(b"complete content").digest
    corrupt(store, digest, b"compl")
    with pytest.raises(IntegrityError, match=digest):
        store.copy_to(digest, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    if isinstance(store, S3BlobStore):
        # S3 objects are never overwritten: put refuses, and deleting the object repairs.
        with pytest.raises(IntegrityError, match=rf"{digest} is corrupt.*holds 5 bytes, not 16"):
            store.put_bytes(b"complete content")
        assert store.read_bytes(digest, verify=False) == b"compl"
        return
    assert store.put_bytes(b"complete content").stored
    assert store.verify(digest)


def test_put_file_refuses_missing_and_non_files(store: BlobStore, tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="path does not exist"):
        store.put_file(tmp_path / "nope")
    with pytest.raises(InvalidInput, match="not a regular file"):
        store.put_file(tmp_path)
    os.mkfifo(tmp_path / "fifo")
    with pytest.raises(InvalidInput, match="not a regular file"):
        store.put_file(tmp_path / "fifo")


def _mutating(path: Path, action: str) -> Callable[[int], None]:
    done: list[int] = []

    def progress(n: int) -> None:
        if not done:
            done.append(n)
            if action == "grow":
                with path.open("ab") as f:
                    f.write(b"more")
            elif action == "shrink":
                os.truncate(path, 10)
            else:
                with path.open("r+b") as f:
                    f.write(b"Z")
                os.utime(path, ns=(0, 1))

    return progress


@pytest.mark.usefixtures("small_chunks")
@pytest.mark.parametrize("action", ["grow", "shrink", "rewrite"])
@pytest.mark.parametrize("size", [1000, 4 * SMALL_CHUNK])
def test_file_changing_while_read_is_refused(
    store: BlobStore, tmp_path: Path, action: str, size: int
) -> None:
    source = write(tmp_path / "live.bin", os.urandom(size))
    with pytest.raises(InvalidInput, match="file changed while it was being read"):
        store.put_file(source, progress=_mutating(source, action))
    if isinstance(store, LocalBlobStore):
        assert blob_files(store.root) == []
        assert list((store.root / "tmp").iterdir()) == []
    if isinstance(store, S3BlobStore):
        assert object_keys(store) == []
        assert open_uploads(store) == []


def test_concurrent_threads_putting_the_same_bytes(store: BlobStore, tmp_path: Path) -> None:
    data = os.urandom(200_000)
    source = write(tmp_path / "same.bin", data)
    results: list[PutResult] = []

    def put() -> None:
        results.append(store.put_file(source))

    threads = [threading.Thread(target=put) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 8
    assert {r.digest for r in results} == {digest_of(data)}
    assert store.read_bytes(digest_of(data)) == data


# --- local store: the on-disk format and failure handling --------------------------------


def test_layout_is_a_format(tmp_path: Path) -> None:
    root = tmp_path / "store"
    LocalBlobStore(root).put_bytes(b"hello\n")
    blob = root / "sha256" / "58" / HELLO_DIGEST.removeprefix("sha256:")
    assert blob_files(root) == [blob]
    assert blob.read_bytes() == b"hello\n"
    assert stat.S_IMODE(blob.stat().st_mode) == 0o444
    assert sorted(p.name for p in root.iterdir()) == ["sha256", "tmp"]
    assert list((root / "tmp").iterdir()) == []


def test_dedup_leaves_disk_usage_unchanged(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path / "store")
    data = os.urandom(50_000)
    store.put_file(write(tmp_path / "a", data))
    usage = sum(p.stat().st_size for p in blob_files(store.root))
    inode = store.path_of(digest_of(data)).stat().st_ino
    assert not store.put_file(write(tmp_path / "b", data)).stored
    assert not store.put_bytes(data).stored
    assert len(blob_files(store.root)) == 1
    assert sum(p.stat().st_size for p in blob_files(store.root)) == usage
    assert store.path_of(digest_of(data)).stat().st_ino == inode
    assert list((store.root / "tmp").iterdir()) == []


def _enospc(*args: object) -> int:
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


@pytest.mark.usefixtures("small_chunks")
@pytest.mark.parametrize("size", [1000, 6 * SMALL_CHUNK])
def test_disk_full_while_storing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, size: int
) -> None:
    store = LocalBlobStore(tmp_path / "store")
    source = write(tmp_path / "in.bin", os.urandom(size))
    monkeypatch.setattr(os, "write", _enospc)
    calls: list[Callable[[], PutResult]] = [
        lambda: store.put_file(source),
        lambda: store.put_bytes(b"abc" * size),
    ]
    for call in calls:
        with pytest.raises(StoreError, match="disk full while writing blob store") as caught:
            call()
        assert "Traceback" not in caught.value.message
        assert caught.value.fields["errno"] == errno.ENOSPC
    assert blob_files(store.root) == []
    assert list((store.root / "tmp").iterdir()) == []


@pytest.mark.usefixtures("small_chunks")
def test_disk_full_while_pulling(
    store: BlobStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    digest = store.put_bytes(os.urandom(3 * SMALL_CHUNK)).digest
    dest_dir = tmp_path / "pulled"
    dest_dir.mkdir()
    monkeypatch.setattr(os, "write", _enospc)
    with pytest.raises(StoreError, match="disk full while writing"):
        store.copy_to(digest, dest_dir / "model.bin")
    assert list(dest_dir.iterdir()) == []


@pytest.mark.usefixtures("small_chunks")
def test_direct_io_refused_falls_back_to_buffered(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_write = os.write
    refused: list[int] = []

    def picky_write(fd: int, data: bytes | memoryview) -> int:
        if fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_DIRECT:
            refused.append(fd)
            raise OSError(errno.EINVAL, "direct I/O not supported")
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", picky_write)
    data = os.urandom(4 * SMALL_CHUNK + 5)
    store = LocalBlobStore(tmp_path / "store")
    digest = store.put_file(write(tmp_path / "in", data)).digest
    monkeypatch.undo()
    assert store.read_bytes(digest) == data
    assert refused  # the temp file did try O_DIRECT on this file system


def test_stale_temp_files(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path / "store")
    assert store.stale_temp_files(0) == []
    store.put_bytes(b"x")
    old = write(tmp_path / "store" / "tmp" / "put-old.partial", b"half")
    os.utime(old, (time.time() - 7200, time.time() - 7200))
    write(tmp_path / "store" / "tmp" / "put-new.partial", b"half")
    assert store.stale_temp_files(3600) == [old]


_KILL_SCRIPT = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from modelvault.blobs import LocalBlobStore, copying
    copying.CHUNK = 64 * 1024
    def progress(n):
        print("writing", flush=True)
        time.sleep(60)
    LocalBlobStore(Path(sys.argv[1])).put_file(Path(sys.argv[2]), progress=progress)
    """
)


def test_sigkill_mid_write_leaves_no_blob(tmp_path: Path) -> None:
    data = os.urandom(1024 * 1024)
    source = write(tmp_path / "big.bin", data)
    root = tmp_path / "store"
    child = subprocess.Popen(
        [sys.executable, "-c", _KILL_SCRIPT, str(root), str(source)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "writing"
        time.sleep(0.2)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
        if child.stdout is not None:
            child.stdout.close()
    store = LocalBlobStore(root)
    assert not store.exists(digest_of(data))
    assert blob_files(root) == []
    assert len(store.stale_temp_files(0)) == 1
    assert store.put_file(source).stored
    assert store.read_bytes(digest_of(data)) == data


_RACE_SCRIPT = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from modelvault.blobs import LocalBlobStore
    store = LocalBlobStore(Path(sys.argv[1]))
    for _ in range(20):
        store.put_file(Path(sys.argv[2]))
    """
)


def test_many_processes_writing_the_same_digest(tmp_path: Path) -> None:
    data = os.urandom(300_000)
    source = write(tmp_path / "same.bin", data)
    root = tmp_path / "store"
    children = [
        subprocess.Popen([sys.executable, "-c", _RACE_SCRIPT, str(root), str(source)])
        for _ in range(4)
    ]
    assert [child.wait(timeout=120) for child in children] == [0, 0, 0, 0]
    store = LocalBlobStore(root)
    assert blob_files(root) == [store.path_of(digest_of(data))]
    assert store.verify(digest_of(data))
    assert list((root / "tmp").iterdir()) == []


# --- the factory -------------------------------------------------------------------------


@pytest.fixture
def cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_open_blob_store(tmp_path: Path, cwd: Path) -> None:
    local = open_blob_store(f"file://{tmp_path}/a")
    assert isinstance(local, LocalBlobStore)
    assert local.root == tmp_path / "a"
    plain = open_blob_store("relative/store")
    assert isinstance(plain, LocalBlobStore)
    assert plain.root == Path("relative/store")
    assert isinstance(open_blob_store("memory://"), MemoryBlobStore)


@pytest.mark.parametrize("url", ["gs://bucket/x", "ftp://host/x"])
def test_open_blob_store_unknown_scheme(url: str) -> None:
    scheme = url.split(":", maxsplit=1)[0]
    with pytest.raises(InvalidInput, match=rf"unsupported blob store scheme '{scheme}'.*file://"):
        open_blob_store(url)


@pytest.mark.parametrize("url", ["", "file://relative/path", "file://otherhost/x"])
def test_open_blob_store_bad_urls(url: str) -> None:
    with pytest.raises(InvalidInput):
        open_blob_store(url)


def test_sync_makes_every_new_shard_durable_side_by_side_and_keeps_failures_for_retry(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from modelvault.blobs import local

    store = LocalBlobStore(tmp_path / "store")
    shards: set[str] = set()
    n = 0
    while len(shards) < 3:  # blobs in three different shard directories
        put = store.put_bytes(b"blob %d" % n)
        shards.add(put.digest.split(":")[1][:2])
        n += 1
    seen: list[tuple[str, str]] = []
    fail = {"on": ""}

    def fake(directory: Path) -> None:
        seen.append((directory.name, threading.current_thread().name))
        if directory.name == fail["on"]:
            raise OSError(errno.EIO, "disk on fire")

    monkeypatch.setattr(local, "fsync_dir", fake)
    fail["on"] = sorted(shards)[-1]
    with pytest.raises(StoreError):
        store.sync()
    assert {name for name, _ in seen} >= shards
    # all but one ran on the pool's threads, at the same time as the first
    assert sum(thread.startswith("modelvault-fsync") for _, thread in seen) == len(seen) - 1
    seen.clear()
    fail["on"] = ""
    store.sync()  # what failed is synced again, none of it forgotten
    assert {name for name, _ in seen} >= shards
    seen.clear()
    store.sync()
    assert seen == []  # nothing left to sync


def test_a_sync_that_finds_its_directory_taken_waits_for_the_round_syncing_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from modelvault.blobs import local

    store = LocalBlobStore(tmp_path / "store")
    store.put_bytes(b"first blob")
    entered, release = threading.Event(), threading.Event()
    synced: list[str] = []

    def slow(directory: Path) -> None:
        entered.set()
        release.wait(30)
        synced.append(directory.name)

    monkeypatch.setattr(local, "fsync_dir", slow)
    first = threading.Thread(target=store.sync)
    first.start()  # takes the pending directory and sits in its fsync
    assert entered.wait(30)
    second = threading.Thread(target=store.sync)  # finds nothing pending
    second.start()
    second.join(0.2)
    # returning now would let a caller commit metadata naming a blob whose name is not
    # durable yet
    assert second.is_alive() and synced == []
    release.set()
    first.join(30)
    second.join(30)
    assert not second.is_alive() and len(synced) == 1


def test_short_reads_are_gathered_into_whole_buffers() -> None:
    """A source giving a few bytes at a time (a socket) still reaches the sink in whole,
    page-aligned buffers (an unaligned write would take the page cache instead of O_DIRECT)."""
    data = os.urandom(2 * copying.CHUNK + 12345)

    class Trickle:
        at = 0

        def readinto(self, view: memoryview) -> int:
            n = min(50_000, len(view), len(data) - self.at)
            view[:n] = data[self.at : self.at + n]
            self.at += n
            return n

    writes: list[int] = []

    class Sink:
        def begin(self, aligned: bool) -> None:
            pass

        def write(self, view: memoryview) -> None:
            writes.append(len(view))

        def sync(self) -> None:
            pass

    copied = copying.copy_stream(Trickle(), Sink(), expected_size=len(data))
    assert copied.digest == "sha256:" + hashlib.sha256(data).hexdigest()
    assert writes == [copying.CHUNK, copying.CHUNK, 12345]
