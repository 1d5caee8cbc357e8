"""Fleet runs: one function over many instances, bounded concurrency, one shared request budget.

Instances are selected by ids, by tags (DescribeDBInstances, every page, all
tags must match) or by a desired-state file; a bounded pool of threads works through them; one
instance's failure never stops the others; the process exit code reflects any failure.

Decisions:
- Threads, not processes: an instance's time is spent waiting for its ~3-minute restart, so a
  worker is almost always asleep; 100 threads cost nothing next to 100 sequential restarts.
- ONE `RdsApi` adapter is shared by every worker. The SDK client keeps no per-call state (each
  call builds its request from the config captured at construction), HTTP connections come from
  darabonba's process-wide, urllib3-pooled `requests` sessions (shared by every client anyway,
  so one adapter per worker would isolate nothing), and the credential providers that refresh
  (RAM role, STS) take a lock. The budget is therefore one `RateLimiter` in front of that shared
  adapter (`limited(api, limiter)`), so N workers together stay under `rate` calls per second.
  It paces logical calls; a call the adapter retries (throttling, 5xx) is already spaced by its
  exponential backoff (>= 0.5 s), so retries cannot burst. `ApiSettings.min_interval` paces one
  adapter in the same way for single-instance callers; the fleet leaves it at 0 so that calls
  are not paced twice.
- `Outcome.exit_code` is the instance's own code (its error's `ExitCode`, or what the caller's
  `exit_code_of` says about a result, e.g. 10 for a check that needs action).
  `worst_exit_code`: any error beats "needs action", which beats success; among errors the
  highest code wins (130 interrupted > 7 lock > 6 verification > 5 wait > 4 API > 3 input > 1).
- Ctrl-C: pending instances are cancelled, and `cancel` is set so that workers sleeping through
  a wait (given `sleeper(cancel)` as their sleep) stop at their next sleep with `Interrupted`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from rdsssl.errors import ConfigError, ExitCode, NotFoundError, RdsSslError, UsageError
from rdsssl.models import InstanceInfo, InstanceSpec, NetInfo, SslModifyRequest, SslState

if TYPE_CHECKING:  # rdsssl.rds.api imports tenacity; the CLI options import this module eagerly
    from rdsssl.rds.protocol import RdsApi

__all__ = [
    "DEFAULT_CONCURRENCY",
    "DEFAULT_RATE",
    "Interrupted",
    "Item",
    "Outcome",
    "RateLimiter",
    "instance_id_of",
    "limited",
    "run",
    "select_instances",
    "sleeper",
    "worst_exit_code",
]

log = logging.getLogger(__name__)
DEFAULT_CONCURRENCY = 8
DEFAULT_RATE = 10.0  # requests per second, all workers together

R = TypeVar("R")
Item = str | tuple[str, InstanceSpec]  # an instance id, or an id with its desired-state entry


class Interrupted(KeyboardInterrupt):
    """A worker's sleep was cut short because the run was interrupted (Ctrl-C)."""


@dataclass(frozen=True)
class Outcome(Generic[R]):
    """What happened to one instance: `result` when `fn` returned, `error` when it raised."""

    instance_id: str
    ok: bool
    result: R | None
    error: RdsSslError | Exception | None
    exit_code: int
    elapsed: float


def instance_id_of(item: Item) -> str:
    """The instance id of a selection item."""
    return item if isinstance(item, str) else item[0]


def _code_of(exc: BaseException) -> int:
    if isinstance(exc, RdsSslError):
        return int(exc.exit_code)
    if isinstance(exc, KeyboardInterrupt):
        return int(ExitCode.INTERRUPTED)
    return int(ExitCode.UNEXPECTED)


def run(
    items: Sequence[Item],
    fn: Callable[[Item], R],
    *,
    concurrency: int = DEFAULT_CONCURRENCY,
    exit_code_of: Callable[[R], int] | None = None,
    on_done: Callable[[Outcome[R]], None] | None = None,
    cancel: threading.Event | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> list[Outcome[R]]:
    """Run `fn` on every item with at most `concurrency` at a time; outcomes in input order.

    Any `Exception` from `fn` becomes that instance's failed `Outcome`; the others carry on.
    `on_done` is called (from the worker thread) as each instance finishes, for progress lines.
    """
    if concurrency < 1:
        raise UsageError(f"concurrency must be at least 1, not {concurrency}")

    def one(item: Item) -> Outcome[R]:
        started = clock()
        iid = instance_id_of(item)
        try:
            result = fn(item)
        except Exception as exc:  # isolate the failure: it is this instance's outcome
            outcome: Outcome[R] = Outcome(iid, False, None, exc, _code_of(exc), clock() - started)
        except Interrupted as exc:
            outcome = Outcome(iid, False, None, None, _code_of(exc), clock() - started)
        else:
            code = exit_code_of(result) if exit_code_of is not None else int(ExitCode.OK)
            outcome = Outcome(iid, True, result, None, code, clock() - started)
        log.debug(
            "%s: finished (%s, exit code %d) after %.1fs",
            iid,
            "ok" if outcome.ok else type(outcome.error or Interrupted()).__name__,
            outcome.exit_code,
            outcome.elapsed,
        )
        if on_done is not None:
            on_done(outcome)
        return outcome

    if not items:
        return []
    workers = min(concurrency, len(items))
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="rdsssl-fleet")
    futures: list[Future[Outcome[R]]] = []
    try:
        futures = [pool.submit(one, item) for item in items]
        outcomes = [f.result() for f in futures]
    except BaseException:  # Ctrl-C in the main thread: stop what has not started
        if cancel is not None:
            cancel.set()
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown(wait=True)
    return outcomes


def worst_exit_code(outcomes: Sequence[Outcome[Any]]) -> int:
    """The process exit code for a fleet: errors > needs action (10) > success (0)."""

    def rank(code: int) -> tuple[int, int]:
        if code == ExitCode.OK:
            return (0, 0)
        if code == ExitCode.NEEDS_ACTION:
            return (1, code)
        return (2, code)

    codes = [o.exit_code for o in outcomes] or [int(ExitCode.OK)]
    return max(codes, key=rank)


def sleeper(cancel: threading.Event) -> Callable[[float], None]:
    """A `sleep` for waiters in fleet workers that ends early, raising `Interrupted`, once
    `cancel` is set (time.sleep in a worker thread cannot be interrupted by Ctrl-C)."""

    def sleep(seconds: float) -> None:
        if cancel.wait(max(0.0, seconds)):
            raise Interrupted("interrupted")

    return sleep


# ------------------------------------------------------------------ the request budget


class RateLimiter:
    """At most `rate_per_s` acquisitions per second over all threads, with bursts of `burst`.

    A virtual-schedule limiter (GCRA): each `acquire()` reserves the next free slot under the
    lock and sleeps outside it, so waiting threads never hold each other up beyond their slot.
    Clock and sleep are injectable for tests.
    """

    def __init__(
        self,
        rate_per_s: float,
        *,
        burst: int = 1,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if rate_per_s <= 0:
            raise UsageError(f"the request rate must be above 0, not {rate_per_s}")
        if burst < 1:
            raise UsageError(f"the burst must be at least 1, not {burst}")
        self.interval = 1.0 / rate_per_s
        self._slack = (burst - 1) * self.interval
        self._clock = clock
        self._sleep = sleep
        self._next = float("-inf")
        self._lock = threading.Lock()
        self.acquired = 0  # slots handed out so far (what `rdsssl.ops.rate.RateCost` counts)

    def acquire(self) -> float:
        """Wait for this caller's slot; returns the seconds waited (0 when none)."""
        with self._lock:
            now = self._clock()
            slot = max(self._next, now - self._slack)
            self._next = slot + self.interval
            self.acquired += 1
            wait = slot - now
        if wait > 0:
            log.debug("request budget: waiting %.2fs for a slot", wait)
            self._sleep(wait)
            return wait
        return 0.0


class _LimitedApi:
    """An `RdsApi` that takes a `RateLimiter` slot before every call to the wrapped one."""

    def __init__(self, api: RdsApi, limiter: RateLimiter) -> None:
        self._api = api
        self._limiter = limiter

    def describe_instance(self, instance_id: str) -> InstanceInfo:
        self._limiter.acquire()
        return self._api.describe_instance(instance_id)

    def describe_ssl(self, instance_id: str) -> SslState:
        self._limiter.acquire()
        return self._api.describe_ssl(instance_id)

    def describe_net_info(self, instance_id: str) -> list[NetInfo]:
        self._limiter.acquire()
        return self._api.describe_net_info(instance_id)

    def list_instances(
        self, *, region: str, tags: Mapping[str, str] | None = None, engine: str = "PostgreSQL"
    ) -> list[InstanceInfo]:
        self._limiter.acquire()  # one slot per listing; its pages follow the adapter's pacing
        return self._api.list_instances(region=region, tags=tags, engine=engine)

    def modify_ssl(self, request: SslModifyRequest) -> str:
        self._limiter.acquire()
        return self._api.modify_ssl(request)

    def create_account(self, instance_id: str, name: str, password: str) -> str:
        self._limiter.acquire()
        return self._api.create_account(instance_id, name, password)

    def server_ca_pem(self, url: str) -> bytes:
        self._limiter.acquire()
        return self._api.server_ca_pem(url)


def limited(api: RdsApi, limiter: RateLimiter | None) -> RdsApi:
    """`api` behind `limiter` (unchanged when None); share the result between workers."""
    return api if limiter is None else _LimitedApi(api, limiter)


# ------------------------------------------------------------------ selection


def _tag_text(tags: Mapping[str, str]) -> str:
    return ", ".join(f"{k}={v}" for k, v in tags.items())


def select_instances(
    api: RdsApi,
    *,
    ids: Sequence[str] = (),
    tags: Mapping[str, str] | None = None,
    desired_file: Path | None = None,
    region: str | None = None,
) -> list[Item]:
    """The instances a fleet command works on: exactly one of `ids`, `tags` (every tag must
    match, all pages listed) or `desired_file` (ids with their merged desired-state entry,
    tags entries resolved through `rdsssl.ops.desired.resolve`). An empty selection is an error:
    a typo in a tag must not turn a cron job into a silent no-op."""
    given = [name for name, v in (("ID", ids), ("--tag", tags), ("-f", desired_file)) if v]
    if len(given) != 1:
        raise UsageError(
            "select instances with exactly one of: instance IDs, --tag KEY=VALUE "
            f"(repeatable, all must match) or -f rdsssl.toml (got {', '.join(given) or 'none'})"
        )
    if ids:
        return list(dict.fromkeys(ids))  # first occurrence wins; a repeat is not a second run
    if tags:
        if not region:
            raise ConfigError(
                "selecting by --tag lists a region: pass --region or set ALIBABA_CLOUD_REGION_ID"
            )
        found = [i.instance_id for i in api.list_instances(region=region, tags=tags)]
        if not found:
            raise NotFoundError(
                f"no PostgreSQL instance in {region} has every tag {_tag_text(tags)}"
            )
        return list(dict.fromkeys(found))
    assert desired_file is not None
    from rdsssl.ops import desired
    from rdsssl.ops.config import load_desired_state

    state = load_desired_state(desired_file)
    resolved: list[Item] = list(desired.resolve(api, state, region=region))
    if not resolved:
        raise NotFoundError(f"{desired_file}: selects no instance")
    return resolved
