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
"""

from __future__ import annotations

import ipaddress
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

from rdsssl.errors import ConfigError

ENV_ACCESS_KEY_ID = "ALIBABA_CLOUD_ACCESS_KEY_ID"
ENV_ACCESS_KEY_SECRET = "ALIBABA_CLOUD_ACCESS_KEY_SECRET"
ENV_SECURITY_TOKEN = "ALIBABA_CLOUD_SECURITY_TOKEN"
ENV_PROFILE = "ALIBABA_CLOUD_PROFILE"
ENV_REGION = "ALIBABA_CLOUD_REGION_ID"
ENV_ENDPOINT = "RDSSSL_ENDPOINT"

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
        CLI's env twins, for Python callers). ALIBABA_CLOUD_PROFILE is left to the credential
        chain, where env access keys come first; an explicit `profile` beats them."""
        return cls(
            region=region or os.environ.get(ENV_REGION) or None,
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
