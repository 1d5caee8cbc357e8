"""The request budget of a fleet run: which rate applies, and what it costs the run.

Every worker of a fleet command shares one `rdsssl.ops.fleet.RateLimiter` (burst 1): calls are
spaced `1 / rate` seconds apart, so a run of N API calls takes at least (N - 1) / rate seconds
however high `--concurrency` is. At the default 10 calls/s, 100 instances that each need 9
calls cannot finish in under 90 s. `RateCost` says so after a `plan` or `apply`, counted from
the limiter (logical calls: the adapter's retries of one call and the pages of one listing are
not counted, so the real time is longer, never shorter).

Which rate (`choose_rate`), first found wins:
1. `--rate N` on the command line;
2. `rate = N` at the top level of the desired-state file (the run's budget, not an instance's:
   a `rate` under `[defaults]` or `[[instances]]` is refused by `rdsssl.ops.config`);
3. `api_rate` of the service profile (`rdsssl.rds.service_profile`), what the account's
   throttling allows, written into the recorded file by whoever knows it;
4. `rdsssl.ops.fleet.DEFAULT_RATE` (10 calls/s).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rdsssl.models import DesiredState
from rdsssl.ops.fleet import DEFAULT_RATE, RateLimiter
from rdsssl.rds.service_profile import ServiceProfile

__all__ = ["Rate", "RateCost", "choose_rate"]


@dataclass(frozen=True)
class Rate:
    """The calls per second of a run, and where that number came from."""

    calls_per_second: float
    source: str  # "--rate", the desired-state file, "service profile NAME", or "default"


def choose_rate(
    option: float | None,
    *,
    desired: DesiredState | None = None,
    profile: ServiceProfile | None = None,
) -> Rate:
    """The rate of a run: `option` (--rate) > the desired-state file's `rate` > the service
    profile's `api_rate` > `DEFAULT_RATE`."""
    if option is not None:
        return Rate(option, "--rate")
    if desired is not None and desired.rate is not None:
        return Rate(desired.rate, str(desired.path))
    if profile is not None and profile.api_rate is not None:
        return Rate(profile.api_rate, f"service profile {profile.name}")
    return Rate(DEFAULT_RATE, "default")


@dataclass(frozen=True)
class RateCost:
    """What the rate limit cost a run: `calls` spaced `1 / rate` apart over `instances`."""

    rate: Rate
    instances: int
    calls: int

    @classmethod
    def of(cls, rate: Rate, limiter: RateLimiter, instances: int) -> RateCost:
        """The cost so far of the calls `limiter` let through."""
        return cls(rate, instances, limiter.acquired)

    @property
    def minimum_seconds(self) -> float:
        """The least time these calls take at this rate, whatever the concurrency."""
        return max(0, self.calls - 1) / self.rate.calls_per_second

    def to_json(self) -> dict[str, Any]:
        return {
            "calls_per_second": self.rate.calls_per_second,
            "source": self.rate.source,
            "instances": self.instances,
            "calls": self.calls,
            "minimum_seconds": round(self.minimum_seconds, 1),
        }

    def text(self) -> str:
        """One line for stderr."""
        per = f" ({self.calls / self.instances:.1f} per instance)" if self.instances else ""
        return (
            f"rate limit {self.rate.calls_per_second:g} calls/s ({self.rate.source}): "
            f"{self.calls} API call(s) for {self.instances} instance(s){per} take at least "
            f"{self.minimum_seconds:.1f}s at any concurrency (--rate N, or rate = N in the "
            "desired-state file, within the account's API throttling)"
        )
