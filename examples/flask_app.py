"""Scan uploads in a Flask app before anything is stored.

    UPLOADSCAN_HOME=/srv/uploadscan flask --app examples/flask_app run
    gunicorn --workers 4 --chdir examples 'flask_app:create_app()'

POST /uploads with a multipart file field ``file``:

- 201: allowed and saved in ``UPLOAD_DIR``;
- 202: held in ``QUARANTINE_DIR`` for a moderator (``uploadscan review list``);
- 451: refused (see ``BLOCKED_STATUS``); 400: no file; 413: over ``MAX_CONTENT_LENGTH``.
"""

from __future__ import annotations

import mimetypes
import os
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from flask import Flask, current_app, jsonify, request

import uploadscan

# 451 Unavailable For Legal Reasons (RFC 7725), not 422: the request is well formed, the content
# is refused because of what it is. 422 is what frameworks send for malformed forms (FastAPI's
# validation errors), so a distinct code lets clients and dashboards count policy refusals.
BLOCKED_STATUS = 451

_scanner_lock = threading.Lock()


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    app = Flask(__name__)
    app.config.update(
        MAX_CONTENT_LENGTH=20 * 1024 * 1024,  # Flask answers 413 before reading a larger body
        UPLOADSCAN_HOME=os.environ.get("UPLOADSCAN_HOME"),
        UPLOAD_DIR=os.environ.get("UPLOAD_DIR", "uploads"),
        QUARANTINE_DIR=os.environ.get("QUARANTINE_DIR", "quarantine"),
    )
    app.config.update(config or {})
    for key in ("UPLOAD_DIR", "QUARANTINE_DIR"):
        Path(app.config[key]).mkdir(parents=True, exist_ok=True)
    app.add_url_rule("/uploads", view_func=upload, methods=["POST"])
    app.register_error_handler(413, lambda _: (jsonify(error="upload too large"), 413))
    return app


def get_scanner() -> uploadscan.Scanner:
    """The process's Scanner, opened on first use: each worker opens its own after the fork
    (a SQLite handle must not cross a fork, so never open it in a ``--preload`` master).
    The fail mode and limits come from the data directory's ``config.json``."""
    extensions = current_app.extensions
    with _scanner_lock:
        if "uploadscan" not in extensions:
            home = current_app.config["UPLOADSCAN_HOME"]
            extensions["uploadscan"] = uploadscan.Scanner.open(home)
        return extensions["uploadscan"]


def upload() -> Any:
    file = request.files.get("file")
    if file is None or not file.filename:
        return jsonify(error="missing file field 'file'"), 400
    data = file.read()  # scan exactly the bytes that get stored
    verdict = get_scanner().scan(data)
    if verdict.action is uploadscan.Action.BLOCK:
        # Name the lists and the verdict (the audit log holds the evidence under that id), never
        # hashes or distances: a distance tells an uploader how far to alter the file to get it
        # past the list, and listed hashes are often shared with the platform in confidence.
        # No list named means the upload could not be checked and the fail mode is "block".
        lists = sorted(
            {m.list_name for m in verdict.matches if m.action is uploadscan.Action.BLOCK}
        )
        return jsonify(error="upload refused", lists=lists, verdict=verdict.id), BLOCKED_STATUS
    # The stored name is the verdict id plus the sniffed type's extension; the client's file
    # name is never used as a path.
    name = verdict.id + (mimetypes.guess_extension(verdict.media_type or "") or "")
    if verdict.action is uploadscan.Action.REVIEW:
        (Path(current_app.config["QUARANTINE_DIR"]) / name).write_bytes(data)
        return jsonify(status="pending review", verdict=verdict.id), 202
    (Path(current_app.config["UPLOAD_DIR"]) / name).write_bytes(data)
    return jsonify(id=name, verdict=verdict.id), 201
