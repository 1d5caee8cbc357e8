"""What one observed change looked like: the samples `rdsssl service-profile record` takes, and
the timings read off them (pure: no API, no clock).

A sample is one poll, about every second: DescribeDBInstanceAttribute's status, then
DescribeDBInstanceSSL's LastModifyStatus and read-back, at `t` seconds after the Modify call
returned. `readback` is "new" once the read-back differs from what the instance showed before
the call (not "equals what was sent": a service that normalises or trims what it stores would
then never show "new"), else "old". A poll that failed with a retryable error is kept as a
sample with `error` set (a busy instance may refuse even Describe calls) and ignored by the
analysis.

Timings (docs/aliyun-rds-ssl-api.md §3.5 names the phases; the emulator replays them):
- status lag: `t` of the first sample showing the change at all (new values, a status other
  than Running, or `setting`). It is an upper bound: the change showed at most one poll
  interval earlier.
- early read-back: from the first sample with new values but no progress yet (Running and not
  `setting`) to the first sample in progress; 0 when progress showed first, or never showed.
- busy: from the first sample in progress to the first settled one after it (Running,
  `success`, new values): the restart, or the ACL lock. None when progress was never seen.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from rdsssl.models import MODIFY_SETTING, MODIFY_SUCCESS, STATUS_RUNNING

__all__ = ["NEW", "OLD", "Sample", "Timing", "analyse", "restart_statuses"]

OLD = "old"
NEW = "new"
# Statuses that name a restart outright; seen during an ACL-only change, they answer whether it
# restarts even without a probe connection.
_RESTART_WORDS = ("reboot", "restart")


@dataclass(frozen=True)
class Sample:
    """One poll during a change (see the module docstring)."""

    t: float
    status: str = ""
    last_modify_status: str = ""
    readback: str = OLD
    error: str | None = None

    @property
    def in_progress(self) -> bool:
        """The change is visibly under way: a status other than Running, or `setting`."""
        if self.error is not None:
            return False
        return self.status != STATUS_RUNNING or self.last_modify_status == MODIFY_SETTING

    @property
    def settled(self) -> bool:
        """Running, `success` and the new values."""
        return (
            self.error is None
            and self.status == STATUS_RUNNING
            and self.last_modify_status == MODIFY_SUCCESS
            and self.readback == NEW
        )

    def describe(self) -> str:
        """One line for a progress display."""
        if self.error is not None:
            return f"{self.t:.1f}s error {self.error}"
        lms = self.last_modify_status or "-"
        return f"{self.t:.1f}s {self.status} / {lms} / read-back {self.readback}"

    def key(self) -> tuple[str, str, str, str | None]:
        """What a progress display compares to decide whether something changed."""
        return (self.status, self.last_modify_status, self.readback, self.error)

    def to_json(self) -> dict[str, Any]:
        """The entry of a profile file's `sequences`."""
        if self.error is not None:
            return {"t": round(self.t, 2), "error_code": self.error}
        return {
            "t": round(self.t, 2),
            "status": self.status,
            "last_modify_status": self.last_modify_status,
            "readback": self.readback,
        }


@dataclass(frozen=True)
class Timing:
    """The timings of one change (seconds; see the module docstring)."""

    status_lag: float | None
    early_readback: float
    busy: float | None

    @property
    def saw_progress(self) -> bool:
        """Whether a sample in progress was seen at all."""
        return self.busy is not None


def analyse(samples: Sequence[Sample]) -> Timing:
    """The timings of one change from its samples, oldest first."""
    valid = [s for s in samples if s.error is None]
    first_change = next((s for s in valid if s.readback == NEW or s.in_progress), None)
    first_progress = next((s for s in valid if s.in_progress), None)
    lag = None if first_change is None else round(first_change.t, 2)
    if first_progress is None:
        return Timing(lag, 0.0, None)
    early_from = next(
        (s for s in valid if s.t < first_progress.t and s.readback == NEW and not s.in_progress),
        None,
    )
    early = 0.0 if early_from is None else round(first_progress.t - early_from.t, 2)
    done = next((s for s in valid if s.t > first_progress.t and s.settled), None)
    busy = None if done is None else round(done.t - first_progress.t, 2)
    return Timing(lag, early, busy)


def restart_statuses(samples: Sequence[Sample]) -> list[str]:
    """The statuses seen that name a restart (e.g. `Rebooting`), in order, without repeats."""
    found: list[str] = []
    for sample in samples:
        lowered = sample.status.lower()
        if any(word in lowered for word in _RESTART_WORDS) and sample.status not in found:
            found.append(sample.status)
    return found
