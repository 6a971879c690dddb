"""From a list's ``source`` string to a ``Source``.

The source is one string a platform can type on the command line and store with the list:

- a path, or ``file:///abs/path?format=csv&labels=x``: ``FileSource`` (see ``_files``);
- ``https://host/feed/?key=<public key>``: a signed uploadscan feed (see ``docs/feed.md``);
- ``tcap:`` (options: ``?base_url=``): Tech Against Terrorism's hash list API;
- ``threatexchange:<privacy_group_id>``: the ThreatExchange ``threat_updates`` of a group.

Options are URL query parameters; an unknown one is a ``ConfigError`` (a typo must not
silently change what gets blocked). Secrets never go in the string: they come from
``Credentials``.
"""

from __future__ import annotations

import urllib.parse
from pathlib import Path

from .._errors import ConfigError
from ._base import Source
from ._credentials import Credentials
from ._http import HttpOptions

__all__ = ["parse_query", "source_from_uri"]

_SCHEMES = ("file", "http", "https", "tcap", "threatexchange")


def source_from_uri(
    uri: str,
    *,
    credentials: Credentials | None = None,
    http_options: HttpOptions | None = None,
) -> Source:
    """The source a list's ``source`` string names; ``ConfigError`` if it is not usable."""
    if not isinstance(uri, str) or not uri.strip():
        raise ConfigError("a list source must be a non-empty string")
    uri = uri.strip()
    scheme = uri.partition(":")[0].lower() if ":" in uri else ""
    if scheme not in _SCHEMES:
        return _file_source(Path(uri), {})
    parts = urllib.parse.urlsplit(uri)
    credentials = credentials or Credentials()
    options = http_options or HttpOptions()
    if scheme == "file":
        if parts.netloc not in ("", "localhost"):
            raise ConfigError(f"file URI must name a local path, got host {parts.netloc!r}")
        return _file_source(Path(urllib.parse.unquote(parts.path)), parse_query(parts.query))
    if scheme in ("http", "https"):
        from ._feed import FeedSource

        base = urllib.parse.urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))
        return FeedSource.from_options(base, parse_query(parts.query, multi={"key"}), options)
    if scheme == "tcap":
        from ._tcap import TcapSource

        return TcapSource.from_options(parse_query(parts.query), credentials, options)
    from ._threatexchange import ThreatExchangeSource

    group = parts.path.strip("/")
    return ThreatExchangeSource.from_options(group, parse_query(parts.query), credentials, options)


def parse_query(query: str, *, multi: set[str] | None = None) -> dict[str, str]:
    """Query parameters as a dict; repeated names only for those in ``multi`` (joined
    with newlines)."""
    try:
        pairs = urllib.parse.parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query))
    except ValueError:
        raise ConfigError(f"malformed source options {query[:80]!r}") from None
    out: dict[str, str] = {}
    for key, value in pairs:
        if key in out:
            if multi and key in multi:
                out[key] += "\n" + value
                continue
            raise ConfigError(f"source option {key!r} given twice")
        out[key] = value
    return out


def _file_source(path: Path, options: dict[str, str]) -> Source:
    from ._files import FileSource

    return FileSource(path.expanduser(), options)
