"""Reading request bodies without trusting their size, and the errors that become HTTP answers.

The body is counted while it streams in, so a client that lies in ``Content-Length`` (or sends
none, chunked) is cut off at the limit instead of filling memory. Multipart uploads are parsed
incrementally and only the ``file`` field is kept, in memory: Starlette's own form parser spools
large files to a temporary file on disk, and the service promises never to store user content.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, cast

from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import Request

from .._errors import RequestError

if TYPE_CHECKING:
    from python_multipart.multipart import MultipartCallbacks

__all__ = ["RequestError", "read_body", "read_json", "read_upload"]

#: The multipart field that carries the upload (``curl -F file=@photo.jpg``).
FILE_FIELD = "file"


def _too_large(limit: int) -> RequestError:
    return RequestError(413, "body_too_large", f"request body exceeds the limit of {limit} bytes")


def _check_declared_length(request: Request, limit: int) -> None:
    declared = request.headers.get("content-length")
    if declared is None:
        return
    try:
        length = int(declared)
    except ValueError:
        raise RequestError(400, "bad_request", "Content-Length is not an integer") from None
    if length > limit:
        raise _too_large(limit)


async def read_body(request: Request, limit: int) -> bytes:
    """The whole body, at most ``limit`` bytes (413 as soon as it is exceeded)."""
    _check_declared_length(request, limit)
    buf = bytearray()
    async for chunk in request.stream():
        if len(buf) + len(chunk) > limit:
            raise _too_large(limit)
        buf += chunk
    return bytes(buf)


async def read_json(request: Request, limit: int) -> Any:
    body = await read_body(request, limit)
    if not body:
        raise RequestError(400, "empty_body", "the request body is empty; send a JSON object")
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise RequestError(400, "bad_json", f"the request body is not valid JSON: {exc}") from None


async def read_upload(request: Request, limit: int) -> tuple[bytes, str | None]:
    """The uploaded bytes and the client's file name (multipart only; informational).

    ``multipart/form-data`` bodies must carry a ``file`` field; any other content type is the
    upload itself. Either way an empty upload is a 400: there is nothing to scan.
    """
    ctype, params = parse_options_header(request.headers.get("content-type", ""))
    if ctype == b"multipart/form-data":
        data, filename = await _read_multipart(request, limit, params.get(b"boundary"))
    else:
        data, filename = await read_body(request, limit), None
    if not data:
        raise RequestError(400, "empty_body", "the upload is empty; send the file's bytes")
    return data, filename


class _FilePart:
    """Callbacks for ``MultipartParser`` that keep only the ``file`` field's bytes."""

    def __init__(self) -> None:
        self.data = bytearray()
        self.found = False
        self.filename: str | None = None
        self._field = bytearray()
        self._value = bytearray()
        self._disposition: bytes | None = None
        self._keeping = False
        self.complete = False

    def callbacks(self) -> MultipartCallbacks:
        return cast(
            "MultipartCallbacks",
            {
                "on_part_begin": self._part_begin,
                "on_header_field": self._header_field,
                "on_header_value": self._header_value,
                "on_header_end": self._header_end,
                "on_headers_finished": self._headers_finished,
                "on_part_data": self._part_data,
                "on_part_end": self._part_end,
                "on_end": self._end,
            },
        )

    def _part_begin(self) -> None:
        self._disposition = None
        self._keeping = False

    def _header_field(self, data: bytes, start: int, end: int) -> None:
        self._field += data[start:end]

    def _header_value(self, data: bytes, start: int, end: int) -> None:
        self._value += data[start:end]

    def _header_end(self) -> None:
        if bytes(self._field).lower() == b"content-disposition":
            self._disposition = bytes(self._value)
        self._field.clear()
        self._value.clear()

    def _headers_finished(self) -> None:
        if self._disposition is None or self.found:
            return
        _, params = parse_options_header(self._disposition)
        if params.get(b"name") == FILE_FIELD.encode():
            self._keeping = True
            self.found = True
            raw = params.get(b"filename")
            self.filename = raw.decode("utf-8", "replace") if raw else None

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        if self._keeping:
            self.data += data[start:end]

    def _part_end(self) -> None:
        self._keeping = False

    def _end(self) -> None:
        self.complete = True


async def _read_multipart(
    request: Request, limit: int, boundary: bytes | None
) -> tuple[bytes, str | None]:
    if not boundary:
        raise RequestError(400, "bad_multipart", "multipart/form-data without a boundary")
    _check_declared_length(request, limit)
    part = _FilePart()
    parser = MultipartParser(boundary, part.callbacks())
    seen = 0
    try:
        async for chunk in request.stream():
            seen += len(chunk)
            if seen > limit:
                raise _too_large(limit)
            parser.write(chunk)
        parser.finalize()
    except FormParserError as exc:
        raise RequestError(400, "bad_multipart", f"malformed multipart body: {exc}") from None
    if not part.complete:
        raise RequestError(400, "bad_multipart", "the multipart body ends before its last boundary")
    if not part.found:
        raise RequestError(400, "missing_file", f"the multipart body has no {FILE_FIELD!r} field")
    return bytes(part.data), part.filename
