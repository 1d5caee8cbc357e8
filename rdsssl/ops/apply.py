"""Applying one instance's change: read, plan, validate, guard, then at most ONE
ModifyDBInstanceSSL call and a wait with evidence.

Every change follows the same rules (docs/ARCHITECTURE.md): read first, compare by parsed
fingerprints (`rdsssl.ops.plan`), call ModifyDBInstanceSSL only when something differs and then
exactly once with every differing field, validate locally before sending anything, refuse
changes that could lock users out unless a probe proves otherwise (`rdsssl.ops.guard`), and wait
until the read-back equals what was sent (`rdsssl.ops.waiting`).

The runtime of a change is one frozen `ApplyOptions` (dry run, wait, force, timeout, settle,
margins, profile, audit log, lock); time is one `Clock`; progress goes to `on_progress`.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import timedelta

from rdsssl.errors import PlanChanged
from rdsssl.models import SslState
from rdsssl.ops import guard
from rdsssl.ops.audit import AuditLog
from rdsssl.ops.clock import SYSTEM_CLOCK, Clock
from rdsssl.ops.plan import (
    DesiredSsl,
    Plan,
    PlanWarning,
    describe_changes,
    guard_need,
    guard_target,
    plan,
    same_plan,
    validate,
)
from rdsssl.ops.probe import ProbeResult
from rdsssl.ops.waiting import Waiting
from rdsssl.pki import crl_policy
from rdsssl.rds import service_profile
from rdsssl.rds.protocol import RdsApi
from rdsssl.rds.waiters import DEFAULT_TIMEOUT, Progress
from rdsssl.store.paths import instance_lock

DEFAULT_SETTLE = service_profile.DEFAULT_SETTLE

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ApplyResult:
    """What apply did: nothing (noop / dry run) or one Modify call, and what it observed."""

    plan: Plan
    applied: bool
    dry_run: bool
    request_id: str | None = None
    final: SslState | None = None
    guard: ProbeResult | None = None
    elapsed: float = 0.0
    notes: tuple[str, ...] = field(default_factory=tuple)
    before: SslState | None = None  # what the plan was made against
    pending: str | None = None  # an earlier run's change, sent and not yet confirmed (its id)


@dataclass(frozen=True)
class ApplyOptions:
    """How one change runs. `dry_run`: Describe calls only, never a CRL signed. `wait`: until
    the read-back equals what was sent (else return after the call). `force`: skip the lockout
    guard. `timeout`: seconds for each wait. `settle` (None: the profile's): how long to watch
    for a change to show before taking a quiet instance at its word, after an error and in the
    wait. `restart_margin`: a CRL must outlive the restart by this much. `crl_size_budget`
    (None: `rdsssl.rds.service_profile.CRL_SIZE_BUDGET`): a larger CRL gets a warning.
    `profile`: what the service is known to do (its timings place the waiter's dense polls; None:
    $RDSSSL_SERVICE_PROFILE, else the documented timings). `audit`: the audit log (None: none).
    `lock`: hold the instance's lock (`rdsssl.store.paths.instance_lock`) from the read to the
    call, so two runs never both send a change."""

    dry_run: bool = False
    wait: bool = True
    force: bool = False
    timeout: float = DEFAULT_TIMEOUT
    settle: float | None = None
    restart_margin: timedelta = crl_policy.DEFAULT_RESTART_MARGIN
    crl_size_budget: int | None = None
    profile: service_profile.ServiceProfile | None = None
    audit: AuditLog | None = None
    lock: bool = True

    @property
    def audit_log(self) -> AuditLog:
        """The audit log, or one that records nothing."""
        return self.audit or AuditLog.disabled()


def confirm_earlier(
    api: RdsApi,
    instance_id: str,
    options: ApplyOptions,
    *,
    clock: Clock = SYSTEM_CLOCK,
    on_progress: Callable[[Progress], None] | None = None,
) -> str | None:
    """Confirm a change an earlier run sent and never confirmed, before planning the next one
    (under a status lag the instance still looks as it did before that change, so a plan made
    now would be made against the past). Returns its RequestId, or None when nothing was
    pending. Its outcome line is written to `options.audit`."""
    audit = options.audit_log
    line = audit.pending(instance_id)
    if line is None:
        return None
    audit.check_writable()
    waiting = Waiting.of(api, instance_id, options, clock, on_progress)
    held = instance_lock(instance_id) if options.lock else contextlib.nullcontext()
    with held:
        waiting.settle_pending(audit, clock.now())
    return str(line.get("request_id") or "?")


def apply(
    api: RdsApi,
    instance_id: str,
    desired: DesiredSsl,
    options: ApplyOptions = ApplyOptions(),
    *,
    proof: guard.Proof | None = None,
    expected: Plan | None = None,
    clock: Clock = SYSTEM_CLOCK,
    on_progress: Callable[[Progress], None] | None = None,
) -> ApplyResult:
    """Read, plan, validate, guard, then at most ONE ModifyDBInstanceSSL call and a wait.

    A busy instance (not Running, or a change still `setting`) is waited for first. A dry run
    makes only Describe calls and never signs a CRL. `proof`: the lockout guard's evidence
    (`rdsssl.ops.guard.Proof`). `expected`: the plan the user saw and confirmed; if the instance
    now calls for another one, nothing is sent (`PlanChanged`). `clock.now()` is read once.
    """
    started = clock.monotonic()
    now = clock.now()
    dry_run = options.dry_run
    audit = options.audit_log
    if not dry_run:
        audit.check_writable()  # never make a change the log cannot record
    waiting = Waiting.of(api, instance_id, options, clock, on_progress)
    held = instance_lock(instance_id) if options.lock and not dry_run else contextlib.nullcontext()
    with waiting.interrupt_recorded(audit) as accepted, contextlib.ExitStack() as locked:
        locked.enter_context(held)
        earlier = audit.pending(instance_id)
        pending = str(earlier.get("request_id") or "?") if earlier else None
        confirmed = waiting.settle_pending(audit, now) if earlier and not dry_run else False
        server_change = desired.server is not None  # may start from SSL off
        info, ssl, notes = waiting.until_ready(dry_run=dry_run, ssl_off_ok=server_change)
        the_plan = plan(
            desired, ssl, instance_id=instance_id, now=now, restart_margin=options.restart_margin
        )
        shown_plan_holds = expected is None or same_plan(the_plan, expected)
        if not shown_plan_holds and not (confirmed and the_plan.noop):
            assert expected is not None  # confirming an earlier change may leave nothing to do
            raise PlanChanged(
                f"{instance_id} changed since the plan was shown: it now needs "
                f"{describe_changes(the_plan)} instead of {describe_changes(expected)}. "
                "Nothing was sent; run the command again to see the new plan"
            )
        if the_plan.noop:
            return ApplyResult(
                the_plan,
                False,
                dry_run,
                elapsed=clock.monotonic() - started,
                final=ssl,
                before=ssl,
                pending=None if confirmed else pending,
            )

        def validated(candidate: Plan) -> list[PlanWarning]:
            return validate(
                candidate,
                desired,
                info,
                ssl,
                now=now,
                restart_margin=options.restart_margin,
                crl_size_budget=options.crl_size_budget,
            )

        warnings = validated(the_plan)
        need = guard_need(the_plan, ssl)
        checked = None
        if need is not None and options.force and not dry_run:
            log.info("%s: lockout guard: skipped (force) despite %s", instance_id, need.codes)
        if need is not None and not options.force and not dry_run:
            target = guard_target(the_plan, ssl)
            checked = guard.prove(need, proof, target, instance_id=instance_id, now=now)
        the_plan = replace(the_plan, warnings=tuple(warnings))
        if dry_run:
            return ApplyResult(
                the_plan,
                False,
                True,
                elapsed=clock.monotonic() - started,
                notes=notes,
                before=ssl,
                pending=pending,
            )
        if the_plan.crl_source is not None:  # signed only now, so dry runs leave the store alone
            assert the_plan.request is not None
            pem = the_plan.crl_source.build()
            request = replace(the_plan.request, crl_enabled=True, crl_pem=pem)
            extra = validated(replace(the_plan, request=request))
            the_plan = replace(the_plan, request=request, warnings=tuple(warnings + extra))
        if the_plan.server_source is not None:  # issued only now, like the CRL
            assert the_plan.request is not None
            material = the_plan.server_source.build()
            request = replace(
                the_plan.request,
                ssl_enabled=True,
                ca_type="custom",
                server_cert_pem=material.cert_pem,
                server_key_pem=material.key_pem,
            )
            the_plan = replace(the_plan, request=request)
        request_id, seen = waiting.send(the_plan, ssl, audit, accepted)
        locked.close()  # the lock is held from the read to the call, not through the wait
        final = (
            waiting.confirm(the_plan, ssl, request_id, audit, seen=seen) if options.wait else None
        )
    return ApplyResult(
        the_plan,
        True,
        False,
        request_id=request_id,
        final=final,
        guard=checked,
        elapsed=clock.monotonic() - started,
        notes=notes,
        before=ssl,
    )
