"""What one observation of an instance says, for the acceptor tables (`rdsssl.rds.acceptors`)
and the polling loop's messages (`rdsssl.rds.waiters`): pure tests of an `Observation`, and a
short, secret-free description of it.
"""

from __future__ import annotations

from rdsssl.models import (
    LOCK_UNLOCK,
    MODIFY_FAILED,
    MODIFY_SETTING,
    MODIFY_SUCCESS,
    STATUS_RUNNING,
    Observation,
)

__all__ = ["GONE_CODES", "GONE_STATUSES", "describe", "failed", "gone", "in_transition", "settled"]

GONE_STATUSES = frozenset({"Deleting", "Released"})
GONE_CODES = frozenset({"InvalidDBInstanceId.NotFound"})


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


def gone(obs: Observation) -> bool:
    if obs.error_code in GONE_CODES:
        return True
    return obs.instance is not None and obs.instance.status in GONE_STATUSES


def failed(obs: Observation) -> bool:
    return obs.ssl is not None and obs.ssl.last_modify_status == MODIFY_FAILED


def settled(obs: Observation) -> bool:
    """Running and the last SSL change reported `success` (False when either is unknown)."""
    return (
        obs.instance is not None
        and obs.instance.status == STATUS_RUNNING
        and obs.ssl is not None
        and obs.ssl.last_modify_status == MODIFY_SUCCESS
    )
