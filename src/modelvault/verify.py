"""Offline check of an audit bundle: ``python -m modelvault.verify BUNDLE [--key PEM]``.

Needs no database and no server, and imports nothing beyond the standard library and
``cryptography`` (plus modelvault's own standard-library modules), so an auditor can run it
in a bare environment. It checks that

- every checkpoint is signed by the bundle's key (or by ``--key``, the key you trust), and each
  is consistent with the one before (RFC 9162 consistency proofs): the log only grew;
- every event's hash is recomputed from its fields (over a commitment to its actor for
  events of scheme 2, whose clear actor is checked against it unless it was erased), and
  consecutive events link;
- every event is in the log signed by the newest checkpoint (RFC 9162 inclusion proofs).

Exit 0 and one line "verified: ..." on success; exit 1 and one line naming the first failure.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from . import checkpoints as cps
from . import merkle
from .errors import ModelVaultError
from .eventhash import CLEAR, COMMITTED, commit_actor, event_hash

FORMAT = "modelvault-audit-bundle/1"


class BundleError(Exception):
    pass


def _lines(path: Path) -> list[dict[str, Any]]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise BundleError(f"cannot read {path.name}: {exc}") from None
    out = []
    for n, line in enumerate(text.splitlines(), 1):
        try:
            record = json.loads(line)
        except ValueError:
            raise BundleError(f"{path.name} line {n} is not JSON") from None
        if not isinstance(record, dict):
            raise BundleError(f"{path.name} line {n} is not a JSON object")
        out.append(record)
    return out


def _hashes(values: Any, what: str) -> list[bytes]:
    if not isinstance(values, list):
        raise BundleError(f"{what} is not a list")
    try:
        return [bytes.fromhex(v) for v in values]
    except (TypeError, ValueError):
        raise BundleError(f"{what} holds a value that is not hex") from None


def verify_bundle(bundle: Path, trusted_key: bytes | None = None) -> str:
    """Check *bundle*; returns a one-line summary or raises BundleError naming the failure."""
    try:
        summary = json.loads((bundle / "bundle.json").read_text(encoding="utf-8"))
        pem = (bundle / "public_key.pem").read_bytes()
    except (OSError, ValueError) as exc:
        raise BundleError(f"not an audit bundle: {exc}") from None
    if not isinstance(summary, dict) or summary.get("format") != FORMAT:
        raise BundleError(f"not an audit bundle of format {FORMAT}")
    try:
        key = cps.load_public(pem)
        if trusted_key is not None and cps.key_id(cps.load_public(trusted_key)) != cps.key_id(key):
            raise BundleError("the bundle is signed with another key than the one you trust")
        head = cps.Checkpoint.from_json(summary.get("checkpoint"))
    except ValueError as exc:
        raise BundleError(str(exc)) from None

    previous: cps.Checkpoint | None = None
    signed: dict[int, cps.Checkpoint] = {}
    for n, record in enumerate(_lines(bundle / "checkpoints.jsonl"), 1):
        try:
            cp = cps.Checkpoint.from_json({k: record.get(k) for k in head.to_json()})
        except ValueError as exc:
            raise BundleError(f"checkpoint line {n}: {exc}") from None
        if not cps.signature_ok(key, cp):
            raise BundleError(f"checkpoint {cp.tree_size}: the signature does not verify")
        if previous is not None:
            if record.get("consistency_from") != previous.tree_size:
                raise BundleError(f"checkpoint {cp.tree_size}: its proof starts elsewhere")
            path = _hashes(record.get("consistency"), f"checkpoint {cp.tree_size} proof")
            if not merkle.verify_consistency(
                previous.tree_size,
                cp.tree_size,
                path,
                bytes.fromhex(previous.root),
                bytes.fromhex(cp.root),
            ):
                raise BundleError(
                    f"checkpoint {cp.tree_size} is not consistent with checkpoint "
                    f"{previous.tree_size}: the log was rewritten between them"
                )
        signed[cp.tree_size] = cp
        previous = cp
    if signed.get(head.tree_size) != head:
        raise BundleError("the bundle's newest checkpoint is not among its signed checkpoints")

    root = bytes.fromhex(head.root)
    count, last_seq, last_hash = 0, 0, ""
    for n, e in enumerate(_lines(bundle / "events.jsonl"), 1):
        try:
            seq = int(e["seq"])
            scheme = int(e.get("scheme", CLEAR))
            recomputed = event_hash(
                seq=seq,
                ts=e["ts"],
                actor=e["actor"],
                action=e["action"],
                project=e["project"],
                model=e["model"],
                subject=e["subject"],
                before=e["before"],
                after=e["after"],
                reason=e["reason"],
                prev_hash=e["prev_hash"],
                scheme=scheme,
                actor_commitment=e.get("actor_commitment"),
            )
            # the clear actor must be the one committed to, unless it was erased
            salt = e.get("actor_salt") if scheme == COMMITTED else None
            named = salt is None or commit_actor(salt, e["actor"]) == e["actor_commitment"]
        except (KeyError, TypeError, ValueError, ModelVaultError) as exc:
            raise BundleError(f"event line {n} is malformed: {exc}") from None
        if recomputed != e.get("hash"):
            raise BundleError(f"event {seq}: its fields do not give its hash (altered)")
        if not named:
            raise BundleError(f"event {seq}: its actor does not match its commitment (altered)")
        if seq == last_seq + 1 and last_seq and e["prev_hash"] != last_hash:
            raise BundleError(f"event {seq} does not link to event {last_seq}")
        if seq <= last_seq:
            raise BundleError(f"event {seq} is out of order")
        path = _hashes(e.get("proof"), f"event {seq} proof")
        leaf = merkle.leaf_hash(bytes.fromhex(recomputed))
        if not merkle.verify_inclusion(leaf, seq - 1, head.tree_size, path, root):
            raise BundleError(
                f"event {seq}: its inclusion proof does not lead to the signed root of "
                f"checkpoint {head.tree_size}"
            )
        count, last_seq, last_hash = count + 1, seq, recomputed
    if count != summary.get("events"):
        raise BundleError(f"the bundle says {summary.get('events')} events but holds {count}")
    return (
        f"verified: {count} events in the log of {head.tree_size} signed at {head.ts}, "
        f"{len(signed)} checkpoints consistent, key {cps.key_id(key)}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m modelvault.verify", description="Check an audit bundle offline."
    )
    parser.add_argument("bundle", type=Path)
    parser.add_argument("--key", type=Path, help="PEM public key you trust (default: the bundle's)")
    args = parser.parse_args(argv)
    try:
        trusted = args.key.read_bytes() if args.key else None
        print(verify_bundle(args.bundle, trusted))
    except (BundleError, OSError) as exc:
        print(f"verify: FAILED: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
