"""Artifact manifests: scanning a file tree, storing it as blobs, and the manifest JSON format.

Owns the rules for which files an artifact may hold, the canonical manifest bytes
(``modelvault.manifest/1``, see docs/storage-format.md) and safe paths when writing files out.
"""

from __future__ import annotations

import json
import os
import re
import stat
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path
from typing import Any

from .blobs.base import BlobStore
from .blobs.copying import BufferSink, ingest_file
from .canonical import canonical_json, is_digest, sha256_digest
from .domain import FileEntry, Manifest
from .errors import IntegrityError, InvalidInput
from .limits import LIMITS

FORMAT = "modelvault.manifest/1"
_ENTRY_KEYS = frozenset({"path", "size", "digest", "mode"})
_DRIVE = re.compile(r"^[A-Za-z]:")


@dataclass(frozen=True, slots=True)
class ScannedFile:
    """A file that will be stored: its manifest path, where to read it, its size and mode."""

    path: str
    source: Path
    size: int
    mode: int
    # what a digest cache keys on (see treehash), read by the same stat as size and mode;
    # not part of what the file is, so not compared
    mtime_ns: int = field(default=0, compare=False)
    ctime_ns: int = field(default=0, compare=False)
    inode: int = field(default=0, compare=False)


def path_problem(path: object) -> str | None:
    """Why *path* is not a valid manifest path, or None if it is one."""
    if not isinstance(path, str) or not path:
        return "must be a non-empty string"
    if "\x00" in path:
        return "must not contain NUL"
    if "\\" in path:
        return "must not contain backslashes"
    if path.startswith("/") or _DRIVE.match(path):
        return "must be relative"
    if any(part in ("", ".", "..") for part in path.split("/")):
        return "must be normalized (no empty, '.' or '..' components)"
    try:
        size = len(path.encode("utf-8"))
    except UnicodeEncodeError:
        return "must be valid UTF-8"
    if size > LIMITS["path_bytes"]:
        return f"is {size} bytes long; the limit is {LIMITS['path_bytes']}"
    return None


def _check_path(path: str) -> str:
    problem = path_problem(path)
    if problem is not None:
        raise InvalidInput(f"file path {path!r} {problem}", field="path", path=path)
    return path


def _kind(mode: int) -> str:
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISDIR(mode):
        return "a directory"
    return "not a regular file"


def _check_readable(path: Path, shown: str) -> None:
    try:
        os.close(os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC))
    except OSError as exc:
        raise InvalidInput(f"cannot read {shown}: {exc.strerror}", path=shown) from None


def _scan_entry(
    root: Path, real_root: Path, rel: str, path: Path, readable: bool = True
) -> ScannedFile | None:
    """The file at *path* (shown as *rel*), or None when it is a directory to descend into."""
    try:
        info = path.lstat()
    except OSError as exc:
        raise InvalidInput(f"cannot read {rel}: {exc.strerror}", path=rel) from None
    source = path
    if stat.S_ISLNK(info.st_mode):
        try:
            target = path.resolve(strict=True)
        except (OSError, RuntimeError):
            raise InvalidInput(f"symlink {rel} is dangling or loops", path=rel) from None
        if not target.is_relative_to(real_root):
            raise InvalidInput(
                f"symlink {rel} points outside {root} (to {target}); refusing to follow it",
                path=rel,
            )
        info = target.stat()
        if not stat.S_ISREG(info.st_mode):
            raise InvalidInput(f"symlink {rel} points to {_kind(info.st_mode)}", path=rel)
        source = target
    elif stat.S_ISDIR(info.st_mode):
        return None
    elif not stat.S_ISREG(info.st_mode):
        raise InvalidInput(f"{rel} is {_kind(info.st_mode)}; only regular files", path=rel)
    if readable:
        _check_readable(source, rel)
    return ScannedFile(
        _check_path(rel),
        source,
        info.st_size,
        stat.S_IMODE(info.st_mode) & 0o777,
        info.st_mtime_ns,
        info.st_ctime_ns,
        info.st_ino,
    )


def _names(directory: Path, rel: str) -> list[str]:
    """The sorted entry names of *directory*; stops reading past the per-version file limit."""
    limit = LIMITS["files_per_version"]
    names: list[str] = []
    try:
        with os.scandir(directory) as entries:
            for entry in entries:
                names.append(entry.name)
                if len(names) > limit:
                    raise InvalidInput(
                        f"directory {rel or directory} holds more than {limit} entries; "
                        f"the limit per version is {limit} files",
                        path=rel,
                    )
    except OSError as exc:
        raise InvalidInput(
            f"cannot read directory {rel or directory}: {exc.strerror}", path=rel
        ) from None
    for name in names:
        try:
            name.encode("utf-8")
        except UnicodeEncodeError:
            shown = name.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
            where = f"{rel}/{shown}" if rel else shown
            raise InvalidInput(f"file name {where!r} is not valid UTF-8", path=where) from None
    return sorted(names)


def scan(root: Path, *, check_readable: bool = True) -> list[ScannedFile]:
    """Every file under *root* (or *root* itself), validated before any byte is stored.

    *check_readable* opens each file once to report permission problems up front; a
    snapshot, which may read nothing (cached digests), turns it off."""
    if "\x00" in str(root):
        raise InvalidInput("path contains a NUL character", path=repr(str(root)))
    if str(root) == "":
        raise InvalidInput("path is empty", path="")
    root = Path(root)
    try:
        root.lstat()
    except FileNotFoundError:
        raise InvalidInput(f"path does not exist: {root}", path=str(root)) from None
    except OSError as exc:  # too long a name, permission on a parent, ...
        raise InvalidInput(f"cannot read {root}: {exc.strerror}", path=str(root)) from None
    try:
        real_root = root.resolve(strict=True)
    except FileNotFoundError:
        raise InvalidInput(f"path does not exist: {root}", path=str(root)) from None
    except (OSError, RuntimeError):
        raise InvalidInput(f"{root} is a dangling or looping symlink", path=str(root)) from None
    if not real_root.is_dir():
        found = _scan_entry(
            root.parent, real_root.parent, root.name or real_root.name, real_root, check_readable
        )
        if found is None:  # pragma: no cover - real_root is not a directory here
            raise InvalidInput(f"{root} is not a file", path=str(root))
        return [found]
    limit = LIMITS["files_per_version"]
    files: list[ScannedFile] = []
    pending: list[tuple[Path, str]] = [(real_root, "")]
    while pending:
        directory, prefix = pending.pop()
        for name in _names(directory, prefix):
            rel = f"{prefix}/{name}" if prefix else name
            found = _scan_entry(root, real_root, rel, directory / name, check_readable)
            if found is None:
                pending.append((directory / name, _check_path(rel)))
                continue
            files.append(found)
            if len(files) > limit:
                raise InvalidInput(
                    f"{root} holds more than {limit} files; the limit per version is {limit}",
                    path=str(root),
                )
    if not files:
        raise InvalidInput(f"directory {root} is empty", path=str(root))
    return sorted(files, key=lambda f: f.path)


def manifest_bytes(files: Iterable[FileEntry]) -> bytes:
    """The canonical JSON bytes of a manifest listing *files* (sorted by path here)."""
    ordered = sorted(files, key=lambda f: f.path)
    entries = [
        {"path": f.path, "size": f.size, "digest": f.digest, "mode": f.mode} for f in ordered
    ]
    problems = [_entry_problem(raw, index) for index, raw in enumerate(entries)]
    problems.append(_order_problem([f.path for f in ordered]))
    for problem in problems:
        if problem is not None:
            raise InvalidInput(f"cannot write manifest: {problem}", field="files")
    return canonical_json({"format": FORMAT, "files": entries})


KEEP_TOTAL = 4 << 20  # kept inline per registration at most (docs/configuration.md)


def store_files(
    files: Sequence[ScannedFile], store: BlobStore, progress: Callable[[int], None] | None = None
) -> Manifest:
    """Store each scanned file, then the manifest listing them."""
    return stage_files(files, store, -1, progress)[0]


def stage_files(
    files: Sequence[ScannedFile],
    store: BlobStore,
    keep_up_to: int,
    progress: Callable[[int], None] | None = None,
    *,
    keep_total: int = KEEP_TOTAL,
) -> tuple[Manifest, dict[str, bytes]]:
    """Store each scanned file, then the manifest listing them, except those of at most
    *keep_up_to* bytes (none when it is negative), up to *keep_total* bytes in all: their
    bytes, read and hashed with the same checks, come back by digest instead, for the caller
    to keep with the version's record (``service/inlineblobs.py``)."""
    kept: dict[str, bytes] = {}
    entries: list[FileEntry] = []
    room = keep_total
    for item in files:
        if item.size <= keep_up_to and item.size <= room:
            read = BufferSink()
            copied = ingest_file(item.source, read, progress)
            digest, size = copied.digest, copied.size
            kept[digest] = bytes(read.data)
            room -= size
        else:
            stored = store.put_file(item.source, progress=progress)
            digest, size = stored.digest, stored.size
        if size != item.size:
            raise InvalidInput(f"file changed while it was being read: {item.path}", path=item.path)
        entries.append(FileEntry(item.path, size, digest, item.mode))
    body = manifest_bytes(entries)
    if len(body) <= keep_up_to:
        named = sha256_digest(body)
        kept[named] = body
    else:
        named = store.put_bytes(body).digest
    return Manifest(named, tuple(sorted(entries, key=lambda f: f.path))), kept


def build_manifest(
    root: Path, store: BlobStore, progress: Callable[[int], None] | None = None
) -> Manifest:
    """Scan *root*, store its files and its manifest; the manifest's digest names the artifact."""
    return store_files(scan(root), store, progress)


def _bad(reason: str) -> IntegrityError:
    return IntegrityError(f"stored manifest is invalid: {reason}")


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not allowed")


def _unique_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        raise ValueError("duplicate key")
    return result


def _entry_problem(raw: object, index: int) -> str | None:
    if not isinstance(raw, dict) or set(raw) != _ENTRY_KEYS:
        return f"file #{index} must be an object with keys {sorted(_ENTRY_KEYS)}"
    path, size, digest, mode = raw["path"], raw["size"], raw["digest"], raw["mode"]
    if (problem := path_problem(path)) is not None:
        return f"file #{index} path {path!r} {problem}"
    if type(size) is not int or size < 0:
        return f"file {path!r} has size {size!r}; sizes are non-negative integers"
    if not isinstance(digest, str) or not is_digest(digest):
        return f"file {path!r} has malformed digest {digest!r}"
    if type(mode) is not int or not 0 <= mode <= 0o777:
        return f"file {path!r} has mode {mode!r}; modes are permission bits 0-0o777"
    return None


def _order_problem(paths: Sequence[str]) -> str | None:
    for before, after in pairwise(paths):
        if before == after:
            return f"file path {after!r} is listed twice"
        if before > after:
            return f"files are not sorted by path ({before!r} before {after!r})"
    return None


def parse_manifest(data: bytes) -> Manifest:
    """Parse and strictly validate stored manifest bytes; IntegrityError when they are bad."""
    try:
        doc = json.loads(
            data.decode("utf-8"),
            object_pairs_hook=_unique_pairs,
            parse_constant=_reject_constant,
        )
    except (UnicodeDecodeError, ValueError) as exc:
        raise _bad(f"not valid JSON ({exc})") from None
    if not isinstance(doc, dict) or set(doc) != {"format", "files"}:
        raise _bad("the top level must be an object with keys 'files' and 'format'")
    if doc["format"] != FORMAT:
        raise _bad(f"format is {doc['format']!r}, expected {FORMAT!r}")
    if not isinstance(doc["files"], list):
        raise _bad("'files' must be a list")
    if len(doc["files"]) > LIMITS["files_per_version"]:
        raise _bad(f"it lists more than {LIMITS['files_per_version']} files")
    for index, raw in enumerate(doc["files"]):
        if (problem := _entry_problem(raw, index)) is not None:
            raise _bad(problem)
    files = [
        FileEntry(raw["path"], raw["size"], raw["digest"], raw["mode"]) for raw in doc["files"]
    ]
    if (problem := _order_problem([f.path for f in files])) is not None:
        raise _bad(problem)
    if canonical_json(doc) != data:
        raise _bad("its bytes are not in canonical JSON form")
    return Manifest(sha256_digest(data), tuple(files))


def safe_dest_path(dest_root: Path, rel: str) -> Path:
    """Where manifest path *rel* goes under *dest_root*; refuses anything that would escape it.

    Symlinks already present in the destination tree are resolved before the check.
    """
    problem = path_problem(rel)
    if problem is not None:
        raise InvalidInput(f"refusing to write file path {rel!r}: it {problem}", path=rel)
    real_root = Path(dest_root).resolve()
    target = real_root.joinpath(*rel.split("/"))
    if not target.parent.resolve().is_relative_to(real_root):
        raise InvalidInput(
            f"refusing to write file path {rel!r}: it leads outside {dest_root}", path=rel
        )
    return target
