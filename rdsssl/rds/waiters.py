"""Waiters: acceptor tables say what an observation means; tenacity runs the polling loop.

As in botocore, a waiter is data: a name, a schedule and an ordered list of acceptors, each
pairing an outcome (success / failure / retry) with a pure test of one `Observation`; the first
acceptor that matches wins, and an observation no acceptor matches means "retry". As in tenacity,
time is injected (sleep, clock, jitter source), so a 3-minute restart is tested in milliseconds.

Rules that come from the platform (docs/aliyun-rds-ssl-api.md §3.5):
- Right after ModifyDBInstanceSSL the instance may still read `Running` with the OLD
  configuration. So success needs the read-back to equal what was sent (SslApplied, AclApplied),
  or, for waiters without a read-back, an observed transition (`require_transition`): a status
  other than Running or LastModifyStatus `setting` seen at least once during this wait.
- `LastModifyStatus == failed` is terminal (`ChangeFailed`, with ModifyStatusReason), as are
  `Deleting` / `Released` and `InvalidDBInstanceId.NotFound`. A `failed` left over from an
  earlier change would look the same right after the call: pass `stale_failure=True` when the
  status read `failed` before the call, and `failed` then counts only after a transition.
- Errors are data: an `ApiError` raised by a read becomes an observation with `error_code`.
  A permanent error is raised unless an acceptor calls it a failure (NotFound); a retryable
  one means "poll again" unless an acceptor decides otherwise.

One API call per poll (benchmarks/bench_wait.py counts API calls, not polls). Given `Reads` (the two
Describe calls separately), a poll is DescribeDBInstanceSSL alone; DescribeDBInstanceAttribute
is added in the same poll, AFTER the SSL read, only when the SSL read cannot decide on its own:
on the first poll, when the SSL read failed with a retryable error, when LastModifyStatus is
empty, and when the spec's `confirm` says the read-back looks done (SslApplied: `success` and
the read-back matches). An SSL-only observation has `instance=None`, and no acceptor succeeds
without an instance read in the same poll, after the SSL read: a `Running` seen before the change
finished can never confirm it. `setting` (in progress) and `failed` (terminal) need no second
call. A plain `observe()` callable (both reads every poll) still works, at two calls per poll.

Every poll is logged at DEBUG on `rdsssl.rds.waiters` (the waiter, the poll number, what was
seen, the verdict and why), the end of a wait at INFO.

The tables themselves (`ssl_applied`, `instance_ready`) are in `rdsssl.rds.acceptors`, the
observation helpers they test with in `rdsssl.rds.observations`.

Read-back comparison: `ssl_applied` takes a `matches(SslState) -> bool` from the caller (the
service compares parsed fingerprints with rdsssl.pki.crypto), so this module needs no crypto and
keeps to its import boundary (models, errors, tenacity).

Schedule (the defaults of `WaiterSpec`): poll at once, then after 1 s, growing x1.3 per poll
with +-10 % jitter, capped at 3.4 s: polls at about 0, 1, 2.3, 4, 6.2, 9, 12.4, 15.8 s, then
every 3.4 s (3.06-3.74 s). The lag between readiness and the poll that sees it averages half an
interval: about 1.2 s for a change done in 5 s, 1.7 s once at the cap (worst case 3.74 s).
A 3-minute restart costs about 57 polls, i.e. 59 API calls with the two attribute reads (first
and last poll): 19.4 per minute against a target of at most 20 (one per 3 s); longer waits tend
to 17.6 per minute. The two targets leave little room: with a 3.3 s cap a 3-minute wait
averages 19.9 calls a minute (a quarter of the runs above 20); with a 4 s cap the lag averages
2 s. Both are averages: jitter pinned at -10 % would make 21.4 calls a minute. The deadline is
hard (tenacity's `stop_before_delay` rule on the injected clock): no sleep runs past `timeout`.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from tenacity import RetryCallState, Retrying, retry_if_result

from rdsssl.errors import ApiError, ChangeFailed, WaiterTimeout
from rdsssl.models import InstanceInfo, Observation, SslState
from rdsssl.rds.observations import describe, in_transition

log = logging.getLogger(__name__)
AcceptorState = Literal["success", "failure", "retry"]
DEFAULT_TIMEOUT = 1800.0  # 30 min, as Terraform's update timeout


@dataclass(frozen=True)
class Acceptor:
    """One row of a waiter table. `needs_transition`: the match counts only once a transition
    (non-Running status or `setting`) has been observed during this wait; before that it
    means "retry" (the change may not have started yet)."""

    state: AcceptorState
    test: Callable[[Observation], bool]
    explain: str
    needs_transition: bool = False


def _always(ssl: SslState) -> bool:
    return True


DENSE = 1.8  # near the expected end: +10 % jitter stays under the 2-s lag target
SPARSE_MAX = 8.0  # far from it: the calls a long restart costs (about 10 a minute at 3 min)


@dataclass(frozen=True)
class WaiterSpec:
    """A named acceptor table and its polling schedule (seconds).

    `confirm(ssl)`: the SSL read-back alone says the change looks done, so
    DescribeDBInstanceAttribute is called (after it, in the same poll) to confirm the status.
    The default asks for the instance on every poll (two calls per poll): always safe.

    `expected`: when the change should be live, in seconds from the start of the wait (the
    service profile's restart or lock length plus its status lag). With it, polls are sparse
    until shortly before that moment, dense around it, then back to the capped exponential
    schedule; without it, the capped exponential schedule from the start (`delay_for`).
    `settle`: a success acceptor that needs a transition accepts a change that was never seen in
    progress only after it has held on every poll for this many seconds (None: never)."""

    name: str
    acceptors: tuple[Acceptor, ...]
    confirm: Callable[[SslState], bool] = _always
    delay: float = 1.0  # before the second poll
    max_delay: float = 3.4
    multiplier: float = 1.3
    jitter: float = 0.1  # +-10 %
    timeout: float = DEFAULT_TIMEOUT
    expected: float | None = None
    settle: float | None = None
    dense: float | None = None  # the dense interval; default DENSE, or expected / 4 if smaller

    def delay_for(self, attempt: int, rng: random.Random) -> float:
        """The sleep after poll number `attempt` (1-based): capped exponential, then jitter."""
        growth = self.multiplier ** min(max(0, attempt - 1), 64)  # capped: no overflow
        base = min(self.max_delay, self.delay * growth)
        return float(base * (1.0 + self.jitter * (2.0 * rng.random() - 1.0)))

    @property
    def _dense(self) -> float:
        assert self.expected is not None
        if self.dense is not None:
            return self.dense
        return min(DENSE, max(0.05, self.expected / 4))

    @property
    def first_delay(self) -> float:
        """The sleep before the first poll: none without `expected` (a readiness wait), else
        one dense interval (a read right after the call says nothing a later one would not)."""
        return 0.0 if self.expected is None else self._dense

    def next_delay(self, elapsed: float, attempt: int, rng: random.Random) -> float:
        """The sleep after a poll made `elapsed` seconds into the wait (see `expected`)."""
        if self.expected is None:
            return self.delay_for(attempt, rng)
        dense = self._dense
        sparse = min(SPARSE_MAX, max(dense, self.expected / 3.5))
        start_dense = self.expected - dense
        if elapsed < start_dense - 0.05:
            return max(0.05, min(sparse, start_dense - elapsed))  # lands on the dense window
        shake = 1.0 + self.jitter * (2.0 * rng.random() - 1.0)
        if elapsed < self.expected + 3 * dense:
            return dense * shake
        late = (elapsed - self.expected) / max(dense, 1e-6)
        grown: float = dense * self.multiplier ** min(late, 64.0)
        return min(self.max_delay, grown) * shake


@dataclass(frozen=True)
class Reads:
    """The two reads a poll is made of, kept apart so that `wait_until` can make one API call
    per poll: `ssl` (DescribeDBInstanceSSL, every poll) and `instance`
    (DescribeDBInstanceAttribute, only when the SSL read cannot decide; see the module doc)."""

    ssl: Callable[[], SslState]
    instance: Callable[[], InstanceInfo]


@dataclass(frozen=True)
class Progress:
    """What a progress display gets before each sleep."""

    waiter: str
    status: str  # e.g. "status SSL_MODIFYING, LastModifyStatus setting"
    elapsed: float
    next_delay: float


# ------------------------------------------------------------------ one poll


@dataclass(frozen=True)
class _Verdict:
    state: AcceptorState
    observation: Observation
    explain: str


@dataclass
class _Evidence:
    """What this wait has seen so far: a transition, and since when a success that needs one
    has held without it (for `WaiterSpec.settle`)."""

    seen_transition: bool = False
    stable_since: float | None = None


def _judge(spec: WaiterSpec, obs: Observation, evidence: _Evidence) -> _Verdict | None:
    """The first matching acceptor's verdict, or None when no acceptor matches."""
    for acceptor in spec.acceptors:
        if acceptor.test(obs):
            if acceptor.needs_transition and not evidence.seen_transition:
                if acceptor.state == "success" and spec.settle is not None:
                    since = evidence.stable_since
                    if since is None:
                        evidence.stable_since = since = obs.at
                    if obs.at - since >= spec.settle:
                        explain = f"{acceptor.explain}, steadily for {spec.settle:g}s"
                        return _Verdict("success", obs, explain)
                    return _Verdict("retry", obs, "no progress seen yet: watching it settle")
                evidence.stable_since = None
                return _Verdict("retry", obs, "waiting for the change to start")
            evidence.stable_since = None
            return _Verdict(acceptor.state, obs, acceptor.explain)
    evidence.stable_since = None
    return None


_Attempt = tuple[Observation, ApiError | None]


def _attempt(read: Callable[[], Observation], clock: Callable[[], float]) -> _Attempt:
    """Run one read; an ApiError becomes an observation carrying its code (errors are data)."""
    try:
        return read(), None
    except ApiError as exc:
        return Observation(None, None, exc.code or type(exc).__name__, clock()), exc


def _wants_instance(spec: WaiterSpec, obs: Observation) -> bool:
    """After an SSL-only read: is DescribeDBInstanceAttribute needed to decide this poll?"""
    if obs.ssl is None:  # the SSL read failed (retryably): the status may still tell something
        return True
    return not obs.ssl.last_modify_status or spec.confirm(obs.ssl)


def _split_poll(
    spec: WaiterSpec, reads: Reads, first: bool, clock: Callable[[], float]
) -> _Attempt:
    """DescribeDBInstanceSSL, then DescribeDBInstanceAttribute only if needed (module doc)."""
    ssl_obs, ssl_error = _attempt(lambda: Observation(None, reads.ssl(), None, clock()), clock)
    if ssl_error is not None and not ssl_error.retryable:
        return ssl_obs, ssl_error  # terminal (not found) or raised: nothing more to learn
    if not first and not _wants_instance(spec, ssl_obs):
        return ssl_obs, ssl_error
    info_obs, info_error = _attempt(
        lambda: Observation(reads.instance(), None, None, clock()), clock
    )
    error = info_error if info_error is not None and not info_error.retryable else None
    error = error or ssl_error or info_error
    code = (error.code or type(error).__name__) if error is not None else None
    return Observation(info_obs.instance, ssl_obs.ssl, code, clock()), error


# ------------------------------------------------------------------ the loop


def wait_until(
    spec: WaiterSpec,
    observe: Reads | Callable[[], Observation],
    *,
    timeout: float | None = None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
    on_progress: Callable[[Progress], None] | None = None,
    rng: random.Random | None = None,
    seen_transition: bool = False,
) -> Observation:
    """Poll until an acceptor says success (returns that observation) or failure
    (`ChangeFailed`), or the deadline (`WaiterTimeout`, carrying the last observation and the
    elapsed time). `observe`: `Reads` (one API call per poll in the steady state) or a
    callable returning a whole observation per poll. `timeout` overrides the spec's.
    `seen_transition`: the change was already seen in progress before this wait began."""
    limit = spec.timeout if timeout is None else timeout
    jitter = rng or random.Random()
    start = clock()
    evidence = _Evidence(seen_transition=seen_transition)
    polls = [0]
    if spec.first_delay > 0:
        sleep(min(spec.first_delay, max(0.0, limit)))

    def poll() -> _Verdict:
        polls[0] += 1
        if isinstance(observe, Reads):
            obs, error = _split_poll(spec, observe, polls[0] == 1, clock)
        else:
            obs, error = _attempt(observe, clock)
        evidence.seen_transition = evidence.seen_transition or in_transition(obs)
        verdict = _judge(spec, obs, evidence)
        terminal = verdict is not None and verdict.state == "failure"
        if error is not None and not error.retryable and not terminal:
            raise error  # permanent, and no acceptor calls it a failure
        if verdict is None:
            verdict = _Verdict("retry", obs, "waiting")
        log.debug(
            "%s: poll %d: %s -> %s (%s)",
            spec.name,
            polls[0],
            describe(obs),
            verdict.state,
            verdict.explain,
        )
        if verdict.state == "failure":
            raise ChangeFailed(
                f"{spec.name}: {verdict.explain} ({describe(obs)})",
                waiter=spec.name,
                last_observation=obs,
                elapsed=clock() - start,
            )
        return verdict

    def wait(state: RetryCallState) -> float:
        return spec.next_delay(clock() - start, state.attempt_number, jitter)

    def stop(state: RetryCallState) -> bool:  # stop_before_delay, on the injected clock
        return clock() - start + state.upcoming_sleep >= limit

    def before_sleep(state: RetryCallState) -> None:
        if on_progress is not None and state.outcome is not None:
            verdict: _Verdict = state.outcome.result()
            status = describe(verdict.observation)
            on_progress(Progress(spec.name, status, clock() - start, state.upcoming_sleep))

    def last_verdict(state: RetryCallState) -> Any:
        return state.outcome.result() if state.outcome is not None else None

    retrying = Retrying(
        retry=retry_if_result(lambda verdict: verdict.state != "success"),
        wait=wait,
        stop=stop,
        sleep=sleep,
        before_sleep=before_sleep,
        retry_error_callback=last_verdict,  # no bare RetryError: we raise WaiterTimeout below
    )
    final: _Verdict = retrying(poll)
    elapsed = clock() - start
    if final.state == "success":
        log.info(
            "%s: done after %d poll(s), %.0fs: %s", spec.name, polls[0], elapsed, final.explain
        )
        return final.observation
    log.info("%s: timed out after %d poll(s), %.0fs", spec.name, polls[0], elapsed)
    raise WaiterTimeout(
        f"{spec.name}: not done after {elapsed:.0f}s (timeout {limit:.0f}s); last seen: "
        f"{describe(final.observation)} ({final.explain})",
        waiter=spec.name,
        last_observation=final.observation,
        elapsed=elapsed,
    )
