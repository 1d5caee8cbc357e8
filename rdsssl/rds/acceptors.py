"""The acceptor tables: what an observation means after ModifyDBInstanceSSL (`ssl_applied`)
and before one (`instance_ready`). Each is a `WaiterSpec` that `rdsssl.rds.waiters.wait_until`
polls; the module docstring there gives the platform rules the tables encode (evidence of a
transition, `failed` as terminal unless stale, gone instances, one call per poll).
"""

from __future__ import annotations

from collections.abc import Callable

from rdsssl.models import (
    LOCK_UNLOCK,
    MODIFY_SETTING,
    MODIFY_SUCCESS,
    STATUS_RUNNING,
    Observation,
    SslState,
)
from rdsssl.rds.observations import failed, gone, in_transition, settled
from rdsssl.rds.waiters import DEFAULT_TIMEOUT, Acceptor, WaiterSpec

__all__ = ["instance_ready", "ssl_applied"]


def _terminal(stale_failure: bool) -> tuple[Acceptor, ...]:
    return (
        Acceptor("failure", gone, "the instance is being deleted, was released or is not found"),
        Acceptor(
            "failure",
            failed,
            "the instance reported the SSL change as failed",
            needs_transition=stale_failure,
        ),
        Acceptor("retry", in_transition, "the change is in progress"),
    )


def ssl_applied(
    matches: Callable[[SslState], bool],
    *,
    stale_failure: bool = False,
    timeout: float = DEFAULT_TIMEOUT,
    expected: float | None = None,
    settle: float = 10.0,
    dense: float | None = None,
    not_renewed: Callable[[SslState], bool] | None = None,
) -> WaiterSpec:
    """After ModifyDBInstanceSSL: the change counts as applied only with evidence. It was seen
    in progress (a status other than Running, or LastModifyStatus `setting`) and then finished:
    Running, `success` and `matches(read-back)` (the caller's comparison of CA / CRL
    fingerprints and ACLs with what was sent). If progress was never seen, the finished state
    must hold on every poll for `settle` seconds: the service may show a change late (status
    lag), or show its new values before the restart that applies them (early read-back).
    `not_renewed(read-back)`: for a server certificate renewal, true while the certificate
    served before is still served; a change that went through and finished that way failed
    (the service did not renew), instead of waiting for the timeout."""

    def done(ssl: SslState) -> bool:
        return ssl.last_modify_status == MODIFY_SUCCESS and matches(ssl)

    def applied(obs: Observation) -> bool:
        return settled(obs) and obs.ssl is not None and done(obs.ssl)

    def stale(ssl: SslState) -> bool:
        return (
            not_renewed is not None
            and ssl.last_modify_status == MODIFY_SUCCESS
            and (not_renewed(ssl))
        )

    def finished_unrenewed(obs: Observation) -> bool:
        return settled(obs) and obs.ssl is not None and stale(obs.ssl)

    rows = [
        *_terminal(stale_failure),
        Acceptor(
            "success", applied, "the SSL configuration reads back as sent", needs_transition=True
        ),
    ]
    if not_renewed is not None:
        rows.append(
            Acceptor(
                "failure",
                finished_unrenewed,
                "the change finished, but the server certificate is still the one served "
                "before: the service did not renew it",
                needs_transition=True,
            )
        )
    return WaiterSpec(
        "SslApplied",
        tuple(rows),
        confirm=lambda ssl: done(ssl) or stale(ssl),
        timeout=timeout,
        expected=expected,
        settle=settle,
        dense=dense,
    )


def instance_ready(
    *,
    require_transition: bool = False,
    matches: Callable[[SslState], bool] | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> WaiterSpec:
    """Ready for a change: Running, LockMode Unlock, LastModifyStatus not `setting` (both reads
    are needed: an observation missing either is not ready). A `failed` earlier change does
    not block. With `require_transition` (e.g. `instance wait` after a --no-wait call),
    readiness counts only after a transition was seen, or when `matches(read-back)` holds.
    The attribute read is added whenever the SSL read is not `setting`, so an instance busy
    for another reason (e.g. a class change) costs two calls per poll."""

    def ready(obs: Observation) -> bool:
        info = obs.instance
        if info is None or info.status != STATUS_RUNNING or info.lock_mode != LOCK_UNLOCK:
            return False
        return obs.ssl is not None and obs.ssl.last_modify_status != MODIFY_SETTING

    def ready_and_matching(obs: Observation) -> bool:
        return ready(obs) and obs.ssl is not None and matches is not None and matches(obs.ssl)

    def not_setting(ssl: SslState) -> bool:
        return ssl.last_modify_status != MODIFY_SETTING

    rows = [
        Acceptor("failure", gone, "the instance is being deleted, was released or is not found"),
        Acceptor("retry", in_transition, "the instance is busy"),
    ]
    if require_transition and matches is not None:
        rows.append(Acceptor("success", ready_and_matching, "ready, and the read-back matches"))
    rows.append(
        Acceptor("success", ready, "the instance is ready", needs_transition=require_transition)
    )
    return WaiterSpec("InstanceReady", tuple(rows), confirm=not_setting, timeout=timeout)
