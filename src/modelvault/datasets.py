"""Data snapshot references a version records: a content digest, or a pinned external one.

``[NAME=]REF`` where REF is a ``sha256:`` snapshot digest, a local path (snapshotted now: its
manifest is stored, the data is not copied), or a pinned URI: ``s3://b/k?versionId=V``,
``lakefs://repo/COMMIT/path``, ``delta://path@VERSION``, ``hf://datasets/NAME@REVISION``,
``dvc://PATH.dvc``. Floating references (no version, revision or commit) are refused.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from .blobs import BlobStore
from .canonical import is_digest
from .domain import DatasetRef, FileEntry
from .errors import InvalidInput
from .limits import LIMITS, check_key
from .manifest import manifest_bytes, scan

_DVC_MD5 = re.compile(r"^\s*-?\s*md5:\s*([0-9a-f]{32})(?:\.dir)?\s*$", re.MULTILINE)


def _refuse(text: str, why: str) -> InvalidInput:
    return InvalidInput(f"dataset {text!r}: {why}", field="dataset")


def snapshot_path(path: Path, blobs: BlobStore) -> str:
    """Digest of a manifest over the files under *path*; the manifest is stored, not the data."""
    entries = []
    for item in scan(path):
        sha = hashlib.sha256()
        with open(item.source, "rb") as fh:
            while chunk := fh.read(1 << 20):
                sha.update(chunk)
        entries.append(
            FileEntry(
                path=item.path, size=item.size, digest="sha256:" + sha.hexdigest(), mode=item.mode
            )
        )
    return blobs.put_bytes(manifest_bytes(entries)).digest


def parse_dataset(text: str, blobs: BlobStore | None) -> DatasetRef:
    """Read a dataset reference; with *blobs* None a local path is only checked, not
    snapshotted (a dry run that stores nothing)."""
    if not isinstance(text, str) or not text.strip() or len(text) > LIMITS["reference_chars"]:
        raise InvalidInput("a dataset reference must be 1-2048 characters", field="dataset")
    name: str | None = None
    ref = text.strip()
    head, sep, rest = ref.partition("=")
    if sep and "://" not in head and not head.startswith("sha256"):
        name, ref = check_key(head, what="dataset"), rest
    if is_digest(ref):
        return DatasetRef(name=name, system="modelvault", digest=ref)
    if ref.startswith("sha256:"):
        raise _refuse(text, "a digest must be sha256:<64 lowercase hex digits>")
    if "://" not in ref:
        path = Path(ref)
        if not path.exists():
            raise _refuse(text, "no such path, and not a digest or a pinned URI")
        if blobs is None:
            return DatasetRef(name=name or path.name, system="modelvault", uri=str(path))
        digest = snapshot_path(path, blobs)
        return DatasetRef(
            name=name or path.name, system="modelvault", uri=str(path.resolve()), digest=digest
        )
    parts = urlsplit(ref)
    scheme = parts.scheme.lower()
    if scheme == "s3":
        if not parse_qs(parts.query).get("versionId"):
            raise _refuse(text, "an S3 object must be pinned with ?versionId=...")
        return DatasetRef(name=name, system="s3", uri=ref)
    if scheme in {"lakefs", "delta", "hf"}:
        pinned = {
            "lakefs": len([p for p in parts.path.split("/") if p]) >= 1 and bool(parts.netloc),
            "delta": "@" in ref.rsplit("/", 1)[-1],
            "hf": "@" in ref.rsplit("/", 1)[-1],
        }[scheme]
        if not pinned or ref.endswith(("@latest", "@main", "/main")):
            raise _refuse(text, f"a {scheme} reference must pin a commit, version or revision")
        return DatasetRef(name=name, system=scheme, uri=ref)
    if scheme == "dvc":
        dvc_file = Path(parts.netloc + parts.path)
        try:
            body = dvc_file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            raise _refuse(text, f"cannot read DVC file {dvc_file}") from None
        found = _DVC_MD5.search(body)
        if not found:
            raise _refuse(text, "the DVC file holds no md5")
        return DatasetRef(
            name=name or dvc_file.stem,
            system="dvc",
            uri=str(dvc_file),
            digest="md5:" + found.group(1),
        )
    raise _refuse(text, f"unsupported scheme {scheme!r} (s3, lakefs, delta, hf, dvc)")
