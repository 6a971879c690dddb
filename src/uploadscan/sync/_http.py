"""A careful HTTP GET for list sources, on the standard library alone.

Everything a list source downloads comes from a server we do not control, so each request is
bounded: a per-read socket timeout plus a total deadline (a server that trickles one byte a
second defeats a per-read timeout alone, so the body is read with ``read1`` and the deadline
checked between reads), a response size limit checked against ``Content-Length`` and again
while reading, a bounded number of retries with exponential backoff for transient failures
(connection errors, 429 and 5xx), TLS verification always on, and redirects refused when they
leave the original host (a redirect must not carry a token, or a pinned feed, somewhere else).
Plain ``http:`` is allowed only to loopback addresses, for tests and local mirrors.

On top of those per-request limits, a request made inside a list's sync never outlives the
sync's whole deadline (``_deadline``): the socket timeout is cut to the time left, and the
body loop and the retry backoff stop at it with ``SyncTimeoutError``.

Error messages name the URL without its query string, because sources such as ThreatExchange
carry the access token there.
"""

from __future__ import annotations

import dataclasses
import email.message
import ipaddress
import socket
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from http.client import HTTPException, HTTPMessage, HTTPResponse
from typing import IO

from .._errors import ConfigError, SyncError, TruncatedDownloadError
from ._deadline import Deadline, current_deadline

__all__ = ["HttpOptions", "HttpResponse", "describe_url", "http_get"]

_CHUNK = 1 << 16
_RETRY_STATUS = frozenset({429, 500, 502, 503, 504})
_USER_AGENT = "uploadscan-sync/1"


@dataclass(frozen=True)
class HttpOptions:
    """Limits for one request. ``timeout``: seconds per socket operation; ``deadline``: seconds
    for the whole response including retries' waits; ``max_bytes``: largest body accepted."""

    timeout: float = 30.0
    deadline: float = 600.0
    max_bytes: int = 1 << 30
    retries: int = 3
    backoff: float = 0.5
    max_backoff: float = 10.0
    redirect_hosts: frozenset[str] = field(default_factory=frozenset)
    allow_insecure_http: bool = False

    def with_max_bytes(self, max_bytes: int) -> HttpOptions:
        return dataclasses.replace(self, max_bytes=max_bytes)


@dataclass
class HttpResponse:
    """``status`` 304 means "not modified" (``body`` empty). With a sink, ``body`` is empty
    and ``size`` bytes went to the sink."""

    status: int
    url: str
    headers: email.message.Message
    body: bytes
    size: int

    @property
    def etag(self) -> str | None:
        return self.headers.get("ETag")


def describe_url(url: str) -> str:
    """The URL as it may appear in logs and errors: no query, fragment or user info."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return f"{parts.scheme}://{host}{parts.path}"


def is_loopback(host: str | None) -> bool:
    if host is None:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_url(url: str, options: HttpOptions) -> urllib.parse.SplitResult:
    """``ConfigError`` unless ``url`` is https, or http to a loopback address."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme == "https":
        pass
    elif parts.scheme == "http":
        if not (options.allow_insecure_http or is_loopback(parts.hostname)):
            raise ConfigError(
                f"{describe_url(url)}: plain http is only allowed to loopback addresses; use https"
            )
    else:
        raise ConfigError(f"{describe_url(url)}: only https URLs are supported")
    if not parts.hostname:
        raise ConfigError(f"{describe_url(url)}: URL has no host")
    if parts.username or parts.password:
        raise ConfigError(f"{describe_url(url)}: credentials in URLs are not supported")
    return parts


class _SameHostRedirects(urllib.request.HTTPRedirectHandler):
    """Follow redirects only within the original host (or hosts the caller allowed)."""

    def __init__(self, origin: str, options: HttpOptions) -> None:
        self._origin = origin
        self._options = options

    def redirect_request(
        self,
        req: urllib.request.Request,
        fp: IO[bytes],
        code: int,
        msg: str,
        headers: HTTPMessage,
        newurl: str,
    ) -> urllib.request.Request | None:
        new = urllib.parse.urlsplit(newurl)
        netloc = (new.hostname or "") + (f":{new.port}" if new.port else "")
        if netloc != self._origin and netloc not in self._options.redirect_hosts:
            raise SyncError(
                f"{describe_url(req.full_url)}: refused redirect to another host "
                f"({describe_url(newurl)})"
            )
        old_scheme = urllib.parse.urlsplit(req.full_url).scheme
        if old_scheme == "https" and new.scheme != "https":
            raise SyncError(f"{describe_url(req.full_url)}: refused redirect from https to http")
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def http_get(
    url: str,
    *,
    options: HttpOptions,
    headers: Mapping[str, str] | None = None,
    etag: str | None = None,
    sink: IO[bytes] | None = None,
    form: Mapping[str, str] | None = None,
) -> HttpResponse:
    """GET ``url`` within ``options``' limits; ``SyncError`` on failure after retries.

    With ``etag``, sends ``If-None-Match`` and returns status 304 when unchanged. With
    ``sink`` (a seekable binary file), the body is streamed there instead of into memory.
    With ``form``, POSTs it URL-encoded instead (TCAP's token login); same limits.
    """
    parts = check_url(url, options)
    origin = (parts.hostname or "") + (f":{parts.port}" if parts.port else "")
    request_headers = {"User-Agent": _USER_AGENT, "Accept-Encoding": "identity"}
    request_headers.update(headers or {})
    if etag:
        request_headers["If-None-Match"] = etag
    opener = urllib.request.build_opener(
        urllib.request.HTTPSHandler(context=ssl.create_default_context()),
        _SameHostRedirects(origin, options),
    )
    started = time.monotonic()
    shown = describe_url(url)
    whole = current_deadline()
    attempt = 0
    while True:
        attempt += 1
        retry_after: float | None = None
        if whole is not None and whole.expired():
            raise whole.error(f"before requesting {shown}")
        try:
            return _attempt(opener, url, request_headers, options, sink, started, form, whole)
        except urllib.error.HTTPError as exc:
            status = exc.code
            retry_after = _retry_after(exc.headers)
            exc.close()
            if status not in _RETRY_STATUS or attempt > options.retries:
                raise SyncError(f"{shown}: HTTP {status} {_reason(status)}") from None
            last = f"HTTP {status}"
        except TruncatedDownloadError:
            if attempt > options.retries:
                raise
            last = "truncated response"
        except (urllib.error.URLError, HTTPException, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            if isinstance(reason, SyncError):  # raised by our redirect policy
                raise reason from None
            if isinstance(reason, ssl.SSLError | ssl.CertificateError):
                raise SyncError(f"{shown}: TLS verification failed: {reason}") from None
            last = _short_reason(reason)
            if whole is not None and whole.expired():
                raise whole.error(f"while requesting {shown} ({last})") from None
            if attempt > options.retries:
                raise SyncError(f"{shown}: {last} (after {attempt} attempts)") from None
        wait = min(options.max_backoff, options.backoff * 2 ** (attempt - 1))
        if retry_after is not None:
            wait = min(max(wait, retry_after), options.max_backoff)
        if time.monotonic() - started + wait > options.deadline:
            raise SyncError(f"{shown}: {last}; deadline of {options.deadline:g} s reached")
        if whole is not None and whole.remaining() < wait:
            raise whole.error(f"waiting to retry {shown} ({last})")
        time.sleep(wait)


def _attempt(
    opener: urllib.request.OpenerDirector,
    url: str,
    headers: Mapping[str, str],
    options: HttpOptions,
    sink: IO[bytes] | None,
    started: float,
    form: Mapping[str, str] | None = None,
    whole: Deadline | None = None,
) -> HttpResponse:
    shown = describe_url(url)
    data = urllib.parse.urlencode(form).encode() if form is not None else None
    request = urllib.request.Request(
        url, data=data, headers=dict(headers), method="GET" if data is None else "POST"
    )
    remaining = options.deadline - (time.monotonic() - started)
    if remaining <= 0:
        raise SyncError(f"{shown}: deadline of {options.deadline:g} s reached")
    if whole is not None:
        if whole.expired():
            raise whole.error(f"before requesting {shown}")
        remaining = min(remaining, whole.remaining())
    try:
        response: HTTPResponse = opener.open(request, timeout=min(options.timeout, remaining))
    except urllib.error.HTTPError as exc:
        if exc.code == 304:
            exc.close()
            return HttpResponse(304, url, exc.headers, b"", 0)
        raise
    with response:
        length_header = response.headers.get("Content-Length")
        expected: int | None = None
        if length_header is not None:
            try:
                expected = int(length_header)
            except ValueError:
                raise SyncError(f"{shown}: bad Content-Length {length_header[:40]!r}") from None
            if expected > options.max_bytes:
                raise SyncError(
                    f"{shown}: response of {expected} bytes exceeds the limit of "
                    f"{options.max_bytes} bytes"
                )
        if sink is not None:
            sink.seek(0)
            sink.truncate()
        chunks: list[bytes] = []
        size = 0
        while True:
            if time.monotonic() - started > options.deadline:
                raise SyncError(
                    f"{shown}: download took longer than the deadline of {options.deadline:g} s"
                )
            if whole is not None and whole.expired():
                raise whole.error(f"while downloading {shown} ({size} bytes so far)")
            try:
                chunk = response.read1(_CHUNK)
            except TimeoutError:
                if whole is not None and whole.expired():
                    raise whole.error(f"while downloading {shown} ({size} bytes so far)") from None
                raise SyncError(f"{shown}: timed out reading the response") from None
            if not chunk:
                break
            size += len(chunk)
            if size > options.max_bytes:
                raise SyncError(f"{shown}: response exceeds the limit of {options.max_bytes} bytes")
            if sink is not None:
                sink.write(chunk)
            else:
                chunks.append(chunk)
        if expected is not None and size != expected:
            raise TruncatedDownloadError(
                f"{shown}: truncated response ({size} of {expected} bytes)"
            )
        return HttpResponse(response.status, response.url, response.headers, b"".join(chunks), size)


def _retry_after(headers: email.message.Message | None) -> float | None:
    value = headers.get("Retry-After") if headers is not None else None
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


def _reason(status: int) -> str:
    from http import HTTPStatus

    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""


def _short_reason(reason: object) -> str:
    if isinstance(reason, socket.timeout | TimeoutError):
        return "timed out"
    text = str(reason)
    return text if len(text) <= 200 else text[:197] + "..."
