"""The time a use case sees: one `Clock` with the wall-clock `now`, `sleep` and a `monotonic`
clock for durations and deadlines.

Use cases take a `Clock` instead of three loose callables, so that a test (or a fleet worker
whose sleep ends when the run is interrupted) swaps time in one place. `now` is read once per
change: a plan, its CRL checks and its audit lines share that instant.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timezone

__all__ = ["SYSTEM_CLOCK", "Clock"]


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


@dataclass(frozen=True)
class Clock:
    """`now()`: timezone-aware UTC; `sleep(seconds)`; `monotonic()`: seconds, for durations."""

    now: Callable[[], datetime] = _utcnow
    sleep: Callable[[float], None] = time.sleep
    monotonic: Callable[[], float] = time.monotonic

    def at(self, when: datetime) -> Clock:
        """This clock with `now()` fixed at `when` (a run that judges everything at one instant)."""
        return replace(self, now=lambda: when)

    def sleeping(self, sleep: Callable[[float], None]) -> Clock:
        """This clock with another `sleep` (e.g. a fleet worker's, which ends on Ctrl-C)."""
        return replace(self, sleep=sleep)


SYSTEM_CLOCK = Clock()
