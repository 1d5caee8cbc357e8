"""Fault injection and the switches for behaviours the real service leaves undocumented.

Deterministic by construction: planned faults are a FIFO per action, and random faults draw
from one `random.Random(seed)` in a fixed order, so a seed replays the same sequence.
A fault is answered by the gateway before the action runs, unless `after=True`: then the
action runs (the change is accepted) and the caller still sees the error, which is how a
client learns to re-read the state before re-sending a non-idempotent call.
"""

from __future__ import annotations

import random
import threading
from collections import deque
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any

__all__ = ["FAULT_KINDS", "Fault", "Faults", "Switches"]

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


@dataclass
class Switches:
    """Undocumented behaviours of the real service, as settings (docs §8-§10)."""

    multi_ca_bundle: bool = True  # accept several certificates in ClientCACert
    restart_on_acl_change: bool = False  # an ACL-only change restarts (else reloads)
    return_server_key: bool = False  # DescribeDBInstanceSSL includes ServerKey, as RDS does
    crl_issuer_check: bool = True  # refuse a CRL not issued by a CA in ClientCACert


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
    url_limit: int | None = None  # longest request target accepted; longer -> HTML 414
    latency: float = 0.0  # added to every API call
    _planned: dict[str, deque[Fault]] = field(default_factory=dict, repr=False)
    _rates: list[_Rate] = field(default_factory=list, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)

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
        """Forget planned faults, rates, latency and the URL limit; switches to defaults."""
        with self._lock:
            self._planned.clear()
            self._rates.clear()
            self.latency = 0.0
            self.url_limit = None
            for f in fields(Switches):  # in place: the state holds this very object
                setattr(self.switches, f.name, f.default)
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
                "seed": self.seed,
                "url_limit": self.url_limit,
                "latency": self.latency,
                "switches": asdict(self.switches),
                "planned": {a: [asdict(f) for f in q] for a, q in self._planned.items() if q},
                "rates": [asdict(r) for r in self._rates],
            }

    def configure(self, doc: Mapping[str, Any]) -> None:
        """Apply a JSON document (POST /_emulator/faults); ValueError on a bad one.

        Keys: clear (bool), url_limit (int|null), latency (s), switches {name: bool},
        push [{kind, action, count, latency, after, retry_after_ms}], rates [{kind,
        probability, action}].
        """
        unknown = set(doc) - {"clear", "url_limit", "latency", "switches", "push", "rates"}
        if unknown:
            raise ValueError(f"unknown keys: {', '.join(sorted(unknown))}")
        if doc.get("clear"):
            self.clear()
        if "url_limit" in doc:
            limit = doc["url_limit"]
            self.url_limit = None if limit is None else int(limit)
        if "latency" in doc:
            self.latency = float(doc["latency"])
        names = {f.name for f in fields(Switches)}
        for name, value in dict(doc.get("switches") or {}).items():
            if name not in names:
                raise ValueError(f"unknown switch {name!r}; one of {', '.join(sorted(names))}")
            setattr(self.switches, name, bool(value))
        for item in doc.get("push") or []:
            self.push(**dict(item))
        for item in doc.get("rates") or []:
            self.set_rate(**dict(item))
