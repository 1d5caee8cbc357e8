"""The request log: what was called, with which (redacted) parameters, and how it ended.

Tests and benchmarks count Modify calls from it. PEM values are replaced by the SHA-256 of
each block's DER, so a test can tell which CA or CRL went out without the log holding
certificates; passwords and keys never enter it.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from rdsssl.emulator.pemcheck import parse_blocks

__all__ = ["LoggedRequest", "RequestLog", "redact"]

_SECRET_PARAMS = frozenset({"AccountPassword", "ServerKey", "PassWord", "Password"})


def redact(params: Mapping[str, str]) -> dict[str, str]:
    """Parameters as the log keeps them: secrets replaced, PEMs fingerprinted."""
    out = {}
    for name, value in params.items():
        if name in _SECRET_PARAMS or "secret" in name.lower():
            out[name] = "<redacted>"
        elif "-----BEGIN" in value:
            try:
                fps = [hashlib.sha256(b.der).hexdigest() for b in parse_blocks(value)]
                out[name] = "pem:sha256=" + ",".join(fps)
            except ValueError:
                out[name] = "pem:unparsed sha256=" + hashlib.sha256(value.encode()).hexdigest()
        else:
            out[name] = value
    return out


@dataclass(frozen=True)
class LoggedRequest:
    """One API call as the emulator answered it."""

    time: str  # ISO 8601 UTC
    request_id: str
    action: str
    instance_id: str
    params: dict[str, str]
    outcome: str  # "ok" or the error code ("HTTP502", "HTTP414" for HTML answers)
    status: int
    fault: str | None = None  # the injected fault kind, if any

    def to_json(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)


@dataclass
class RequestLog:
    """Thread-safe, append-only until `clear()`."""

    _entries: list[LoggedRequest] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def append(self, entry: LoggedRequest) -> None:
        """Record one call."""
        with self._lock:
            self._entries.append(entry)

    def entries(self) -> list[LoggedRequest]:
        """A copy of every entry, oldest first."""
        with self._lock:
            return list(self._entries)

    def clear(self) -> None:
        """Forget everything (reset)."""
        with self._lock:
            self._entries.clear()
