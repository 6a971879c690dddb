"""The HTTP/1.1 connection: uvicorn's h11 protocol, with a deadline for request headers and JSON
for the errors it answers itself.

uvicorn has no deadline for a request's headers: a connection that opens and then sends its
headers a byte at a time (or nothing at all) is kept for ever, and every open connection counts
against the connection limit, past which uvicorn answers 503 to everyone. So a connection here
gets ``header_timeout`` seconds to deliver complete request headers — from when it opens, and
on a kept-alive connection from the first byte of the next request — and is then closed, with a
JSON 408 if it had started a request. The body's pace is the app's business (``_body``).

The errors uvicorn writes before the app runs (a malformed request: 400; over the connection
limit: 503) are plain text there; here they are JSON like every other error of the service.
The limit is checked at the same moment uvicorn checks it, with the same counts.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import h11
import uvicorn
from starlette.types import ASGIApp, Receive, Scope, Send
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.server import ServerState

from ._settings import DEFAULT_RECEIVE_TIMEOUT

__all__ = ["ServiceConfig", "ServiceProtocol", "json_error_bytes"]

log = logging.getLogger("uploadscan.serve")


class ServiceConfig(uvicorn.Config):
    """``uvicorn.Config`` for the service: ``ServiceProtocol`` and its header deadline.

    A class of its own (not an attribute set on a plain ``Config``) so that it survives the
    pickling uvicorn does to hand the configuration to ``--workers`` processes.
    """

    def __init__(self, app: Any, *, header_timeout: float, **options: Any) -> None:
        super().__init__(app, http=ServiceProtocol, **options)
        self.header_timeout = header_timeout


def json_error_bytes(code: str, message: str) -> bytes:
    return json.dumps({"error": code, "message": message}).encode()


class ServiceProtocol(H11Protocol):
    """uvicorn's h11 connection handler with the header deadline and JSON errors."""

    def __init__(
        self,
        config: uvicorn.Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self._header_timeout = float(getattr(config, "header_timeout", DEFAULT_RECEIVE_TIMEOUT))
        self._header_timer: asyncio.TimerHandle | None = None
        # uvicorn's own check would answer in plain text; _limited answers the same in JSON.
        self._connection_limit = self.limit_concurrency
        self.limit_concurrency = None
        self.app = self._limited(self.app)

    # ------------------------------------------------------------------ header deadline

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._watch_headers()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self._watch_headers()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_header_timer()
        super().connection_lost(exc)

    def _watch_headers(self) -> None:
        """Run the header timer exactly while a started connection or request has not yet
        delivered its headers (an idle kept-alive connection is uvicorn's keep-alive timer's)."""
        waiting = self.conn.their_state is h11.IDLE and not self.transport.is_closing()
        if waiting and self._header_timer is None:
            if self._between_requests():
                return
            self._header_timer = self.loop.call_later(self._header_timeout, self._headers_late)
        elif not waiting:
            self._stop_header_timer()

    def _between_requests(self) -> bool:
        # A kept-alive connection after a response, with nothing of the next request yet.
        return self.cycle is not None and not self.conn.trailing_data[0]

    def _stop_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_late(self) -> None:
        self._header_timer = None
        if self.transport.is_closing() or self.conn.their_state is not h11.IDLE:
            return
        if self.conn.trailing_data[0]:  # a request had started: say why it ends
            body = json_error_bytes(
                "timeout", f"the request headers took longer than {self._header_timeout:g} s"
            )
            self.transport.write(
                b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\n"
                b"connection: close\r\ncontent-length: "
                + str(len(body)).encode()
                + b"\r\n\r\n"
                + body
            )
        log.info("closed a connection that sent no complete request headers in time")
        self.transport.close()

    # ------------------------------------------------------------------ JSON errors

    def send_400_response(self, msg: str) -> None:
        body = json_error_bytes("bad_request", msg)
        headers = [
            (b"content-type", b"application/json"),
            (b"connection", b"close"),
            (b"content-length", str(len(body)).encode()),
        ]
        response = h11.Response(status_code=400, headers=headers, reason=b"Bad Request")
        self.transport.write(self.conn.send(response) or b"")
        self.transport.write(self.conn.send(h11.Data(data=body)) or b"")
        self.transport.write(self.conn.send(h11.EndOfMessage()) or b"")
        self.transport.close()

    def _limited(self, app: ASGIApp) -> ASGIApp:
        limit = self._connection_limit
        if limit is None:
            return app
        connections, tasks = self.connections, self.tasks

        async def limited(scope: Scope, receive: Receive, send: Send) -> None:
            # uvicorn counts before it adds this request's task; by now the task is counted.
            if scope["type"] != "http" or (len(connections) < limit and len(tasks) <= limit):
                await app(scope, receive, send)
                return
            log.warning("over the connection limit (%d): answered 503", limit)
            body = json_error_bytes(
                "saturated", f"the service has {limit} connections open; retry shortly"
            )
            await send(
                {
                    "type": "http.response.start",
                    "status": 503,
                    "headers": [
                        (b"content-type", b"application/json"),
                        (b"content-length", str(len(body)).encode()),
                        (b"retry-after", b"1"),
                        (b"connection", b"close"),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": body})

        return limited
