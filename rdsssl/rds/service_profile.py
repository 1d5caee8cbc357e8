"""What rdsssl assumes about the real RDS service, and the file that says it for one account.

The documentation leaves several things open (see the README, "Running against a real
account"): how long a restart takes, whether a change shows late (status lag) or its new
values show before the restart (early read-back), whether an ACL-only change restarts, whether
a multi-CA bundle is accepted, the request-size limit, the TLS versions. rdsssl is correct
under every answer; a *service profile* only makes it faster and better informed: the waiters
poll densely around the end a change is expected to take, the settle period covers the
recorded status lag, and warnings use the recorded limits.

A profile is the JSON file `rdsssl service-profile record` writes (format 1; the emulator
replays the same file with `rdsssl emulator serve --profile FILE`). It is read from
`--service-profile FILE` or `$RDSSSL_SERVICE_PROFILE`; without one, the documented timings
apply (a client CA or CRL change restarts for about 3 minutes, an ACL change locks the instance
for about 1 minute) and the unknowns keep their unhelpful answer (no bundle, a status lag of up
to `DEFAULT_SETTLE` seconds).

One key is not recorded but written by hand: `api_rate`, the API calls per second a fleet run
may make (what the account's throttling allows); `--rate` and a desired-state file's `rate`
beat it (`rdsssl.ops.rate`).

`one_call_ssl_setup` is the one answer assumed helpful by default: turning SSL on together
with the client CA, CRL and ACLs in ONE ModifyDBInstanceSSL call (one restart) is what the
documentation's Terraform acceptance test sends (docs/aliyun-rds-ssl-api.md §1.3). A profile
that records `false` makes `apply` switch SSL on first, then send the rest (two calls).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from rdsssl.errors import ConfigError

MIN_RATE, MAX_RATE = 0.1, 1000.0  # calls/s: `--rate`, a desired-state file's `rate`, `api_rate`
RATE_RANGE = f"API calls per second, a number from {MIN_RATE:g} to {MAX_RATE:g}"
CRL_SIZE_BUDGET = 32 * 1024  # bytes of PEM; the RDS API carries the CRL inline, in the URL

__all__ = [
    "DEFAULT_ACL_LOCK",
    "DEFAULT_RESTART",
    "DEFAULT_SETTLE",
    "ENV_SERVICE_PROFILE",
    "FORMAT",
    "MAX_RATE",
    "MIN_RATE",
    "RATE_RANGE",
    "ServiceProfile",
    "load",
    "valid_rate",
]

ENV_SERVICE_PROFILE = "RDSSSL_SERVICE_PROFILE"
FORMAT = 1
DEFAULT_RESTART = 180.0  # "restarts the instance for about 3 minutes" (client CA / CRL pages)
DEFAULT_ACL_LOCK = 60.0  # "takes about 1 minute" (the ACL page)
# How long a quiet instance is watched before its reads are believed: an accepted change may
# show a few seconds late on the real service. A recorded profile's lag (plus a margin) wins.
DEFAULT_SETTLE = 10.0


@dataclass(frozen=True)
class ServiceProfile:
    """The answers one account gave (None: unknown, the unhelpful answer is assumed)."""

    name: str = "documented defaults"
    region: str | None = None
    engine_version: str | None = None
    recorded_at: str | None = None
    multi_ca_bundle: bool | None = None
    acl_change_restarts: bool | None = None
    busy_error: dict[str, Any] | None = None
    not_found_http_status: int | None = None
    url_limit_bytes: int | None = None
    tls_max_version: str | None = None
    status_lag_seconds: float | None = None
    early_readback_seconds: float | None = None
    restart_seconds: float | None = None
    acl_lock_seconds: float | None = None
    acl_without_ca: str | None = None
    crlf_pem_readback: str | None = None
    api_rate: float | None = None  # API calls/s the account allows a fleet run (not recorded)
    one_call_ssl_setup: bool = True  # SSL on + client CA + CRL + ACL accepted in one call
    sequences: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def settle(self) -> float:
        """How long to watch a quiet instance: the recorded lag and early read-back plus a
        margin, else `DEFAULT_SETTLE`."""
        if self.status_lag_seconds is None:
            return DEFAULT_SETTLE
        early = self.early_readback_seconds or 0.0
        return max(2.0, 1.5 * (self.status_lag_seconds + early) + 1.0)

    def expected(self, *, restarts: bool) -> float:
        """When a change is expected to be live, in seconds after the call returned: the lag,
        the early read-back, then the restart (client CA, CRL, SSL) or the ACL lock."""
        lag = (self.status_lag_seconds or 0.0) + (self.early_readback_seconds or 0.0)
        return lag + self.phase(restarts=restarts)

    def phase(self, *, restarts: bool) -> float:
        """How long the instance stays visibly busy (the restart or the ACL lock), without the
        lag before it shows."""
        if restarts or self.acl_change_restarts:
            return self.restart_seconds or DEFAULT_RESTART
        return self.acl_lock_seconds or DEFAULT_ACL_LOCK

    def dense_interval(self, *, restarts: bool, cap: float) -> float:
        """The waiter's dense interval: `cap` (close enough to return within 2 s), or a third
        of a short busy phase, so that a change that is busy only briefly is seen busy."""
        return min(cap, max(0.05, self.phase(restarts=restarts) / 3))

    def to_json(self) -> dict[str, Any]:
        """The file's shape (format 1)."""
        out: dict[str, Any] = {"format": FORMAT}
        for f in fields(self):
            out[f.name] = getattr(self, f.name)
        return out


_KEYS = {f.name for f in fields(ServiceProfile)} | {"format"}


def parse(doc: Any, *, source: str) -> ServiceProfile:
    """A profile from its JSON document; ConfigError naming `source` when it is not one."""
    if not isinstance(doc, dict):
        raise ConfigError(f"{source}: a service profile is a JSON object")
    if doc.get("format") != FORMAT:
        raise ConfigError(f"{source}: format {doc.get('format')!r}; this rdsssl reads format 1")
    unknown = sorted(set(doc) - _KEYS)
    if unknown:
        raise ConfigError(f"{source}: unknown keys {', '.join(unknown)}")
    values = {k: v for k, v in doc.items() if k != "format" and v is not None}
    for key in ("status_lag_seconds", "early_readback_seconds", "restart_seconds",
                "acl_lock_seconds"):  # fmt: skip
        if key in values and (not isinstance(values[key], int | float) or values[key] < 0):
            raise ConfigError(f"{source}: {key} must be a number of seconds >= 0")
    if "api_rate" in values and not valid_rate(values["api_rate"]):
        raise ConfigError(f"{source}: api_rate must be {RATE_RANGE}, not {values['api_rate']!r}")
    if "one_call_ssl_setup" in values and not isinstance(values["one_call_ssl_setup"], bool):
        raise ConfigError(f"{source}: one_call_ssl_setup must be true or false")
    try:
        return ServiceProfile(**values)
    except TypeError as exc:  # pragma: no cover - guarded by the key check above
        raise ConfigError(f"{source}: {exc}") from None


def valid_rate(value: object) -> bool:
    """Whether `value` is a usable API rate (a number, not a bool, within the range)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    return MIN_RATE <= value <= MAX_RATE


def load(path: Path | None = None) -> ServiceProfile:
    """The profile at `path`, else at `$RDSSSL_SERVICE_PROFILE`, else the documented defaults."""
    if path is None:
        env = os.environ.get(ENV_SERVICE_PROFILE)
        if not env:
            return ServiceProfile()
        path = Path(env)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the service profile ({exc.strerror})") from None
    try:
        doc = json.loads(text)
    except ValueError as exc:
        raise ConfigError(f"{path}: not JSON ({exc})") from None
    return parse(doc, source=str(path))
