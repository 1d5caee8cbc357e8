"""How rdsssl reaches the RDS API: `ApiSettings` (region, endpoint override, profile, timeouts,
retries, pacing), the endpoint override's syntax, the credential environment variables and the
error for missing credentials. No SDK here: `rdsssl.rds.api` turns these into the SDK's Config.

Decisions (see docs/aliyun-rds-ssl-api.md):
- Endpoint override: `http://host:port` -> plain HTTP; `https://host[:port]` -> HTTPS; a bare
  `host[:port]` -> HTTP for loopback hosts (127.0.0.0/8, ::1, localhost: the emulator) and HTTPS
  otherwise. Without an override the SDK's default endpoint for the region is used.
- Credentials: explicit `profile` (--profile) > ALIBABA_CLOUD_ACCESS_KEY_ID / _SECRET (and
  _SECURITY_TOKEN), read when the adapter is built, not when the credentials package was imported >
  ALIBABA_CLOUD_PROFILE > the package's default chain (OIDC, CLI profile, credentials.ini, ECS RAM
  role, credentials URI). None found -> `ConfigError` naming the variables; no value is echoed.
- Region: explicit `region` (--region) > ALIBABA_CLOUD_REGION_ID > the `region_id` of the aliyun
  CLI profile, as the aliyun CLI picks it: `profile` (--profile) > ALIBABA_CLOUD_PROFILE > the
  config file's `current`. The file is `$HOME/.aliyun/config.json`, the one the aliyun CLI and
  the credentials package read (neither honours a variable naming another file); with
  ALIBABA_CLOUD_CLI_PROFILE_DISABLED=true, which makes the credentials package skip it, it is
  not read for the region either. Only `current`, `profiles[].name` and `region_id` are looked
  at: the access keys, tokens and passwords in the file are the credentials package's business
  and never reach an rdsssl message.
"""

from __future__ import annotations

import ipaddress
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from rdsssl.errors import ConfigError

ENV_ACCESS_KEY_ID = "ALIBABA_CLOUD_ACCESS_KEY_ID"
ENV_ACCESS_KEY_SECRET = "ALIBABA_CLOUD_ACCESS_KEY_SECRET"
ENV_SECURITY_TOKEN = "ALIBABA_CLOUD_SECURITY_TOKEN"
ENV_PROFILE = "ALIBABA_CLOUD_PROFILE"
ENV_REGION = "ALIBABA_CLOUD_REGION_ID"
ENV_ENDPOINT = "RDSSSL_ENDPOINT"
ENV_CLI_PROFILE_DISABLED = "ALIBABA_CLOUD_CLI_PROFILE_DISABLED"

CREDENTIALS_HELP = (
    f"set {ENV_ACCESS_KEY_ID} and {ENV_ACCESS_KEY_SECRET} (plus {ENV_SECURITY_TOKEN} for STS), "
    "or configure a profile in ~/.aliyun/config.json or ~/.alibabacloud/credentials.ini and "
    f"select it with --profile / {ENV_PROFILE}, or run on ECS with a RAM role"
)


@dataclass(frozen=True)
class ApiSettings:
    """How to reach RDS. `region` is needed unless `endpoint` overrides the SDK's default;
    `min_interval` (seconds) spaces consecutive calls of one adapter (0 = no rate limit)."""

    region: str | None = None
    endpoint: str | None = None
    profile: str | None = None
    connect_timeout_ms: int = 5000
    read_timeout_ms: int = 10000
    retries: int = 4
    sleep: Callable[[float], None] = time.sleep
    min_interval: float = 0.0

    @classmethod
    def from_env(
        cls, *, region: str | None = None, endpoint: str | None = None, profile: str | None = None
    ) -> ApiSettings:
        """Explicit values win; otherwise ALIBABA_CLOUD_REGION_ID and RDSSSL_ENDPOINT (the
        CLI's env twins, for Python callers), then the aliyun CLI profile's region
        (`default_region`; None when it has none: the adapter then says why, if it needs one).
        ALIBABA_CLOUD_PROFILE is left to the credential chain, where env access keys come
        first; an explicit `profile` beats them."""
        return cls(
            region=region or os.environ.get(ENV_REGION) or default_region(profile),
            endpoint=endpoint or os.environ.get(ENV_ENDPOINT) or None,
            profile=profile,
        )


@dataclass(frozen=True)
class Endpoint:
    """An endpoint override split the way the SDK's Config wants it."""

    protocol: str  # "http" or "https"
    host: str  # host[:port]

    def __str__(self) -> str:
        return f"{self.protocol}://{self.host}"


def parse_endpoint(value: str) -> Endpoint:
    """`http://host:port` / `https://host[:port]` / bare `host[:port]` (HTTP only on loopback)."""
    text = value.strip()
    hint = f"bad endpoint {value!r}: use http://HOST:PORT, https://HOST or HOST:PORT"
    scheme = ""
    if "://" in text:
        scheme, _, rest = text.partition("://")
        scheme = scheme.lower()
        if scheme not in ("http", "https"):
            raise ConfigError(f"{hint} (unsupported scheme {scheme!r})")
    else:
        rest = text
    parts = urlsplit("//" + rest)
    try:
        port = parts.port
    except ValueError:
        raise ConfigError(f"{hint} (bad port)") from None
    host = parts.hostname
    if not host or parts.path not in ("", "/") or parts.query or parts.fragment or parts.username:
        raise ConfigError(hint)
    if not scheme:
        scheme = "http" if _is_loopback(host) else "https"
    shown = f"[{host}]" if ":" in host else host
    return Endpoint(scheme, f"{shown}:{port}" if port is not None else shown)


def _is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def missing_credentials(detail: str = "no Alibaba Cloud credentials found") -> ConfigError:
    """The error for absent credentials: what to set, never a value."""
    return ConfigError(f"{detail}: {CREDENTIALS_HELP}")


# ------------------------------------------------------------------ the aliyun CLI's region


def cli_config_path() -> Path:
    """The aliyun CLI's configuration file, `$HOME/.aliyun/config.json` (HOME read now, not at
    import, so a test or a wrapper can point it elsewhere)."""
    home = os.environ.get("HOME") or os.path.expanduser("~")
    return Path(home) / ".aliyun" / "config.json"


def profile_region(profile: str | None = None, *, path: Path | None = None) -> str:
    """The `region_id` of an aliyun CLI profile: `profile`, else $ALIBABA_CLOUD_PROFILE, else the
    file's `current`. ConfigError naming the file and the profile when the file is missing,
    unreadable or malformed, the profile absent, or its region empty."""
    path = path or cli_config_path()
    name = profile or os.environ.get(ENV_PROFILE) or None
    if os.environ.get(ENV_CLI_PROFILE_DISABLED, "").lower() == "true":
        raise ConfigError(f"{ENV_CLI_PROFILE_DISABLED}=true: {path} is not read")
    config = _read_cli_config(path)
    if name is None:
        current = config.get("current")
        if not isinstance(current, str) or not current:
            raise ConfigError(f"{path}: no current profile: select one with --profile")
        name = current
    for entry in _profiles(config, path):
        if entry.get("name") == name:
            region = entry.get("region_id")
            if not isinstance(region, str) or not region.strip():
                raise ConfigError(f"{path}: profile {name!r} has no region_id")
            return region.strip()
    known = sorted(str(e.get("name")) for e in _profiles(config, path) if e.get("name"))
    raise ConfigError(f"{path}: no profile {name!r} (profiles: {', '.join(known) or 'none'})")


def default_region(profile: str | None = None) -> str | None:
    """`profile_region`, or None when the profile gives no region (for callers to whom a region
    is optional; `region_error` says why)."""
    try:
        return profile_region(profile)
    except ConfigError:
        return None


def region_error(profile: str | None = None) -> ConfigError:
    """The error when an API client needs a region and none was given: every way to give one,
    and why the aliyun CLI profile did not."""
    try:
        profile_region(profile)
    except ConfigError as exc:
        why = f" ({exc})"
    else:
        why = ""
    return ConfigError(
        f"no region: pass --region, set {ENV_REGION} or set region_id in the aliyun CLI "
        f"profile{why}; or point --endpoint / {ENV_ENDPOINT} at an endpoint"
    )


def _read_cli_config(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file (create it with `aliyun configure`)") from None
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise ConfigError(f"{path}: cannot read the aliyun CLI config ({reason})") from None
    try:
        doc = json.loads(text)
    except ValueError as exc:  # the position only: the text itself may hold secrets
        where = f"line {exc.lineno}" if isinstance(exc, json.JSONDecodeError) else "?"
        raise ConfigError(f"{path}: not valid JSON ({where})") from None
    if not isinstance(doc, dict):
        raise ConfigError(f"{path}: not an aliyun CLI config (expected a JSON object)")
    return doc


def _profiles(config: dict[str, Any], path: Path) -> list[dict[str, Any]]:
    profiles = config.get("profiles")
    if not isinstance(profiles, list):
        raise ConfigError(f"{path}: not an aliyun CLI config (no profiles list)")
    return [p for p in profiles if isinstance(p, dict)]
