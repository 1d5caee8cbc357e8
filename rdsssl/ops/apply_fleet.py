"""``plan -f`` / ``apply -f`` over many instances: every plan is made first (reads only,
concurrently), the caller shows and confirms them once, then each instance gets the one-instance
change (`rdsssl.ops.instance_change.InstanceChange.apply_one`).

Both phases go through the fleet runner (`rdsssl.ops.fleet.run`), `concurrency` at a time, all
API calls sharing the caller's rate budget (`rdsssl.ops.fleet.RateLimiter` behind each
`RdsApi`). A failing instance never stops the others: its error stays in its `InstanceOutcome`,
and `failure` sums them up with the highest exit code.

Nothing prompts from a worker thread: planning never unlocks a CA key (a CRL is only a
requirement then), and before the workers of the apply phase start, `sign_up_front` signs in
the calling thread every CRL the confirmed plans need (one per CA store: `DesiredBuilder`
caches it, and a store that cannot be unlocked fails only the instances that need it), and
issues every custom server certificate they need (one per instance, kept by the builder).

Server SSL (`ssl = "cloud" | "custom"` in an entry): `DesiredBuilder.server_with` adds the
server part to the entry's `DesiredSsl`; `rdsssl.ops.fleet_ssl` plans and applies what is
particular to it (one call from SSL off, or two when the service profile says so; the proof).

A saved plan (`rdsssl.ops.plan_file`) replaces the planning phase with `recheck_all`: each
instance is re-read (and the CA store of a planned CRL re-read) and refused as a stale plan when
it no longer holds what the plan was made against; the others get the recorded plan as the one
shown, and `apply_all` sends exactly it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from rdsssl.errors import ExitCode, RdsSslError
from rdsssl.models import InstanceSpec
from rdsssl.ops import fleet, fleet_ssl, plan_file
from rdsssl.ops.apply import ApplyOptions, ApplyResult
from rdsssl.ops.audit import AuditLog
from rdsssl.ops.desired import DesiredBuilder, ServerTarget
from rdsssl.ops.instance_change import InstanceChange, InstanceOutcome
from rdsssl.rds import service_profile
from rdsssl.rds.protocol import RdsApi

__all__ = [
    "Target",
    "apply_all",
    "failure",
    "plan_all",
    "recheck_all",
    "sign_up_front",
    "summary",
]


@dataclass
class Target:
    """One selected instance: its outcome so far, the API client of its region, its entry
    (None for an instance of a saved plan: the plan file holds what to do)."""

    outcome: InstanceOutcome
    api: RdsApi
    spec: InstanceSpec | None = None
    server: ServerTarget | None = None  # with `ssl` in the entry: its connection strings


def _run_each(
    targets: Sequence[Target],
    fn: Callable[[Target, Callable[[float], None]], None],
    *,
    concurrency: int,
) -> None:
    """`fn` over `targets` through `fleet.run`, errors kept in each outcome; `fn` gets a sleep
    that ends with `Interrupted` once the run is interrupted (Ctrl-C or SIGTERM stops every
    wait promptly)."""
    cancel = threading.Event()
    by_id = {t.outcome.instance_id: t for t in targets}
    sleep = fleet.sleeper(cancel)

    def one(item: fleet.Item) -> None:
        target = by_id[fleet.instance_id_of(item)]
        try:
            fn(target, sleep)
        except Exception as exc:  # an unexpected error is reported for this instance only
            target.outcome.error = exc

    fleet.run(list(by_id), one, concurrency=max(1, concurrency), cancel=cancel)


def plan_all(
    targets: Sequence[Target],
    builder: DesiredBuilder,
    *,
    audit: AuditLog | None = None,
    concurrency: int = fleet.DEFAULT_CONCURRENCY,
    profile: service_profile.ServiceProfile | None = None,
) -> None:
    """Every target's `DesiredSsl` and plan (Describe calls only, nothing signed or issued).
    `profile` (None: $RDSSSL_SERVICE_PROFILE, else the documented answers) says whether SSL
    can be set up with the client CA in one call."""
    previewer = InstanceChange(ApplyOptions(audit=audit))
    one_call = (profile or service_profile.load()).one_call_ssl_setup

    def plan_one(target: Target, _sleep: Callable[[float], None]) -> None:
        assert target.spec is not None
        outcome = target.outcome
        desired = builder.for_spec(target.spec)
        desired, target.server = builder.server_with(
            desired, target.spec, target.api, outcome.instance_id
        )
        outcome.desired = desired
        previewer.preview(target.api, outcome)
        fleet_ssl.plan_server(previewer, target.api, outcome, target.spec, target.server, one_call)

    _run_each(targets, plan_one, concurrency=concurrency)


def recheck_all(
    targets: Sequence[Target],
    planned: Sequence[plan_file.PlannedInstance],
    builder: DesiredBuilder,
    *,
    concurrency: int = fleet.DEFAULT_CONCURRENCY,
) -> None:
    """For a saved plan: re-read every target (Describe calls only, nothing signed); one whose
    SSL configuration or CA store differs from the plan's fails with `StalePlan` (nothing will
    be sent to it), the others carry the recorded plan as their preview."""
    by_id = {p.instance_id: p for p in planned}

    def recheck_one(target: Target, _sleep: Callable[[float], None]) -> None:
        item = by_id[target.outcome.instance_id]
        ssl = target.api.describe_ssl(item.instance_id)
        plan_file.check_current(item, ssl)
        plan_file.check_store(item, builder)
        desired, expected = plan_file.to_apply(item, builder)
        target.outcome.desired = desired
        target.outcome.preview = ApplyResult(expected, False, True, before=ssl)

    _run_each(targets, recheck_one, concurrency=concurrency)


def sign_up_front(targets: Sequence[Target]) -> None:
    """Sign, in this thread, the CRL and issue the custom server certificate every planned
    change needs (see the module docstring)."""
    for target in targets:
        preview = target.outcome.preview
        if preview is None or target.outcome.error is not None:
            continue
        try:
            if preview.plan.crl_source is not None:
                preview.plan.crl_source.build()
            if preview.plan.server_source is not None:  # issued once: the builder keeps it
                preview.plan.server_source.build()
        except Exception as exc:  # this instance fails; the others carry on
            target.outcome.error = exc


def apply_all(
    change: InstanceChange,
    targets: Sequence[Target],
    *,
    concurrency: int,
    skip_proof: frozenset[str] = frozenset(),
) -> None:
    """The change on every target that needs one, after `sign_up_front`; the audit log is
    checked writable and the probe's password variable set first (exit 3 before any instance
    is touched). `skip_proof`: connection
    strings the server proof does not try (unreachable from here)."""
    todo = [t for t in targets if t.outcome.error is None and t.outcome.needs_run]
    if not todo:
        return
    change.options.audit_log.check_writable()
    if change.probe is not None and change.probe.given:
        change.probe.password()  # a missing variable stops now (exit 3), not after a change
    sign_up_front(todo)

    def apply_one(target: Target, sleep: Callable[[float], None]) -> None:
        if target.outcome.error is None:
            probe = fleet_ssl.probe_for(change.probe, target.spec)
            worker = replace(change, clock=change.clock.sleeping(sleep), probe=probe)
            fleet_ssl.apply_server(worker, target.api, target.outcome, target.spec, skip_proof)

    _run_each(todo, apply_one, concurrency=concurrency)


def summary(outcomes: Sequence[InstanceOutcome]) -> dict[str, int]:
    """How many instances, and how many in each status."""
    counts = {"total": len(outcomes)}
    for o in outcomes:
        counts[o.status] = counts.get(o.status, 0) + 1
    return counts


def failure(outcomes: Sequence[InstanceOutcome]) -> RdsSslError | None:
    """None when every instance succeeded; else one error whose exit code is the highest of the
    failures (each failure itself is reported with its instance)."""
    failed = [o for o in outcomes if o.error is not None]
    if not failed:
        return None
    error = RdsSslError(
        f"{len(failed)} of {len(outcomes)} instance(s) failed: "
        + ", ".join(o.instance_id for o in failed)
    )
    error.exit_code = ExitCode(max(o.exit_code for o in failed))
    return error
