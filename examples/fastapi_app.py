"""Scan uploads in a FastAPI app before anything is stored.

    UPLOADSCAN_HOME=/srv/uploadscan uvicorn --app-dir examples fastapi_app:app
    uvicorn --workers 4 --app-dir examples fastapi_app:app

POST /uploads with a multipart file field ``file``:

- 201: allowed and saved in ``UPLOAD_DIR``;
- 202: held in ``QUARANTINE_DIR`` for a moderator (``uploadscan review list``);
- 451: refused (see ``BLOCKED_STATUS``); 400: no file; 411/413: no length / over the limit.
"""

from __future__ import annotations

import mimetypes
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated

from fastapi import FastAPI, File, Request, Response, UploadFile
from fastapi.responses import JSONResponse

import uploadscan

MAX_UPLOAD_BYTES = 20 * 1024 * 1024

# 451 Unavailable For Legal Reasons (RFC 7725), not 422: the request is well formed, the content
# is refused because of what it is. 422 is what FastAPI sends for a request that fails
# validation, so a distinct code lets clients and dashboards count policy refusals.
BLOCKED_STATUS = 451


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    # Runs in each worker process after it started (post-fork): every worker opens its own
    # Scanner; they share the data directory and its memory-mapped index files. The fail mode
    # and limits come from the data directory's config.json.
    app.state.upload_dir = Path(os.environ.get("UPLOAD_DIR", "uploads"))
    app.state.quarantine_dir = Path(os.environ.get("QUARANTINE_DIR", "quarantine"))
    app.state.upload_dir.mkdir(parents=True, exist_ok=True)
    app.state.quarantine_dir.mkdir(parents=True, exist_ok=True)
    with uploadscan.Scanner.open(os.environ.get("UPLOADSCAN_HOME")) as scanner:
        app.state.scanner = scanner
        yield


app = FastAPI(lifespan=lifespan)


@app.middleware("http")
async def limit_body_size(
    request: Request, call_next: Callable[[Request], Awaitable[Response]]
) -> Response:
    # FastAPI sets no body limit. Requiring Content-Length (browsers and HTTP clients send it
    # with multipart forms) refuses an oversized upload before a byte of it is read: the server
    # reads no more than that length. A chunked body has no length to check, so it is refused.
    if request.method == "POST":
        length = request.headers.get("content-length", "")
        if not length.isdigit() or "transfer-encoding" in request.headers:
            return JSONResponse({"error": "Content-Length required"}, status_code=411)
        if int(length) > MAX_UPLOAD_BYTES:
            return JSONResponse({"error": "upload too large"}, status_code=413)
    return await call_next(request)


# A plain ``def``: FastAPI runs it in its thread pool, so the CPU-bound scan never blocks the
# event loop. The file field is optional so that a missing one gets a 400 like any other client
# error, not FastAPI's 422 validation response.
@app.post("/uploads")
def upload(request: Request, file: Annotated[UploadFile | None, File()] = None) -> JSONResponse:
    if file is None:
        return JSONResponse({"error": "missing file field 'file'"}, status_code=400)
    data = file.file.read()  # scan exactly the bytes that get stored
    verdict = request.app.state.scanner.scan(data)
    if verdict.action is uploadscan.Action.BLOCK:
        # Name the lists and the verdict (the audit log holds the evidence under that id), never
        # hashes or distances: a distance tells an uploader how far to alter the file to get it
        # past the list, and listed hashes are often shared with the platform in confidence.
        # No list named means the upload could not be checked and the fail mode is "block".
        lists = sorted(
            {m.list_name for m in verdict.matches if m.action is uploadscan.Action.BLOCK}
        )
        body = {"error": "upload refused", "lists": lists, "verdict": verdict.id}
        return JSONResponse(body, status_code=BLOCKED_STATUS)
    # The stored name is the verdict id plus the sniffed type's extension; the client's file
    # name is never used as a path.
    name = verdict.id + (mimetypes.guess_extension(verdict.media_type or "") or "")
    if verdict.action is uploadscan.Action.REVIEW:
        (request.app.state.quarantine_dir / name).write_bytes(data)
        return JSONResponse({"status": "pending review", "verdict": verdict.id}, status_code=202)
    (request.app.state.upload_dir / name).write_bytes(data)
    return JSONResponse({"id": name, "verdict": verdict.id}, status_code=201)
