"""``uploadscan serve``: run the HTTP sidecar (see docs/serve.md).

Binds to 127.0.0.1 by default; any other address needs a token (``--token`` or, better, since
command lines are visible to other local users, ``$UPLOADSCAN_TOKEN``).
"""

from __future__ import annotations

import argparse
import os
from typing import Any

from .._action import Action
from .._settings import ScannerSettings
from ..serve._settings import DEFAULT_MIN_RECEIVE_RATE, DEFAULT_RECEIVE_TIMEOUT, PictrsReview
from ._arguments import add_home_argument

TOKEN_ENV = "UPLOADSCAN_TOKEN"


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "serve",
        help="run the HTTP service (POST /v1/scan, /v1/lookup; pict-rs and HMA compatible)",
        description="Run uploadscan as a local HTTP service for platforms in any language.",
    )
    add_home_argument(parser)
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to bind (default: %(default)s)"
    )
    parser.add_argument("--port", type=int, default=8080, help="port (default: %(default)s)")
    parser.add_argument(
        "--workers", type=int, default=1, help="worker processes (default: %(default)s)"
    )
    parser.add_argument(
        "--token",
        default=None,
        help=f"require 'Authorization: Bearer TOKEN' (default: ${TOKEN_ENV}); "
        "mandatory when binding to a non-loopback address",
    )
    parser.add_argument(
        "--max-body-mb",
        type=float,
        default=64.0,
        help="largest accepted upload in MiB (default: %(default)s)",
    )
    parser.add_argument(
        "--max-concurrency",
        type=int,
        default=32,
        help="requests in progress at once before answering 503 (default: %(default)s)",
    )
    parser.add_argument(
        "--scan-threads",
        type=int,
        default=None,
        help="scans running at once (default: the number of CPUs)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=60.0,
        help="seconds to receive and scan one request (default: %(default)s)",
    )
    parser.add_argument(
        "--receive-timeout",
        type=float,
        default=DEFAULT_RECEIVE_TIMEOUT,
        metavar="SECONDS",
        help="seconds for a connection's request headers and for a body to start arriving "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--min-receive-rate",
        type=float,
        default=DEFAULT_MIN_RECEIVE_RATE / 1024,
        metavar="KIB_PER_S",
        help="after --receive-timeout, bodies arriving slower than this on average get 408 "
        "(default: %(default)g KiB/s)",
    )
    parser.add_argument(
        "--refusal-status",
        type=int,
        default=451,
        help="status for uploads the pict-rs endpoint refuses (default: %(default)s)",
    )
    parser.add_argument(
        "--pictrs-review",
        choices=[r.value for r in PictrsReview],
        default=PictrsReview.REFUSE.value,
        help="pict-rs endpoint: accept (publish at once) or refuse uploads whose verdict is "
        "review (default: %(default)s)",
    )
    # The flag of earlier versions; refusing is now the default.
    parser.add_argument(
        "--refuse-review",
        dest="pictrs_review",
        action="store_const",
        const=PictrsReview.REFUSE.value,
        help=argparse.SUPPRESS,
    )
    parser.add_argument(
        "--fail-mode",
        choices=[a.value for a in Action],
        default=None,
        help=ScannerSettings.help("fail_mode") + " (default: the data directory's, else review)",
    )
    parser.add_argument(
        "--log-level",
        default="info",
        choices=("critical", "error", "warning", "info", "debug"),
        help="log level (default: %(default)s)",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    import logging

    from .._errors import ConfigError
    from ..serve import serve

    if args.max_body_mb <= 0:
        raise ConfigError(f"--max-body-mb must be positive, got {args.max_body_mb}")
    if not args.min_receive_rate > 0:
        raise ConfigError(f"--min-receive-rate must be positive, got {args.min_receive_rate}")
    token = args.token if args.token is not None else os.environ.get(TOKEN_ENV) or None
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    scanner_options: dict[str, Any] = {}
    if args.fail_mode:
        scanner_options["fail_mode"] = args.fail_mode
    serve(
        args.home,
        host=args.host,
        port=args.port,
        workers=args.workers,
        token=token,
        log_level=args.log_level,
        max_body_bytes=int(args.max_body_mb * (1 << 20)),
        max_concurrency=args.max_concurrency,
        scan_threads=args.scan_threads,
        request_timeout=args.timeout,
        receive_timeout=args.receive_timeout,
        min_receive_rate=args.min_receive_rate * 1024,
        refusal_status=args.refusal_status,
        pictrs_review=args.pictrs_review,
        scanner_options=scanner_options,
    )
    return 0
