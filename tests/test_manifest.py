"""Tests of artifact scanning, manifest bytes and parsing, and safe destination paths."""

from __future__ import annotations

import json
import os
import socket
import stat
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from modelvault.blobs import LocalBlobStore, MemoryBlobStore
from modelvault.domain import FileEntry, Manifest
from modelvault.errors import IntegrityError, InvalidInput
from modelvault.limits import LIMITS
from modelvault.manifest import (
    FORMAT,
    ScannedFile,
    build_manifest,
    manifest_bytes,
    parse_manifest,
    safe_dest_path,
    scan,
    store_files,
)

CONFIG = b'{"lr": 0.1}\n'
CONFIG_DIGEST = "sha256:647366ac99f5f7d02b4b7112254f0b81d9e61139c0761b3b5fe4cf15edb687c9"
HELLO_DIGEST = "sha256:5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03"
EXAMPLE_BYTES = (
    b'{"files":[{"digest":"' + CONFIG_DIGEST.encode() + b'","mode":420,"path":"config.json",'
    b'"size":12},{"digest":"' + HELLO_DIGEST.encode() + b'","mode":420,'
    b'"path":"weights/model.bin","size":6}],"format":"modelvault.manifest/1"}'
)
EXAMPLE_DIGEST = "sha256:9e0f18aadd596b351157423a1bd8ef038e41fdc3d366f31995d8c42be4bdf01e"
EXAMPLE_FILES = (
    FileEntry("config.json", 12, CONFIG_DIGEST, 0o644),
    FileEntry("weights/model.bin", 6, HELLO_DIGEST, 0o644),
)


def make_tree(root: Path, files: dict[str, bytes], mode: int = 0o644) -> Path:
    for rel, data in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        path.chmod(mode)
    return root


# --- scan --------------------------------------------------------------------------------


def test_scan_single_file(tmp_path: Path) -> None:
    path = tmp_path / "model.pt"
    path.write_bytes(b"abc")
    path.chmod(0o640)
    assert scan(path) == [ScannedFile("model.pt", path, 3, 0o640)]


def test_scan_directory(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "art", {"b.txt": b"b", "a/z.bin": b"zz", "a/empty": b""})
    (root / "a" / "z.bin").chmod(0o755)
    (root / "nothing-here").mkdir()
    found = scan(root)
    assert [(f.path, f.size, f.mode) for f in found] == [
        ("a/empty", 0, 0o644),
        ("a/z.bin", 2, 0o755),
        ("b.txt", 1, 0o644),
    ]


@pytest.mark.parametrize("layout", ["empty", "only-dirs"])
def test_scan_refuses_empty_directory(tmp_path: Path, layout: str) -> None:
    root = tmp_path / "art"
    root.mkdir()
    if layout == "only-dirs":
        (root / "a" / "b").mkdir(parents=True)
    with pytest.raises(InvalidInput, match=f"directory {root} is empty"):
        scan(root)


def test_scan_refuses_missing_path(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="path does not exist"):
        scan(tmp_path / "nope")


def test_scan_refuses_unreadable_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = make_tree(tmp_path / "art", {"ok.txt": b"1", "secret.bin": b"2"})
    (root / "secret.bin").chmod(0)
    real_open = os.open

    def guarded_open(path: str | Path, flags: int, *args: int) -> int:
        if Path(path).name == "secret.bin":  # also denied when the tests run as root
            raise PermissionError(13, "Permission denied")
        return real_open(path, flags, *args)

    monkeypatch.setattr(os, "open", guarded_open)
    with pytest.raises(InvalidInput, match=r"cannot read secret\.bin: Permission denied"):
        scan(root)


def test_scan_refuses_symlink_outside_root(tmp_path: Path) -> None:
    outside = tmp_path / "outside.txt"
    outside.write_bytes(b"secret")
    root = make_tree(tmp_path / "art", {"a.txt": b"a"})
    (root / "sub").mkdir()
    (root / "sub" / "link").symlink_to(outside)
    with pytest.raises(
        InvalidInput, match=r"symlink sub/link points outside .* refusing to follow"
    ):
        scan(root)


def test_symlink_inside_root_is_stored_as_a_file(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "art", {"real/weights.bin": b"weights"})
    (root / "alias.bin").symlink_to("real/weights.bin")
    store = MemoryBlobStore()
    built = build_manifest(root, store)
    entries = {f.path: f for f in built.files}
    assert set(entries) == {"alias.bin", "real/weights.bin"}
    assert entries["alias.bin"].digest == entries["real/weights.bin"].digest
    assert store.read_bytes(entries["alias.bin"].digest) == b"weights"
    assert entries["alias.bin"].mode == 0o644


@pytest.mark.parametrize("target", ["missing.bin", "link"])
def test_scan_refuses_dangling_symlink(tmp_path: Path, target: str) -> None:
    root = make_tree(tmp_path / "art", {"a.txt": b"a"})
    (root / "link").symlink_to(target)
    with pytest.raises(InvalidInput, match="dangling or loops"):
        scan(root)


def test_scan_refuses_symlink_to_directory(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "art", {"d/a.txt": b"a"})
    (root / "dlink").symlink_to("d")
    with pytest.raises(InvalidInput, match="symlink dlink points to a directory"):
        scan(root)


def test_scan_refuses_fifo_and_socket(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "art", {"a.txt": b"a"})
    os.mkfifo(root / "pipe")
    with pytest.raises(InvalidInput, match="pipe is a FIFO"):
        scan(root)
    (root / "pipe").unlink()
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(root / "sock"))
        with pytest.raises(InvalidInput, match="sock is a socket"):
            scan(root)


def test_scan_refuses_non_utf8_name(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "art", {"sub/a.txt": b"a"})
    with open(os.path.join(os.fsencode(root / "sub"), b"bad\xff.bin"), "wb") as f:
        f.write(b"x")
    with pytest.raises(InvalidInput, match="not valid UTF-8"):
        scan(root)


def test_scan_refuses_backslash_name(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "art", {"a\\b.txt": b"a"})
    with pytest.raises(InvalidInput, match="backslash"):
        scan(root)


def test_scan_refuses_long_path(tmp_path: Path) -> None:
    deep = "/".join(["d" * 200] * 5) + "/" + "f" * 30
    assert len(deep.encode()) > LIMITS["path_bytes"]
    root = make_tree(tmp_path / "art", {deep: b"x"})
    with pytest.raises(InvalidInput, match="limit is 1024"):
        scan(root)


def test_scan_limits_the_number_of_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(LIMITS, "files_per_version", 5)
    root = make_tree(tmp_path / "art", {f"d{i}/f{j}": b"" for i in range(2) for j in range(3)})
    with pytest.raises(InvalidInput, match="more than 5 files"):
        scan(root)
    flat = make_tree(tmp_path / "flat", {f"f{j}": b"" for j in range(50)})
    with pytest.raises(InvalidInput, match="more than 5 entries"):
        scan(flat)
    assert len(scan(make_tree(tmp_path / "five", {f"f{j}": b"" for j in range(5)}))) == 5


# --- build, bytes, parse -----------------------------------------------------------------


def test_build_manifest_stores_files_then_manifest(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "art", {"weights/model.bin": b"hello\n", "config.json": CONFIG})
    store = LocalBlobStore(tmp_path / "store")
    seen: list[int] = []
    built = build_manifest(root, store, progress=seen.append)
    assert built == Manifest(EXAMPLE_DIGEST, EXAMPLE_FILES)
    assert sum(seen) == 18
    assert store.read_bytes(EXAMPLE_DIGEST) == EXAMPLE_BYTES
    assert parse_manifest(store.read_bytes(built.digest)) == built
    assert built.total_size == 18


def test_manifest_bytes_are_canonical_and_sorted() -> None:
    assert manifest_bytes(EXAMPLE_FILES) == EXAMPLE_BYTES
    assert manifest_bytes(reversed(EXAMPLE_FILES)) == EXAMPLE_BYTES
    assert parse_manifest(EXAMPLE_BYTES) == Manifest(EXAMPLE_DIGEST, EXAMPLE_FILES)


def test_manifest_bytes_refuses_bad_entries() -> None:
    with pytest.raises(InvalidInput, match="listed twice"):
        manifest_bytes([EXAMPLE_FILES[0], EXAMPLE_FILES[0]])
    with pytest.raises(InvalidInput, match="must be normalized"):
        manifest_bytes([FileEntry("a/../b", 1, HELLO_DIGEST, 0o644)])


def test_file_changed_between_scan_and_store(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "art", {"a.bin": b"abc"})
    files = scan(root)
    (root / "a.bin").write_bytes(b"abcdef")
    with pytest.raises(InvalidInput, match=r"file changed while it was being read: a\.bin"):
        store_files(files, MemoryBlobStore())


def _doc(files: list[dict[str, object]], fmt: object = FORMAT) -> bytes:
    return json.dumps(
        {"format": fmt, "files": files}, sort_keys=True, separators=(",", ":")
    ).encode()


def _entry(
    path: object = "a", size: object = 1, digest: object = HELLO_DIGEST
) -> dict[str, object]:
    return {"path": path, "size": size, "digest": digest, "mode": 0o644}


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (_doc([_entry("../x")]), "normalized"),
        (_doc([_entry("a/../../x")]), "normalized"),
        (_doc([_entry("/abs")]), "relative"),
        (_doc([_entry("C:evil")]), "relative"),
        (_doc([_entry("a\\..\\b")]), "backslash"),
        (_doc([_entry("a//b")]), "normalized"),
        (_doc([_entry("./a")]), "normalized"),
        (_doc([_entry("a/")]), "normalized"),
        (_doc([_entry("")]), "non-empty"),
        (_doc([_entry("a\x00b")]), "NUL"),
        (_doc([_entry("x" * 1025)]), "limit is 1024"),
        (_doc([_entry(7)]), "non-empty string"),
        (_doc([_entry(digest="sha256:abc")]), "malformed digest"),
        (_doc([_entry(digest=HELLO_DIGEST.upper())]), "malformed digest"),
        (_doc([_entry(digest=HELLO_DIGEST + "\n")]), "malformed digest"),
        (_doc([_entry(size=-1)]), "non-negative"),
        (_doc([_entry(size=True)]), "non-negative"),
        (_doc([_entry(size=1.0)]), "non-negative"),
        (_doc([_entry("b"), _entry("a")]), "not sorted"),
        (_doc([_entry("a"), _entry("a")]), "listed twice"),
        (_doc([{**_entry(), "extra": 1}]), "keys"),
        (_doc([{**_entry(), "mode": 0o4755}]), "permission bits"),
        (_doc([_entry()], fmt="modelvault.manifest/2"), "format"),
        (b"[]", "top level"),
        (b'{"files":[],"files":[],"format":"modelvault.manifest/1"}', "not valid JSON"),
        (b'{"files":[NaN],"format":"modelvault.manifest/1"}', "not valid JSON"),
        (b"\xff", "not valid JSON"),
        (b'{ "files":[],"format":"modelvault.manifest/1"}', "canonical"),
        (_doc([_entry("\u00e9")]), "canonical"),  # ensure_ascii escapes are not canonical
    ],
)
def test_parse_manifest_rejects(data: bytes, reason: str) -> None:
    with pytest.raises(IntegrityError, match=reason):
        parse_manifest(data)


def test_parse_manifest_accepts_empty_file_list() -> None:
    data = _doc([])
    assert parse_manifest(data).files == ()


# --- safe_dest_path ----------------------------------------------------------------------


def test_safe_dest_path(tmp_path: Path) -> None:
    assert safe_dest_path(tmp_path, "a/b.bin") == tmp_path.resolve() / "a" / "b.bin"


@pytest.mark.parametrize("rel", ["../x", "/abs", "a/../../x", "a/./b", "", "a\\..\\x", "C:x"])
def test_safe_dest_path_refuses_escapes(tmp_path: Path, rel: str) -> None:
    with pytest.raises(InvalidInput, match="refusing to write"):
        safe_dest_path(tmp_path / "dest", rel)


def test_safe_dest_path_refuses_symlinked_directory_leading_out(tmp_path: Path) -> None:
    dest = tmp_path / "dest"
    dest.mkdir()
    (tmp_path / "elsewhere").mkdir()
    (dest / "sub").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(InvalidInput, match="leads outside"):
        safe_dest_path(dest, "sub/x.bin")


# --- properties --------------------------------------------------------------------------

_NAME = st.text(alphabet=st.sampled_from("abcXYZ019_-. éß漢"), min_size=1, max_size=12).filter(
    lambda name: name not in (".", "..")
)
_TREE = st.dictionaries(
    st.lists(_NAME, min_size=1, max_size=3).map(tuple),
    st.binary(max_size=64),
    min_size=1,
    max_size=8,
).filter(
    # no file may also be a directory of another file
    lambda tree: not any(a != b and b[: len(a)] == a for a in tree for b in tree)
)


@settings(max_examples=60, deadline=None)
@given(tree=_TREE)
def test_manifest_round_trips_and_ignores_creation_order(
    tree: dict[tuple[str, ...], bytes],
) -> None:
    store = MemoryBlobStore()
    built: list[Manifest] = []
    with tempfile.TemporaryDirectory() as tmp:
        for order, items in enumerate((list(tree.items()), list(reversed(tree.items())))):
            root = Path(tmp) / f"tree{order}"
            root.mkdir()
            for parts, data in items:
                path = root.joinpath(*parts)
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(data)
                path.chmod(0o644)
            built.append(build_manifest(root, store))
    first, second = built
    assert first == second
    assert parse_manifest(store.read_bytes(first.digest)) == first
    assert [f.path for f in first.files] == sorted("/".join(parts) for parts in tree)
    for entry in first.files:
        assert store.read_bytes(entry.digest) == tree[tuple(entry.path.split("/"))]
        assert stat.S_IMODE(entry.mode) == 0o644
