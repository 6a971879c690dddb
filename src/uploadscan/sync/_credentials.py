"""API credentials for TCAP and ThreatExchange, kept out of logs, errors and reprs.

Tokens come from the environment (``UPLOADSCAN_TCAP_TOKEN``, ``UPLOADSCAN_TCAP_CREDENTIALS``
as ``username:password``, ``UPLOADSCAN_THREATEXCHANGE_TOKEN``) or from a JSON file
(``$UPLOADSCAN_CREDENTIALS_FILE``, else ``credentials.json`` in the data directory)::

    {"tcap": {"token": "..."}, "threatexchange": {"token": "APPID|SECRET"}}

(``"tcap": {"username": "...", "password": "..."}`` works too). The file is refused when
group or others may read it, as ssh refuses a private key: a token that leaks from a shared
machine lets anyone download the list, and on TCAP also acts as the platform. Environment
variables win over the file. Every secret is wrapped in ``Secret``, whose repr is a mask, so
an exception or log line that formats a source or its credentials cannot print the token.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from .._errors import ConfigError, UnpicklableSecretError

__all__ = ["Credentials", "Secret"]

ENV_FILE = "UPLOADSCAN_CREDENTIALS_FILE"
ENV_TCAP_TOKEN = "UPLOADSCAN_TCAP_TOKEN"
ENV_TCAP_CREDENTIALS = "UPLOADSCAN_TCAP_CREDENTIALS"
ENV_TE_TOKEN = "UPLOADSCAN_THREATEXCHANGE_TOKEN"
_MAX_FILE_BYTES = 64 << 10


class Secret:
    """A string that never shows itself in ``repr``/``str``; ``reveal()`` to use it."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        if not isinstance(value, str) or not value:
            raise ConfigError("a credential must be a non-empty string")
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('********')"

    __str__ = __repr__

    def __reduce__(self) -> str:  # never pickled into a crash dump or a queue
        raise UnpicklableSecretError("Secret values cannot be pickled")


@dataclass(frozen=True)
class Credentials:
    """Whatever credentials were configured; absent ones are ``None``."""

    tcap_token: Secret | None = None
    tcap_username: str | None = None
    tcap_password: Secret | None = None
    threatexchange_token: Secret | None = None

    @classmethod
    def discover(
        cls, home: Path | None = None, environ: Mapping[str, str] | None = None
    ) -> Credentials:
        """Environment first, then the credentials file (explicit or in ``home``)."""
        env = os.environ if environ is None else environ
        named = env.get(ENV_FILE)
        from_file = cls()
        if named:
            from_file = cls.from_file(Path(named))
        elif home is not None and (home / "credentials.json").exists():
            from_file = cls.from_file(home / "credentials.json")
        tcap_user, tcap_password = from_file.tcap_username, from_file.tcap_password
        if env.get(ENV_TCAP_CREDENTIALS):
            user, sep, password = env[ENV_TCAP_CREDENTIALS].partition(":")
            if not sep or not user or not password:
                raise ConfigError(f"{ENV_TCAP_CREDENTIALS} must be 'username:password'")
            tcap_user, tcap_password = user, Secret(password)
        return cls(
            tcap_token=_env_secret(env, ENV_TCAP_TOKEN) or from_file.tcap_token,
            tcap_username=tcap_user,
            tcap_password=tcap_password,
            threatexchange_token=_env_secret(env, ENV_TE_TOKEN) or from_file.threatexchange_token,
        )

    @classmethod
    def from_file(cls, path: Path) -> Credentials:
        """Read a credentials file; ``ConfigError`` if missing, malformed or too open."""
        try:
            st = path.stat()
        except OSError as exc:
            raise ConfigError(
                f"cannot read credentials file {path}: {exc.strerror or exc}"
            ) from None
        if os.name == "posix" and st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise ConfigError(
                f"credentials file {path} is accessible by group or others "
                f"(mode {stat.S_IMODE(st.st_mode):o}); run: chmod 600 {path}"
            )
        if st.st_size > _MAX_FILE_BYTES:
            raise ConfigError(f"credentials file {path} is larger than {_MAX_FILE_BYTES} bytes")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            # The decoder's message can quote the file's content: keep it out.
            raise ConfigError(f"credentials file {path} is not valid JSON") from None
        if not isinstance(data, dict):
            raise ConfigError(f"credentials file {path} must hold a JSON object")
        unknown = sorted(set(data) - {"tcap", "threatexchange"})
        if unknown:
            raise ConfigError(
                f"credentials file {path}: unknown section(s) {', '.join(unknown)}; "
                "known: tcap, threatexchange"
            )
        tcap = _section(data, "tcap", {"token", "username", "password"}, path)
        te = _section(data, "threatexchange", {"token"}, path)
        username = tcap.get("username")
        return cls(
            tcap_token=Secret(tcap["token"]) if tcap.get("token") else None,
            tcap_username=username if username else None,
            tcap_password=Secret(tcap["password"]) if tcap.get("password") else None,
            threatexchange_token=Secret(te["token"]) if te.get("token") else None,
        )


def _env_secret(env: Mapping[str, str], name: str) -> Secret | None:
    value = env.get(name)
    return Secret(value) if value else None


def _section(data: Mapping[str, object], name: str, keys: set[str], path: Path) -> dict[str, str]:
    section = data.get(name, {})
    if not isinstance(section, dict):
        raise ConfigError(f"credentials file {path}: {name!r} must be an object")
    unknown = sorted(set(section) - keys)
    if unknown:
        raise ConfigError(
            f"credentials file {path}: unknown key(s) {', '.join(unknown)} in {name!r}"
        )
    if not all(isinstance(v, str) for v in section.values()):
        raise ConfigError(f"credentials file {path}: values in {name!r} must be strings")
    return dict(section)
