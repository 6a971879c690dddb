"""``uploadscan serve``: the scanner as a local HTTP sidecar for platforms in any language.

Needs the ``serve`` extra (``pip install 'uploadscan[serve]'``: Starlette, uvicorn and
python-multipart). ``create_app(home)`` gives the ASGI app to mount or run under any ASGI
server; ``serve(home, host, port, workers, token)`` runs it under uvicorn.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .._errors import ConfigError

if TYPE_CHECKING:
    from ._app import create_app as create_app
    from ._run import serve as serve
    from ._settings import ServeSettings as ServeSettings

__all__ = ["ServeSettings", "create_app", "serve"]

_EXTRA_MODULES = ("starlette", "uvicorn", "python_multipart")


def __getattr__(name: str) -> Any:
    # Imported lazily so that ``import uploadscan.serve`` names the missing extra clearly
    # instead of failing deep inside Starlette's import.
    if name not in __all__:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    _require_extra()
    if name == "create_app":
        from ._app import create_app

        return create_app
    if name == "serve":
        from ._run import serve

        return serve
    from ._settings import ServeSettings

    return ServeSettings


def _require_extra() -> None:
    import importlib.util

    missing = [m for m in _EXTRA_MODULES if importlib.util.find_spec(m) is None]
    if missing:
        raise ConfigError(
            f"the HTTP service needs {', '.join(missing)}: pip install 'uploadscan[serve]'"
        )
