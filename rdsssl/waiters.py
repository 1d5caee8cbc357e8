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
- Errors are data: an `ApiError` raised by `observe` becomes an observation with `error_code`;
  if no acceptor matches it, a retryable error means "poll again" and any other error is raised.

Read-back comparison: `ssl_applied` takes a `matches(SslState) -> bool` from the caller (the
service compares parsed fingerprints with rdsssl.crypto), so this module needs no crypto and
keeps to its import boundary (models, errors, tenacity).

Schedule: poll at once, then after 1 s, growing x1.3 per poll with +-10 % jitter, capped at 5 s:
polls at about 0, 1, 2.3, 4, 6.2, 9, 12.8, 17.6 s, then every ~5 s. The first ~6 s are dense
enough to return within 2 s of readiness; a 3-minute restart costs about 41 polls (one per
~4.4 s; the target is at most one per 3 s). The deadline is hard (tenacity's
`stop_before_delay` rule on the injected clock): no sleep runs past `timeout`.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from tenacity import RetryCallState, Retrying, retry_if_result

from rdsssl.errors import ApiError, ChangeFailed, WaiterTimeout
from rdsssl.models import (
    LOCK_UNLOCK,
    MODIFY_FAILED,
    MODIFY_SETTING,
    MODIFY_SUCCESS,
    STATUS_RUNNING,
    AclMode,
    Observation,
    SslState,
)

AcceptorState = Literal["success", "failure", "retry"]
DEFAULT_TIMEOUT = 1800.0  # 30 min, as Terraform's update timeout
GONE_STATUSES = frozenset({"Deleting", "Released"})
GONE_CODES = frozenset({"InvalidDBInstanceId.NotFound"})


@dataclass(frozen=True)
class Acceptor:
    """One row of a waiter table. `needs_transition`: the match counts only once a transition
    (non-Running status or `setting`) has been observed during this wait; before that it
    means "retry" (the change may not have started yet)."""

    state: AcceptorState
    test: Callable[[Observation], bool]
    explain: str
    needs_transition: bool = False


@dataclass(frozen=True)
class WaiterSpec:
    """A named acceptor table and its polling schedule (seconds)."""

    name: str
    acceptors: tuple[Acceptor, ...]
    delay: float = 1.0  # before the second poll
    max_delay: float = 5.0
    multiplier: float = 1.3
    jitter: float = 0.1  # +-10 %
    timeout: float = DEFAULT_TIMEOUT

    def delay_for(self, attempt: int, rng: random.Random) -> float:
        """The sleep after poll number `attempt` (1-based): capped exponential, then jitter."""
        base = min(self.max_delay, self.delay * self.multiplier ** max(0, attempt - 1))
        return float(base * (1.0 + self.jitter * (2.0 * rng.random() - 1.0)))


@dataclass(frozen=True)
class Progress:
    """What a progress display gets before each sleep."""

    waiter: str
    status: str  # e.g. "status SSL_MODIFYING, LastModifyStatus setting"
    elapsed: float
    next_delay: float


# ------------------------------------------------------------------ observation helpers


def describe(obs: Observation) -> str:
    """A short, secret-free description of an observation for messages and progress."""
    parts: list[str] = []
    if obs.instance is not None:
        parts.append(f"status {obs.instance.status or '-'}")
        if obs.instance.lock_mode not in ("", LOCK_UNLOCK):
            parts.append(f"lock {obs.instance.lock_mode}")
    if obs.ssl is not None:
        parts.append(f"LastModifyStatus {obs.ssl.last_modify_status or '-'}")
        if obs.ssl.last_modify_status == MODIFY_FAILED and obs.ssl.modify_status_reason:
            parts.append(f"reason: {obs.ssl.modify_status_reason}")
    if obs.error_code:
        parts.append(f"error {obs.error_code}")
    return ", ".join(parts) or "nothing observed"


def in_transition(obs: Observation) -> bool:
    """The change is visibly under way: status not Running, or LastModifyStatus `setting`."""
    if obs.instance is not None and obs.instance.status != STATUS_RUNNING:
        return True
    return obs.ssl is not None and obs.ssl.last_modify_status == MODIFY_SETTING


def _gone(obs: Observation) -> bool:
    if obs.error_code in GONE_CODES:
        return True
    return obs.instance is not None and obs.instance.status in GONE_STATUSES


def _failed(obs: Observation) -> bool:
    return obs.ssl is not None and obs.ssl.last_modify_status == MODIFY_FAILED


def _settled(obs: Observation) -> bool:
    """Running and the last SSL change reported `success`."""
    return (
        obs.instance is not None and obs.instance.status == STATUS_RUNNING
        and obs.ssl is not None and obs.ssl.last_modify_status == MODIFY_SUCCESS
    )


def _terminal(stale_failure: bool) -> tuple[Acceptor, ...]:
    return (
        Acceptor("failure", _gone, "the instance is being deleted, was released or is not found"),
        Acceptor("failure", _failed, "the instance reported the SSL change as failed",
                 needs_transition=stale_failure),
        Acceptor("retry", in_transition, "the change is in progress"),
    )


# ------------------------------------------------------------------ the tables


def ssl_applied(
    matches: Callable[[SslState], bool],
    *,
    stale_failure: bool = False,
    timeout: float = DEFAULT_TIMEOUT,
) -> WaiterSpec:
    """After ModifyDBInstanceSSL: Running, LastModifyStatus success, and `matches(read-back)`
    (the caller's comparison of CA / CRL fingerprints and ACLs with what was sent)."""

    def applied(obs: Observation) -> bool:
        return _settled(obs) and obs.ssl is not None and matches(obs.ssl)

    return WaiterSpec(
        "SslApplied",
        (*_terminal(stale_failure),
         Acceptor("success", applied, "the SSL configuration reads back as sent")),
        timeout=timeout,
    )


def acl_applied(
    acl: AclMode | None,
    replication_acl: AclMode | None = None,
    *,
    stale_failure: bool = False,
    timeout: float = DEFAULT_TIMEOUT,
) -> WaiterSpec:
    """After an ACL-only change: Running, success, and the ACLs read back as sent (None: not
    checked)."""

    def applied(obs: Observation) -> bool:
        if not _settled(obs) or obs.ssl is None:
            return False
        return (acl is None or obs.ssl.acl == acl) and (
            replication_acl is None or obs.ssl.replication_acl == replication_acl
        )

    return WaiterSpec(
        "AclApplied",
        (*_terminal(stale_failure),
         Acceptor("success", applied, "the ACLs read back as sent")),
        timeout=timeout,
    )


def instance_ready(
    *,
    require_transition: bool = False,
    matches: Callable[[SslState], bool] | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> WaiterSpec:
    """Ready for a change: Running, LockMode Unlock, LastModifyStatus not `setting` (an
    observation without SSL state is not checked for that). A `failed` earlier change does
    not block. With `require_transition` (e.g. `instance wait` after a --no-wait call),
    readiness counts only after a transition was seen, or when `matches(read-back)` holds."""

    def ready(obs: Observation) -> bool:
        info = obs.instance
        if info is None or info.status != STATUS_RUNNING or info.lock_mode != LOCK_UNLOCK:
            return False
        return obs.ssl is None or obs.ssl.last_modify_status != MODIFY_SETTING

    def ready_and_matching(obs: Observation) -> bool:
        return ready(obs) and obs.ssl is not None and matches is not None and matches(obs.ssl)

    rows = [
        Acceptor("failure", _gone, "the instance is being deleted, was released or is not found"),
        Acceptor("retry", in_transition, "the instance is busy"),
    ]
    if require_transition and matches is not None:
        rows.append(Acceptor("success", ready_and_matching, "ready, and the read-back matches"))
    rows.append(Acceptor("success", ready, "the instance is ready",
                         needs_transition=require_transition))
    return WaiterSpec("InstanceReady", tuple(rows), timeout=timeout)


# ------------------------------------------------------------------ the loop


@dataclass(frozen=True)
class _Verdict:
    state: AcceptorState
    observation: Observation
    explain: str


def _judge(spec: WaiterSpec, obs: Observation, seen_transition: bool) -> _Verdict | None:
    """The first matching acceptor's verdict, or None when no acceptor matches."""
    for acceptor in spec.acceptors:
        if acceptor.test(obs):
            if acceptor.needs_transition and not seen_transition:
                return _Verdict("retry", obs, "waiting for the change to start")
            return _Verdict(acceptor.state, obs, acceptor.explain)
    return None


def wait_until(
    spec: WaiterSpec,
    observe: Callable[[], Observation],
    *,
    timeout: float | None = None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
    on_progress: Callable[[Progress], None] | None = None,
    rng: random.Random | None = None,
) -> Observation:
    """Poll `observe` until an acceptor says success (returns that observation) or failure
    (`ChangeFailed`), or the deadline (`WaiterTimeout`, carrying the last observation and the
    elapsed time). `timeout` overrides the spec's for this call."""
    limit = spec.timeout if timeout is None else timeout
    jitter = rng or random.Random()
    start = clock()
    seen = [False]  # a transition was observed during this wait

    def poll() -> _Verdict:
        error: ApiError | None = None
        try:
            obs = observe()
        except ApiError as exc:
            error = exc
            obs = Observation(None, None, exc.code or type(exc).__name__, clock())
        seen[0] = seen[0] or in_transition(obs)
        verdict = _judge(spec, obs, seen[0])
        if verdict is None:
            if error is not None and not error.retryable:
                raise error
            verdict = _Verdict("retry", obs, "waiting")
        if verdict.state == "failure":
            raise ChangeFailed(
                f"{spec.name}: {verdict.explain} ({describe(obs)})",
                waiter=spec.name, last_observation=obs, elapsed=clock() - start,
            )
        return verdict

    def wait(state: RetryCallState) -> float:
        return spec.delay_for(state.attempt_number, jitter)

    def stop(state: RetryCallState) -> bool:  # stop_before_delay, on the injected clock
        return clock() - start + state.upcoming_sleep >= limit

    def before_sleep(state: RetryCallState) -> None:
        if on_progress is not None and state.outcome is not None:
            verdict: _Verdict = state.outcome.result()
            on_progress(Progress(spec.name, describe(verdict.observation), clock() - start,
                                 state.upcoming_sleep))

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
    if final.state == "success":
        return final.observation
    elapsed = clock() - start
    raise WaiterTimeout(
        f"{spec.name}: not done after {elapsed:.0f}s (timeout {limit:.0f}s); last seen: "
        f"{describe(final.observation)} ({final.explain})",
        waiter=spec.name, last_observation=final.observation, elapsed=elapsed,
    )
