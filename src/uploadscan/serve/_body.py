"""Reading request bodies without trusting their size or their pace, and the errors that become
HTTP answers.

The body is counted while it streams in, so a client that lies in ``Content-Length`` (or sends
none, chunked) is cut off at the limit instead of filling memory. It must also keep pace
(``ReceivePace``): a request holds one of the few admission slots while its body arrives, so a
handful of clients trickling bytes would otherwise keep every legitimate scan out for the whole
request timeout. Multipart uploads are parsed incrementally and only the ``file`` field is kept,
in memory: Starlette's own form parser spools large files to a temporary file on disk, and the
service promises never to store user content. A body with two ``file`` fields is refused: one
request is one upload and gets one verdict, and scanning only one of them would let the other
through unseen.
"""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator
from contextlib import aclosing
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

import anyio
from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import ClientDisconnect, Request

from .._errors import RequestError

if TYPE_CHECKING:
    from python_multipart.multipart import MultipartCallbacks

__all__ = ["CLOSE", "ReceivePace", "RequestError", "read_body", "read_json", "read_upload"]

#: The multipart field that carries the upload (``curl -F file=@photo.jpg``).
FILE_FIELD = "file"
#: For a sender too slow to wait for: the connection ends with the answer. (Other answers given
#: before the body's end keep the connection; uvicorn reads and discards the rest, so a client
#: that is still sending gets the answer rather than a reset.)
CLOSE = {"Connection": "close"}


@dataclass(frozen=True, slots=True)
class ReceivePace:
    """How fast a body must arrive: its first bytes within ``grace`` seconds, then on average
    at least ``min_rate`` bytes a second (the deadline for having received ``n`` bytes is
    ``grace + n / min_rate`` after the body started). The request timeout still caps it all.
    """

    grace: float
    min_rate: float

    def deadline(self, started: float, received: int) -> float:
        return started + self.grace + received / self.min_rate

    def too_slow(self) -> RequestError:
        rate = self.min_rate / 1024
        return RequestError(
            408,
            "too_slow",
            f"the request body arrived slower than {rate:g} KiB/s after the first "
            f"{self.grace:g} s; send the whole upload at once",
            dict(CLOSE),
        )


async def _chunks(request: Request, pace: ReceivePace) -> AsyncGenerator[bytes, None]:
    """The body's chunks as they arrive, ending the request (408) when the sender falls behind
    ``pace``."""
    stream = request.stream()
    started = anyio.current_time()
    received = 0
    try:
        while True:
            with anyio.move_on_after(
                pace.deadline(started, received) - anyio.current_time()
            ) as waiting:
                try:
                    chunk = await anext(stream)
                except StopAsyncIteration:
                    return
                except ClientDisconnect:
                    raise _disconnected() from None
            if waiting.cancelled_caught:
                raise pace.too_slow()
            received += len(chunk)
            yield chunk
    finally:
        await stream.aclose()


def _disconnected() -> RequestError:
    # nginx's 499: nobody reads this answer; it names the end in the log and the metrics.
    return RequestError(
        499, "disconnected", "the client closed the connection before sending the whole body"
    )


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


async def read_body(request: Request, limit: int, pace: ReceivePace) -> bytes:
    """The whole body, at most ``limit`` bytes (413 as soon as it is exceeded), arriving at
    ``pace`` (408 as soon as it falls behind)."""
    _check_declared_length(request, limit)
    buf = bytearray()
    async with aclosing(_chunks(request, pace)) as chunks:
        async for chunk in chunks:
            if len(buf) + len(chunk) > limit:
                raise _too_large(limit)
            buf += chunk
    return bytes(buf)


async def read_json(request: Request, limit: int, pace: ReceivePace) -> Any:
    body = await read_body(request, limit, pace)
    if not body:
        raise RequestError(400, "empty_body", "the request body is empty; send a JSON object")
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise RequestError(400, "bad_json", f"the request body is not valid JSON: {exc}") from None
    except RecursionError:
        # json nests one C stack frame per level; a few kilobytes of brackets exhaust it.
        raise RequestError(
            400, "bad_json", "the request body is JSON nested too deeply to be a lookup"
        ) from None


async def read_upload(request: Request, limit: int, pace: ReceivePace) -> tuple[bytes, str | None]:
    """The uploaded bytes and the client's file name (multipart only; informational).

    ``multipart/form-data`` bodies must carry exactly one ``file`` field; any other content
    type is the upload itself. Either way an empty upload is a 400: there is nothing to scan.
    """
    ctype, params = parse_options_header(request.headers.get("content-type", ""))
    if ctype == b"multipart/form-data":
        data, filename = await _read_multipart(request, limit, pace, params.get(b"boundary"))
    else:
        data, filename = await read_body(request, limit, pace), None
    if not data:
        raise RequestError(400, "empty_body", "the upload is empty; send the file's bytes")
    return data, filename


class _FilePart:
    """Callbacks for ``MultipartParser`` that keep only the ``file`` field's bytes, and notice
    a second ``file`` field."""

    def __init__(self) -> None:
        self.data = bytearray()
        self.found = False
        self.duplicate = False
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
        if self._disposition is None:
            return
        _, params = parse_options_header(self._disposition)
        if params.get(b"name") == FILE_FIELD.encode():
            if self.found:
                self.duplicate = True
                return
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
    request: Request, limit: int, pace: ReceivePace, boundary: bytes | None
) -> tuple[bytes, str | None]:
    if not boundary:
        raise RequestError(400, "bad_multipart", "multipart/form-data without a boundary")
    _check_declared_length(request, limit)
    part = _FilePart()
    parser = MultipartParser(boundary, part.callbacks())
    seen = 0
    try:
        async with aclosing(_chunks(request, pace)) as chunks:
            async for chunk in chunks:
                seen += len(chunk)
                if seen > limit:
                    raise _too_large(limit)
                parser.write(chunk)
                if part.duplicate:
                    raise RequestError(
                        400,
                        "multiple_files",
                        f"the multipart body has more than one {FILE_FIELD!r} field; send one "
                        "upload per request",
                    )
        parser.finalize()
    except FormParserError as exc:
        raise RequestError(400, "bad_multipart", f"malformed multipart body: {exc}") from None
    if not part.complete:
        raise RequestError(400, "bad_multipart", "the multipart body ends before its last boundary")
    if not part.found:
        raise RequestError(400, "missing_file", f"the multipart body has no {FILE_FIELD!r} field")
    return bytes(part.data), part.filename
