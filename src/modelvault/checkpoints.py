"""Signed checkpoints of the audit tree, the signing key and the witness directory.

A checkpoint says "the audit log had TREE_SIZE events and this root hash at TIME", signed with
an Ed25519 key kept in a file outside the database. Its signed text is::

    modelvault-checkpoint/v1
    <tree size>
    <root hash, hex>
    <time, ISO 8601 UTC>

The witness is a directory outside the database where every checkpoint is also written, once
(a file per tree size, never overwritten), so that a database rewritten with a consistent new
chain and tree disagrees with what the witness saw. Only the standard library and
``cryptography`` are imported here: the offline verifier uses this module.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

HEADER = "modelvault-checkpoint/v1"


@dataclass(frozen=True, slots=True)
class Checkpoint:
    tree_size: int
    root: str  # hex
    ts: str
    key_id: str
    signature: str  # base64

    def message(self) -> bytes:
        return signed_text(self.tree_size, self.root, self.ts)

    def to_json(self) -> dict[str, Any]:
        return {
            "tree_size": self.tree_size,
            "root": self.root,
            "ts": self.ts,
            "key_id": self.key_id,
            "signature": self.signature,
        }

    @classmethod
    def from_json(cls, data: Any) -> Checkpoint:
        if not isinstance(data, dict):
            raise ValueError("a checkpoint must be a JSON object")
        try:
            cp = cls(
                tree_size=int(data["tree_size"]),
                root=str(data["root"]),
                ts=str(data["ts"]),
                key_id=str(data["key_id"]),
                signature=str(data["signature"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"malformed checkpoint: {exc}") from None
        if cp.tree_size < 0 or len(cp.root) != 64:
            raise ValueError("malformed checkpoint: bad tree size or root")
        return cp


def signed_text(tree_size: int, root_hex: str, ts: str) -> bytes:
    return f"{HEADER}\n{tree_size}\n{root_hex}\n{ts}\n".encode()


def key_id(public: Ed25519PublicKey) -> str:
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def public_pem(public: Ed25519PublicKey) -> bytes:
    return public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def load_public(pem: bytes) -> Ed25519PublicKey:
    try:
        key = serialization.load_pem_public_key(pem)
    except ValueError as exc:
        raise ValueError(f"not a PEM public key: {exc}") from None
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError("the public key is not an Ed25519 key")
    return key


def load_private(path: Path) -> Ed25519PrivateKey:
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as exc:
        raise ValueError(f"cannot read the audit signing key {path}: {exc}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError(f"the audit signing key {path} is not an Ed25519 key")
    return key


def load_or_create_private(path: Path) -> Ed25519PrivateKey:
    """The signing key at *path*, created (mode 0600, written once) when there is none."""
    if path.exists():
        return load_private(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    if not _write_once(path, pem, 0o600):  # another process made it first
        return load_private(path)
    return key


def sign(key: Ed25519PrivateKey, tree_size: int, root_hex: str, ts: str) -> Checkpoint:
    signature = key.sign(signed_text(tree_size, root_hex, ts))
    return Checkpoint(
        tree_size=tree_size,
        root=root_hex,
        ts=ts,
        key_id=key_id(key.public_key()),
        signature=base64.b64encode(signature).decode("ascii"),
    )


def signature_ok(public: Ed25519PublicKey, cp: Checkpoint) -> bool:
    try:
        public.verify(base64.b64decode(cp.signature, validate=True), cp.message())
    except (InvalidSignature, ValueError):
        return False
    return True


def _write_once(path: Path, data: bytes, mode: int) -> bool:
    """Create *path* holding *data*, complete or not at all (a crash leaves only a hidden
    temporary file); False if *path* already exists, which is then left as it is."""
    temp = path.with_name(f".{path.name}.{os.getpid()}.{os.urandom(4).hex()}.tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        try:
            os.link(temp, path)  # atomic, and refuses to replace an existing file
        except FileExistsError:
            return False
        dirfd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dirfd)
        finally:
            os.close(dirfd)
        return True
    finally:
        with suppress(FileNotFoundError):
            os.unlink(temp)


# -- the witness directory ------------------------------------------------------------------


def witness_name(tree_size: int) -> str:
    return f"checkpoint-{tree_size:012d}.json"


def witness_write(directory: Path, cp: Checkpoint) -> None:
    """Write *cp* to the witness once; an existing file for that size is left as it is."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / witness_name(cp.tree_size)
    data = json.dumps(cp.to_json(), sort_keys=True).encode() + b"\n"
    _write_once(path, data, 0o444)


def witness_read(directory: Path) -> list[Checkpoint]:
    """Every checkpoint in the witness, by tree size; a malformed file raises ValueError."""
    if not directory.is_dir():
        return []
    out = []
    for path in sorted(directory.glob("checkpoint-*.json")):
        try:
            out.append(Checkpoint.from_json(json.loads(path.read_text())))
        except (OSError, ValueError) as exc:
            raise ValueError(f"witness file {path.name} is unreadable: {exc}") from None
    return sorted(out, key=lambda c: c.tree_size)
