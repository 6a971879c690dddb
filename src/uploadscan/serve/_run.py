"""Running the sidecar under uvicorn, refusing configurations that would expose it unprotected.

The service is safe by default: it binds to loopback, and it will not start on any other
address without a bearer token, because anyone who can reach it could otherwise probe the hash
lists. Several workers share one data directory (the store serialises writers and every worker
maps the same index files); uvicorn starts them as fresh processes that import the app factory
by name, so the settings travel in ``$UPLOADSCAN_SERVE_CONFIG``.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import os
from typing import Any

import uvicorn

from .._errors import ConfigError
from .._scanner import Scanner
from ._protocol import ServiceConfig
from ._settings import ENV_CONFIG, ServeSettings

__all__ = ["check_bind", "is_loopback", "serve", "uvicorn_config"]

log = logging.getLogger("uploadscan.serve")


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback literals (127.0.0.0/8, ::1); anything else —
    including ``0.0.0.0`` and host names, which may resolve anywhere — counts as exposed."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_bind(host: str, token: str | None) -> None:
    if token is None and not is_loopback(host):
        raise ConfigError(
            f"refusing to listen on {host} without a token: anyone who can reach it could "
            "query the hash lists. Set --token or UPLOADSCAN_TOKEN, or bind to 127.0.0.1 "
            "behind a reverse proxy"
        )


def serve(
    home: str | os.PathLike[str] | None,
    host: str = "127.0.0.1",
    port: int = 8080,
    workers: int = 1,
    token: str | None = None,
    *,
    log_level: str = "info",
    **settings: Any,
) -> None:
    """Serve ``home`` until interrupted. ``settings`` are the other ``ServeSettings`` fields."""

    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ConfigError(f"workers must be a positive integer, got {workers!r}")
    check_bind(host, token)
    # Resolve the home here so every worker opens the same directory, and open it once
    # before forking so a bad directory fails now, with one clear error.
    with Scanner.open(home) as scanner:
        resolved = str(scanner.home)
    config = ServeSettings(home=resolved, token=token, **settings)
    log.info("uploadscan serving %s on %s:%d with %d worker(s)", resolved, host, port, workers)
    if workers == 1:
        from ._app import create_app_from_settings

        server = uvicorn.Server(
            uvicorn_config(
                create_app_from_settings(config), config, host=host, port=port, log_level=log_level
            )
        )
        with contextlib.suppress(KeyboardInterrupt):
            server.run()
        if not server.started:
            raise ConfigError(f"the service did not start on {host}:{port} (see the log above)")
        return
    os.environ[ENV_CONFIG] = config.to_json()
    _run_workers(
        uvicorn_config(
            "uploadscan.serve._app:app_from_env",
            config,
            factory=True,
            workers=workers,
            host=host,
            port=port,
            log_level=log_level,
        )
    )


def uvicorn_config(app: Any, settings: ServeSettings, **options: Any) -> ServiceConfig:
    """How uvicorn runs the service (``options``: host, port, workers... for ``uvicorn.Config``).

    Tests start the service with this too, so they exercise the same connection handling.
    """
    defaults: dict[str, Any] = {
        # The access log would print query strings (hashes, a pict-rs token); the app logs
        # method, route, status and time instead.
        "access_log": False,
        "server_header": False,
        # Connections beyond the admission limit get a 503 before any body is read.
        "limit_concurrency": max(256, 4 * settings.max_concurrency),
        "timeout_keep_alive": 5,
        "ws": "none",
        "lifespan": "on",
    }
    return ServiceConfig(app, header_timeout=settings.receive_timeout, **{**defaults, **options})


def _run_workers(config: ServiceConfig) -> None:
    """``uvicorn.run(..., workers=N)``, except for the listening socket.

    uvicorn creates that socket without naming the protocol (``proto`` 0), and asyncio only
    sets ``TCP_NODELAY`` on accepted sockets whose ``proto`` is ``IPPROTO_TCP``; without it a
    response written in two pieces waits for the client's delayed ACK, about 40 ms per request
    (measured with benchmarks/bench_serve.py). So the socket is made here, the way asyncio
    makes it for a single worker, and handed to uvicorn's own worker supervisor.
    """
    import inspect
    import socket

    from uvicorn.supervisors import Multiprocess

    host, port = config.host, config.port
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host.strip("[]"), port))
    except OSError as exc:
        sock.close()
        raise ConfigError(f"cannot listen on {host}:{port}: {exc}") from None
    sock.set_inheritable(True)
    try:
        if "target" in inspect.signature(Multiprocess).parameters:  # uvicorn < 0.30
            server = uvicorn.Server(config)
            Multiprocess(config, target=server.run, sockets=[sock]).run()  # type: ignore[call-arg]
        else:
            Multiprocess(config, sockets=[sock]).run()
    finally:
        sock.close()
