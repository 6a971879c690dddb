"""From a list's ``source`` string to a ``Source``, and checking that string when it is set.

The source is one string a platform can type on the command line and store with the list:

- a path, or ``file:///abs/path?format=csv&labels=x``: ``FileSource`` (see ``_files``);
- ``https://host/feed/?key=<public key>``: a signed uploadscan feed (see ``docs/feed.md``);
- ``tcap:`` (options: ``?base_url=``): Tech Against Terrorism's hash list API;
- ``threatexchange:<privacy_group_id>``: the ThreatExchange ``threat_updates`` of a group.

Options are URL query parameters; an unknown one is a ``ConfigError`` (a typo must not
silently change what gets blocked). ``+`` in an option is a plus sign, not a space: RFC 3986
gives it no special meaning, and the base64 keys people paste are full of them (a space is
``%20``). Secrets never go in the string: they come from ``Credentials``.

``check_source`` is what ``lists add`` runs before it stores a source: everything that can
be known without the network (the file exists, the scheme and options are known, a feed key
is a real key and not ``<public key>``), so a typo fails when it is typed instead of at 3 a.m.
in a cron job, and a relative path is stored absolute because cron and systemd run elsewhere.
"""

from __future__ import annotations

import os
import re
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

from .._errors import ConfigError
from ._base import Source
from ._credentials import (
    ENV_TCAP_CREDENTIALS,
    ENV_TCAP_TOKEN,
    ENV_TE_TOKEN,
    Credentials,
    Secret,
)
from ._http import HttpOptions

__all__ = ["CheckedSource", "check_source", "parse_query", "source_from_uri"]

_SCHEMES = ("file", "http", "https", "tcap", "threatexchange", "local")
# RFC 3986 scheme syntax, two characters at least so that "C:\lists" stays a path.
_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]+):")


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
    scheme = _scheme(uri)
    if scheme is None:
        return _file_source(Path(uri), {})
    parts = urllib.parse.urlsplit(uri)
    credentials = credentials or Credentials()
    options = http_options or HttpOptions()
    if scheme == "file":
        return _file_source(_file_uri_path(parts), parse_query(parts.query))
    if scheme in ("http", "https"):
        from ._feed import FeedSource

        base = urllib.parse.urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))
        return FeedSource.from_options(base, parse_query(parts.query, multi={"key"}), options)
    if scheme == "tcap":
        from ._tcap import TcapSource

        return TcapSource.from_options(parse_query(parts.query), credentials, options)
    if scheme == "local":
        raise ConfigError(
            "an own list (local:) is not synced: its entries come from 'uploadscan lists add-media'"
        )
    from ._threatexchange import ThreatExchangeSource

    group = parts.path.strip("/")
    return ThreatExchangeSource.from_options(group, parse_query(parts.query), credentials, options)


@dataclass(frozen=True)
class CheckedSource:
    """A source that passed ``check_source``.

    ``uri`` is what to store (paths made absolute); ``description`` is safe to print;
    ``missing`` says what must still be set up before the list can sync (credentials), or
    is ``None`` when a sync can start right away.
    """

    uri: str
    description: str
    missing: str | None = None


def check_source(uri: str, *, home: Path | None = None) -> CheckedSource:
    """Check a list source without any network access; ``ConfigError`` says what is wrong.

    Files must exist and be readable; an unknown scheme (``ftp://``) is refused rather than
    taken for a file name; a feed must be https (or http to a loopback address) and pin real
    keys; options must be known. TCAP and ThreatExchange credentials are looked up (in the
    environment and ``home``'s credentials file) but their absence is reported in
    ``missing`` rather than refused, since they are often set up after the list.
    """
    if not isinstance(uri, str) or not uri.strip():
        raise ConfigError("a list source must be a non-empty string")
    uri = uri.strip()
    scheme = _scheme(uri)
    if scheme == "local":
        if uri != "local:":
            raise ConfigError(f"an own list's source is exactly 'local:', got {uri!r}")
        return CheckedSource(uri, "the platform's own media (uploadscan lists add-media)")
    if scheme is None or scheme == "file":
        return _check_file(uri, scheme)
    parts = urllib.parse.urlsplit(uri)
    if scheme in ("http", "https"):
        query = _absolute_key_file(parts.query)
        stored = urllib.parse.urlunsplit(
            (parts.scheme, parts.netloc, parts.path, query, parts.fragment)
        )
        source = source_from_uri(stored)  # https (or loopback http), keys, options
        return CheckedSource(stored, source.description)
    # Check the options with stand-in credentials; report the real ones separately.
    stand_in = Secret("stand-in")
    source = source_from_uri(
        uri, credentials=Credentials(tcap_token=stand_in, threatexchange_token=stand_in)
    )
    found = Credentials.discover(home)
    missing: str | None = None
    if (
        scheme == "tcap"
        and found.tcap_token is None
        and (found.tcap_username is None or found.tcap_password is None)
    ):
        missing = (
            f"TCAP credentials ({ENV_TCAP_TOKEN}, or {ENV_TCAP_CREDENTIALS}=username:password, "
            "or a 'tcap' section in credentials.json in the data directory)"
        )
    if scheme == "threatexchange" and found.threatexchange_token is None:
        missing = (
            f"a ThreatExchange app access token ({ENV_TE_TOKEN}, or a 'threatexchange' "
            "section in credentials.json in the data directory)"
        )
    return CheckedSource(uri, source.description, missing)


def parse_query(query: str, *, multi: set[str] | None = None) -> dict[str, str]:
    """Query parameters as a dict; repeated names only for those in ``multi`` (joined
    with newlines). ``+`` stays a plus sign."""
    try:
        pairs = urllib.parse.parse_qsl(
            query.replace("+", "%2B"), keep_blank_values=True, strict_parsing=bool(query)
        )
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


def _scheme(uri: str) -> str | None:
    """The URI's scheme (lower case), ``None`` for a plain path; ``ConfigError`` for a scheme
    uploadscan does not read (an existing file whose name looks like one is still a file)."""
    match = _SCHEME.match(uri)
    if match is None:
        return None
    scheme = match.group(1).lower()
    if scheme in _SCHEMES:
        return scheme
    if Path(uri).expanduser().exists():
        return None
    raise ConfigError(
        f"unknown list source scheme {scheme!r} in {uri[:80]!r}; a source is a path, a file: "
        "URI, an https: feed (http: to loopback only), tcap:, threatexchange:<group id> or local:"
    )


def _file_uri_path(parts: urllib.parse.SplitResult) -> Path:
    if parts.netloc not in ("", "localhost"):
        raise ConfigError(f"file URI must name a local path, got host {parts.netloc!r}")
    return Path(urllib.parse.unquote(parts.path))


def _check_file(uri: str, scheme: str | None) -> CheckedSource:
    if scheme is None:
        path, query = Path(uri), ""
    else:
        parts = urllib.parse.urlsplit(uri)
        path, query = _file_uri_path(parts), parts.query
    if not str(path):
        raise ConfigError(f"list source {uri[:80]!r} names no file")
    absolute = Path(os.path.abspath(path.expanduser()))
    if not absolute.exists():
        raise ConfigError(f"list file {absolute} does not exist")
    if not os.access(absolute, os.R_OK | (os.X_OK if absolute.is_dir() else 0)):
        raise ConfigError(f"list file {absolute} is not readable by this user")
    if not (absolute.is_file() or absolute.is_dir()):
        raise ConfigError(f"list source {absolute} is neither a file nor a directory")
    if scheme is None:
        stored = str(absolute)
    else:
        stored = "file://" + urllib.parse.quote(str(absolute)) + (f"?{query}" if query else "")
    source = source_from_uri(stored)  # checks the options
    return CheckedSource(stored, source.description)


def _absolute_key_file(query: str) -> str:
    """``query`` with a relative ``key_file=`` made absolute (nothing else re-encoded)."""
    out = []
    for piece in query.split("&") if query else []:
        name, sep, value = piece.partition("=")
        if name == "key_file" and sep and value:
            path = Path(urllib.parse.unquote(value)).expanduser()
            if not path.is_absolute():
                value = urllib.parse.quote(os.path.abspath(path))
        out.append(f"{name}{sep}{value}")
    return "&".join(out)


def _file_source(path: Path, options: dict[str, str]) -> Source:
    from ._files import FileSource

    return FileSource(path.expanduser(), options)
