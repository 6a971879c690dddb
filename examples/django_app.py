"""Scan uploads in a Django project (settings, view and URLs in one file) before storing them.

    UPLOADSCAN_HOME=/srv/uploadscan python examples/django_app.py runserver
    gunicorn --workers 4 --chdir examples django_app:application

POST /uploads with a multipart file field ``file``:

- 201: allowed and saved in ``UPLOAD_DIR``;
- 202: held in ``QUARANTINE_DIR`` for a moderator (``uploadscan review list``);
- 451: refused (see ``BLOCKED_STATUS``); 400: no file; 413: over ``UPLOAD_MAX_BYTES``.

In a real project the settings go in ``settings.py``, the view in an app's ``views.py``.
"""

from __future__ import annotations

import mimetypes
import os
import sys
import threading
from pathlib import Path

from django.conf import settings
from django.core.management import execute_from_command_line
from django.core.wsgi import get_wsgi_application
from django.http import HttpRequest, JsonResponse
from django.urls import path
from django.views.decorators.http import require_POST

import uploadscan

if not settings.configured:
    settings.configure(
        DEBUG=False,
        SECRET_KEY=os.environ.get("DJANGO_SECRET_KEY", "example-only-set-DJANGO_SECRET_KEY"),
        ALLOWED_HOSTS=os.environ.get("DJANGO_ALLOWED_HOSTS", "localhost,127.0.0.1").split(","),
        ROOT_URLCONF=__name__,
        # A real project keeps its usual MIDDLEWARE, CSRF protection included.
        UPLOADSCAN_HOME=os.environ.get("UPLOADSCAN_HOME"),
        UPLOAD_DIR=Path(os.environ.get("UPLOAD_DIR", "uploads")),
        QUARANTINE_DIR=Path(os.environ.get("QUARANTINE_DIR", "quarantine")),
        # Django's DATA_UPLOAD_MAX_MEMORY_SIZE does not count files, so the view checks this.
        UPLOAD_MAX_BYTES=20 * 1024 * 1024,
    )

# 451 Unavailable For Legal Reasons (RFC 7725), not 422: the request is well formed, the content
# is refused because of what it is. 422 is what frameworks send for malformed forms (FastAPI's
# validation errors), so a distinct code lets clients and dashboards count policy refusals.
BLOCKED_STATUS = 451

_scanner: uploadscan.Scanner | None = None
_scanner_lock = threading.Lock()


def get_scanner() -> uploadscan.Scanner:
    """The process's Scanner, opened on first use: each worker opens its own after the fork
    (a SQLite handle must not cross a fork, so never open it in a ``--preload`` master).
    The fail mode and limits come from the data directory's ``config.json``."""
    global _scanner
    with _scanner_lock:
        if _scanner is None:
            _scanner = uploadscan.Scanner.open(settings.UPLOADSCAN_HOME)
        return _scanner


@require_POST
def upload(request: HttpRequest) -> JsonResponse:
    # Checked before request.FILES parses (and spools) the body.
    if int(request.META.get("CONTENT_LENGTH") or 0) > settings.UPLOAD_MAX_BYTES:
        return JsonResponse({"error": "upload too large"}, status=413)
    file = request.FILES.get("file")
    if file is None:
        return JsonResponse({"error": "missing file field 'file'"}, status=400)
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
        body = {"error": "upload refused", "lists": lists, "verdict": verdict.id}
        return JsonResponse(body, status=BLOCKED_STATUS)
    # The stored name is the verdict id plus the sniffed type's extension; the client's file
    # name is never used as a path.
    name = verdict.id + (mimetypes.guess_extension(verdict.media_type or "") or "")
    if verdict.action is uploadscan.Action.REVIEW:
        settings.QUARANTINE_DIR.mkdir(parents=True, exist_ok=True)
        (settings.QUARANTINE_DIR / name).write_bytes(data)
        return JsonResponse({"status": "pending review", "verdict": verdict.id}, status=202)
    settings.UPLOAD_DIR.mkdir(parents=True, exist_ok=True)
    (settings.UPLOAD_DIR / name).write_bytes(data)
    return JsonResponse({"id": name, "verdict": verdict.id}, status=201)


urlpatterns = [path("uploads", upload)]

application = get_wsgi_application()

if __name__ == "__main__":
    execute_from_command_line(sys.argv)
