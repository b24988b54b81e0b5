"""The request bodies of the API (pydantic), and the JSON response helper.

Responses are the domain records as ``as_json`` writes them (their schemas come from the
dataclasses themselves); the remote SDK reads them back with ``wire.from_json``.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from ..domain import as_json


def ok(value: Any, status: int = 200) -> Response:
    """*value* as JSON (domain records included)."""
    body = json.dumps(as_json(value), ensure_ascii=False, separators=(",", ":"))
    return Response(body.encode("utf-8"), status_code=status, media_type="application/json")


INT_MAX = 2**63 - 1  # the largest integer a column holds (SQLite INTEGER, PostgreSQL BIGINT)
Number = Annotated[int, Field(ge=0, le=INT_MAX)]


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PushedIdentity(Body):
    """What a version registered offline keeps when it is pushed (``sync push``)."""

    number: int = Field(ge=1)
    created_at: str
    created_by: str
    digest: str


class RegisterBody(Body):
    """A version whose bytes are already uploaded: the manifest blob names every file."""

    kind: Literal["model", "config", "system"] = "model"
    manifest: str | None = Field(None, description="digest of the uploaded manifest blob")
    manifest_text: str | None = Field(
        None, description="the manifest itself (canonical JSON), instead of uploading it"
    )
    params: dict[str, Any] = {}
    metrics: dict[str, Any] = {}
    tags: dict[str, Any] = {}
    datasets: list[dict[str, Any]] = []
    parents: list[str] = []
    components: list[str] = []
    label: str | None = None
    description: str | None = None
    config: dict[str, Any] | None = None
    feature_pipeline: str | None = None
    inference_config: str | None = None
    flavor: str | None = None
    code: dict[str, Any] | None = None
    environment: dict[str, Any] | None = None
    extra_blobs: list[tuple[str, str]] = []
    blobs: dict[str, str] = Field(
        default_factory=dict,
        description="small files sent inline: digest -> base64 of the bytes (stored once"
        " they hash to their digest), sparing the client an upload request per file",
    )
    run: str | None = None
    pushed: PushedIdentity | None = Field(
        None, description="keep this number, time, author and digest (sync push)"
    )


class ApproveBody(Body):
    comment: str | None = None


class PromoteBody(Body):
    to: str
    reason: str | None = None
    override: bool = False


class RollbackBody(Body):
    reason: str
    to: Number | None = None


class AliasBody(Body):
    ref: str
    expect: str | Number | None = None


class DigestsBody(Body):
    digests: list[str] = Field(max_length=10_000)


class UploadBody(Body):
    digest: str | None = Field(
        None,
        description="the blob's digest; omitted when the client hashes the file as it sends"
        " it, and names the digest when it completes the upload",
    )
    size: Number
    chunk_size: int | None = Field(None, ge=1 << 20, le=1 << 30)
    key: str | None = Field(
        None,
        description="without a digest: the client's name for this file as it is now (1 to"
        " 64 letters or digits), so that asking again finds the same session",
    )


class CompleteBody(Body):
    digest: str | None = Field(
        None, description="what the client's bytes hash to (needed when opened without one)"
    )
