"""Blobs over the wire: which are missing, streamed upload and download (digests checked at
both ends), chunked resumable uploads, and presigned URLs with the S3 backend.

A blob is visible to a caller only when a version of a project they may read names it, so
the ``missing`` answer and downloads reveal nothing about other tenants' files; an upload of
bytes the store already holds is accepted and stores nothing new.
"""

from __future__ import annotations

import logging
import threading
from typing import Annotated, Any

from fastapi import Depends, Header, Request
from fastapi.responses import Response, StreamingResponse
from starlette.concurrency import run_in_threadpool

from ..blobs.base import checked_digest
from ..errors import Forbidden, InvalidInput, NotFound, StoreError
from ..service import identity, possession
from . import transfers
from .auth import Caller, caller
from .bodies import CompleteBody, DigestsBody, UploadBody, ok
from .reading import BlobFileResponse
from .routing import documented_router

router = documented_router("/api/v1")
log = logging.getLogger("modelvault.server")
Who = Annotated[Caller, Depends(caller)]
_STREAM: dict[str, Any] = {"requestBody": {"content": {"application/octet-stream": {"schema": {}}}}}


def visible(who: Caller, digests: list[str]) -> set[str]:
    """The digests among *digests* that a version of a project *who* may read names."""
    with who.base._ctx.store.read() as conn:
        return possession.visible(conn, digests, who.readable())


def _may_upload(who: Caller) -> None:
    """Uploading needs ``register`` on some project (the denial is audited)."""
    if who.principal.projects("register") == frozenset():
        scope = who.principal.project or next(iter(sorted(who.principal.roles)), "*")
        identity.authorize(who.base._ctx, who.principal, scope, "register")
        raise Forbidden(f"token for {who.user} lacks permission 'register'")


def _readable_blob(who: Caller, digest: str) -> str:
    checked_digest(digest)
    if not visible(who, [digest]):
        raise NotFound(f"blob {digest} does not exist or this token may not see it")
    return digest


@router.post("/blobs/missing")
def missing(body: DigestsBody, who: Who) -> Response:
    """Of *digests*, those the client must upload."""
    for digest in body.digests:
        checked_digest(digest)
    wanted = list(dict.fromkeys(body.digests))
    seen = visible(who, wanted) if wanted else set()
    blobs = who.base._ctx.blobs
    return ok({"missing": [d for d in wanted if d not in seen or not blobs.exists(d)]})


@router.put("/blobs/{digest}", status_code=201, openapi_extra=_STREAM)
async def upload(
    digest: str,
    request: Request,
    who: Who,
    content_length: Annotated[int | None, Header()] = None,
) -> Response:
    _may_upload(who)
    ctx = who.base._ctx
    result = await transfers.receive_blob(
        ctx.blobs, ctx.settings.home, digest, request.stream(), content_length
    )
    await run_in_threadpool(_sent_bytes, who, [digest])
    # whether the bytes were new to the store is not told: that would say another project
    # holds the same file
    return ok({**result, "stored": True}, status=201)


def _sent_bytes(who: Caller, digests: list[str]) -> None:
    """*who* has shown the server these blobs' bytes: versions of theirs may name them."""
    possession.record(who.base._ctx, who.user, digests)


@router.head("/blobs/{digest}", response_model=None)
def blob_head(digest: str, who: Who) -> Response:
    """The blob's size (Content-Length), without its bytes."""
    return download(digest, who)


@router.get("/blobs/{digest}", response_model=None)
def download(digest: str, who: Who) -> Response:
    _readable_blob(who, digest)
    blobs: Any = who.base._ctx.blobs
    headers = {"X-Digest": digest}
    held = blobs.held(digest) if hasattr(blobs, "held") else None
    if held is not None:  # kept in the metadata store (a small file of a registration)
        return Response(held, media_type="application/octet-stream", headers=headers)
    if hasattr(blobs, "path_of"):
        path = blobs.path_of(digest)
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            raise NotFound(f"blob {digest} is not in the store", digest=digest) from None
        return BlobFileResponse(path, size, headers)
    if hasattr(blobs, "open_stream"):
        return StreamingResponse(
            blobs.open_stream(digest), media_type="application/octet-stream", headers=headers
        )
    data = blobs.read_bytes(digest)
    return Response(data, media_type="application/octet-stream", headers=headers)


@router.get("/blobs/{digest}/url")
def presigned(digest: str, who: Who, method: str = "GET") -> Response:
    """A URL to transfer the blob straight to or from S3 (S3 backend only). A PUT goes to a
    key of its own, whatever the bucket holds, and is finished by ``complete``."""
    blobs = _s3_blobs(who, "method")
    if method == "GET":
        _readable_blob(who, digest)
        signed = blobs.presigned_get(digest, 900)
        return ok({"method": signed.method, "url": signed.url, "headers": signed.headers})
    if method != "PUT":
        raise InvalidInput("method must be GET or PUT", field="method")
    _may_upload(who)
    from ..blobs import s3incoming

    upload_id, signed = s3incoming.presign(blobs, who.user, checked_digest(digest), 900)
    return ok(
        {
            "method": signed.method,
            "url": signed.url,
            "headers": signed.headers,
            "complete": f"/api/v1/blobs/{digest}/presigned/{upload_id}",
        }
    )


@router.post("/blobs/{digest}/presigned/{upload_id}", status_code=201)
def complete_presigned(digest: str, upload_id: str, who: Who) -> Response:
    """Check the bytes put through a presigned URL against the digest and store them (kept
    as they are if the store has them); the same answer either way."""
    _may_upload(who)
    blobs = _s3_blobs(who, "upload_id")
    checked_digest(digest)
    from ..blobs import s3incoming

    put = s3incoming.complete(blobs, who.user, digest, upload_id)
    if put is None:
        # completed already, like a finished upload session: answering it again would take
        # asking the store whether the blob is still there, which gc decides by what every
        # project's versions name
        raise NotFound(
            f"presigned upload {upload_id[:40]!r} of {digest} does not exist "
            "(finished or never started)",
            upload=upload_id[:40],
        )
    _sent_bytes(who, [digest])
    return ok({"digest": digest, "size": put.size, "stored": True}, status=201)


SWEEP_DELAY_S = 1.0


def sweep_in_background(blobs: Any, stop: threading.Event) -> threading.Thread | None:
    """With the S3 backend, delete the staged objects of presigned uploads never completed,
    a second after the server started (making the S3 client costs CPU the start would
    share). Nothing to do with other backends: None."""
    if not hasattr(blobs, "presigned_get"):
        return None

    def run() -> None:
        if stop.wait(SWEEP_DELAY_S):
            return
        from ..blobs import s3incoming

        try:
            s3incoming.sweep(blobs)
        except StoreError as exc:  # the next start tries again; an operator may use a rule
            log.warning("cannot sweep unfinished presigned uploads: %s", exc)

    thread = threading.Thread(target=run, name="modelvault-sweep-staged", daemon=True)
    thread.start()
    return thread


def _s3_blobs(who: Caller, field: str) -> Any:
    blobs: Any = who.base._ctx.blobs
    if not hasattr(blobs, "presigned_get"):
        raise InvalidInput("presigned URLs need the S3 blob backend", field=field)
    return blobs


@router.post("/uploads", status_code=201)
def start_upload(body: UploadBody, who: Who) -> Response:
    """Open (or find again) the chunked upload of one blob: of a declared digest, or of
    the client's file named by a key while the client hashes it as it sends it."""
    _may_upload(who)
    ctx = who.base._ctx
    session = transfers.open_session(
        ctx.settings.home, ctx.blobs, who.user, body.digest, body.size, body.chunk_size, body.key
    )
    return ok(session.describe(), status=201)


@router.get("/uploads/{upload_id}")
def upload_state(upload_id: str, who: Who) -> Response:
    _may_upload(who)
    ctx = who.base._ctx
    return ok(transfers.find_session(ctx.settings.home, ctx.blobs, upload_id, who.user).describe())


@router.put("/uploads/{upload_id}/chunks/{index}", openapi_extra=_STREAM)
async def upload_chunk(
    upload_id: str,
    index: int,
    request: Request,
    who: Who,
    x_chunk_sha256: Annotated[str | None, Header()] = None,
) -> Response:
    _may_upload(who)
    ctx = who.base._ctx
    session = transfers.find_session(ctx.settings.home, ctx.blobs, upload_id, who.user)
    return ok(await transfers.receive_chunk(session, index, request.stream(), x_chunk_sha256))


@router.post("/uploads/{upload_id}/complete", status_code=201)
def complete_upload(upload_id: str, who: Who, body: CompleteBody | None = None) -> Response:
    """Check the bytes against the digest and store them (dropped if the store has them)."""
    _may_upload(who)
    ctx = who.base._ctx
    session = transfers.find_session(ctx.settings.home, ctx.blobs, upload_id, who.user)
    result = transfers.complete(session, ctx.blobs, body.digest if body is not None else None)
    _sent_bytes(who, [result["digest"]])
    return ok({**result, "stored": True}, status=201)
