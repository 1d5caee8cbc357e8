"""Fault injection and the switches for behaviours the real service leaves undocumented.

Deterministic by construction: planned faults are a FIFO per action, and random faults draw
from one `random.Random(seed)` in a fixed order, so a seed replays the same sequence.
A fault is answered by the gateway before the action runs, unless `after=True`: then the
action runs (the change is accepted) and the caller still sees the error, which is how a
client learns to re-read the state before re-sending a non-idempotent call.
"""

from __future__ import annotations

import dataclasses
import math
import random
import re
import threading
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any

__all__ = [
    "ACLS_WITHOUT_CA",
    "FAULT_KINDS",
    "PEM_READBACKS",
    "TLS_VERSIONS",
    "Fault",
    "Faults",
    "Switches",
    "check_switch",
    "error_code",
    "http_status",
    "seconds",
]

# kind -> (HTTP status, error code or None for an HTML page)
FAULT_KINDS: dict[str, tuple[int, str | None]] = {
    "throttling": (400, "Throttling.User"),
    "unavailable": (503, "ServiceUnavailable"),
    "internal": (500, "InternalError"),
    "html502": (502, None),
    "latency": (200, None),  # only a delay; the call then proceeds normally
}


@dataclass(frozen=True)
class Fault:
    """One injected misbehaviour for one call."""

    kind: str
    latency: float = 0.0
    after: bool = False
    retry_after_ms: int | None = None  # throttling only: sends x-acs-retry-after

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}; one of {', '.join(FAULT_KINDS)}")


TLS_VERSIONS: tuple[str, ...] = ("TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3")
PEM_READBACKS: tuple[str, ...] = ("exact", "normalized")
ACLS_WITHOUT_CA: tuple[str, ...] = ("prefer", "")
_CODE = re.compile(r"[A-Za-z][A-Za-z0-9_]*(\.[A-Za-z0-9_]+)*")


@dataclass
class Switches:
    """Undocumented behaviours of the real service, as settings (docs/aliyun-rds-ssl-api.md).

    The defaults are the `documented` profile (rdsssl/emulator/profiles.py): what the
    documentation says where it says something, and the helpful answer where it does not.
    The `pessimistic` profile turns on every plausible unhelpful answer at once.
    """

    multi_ca_bundle: bool = True  # accept several certificates in ClientCACert
    restart_on_acl_change: bool = False  # an ACL-only change restarts (else reloads)
    return_server_key: bool = False  # DescribeDBInstanceSSL includes ServerKey, as RDS does
    crl_issuer_check: bool = True  # refuse a CRL not issued by a CA in ClientCACert
    # After an accepted Modify: this long Running, the old values and the previous
    # LastModifyStatus (the task is queued) ...
    status_lag_seconds: float = 0.0
    # ... then this long the new values with Running / success, before SSL_MODIFYING.
    early_readback_seconds: float = 0.0
    busy_code: str = "IncorrectDBInstanceState"  # a Modify while busy; see errors.CATALOGUE
    busy_http_status: int | None = None  # None: the code's catalogued status
    not_found_http_status: int = 400  # InvalidDBInstanceId.NotFound
    url_limit: int | None = None  # longest request target accepted; longer -> HTML 414
    tls_max_version: str | None = "TLSv1.2"  # ssl_max_protocol_version; None: PostgreSQL's
    acl_without_ca: str = "prefer"  # ACL / ReplicationACL read back with SSL on, no client CA
    crlf_pem_readback: str = "exact"  # "normalized": PEMs sent with CRLF read back with LF
    # The call that turns SSL on may also carry ClientCAEnabled=1 / CRL / ACL (Terraform's
    # acceptance test sends them together); False: IncorrectDBSslStatus, SSL alone first.
    one_call_ssl_setup: bool = True
    # SSLEnabled=1 re-sent (CAType aliyun) on an instance whose cloud certificate protects the
    # same connection string issues a new cloud certificate (Terraform's "Update" implies it);
    # False: the call is accepted and restarts, and the certificate stays as it was.
    ssl_enable_renews: bool = True
    # SSLEnabled=0 keeps the client CA, CRL and ACLs (read back, not in force) and SSL turned
    # on again brings them back; False: they are cleared with SSL, as the console implies.
    ssl_off_keeps_client_ca: bool = False

    def set(self, name: str, value: Any) -> None:
        """Set one switch from JSON-ish input; ValueError naming the switch if it is wrong."""
        check = _CHECKS.get(name)
        if check is None:
            names = ", ".join(sorted(_CHECKS))
            raise ValueError(f"unknown switch {name!r}; one of {names}")
        setattr(self, name, check(name, value))

    def update(self, values: Mapping[str, Any]) -> None:
        """Set several switches, all or none (a bad value leaves every switch as it was)."""
        staged = dataclasses.replace(self)
        for name, value in values.items():
            staged.set(name, value)
        self.assign(staged)

    def assign(self, other: Switches) -> None:
        """Take every value of `other`, in place (the state and the app hold this object)."""
        for f in fields(Switches):
            setattr(self, f.name, getattr(other, f.name))


def _bool(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{name}: expected true or false, not {value!r}")
    return value


def seconds(name: str, value: Any) -> float:
    """A duration in seconds (finite, >= 0); ValueError naming `name` otherwise."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{name}: expected a number of seconds, not {value!r}")
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{name}: expected a finite number >= 0, not {value!r}")
    return float(value)


def http_status(name: str, value: Any) -> int:
    """An HTTP error status (400-599); ValueError naming `name` otherwise."""
    if isinstance(value, bool) or not isinstance(value, int) or not 400 <= value <= 599:
        raise ValueError(f"{name}: expected an HTTP error status (400-599), not {value!r}")
    return value


def _optional_status(name: str, value: Any) -> int | None:
    return None if value is None else http_status(name, value)


def error_code(name: str, value: Any) -> str:
    """An API error code such as `InvalideStatus.Format`; ValueError naming `name` otherwise."""
    if not isinstance(value, str) or not _CODE.fullmatch(value):
        raise ValueError(f"{name}: expected an error code such as IncorrectDBInstanceState")
    return value


def _url_limit(name: str, value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{name}: expected a positive number of bytes or null, not {value!r}")
    return value


def _choice(options: tuple[str | None, ...]) -> Callable[[str, Any], Any]:
    def check(name: str, value: Any) -> Any:
        if value not in options:
            shown = ", ".join("null" if o is None else repr(o) for o in options)
            raise ValueError(f"{name}: expected one of {shown}, not {value!r}")
        return value

    return check


_CHECKS: dict[str, Callable[[str, Any], Any]] = {
    "multi_ca_bundle": _bool,
    "restart_on_acl_change": _bool,
    "return_server_key": _bool,
    "crl_issuer_check": _bool,
    "status_lag_seconds": seconds,
    "early_readback_seconds": seconds,
    "busy_code": error_code,
    "busy_http_status": _optional_status,
    "not_found_http_status": http_status,
    "url_limit": _url_limit,
    "tls_max_version": _choice((*TLS_VERSIONS, None)),
    "acl_without_ca": _choice(ACLS_WITHOUT_CA),
    "crlf_pem_readback": _choice(PEM_READBACKS),
    "one_call_ssl_setup": _bool,
    "ssl_enable_renews": _bool,
    "ssl_off_keeps_client_ca": _bool,
}
# Every switch has its check: a field without one could not be set from JSON or a profile.
assert set(_CHECKS) == {f.name for f in fields(Switches)}


def check_switch(name: str, value: Any, *, label: str | None = None) -> Any:
    """`value` checked as switch `name` (ValueError naming `label`, default `name`)."""
    return _CHECKS[name](label or name, value)


@dataclass
class _Rate:
    kind: str
    probability: float
    action: str


@dataclass
class Faults:
    """The fault plan of one emulator; every method is thread-safe."""

    seed: int = 0
    switches: Switches = field(default_factory=Switches)
    latency: float = 0.0  # added to every API call
    profile: str = "documented"  # the name of the profile the switches came from
    _planned: dict[str, deque[Fault]] = field(default_factory=dict, repr=False)
    _rates: list[_Rate] = field(default_factory=list, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)
        self._defaults = dataclasses.replace(self.switches)  # what clear() goes back to

    @property
    def url_limit(self) -> int | None:
        """The longest request target accepted (the `url_limit` switch); None: no limit."""
        return self.switches.url_limit

    @url_limit.setter
    def url_limit(self, limit: int | None) -> None:
        self.switches.set("url_limit", limit)

    def push(
        self,
        kind: str,
        *,
        action: str = "*",
        count: int = 1,
        latency: float = 0.0,
        after: bool = False,
        retry_after_ms: int | None = None,
    ) -> None:
        """Answer the next `count` calls of `action` ("*": any action) with `kind`."""
        fault = Fault(kind, latency=latency, after=after, retry_after_ms=retry_after_ms)
        with self._lock:
            self._planned.setdefault(action, deque()).extend([fault] * count)

    def set_rate(self, kind: str, probability: float, *, action: str = "*") -> None:
        """Answer a fraction of calls with `kind`, drawn from the seeded RNG."""
        Fault(kind)  # validates the kind
        if not 0.0 <= probability <= 1.0:
            raise ValueError(f"probability must be within 0..1, not {probability}")
        with self._lock:
            self._rates = [r for r in self._rates if (r.kind, r.action) != (kind, action)]
            if probability > 0:
                self._rates.append(_Rate(kind, probability, action))

    def clear(self) -> None:
        """Forget planned faults, rates and latency; switches back to the profile's."""
        with self._lock:
            self._planned.clear()
            self._rates.clear()
            self.latency = 0.0
            self.switches.assign(self._defaults)  # in place: the state holds this very object
            self._rng = random.Random(self.seed)

    def draw(self, action: str) -> Fault | None:
        """The fault for this call of `action`, if any: planned first, then random."""
        with self._lock:
            for key in (action, "*"):
                queue = self._planned.get(key)
                if queue:
                    return queue.popleft()
            for rate in self._rates:
                if rate.action in (action, "*") and self._rng.random() < rate.probability:
                    return Fault(rate.kind)
        return None

    def snapshot(self) -> dict[str, Any]:
        """The plan as JSON-ready data (for GET /_emulator/faults)."""
        with self._lock:
            return {
                "profile": self.profile,
                "seed": self.seed,
                "url_limit": self.url_limit,
                "latency": self.latency,
                "switches": asdict(self.switches),
                "planned": {a: [asdict(f) for f in q] for a, q in self._planned.items() if q},
                "rates": [asdict(r) for r in self._rates],
            }

    def configure(self, doc: Mapping[str, Any]) -> None:
        """Apply a JSON document (POST /_emulator/faults); ValueError on a bad one.

        Keys: clear (bool), url_limit (int|null, the switch of that name), latency (s),
        switches {name: value} (set all or none), push [{kind, action, count, latency, after,
        retry_after_ms}], rates [{kind, probability, action}].
        """
        unknown = set(doc) - {"clear", "url_limit", "latency", "switches", "push", "rates"}
        if unknown:
            raise ValueError(f"unknown keys: {', '.join(sorted(unknown))}")
        if doc.get("clear"):
            self.clear()
        switches = dict(doc.get("switches") or {})
        if "url_limit" in doc:
            switches.setdefault("url_limit", doc["url_limit"])
        self.switches.update(switches)
        if "latency" in doc:
            self.latency = float(doc["latency"])
        for item in doc.get("push") or []:
            self.push(**dict(item))
        for item in doc.get("rates") or []:
            self.set_rate(**dict(item))
