"""The sidecar's ASGI app: uploadscan over HTTP for platforms not written in Python.

Every request that touches the scanner goes through the same gate, in this order: bearer token
(constant-time compare), admission (at most ``max_concurrency`` requests holding a body; the
next one gets 503 + ``Retry-After`` at once rather than queueing without bound), the body read
under a byte limit and a minimum pace while it streams, then the scan in a worker thread
(hashing and the index are CPU-bound and blocking; the event loop must stay free for health
checks), all under one deadline. An admitted request's slot is only freed when its scan thread
has finished, even if the client gave up or the deadline passed, so the memory and CPU bounds
hold under abuse.

Every answer that is not a verdict is a JSON error ``{"error": code, "message": ...}`` (HMA's
``{"message": ...}`` on ``/m/lookup``), unknown routes and methods included. Every verdict
recorded in the audit log is the one answered: ``/m/lookup?banks=`` restricts the lookup itself
to those lists rather than filtering its answer.

Nothing of the upload is logged or kept by the service: log lines carry the route, status,
action and time; the audit log the scanner writes holds hashes and the decision, not content.
"""

from __future__ import annotations

import hmac
import logging
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import anyio
import anyio.to_thread
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .. import hashtypes
from .._errors import ListNotFoundError, UploadScanError
from .._scanner import Scanner
from .._verdict import Action, Verdict
from ..store._lists import HashList
from ._admission import Admission, Ticket
from ._body import CLOSE, ReceivePace, RequestError, read_body, read_json, read_upload
from ._hma import HMA_PREFIX, hma_response, parse_hma_query
from ._metrics import CONTENT_TYPE, Metrics
from ._openapi import openapi_spec
from ._readiness import readiness
from ._settings import PictrsReview, ServeSettings

__all__ = ["app_from_env", "create_app", "create_app_from_settings"]

log = logging.getLogger("uploadscan.serve")

#: Lookup bodies are a few hashes; a megabyte is already generous.
MAX_JSON_BYTES = 1 << 20
MAX_LOOKUP_VALUES = 10_000

T = TypeVar("T")
Handler = Callable[[Request, "_Call"], Awaitable[Response]]


class _Call:
    """Per-request state the gate and the handler share."""

    __slots__ = ("phase", "ticket")

    def __init__(self) -> None:
        self.ticket: Ticket | None = None
        self.phase = "receiving"


class _Service:
    def __init__(self, settings: ServeSettings, scanner: Scanner) -> None:
        self.settings = settings
        self.scanner = scanner
        self.metrics = Metrics()
        self._token = settings.token.encode() if settings.token is not None else None
        self._admission = Admission(settings.max_concurrency)
        self._limiter = anyio.CapacityLimiter(settings.threads)
        self._pace = ReceivePace(settings.receive_timeout, settings.min_receive_rate)
        self._spec = openapi_spec(refusal_status=settings.refusal_status)

    # ------------------------------------------------------------------ the gate

    def endpoint(
        self,
        route: str,
        handler: Handler,
        *,
        auth: bool = True,
        admit: bool = False,
        query_token: bool = False,
        hma_errors: bool = False,
    ) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            started = time.perf_counter()
            self.metrics.request_started()
            call = _Call()
            response: Response | None = None
            try:
                if auth:
                    self._check_auth(request, query_token)
                if admit:
                    call.ticket = self._admit()
                try:
                    with anyio.fail_after(self.settings.request_timeout):
                        response = await handler(request, call)
                except TimeoutError:
                    raise self._timeout_error(call) from None
            except RequestError as exc:
                if exc.status in (401, 408, 413, 499, 503):
                    self.metrics.rejected(exc.code)
                response = _error(exc, hma_errors)
            except UploadScanError as exc:  # the store or index is unusable right now
                log.error("%s %s: %s: %s", request.method, route, type(exc).__name__, exc)
                response = _error(
                    RequestError(503, "unavailable", f"{type(exc).__name__}: {exc}"), hma_errors
                )
            except Exception:
                log.exception("%s %s failed", request.method, route)
                response = _error(RequestError(500, "internal", "internal error"), hma_errors)
            finally:
                if call.ticket is not None:
                    call.ticket.release_unless_running()
                elapsed = time.perf_counter() - started
                status = response.status_code if response is not None else 500
                self.metrics.request_finished(route, status, elapsed)
                log.info("%s %s %d %.1fms", request.method, route, status, elapsed * 1000.0)
            return response

        return endpoint

    def _check_auth(self, request: Request, query_token: bool) -> None:
        if self._token is None:
            return
        supplied: str | None = None
        scheme, _, value = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            supplied = value.strip()
        elif query_token:
            supplied = request.query_params.get("token")
        if supplied is None:
            raise RequestError(
                401,
                "unauthorized",
                "this service requires 'Authorization: Bearer <token>'",
                {"WWW-Authenticate": 'Bearer realm="uploadscan"'},
            )
        if not hmac.compare_digest(supplied.encode(), self._token):
            raise RequestError(
                401,
                "unauthorized",
                "the bearer token is not valid",
                {"WWW-Authenticate": 'Bearer realm="uploadscan", error="invalid_token"'},
            )

    def _admit(self) -> Ticket:
        if not self._admission.try_acquire():
            raise RequestError(
                503,
                "saturated",
                f"all {self.settings.max_concurrency} request slots are busy; retry shortly",
                {"Retry-After": "1"},
            )
        return Ticket(self._admission)

    def _timeout_error(self, call: _Call) -> RequestError:
        limit = self.settings.request_timeout
        if call.phase == "receiving":
            return RequestError(
                408, "timeout", f"the request body took longer than {limit:g} s", dict(CLOSE)
            )
        return RequestError(
            503, "timeout", f"the scan took longer than {limit:g} s", {"Retry-After": "5"}
        )

    async def run(self, call: _Call, fn: Callable[[], T]) -> T:
        """Run blocking scanner work in a worker thread; the thread owns the ticket from then."""
        call.phase = "scanning"
        ticket = call.ticket

        def work() -> T:
            if ticket is not None and not ticket.start():
                raise RequestError(503, "timeout", "the request ended before its scan started")
            try:
                return fn()
            finally:
                if ticket is not None:
                    ticket.finish()

        return await anyio.to_thread.run_sync(work, limiter=self._limiter, abandon_on_cancel=True)

    def _verdict(self, route: str, verdict: Verdict) -> None:
        self.metrics.verdict(route, verdict.action.value, [e.type for e in verdict.errors])

    # ------------------------------------------------------------------ handlers

    async def scan(self, request: Request, call: _Call) -> Response:
        data, filename = await read_upload(request, self.settings.max_body_bytes, self._pace)
        verdict = await self.run(call, lambda: self.scanner.scan(data, filename=filename))
        self._verdict("scan", verdict)
        return JSONResponse(verdict.to_dict())

    async def lookup(self, request: Request, call: _Call) -> Response:
        hashes = _lookup_body(await read_json(request, MAX_JSON_BYTES, self._pace))
        verdict = await self.run(call, lambda: self.scanner.lookup(hashes))
        self._verdict("lookup", verdict)
        return JSONResponse(verdict.to_dict())

    async def pictrs(self, request: Request, call: _Call) -> Response:
        # pict-rs `[media] external_validation = "<url>"` (pict-rs >= 0.4.3, release notes
        # releases/0.4.3.md): after ingest it POSTs each upload's bytes, with Content-Type set
        # to the media type, and keeps the upload only if the answer is 2XX. It has no "held
        # for review" state: whatever is accepted is published at once.
        data = await read_body(request, self.settings.max_body_bytes, self._pace)
        if not data:
            raise RequestError(400, "empty_body", "the upload is empty; send the file's bytes")
        # pict-rs has decoded these bytes as an image or a video. Bytes we cannot see as media
        # at all are therefore not a PDF to wave through on its exact hashes: matching was
        # incomplete, and they take the fail mode like corrupt media does.
        fail_mode = self.scanner.fail_mode
        verdict = await self.run(call, lambda: self.scanner.scan(data, non_media=fail_mode))
        self._verdict("pictrs", verdict)
        action = verdict.action
        review_refused = self.settings.pictrs_review is PictrsReview.REFUSE
        if action is Action.BLOCK or (action is Action.REVIEW and review_refused):
            reason = ", ".join(verdict.reasons) or f"the upload was classified {action.value}"
            body = {
                "error": "blocked" if action is Action.BLOCK else "review",
                "message": f"upload refused: {reason}",
                "verdict": verdict.to_dict(),
            }
            return JSONResponse(body, status_code=self.settings.refusal_status)
        return JSONResponse(verdict.to_dict())

    async def hma_lookup(self, request: Request, call: _Call) -> Response:
        query = parse_hma_query(request.query_params)

        def lookup() -> Verdict:
            hashes = {query.hash_type: query.value}
            if query.banks is None:
                return self.scanner.lookup(hashes)
            # Unknown bank names match nothing, as in HMA. The lookup itself is limited to the
            # named lists, so the recorded verdict is the one answered.
            banks = query.banks

            def known() -> list[str]:
                return [hl.name for hl in self.scanner.lists() if hl.name in banks]

            try:
                return self.scanner.lookup(hashes, lists=known())
            except ListNotFoundError:  # a list was removed in between: ask once more
                return self.scanner.lookup(hashes, lists=known())

        verdict = await self.run(call, lookup)
        self._verdict("hma", verdict)
        return JSONResponse(hma_response(verdict))

    async def health(self, request: Request, call: _Call) -> Response:
        return JSONResponse({"status": "ok"})

    async def ready(self, request: Request, call: _Call) -> Response:
        """503 unless every verdict can be complete: at least one list, and every block and
        review list synced within its maximum age (the same judgement verdicts make)."""
        store = self.scanner.store

        def read() -> tuple[int, list[HashList]]:
            return store.version(), self.scanner.lists()

        version, lists = await anyio.to_thread.run_sync(read, limiter=self._limiter)
        body = readiness(version, lists, time.time())
        return JSONResponse(body, status_code=200 if body["status"] == "ready" else 503)

    async def metrics_text(self, request: Request, call: _Call) -> Response:
        return Response(self.metrics.render(), media_type=CONTENT_TYPE)

    async def openapi(self, request: Request, call: _Call) -> Response:
        return JSONResponse(self._spec)


def _lookup_body(body: Any) -> dict[str, str | list[str]]:
    """Check the ``/v1/lookup`` body's shape and every value before any thread is used."""
    if not isinstance(body, dict) or not body:
        raise RequestError(
            400,
            "bad_request",
            'send a JSON object from hash type to a value or a list of values: {"pdq": "..."}',
        )
    out: dict[str, str | list[str]] = {}
    count = 0
    for name, values in body.items():
        if name not in hashtypes.names():
            known = ", ".join(sorted(hashtypes.names()))
            raise RequestError(
                400, "unknown_hash_type", f"unknown hash type {name!r}; known types: {known}"
            )
        items = [values] if isinstance(values, str) else values
        if not isinstance(items, list) or not items:
            raise RequestError(
                400, "invalid_hash", f"{name}: expected a hash string or a non-empty list of them"
            )
        count += len(items)
        if count > MAX_LOOKUP_VALUES:
            raise RequestError(
                413, "too_many_hashes", f"at most {MAX_LOOKUP_VALUES} hashes per lookup"
            )
        hash_type = hashtypes.get(name)
        for item in items:
            try:
                hash_type.validate(item)
            except ValueError as exc:
                raise RequestError(400, "invalid_hash", str(exc)) from None
        out[name] = values
    return out


def _error(exc: RequestError, hma: bool) -> JSONResponse:
    body = {"message": exc.message} if hma else {"error": exc.code, "message": exc.message}
    return JSONResponse(body, status_code=exc.status, headers=exc.headers)


async def _http_exception(request: Request, exc: Exception) -> Response:
    """Starlette's own answers (no such route: 404; wrong method: 405) as JSON errors."""
    assert isinstance(exc, HTTPException)
    if exc.status_code == 404:
        error = RequestError(404, "not_found", f"no such endpoint: {request.url.path}")
    elif exc.status_code == 405:
        allowed = (exc.headers or {}).get("Allow", "")
        error = RequestError(
            405,
            "method_not_allowed",
            f"{request.method} is not allowed on {request.url.path}; use {allowed}",
            dict(exc.headers or {}),
        )
    else:
        error = RequestError(
            exc.status_code, "http_error", str(exc.detail), dict(exc.headers or {})
        )
    return _error(error, request.url.path.startswith(HMA_PREFIX))


async def _server_error(request: Request, exc: Exception) -> Response:
    # Only reached for a failure outside the endpoints (which answer their own errors).
    return _error(RequestError(500, "internal", "internal error"), False)


def create_app_from_settings(settings: ServeSettings) -> Starlette:
    """Open the scanner for ``settings.home`` and build the app; the app closes it on shutdown."""
    scanner = Scanner.open(settings.home_path, settings=settings.scanner_settings())
    service = _Service(settings, scanner)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            scanner.close()

    ep = service.endpoint
    routes = [
        Route("/health", ep("/health", service.health, auth=False), methods=["GET"]),
        Route("/ready", ep("/ready", service.ready), methods=["GET"]),
        Route("/metrics", ep("/metrics", service.metrics_text), methods=["GET"]),
        Route("/openapi.json", ep("/openapi.json", service.openapi), methods=["GET"]),
        Route("/v1/scan", ep("/v1/scan", service.scan, admit=True), methods=["POST"]),
        Route("/v1/lookup", ep("/v1/lookup", service.lookup, admit=True), methods=["POST"]),
        Route(
            "/v1/pictrs/validate",
            ep("/v1/pictrs/validate", service.pictrs, admit=True, query_token=True),
            methods=["POST"],
        ),
        Route(
            "/m/lookup",
            ep("/m/lookup", service.hma_lookup, admit=True, query_token=True, hma_errors=True),
            methods=["GET"],
        ),
    ]
    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={HTTPException: _http_exception, Exception: _server_error},
    )
    app.state.service = service
    return app


def create_app(
    home: str | os.PathLike[str],
    *,
    token: str | None = None,
    max_body_bytes: int | None = None,
    max_concurrency: int | None = None,
    scan_threads: int | None = None,
    request_timeout: float | None = None,
    receive_timeout: float | None = None,
    min_receive_rate: float | None = None,
    refusal_status: int = 451,
    pictrs_review: PictrsReview | str = PictrsReview.REFUSE,
    **scanner_options: Any,
) -> Starlette:
    """The ASGI app serving the data directory ``home``.

    Options are those of ``ServeSettings``; any other keyword overrides a field of the data
    directory's ``ScannerSettings`` (``fail_mode``, ``non_media``, ``limits``...).
    """
    given: Mapping[str, Any] = {
        "max_body_bytes": max_body_bytes,
        "max_concurrency": max_concurrency,
        "request_timeout": request_timeout,
        "receive_timeout": receive_timeout,
        "min_receive_rate": min_receive_rate,
    }
    settings = ServeSettings(
        home=str(home),
        token=token,
        scan_threads=scan_threads,
        refusal_status=refusal_status,
        pictrs_review=PictrsReview.parse(pictrs_review),
        scanner_options=dict(scanner_options),
        **{k: v for k, v in given.items() if v is not None},
    )
    return create_app_from_settings(settings)


def app_from_env() -> Starlette:
    """Factory for ``uvicorn --factory``: settings from ``$UPLOADSCAN_SERVE_CONFIG``."""
    if not logging.getLogger().handlers:
        # A worker process starts with bare logging; follow the level uvicorn was given.
        logging.basicConfig(
            level=logging.getLogger("uvicorn.error").getEffectiveLevel(),
            format="%(asctime)s %(levelname)s %(name)s[%(process)d]: %(message)s",
        )
    return create_app_from_settings(ServeSettings.from_env())
