"""The audit witness: where every signed checkpoint is also written once, outside the
database, so that a rewritten database disagrees with it (docs/audit.md).

Owns the ``Witness`` interface, the directory witness, and the factory that maps the
``audit_witness`` setting to one (a directory, ``s3://bucket/prefix``, or ``off``).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from . import checkpoints as cps
from .errors import InvalidInput

if TYPE_CHECKING:
    from .settings import Settings


class Witness(Protocol):
    """Write-once storage of checkpoints, one record per tree size."""

    def write(self, cp: cps.Checkpoint) -> None:
        """Record *cp*; a record for its tree size that already exists is left as it is."""

    def read(self) -> list[cps.Checkpoint]:
        """Every checkpoint recorded, by tree size; ValueError names a malformed one."""


class DirectoryWitness:
    """A file per checkpoint in a directory, created once, read-only."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def __str__(self) -> str:
        return str(self.directory)

    def write(self, cp: cps.Checkpoint) -> None:
        try:
            cps.witness_write(self.directory, cp)
        except OSError as exc:
            raise InvalidInput(f"cannot write to the audit witness {self}: {exc}") from None

    def read(self) -> list[cps.Checkpoint]:
        return cps.witness_read(self.directory)


def open_witness(value: str, settings: Settings | None = None) -> Witness | None:
    """The witness the ``audit_witness`` setting names, or None when it is off."""
    if not value or value.lower() == "off":
        return None
    if value.lower().startswith("s3://"):
        try:
            from .witness_s3 import open_s3_witness
        except ModuleNotFoundError as exc:
            if (exc.name or "").partition(".")[0] not in ("boto3", "botocore"):
                raise
            raise InvalidInput(
                "an S3 audit witness needs boto3: pip install 'modelvault[s3]'"
            ) from None
        return open_s3_witness(value, settings)
    if "://" in value:
        raise InvalidInput(
            f"audit witness {value!r}: use a directory, s3://BUCKET/PREFIX or off",
            field="audit_witness",
        )
    return DirectoryWitness(Path(value).expanduser())
