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
caches it, and a store that cannot be unlocked fails only the instances that need it).

Server SSL (`ssl = "cloud" | "custom"`, `rdsssl.ops.desired.DesiredBuilder.server_with`): on
an instance with SSL off, SSL, the client CA, the CRL and the ACLs go in ONE call (one restart),
as Terraform's acceptance test sends them. A service profile recording
`one_call_ssl_setup: false` splits that into the fewest calls: SSL alone first (its own wait;
`InstanceOutcome.first`), then the rest, re-planned against the instance with SSL on and
required to be exactly the rest of the plan shown. A custom certificate is issued up front with
the CRLs (`sign_up_front`), and the probe after the change verifies the server with the
server CA (`server_ca_dir/ca.crt`) unless `--probe-root-cert` names another. A cloud
certificate covers one connection string: the plan says which ones it leaves uncovered.

A saved plan (`rdsssl.ops.plan_file`) replaces the planning phase with `recheck_all`: each
instance is re-read (and the CA store of a planned CRL re-read) and refused as a stale plan when
it no longer holds what the plan was made against; the others get the recorded plan as the one
shown, and `apply_all` sends exactly it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from rdsssl.errors import ApiError, ExitCode, PlanChanged, RdsSslError
from rdsssl.models import InstanceSpec
from rdsssl.ops import fleet, plan_file
from rdsssl.ops.apply import ApplyOptions, ApplyResult
from rdsssl.ops.audit import AuditLog
from rdsssl.ops.desired import DesiredBuilder, ServerTarget
from rdsssl.ops.instance_change import InstanceChange, InstanceOutcome
from rdsssl.ops.plan import DesiredSsl, Plan, PlanWarning, describe_changes
from rdsssl.ops.probe_options import ProbeOptions
from rdsssl.ops.server_ssl import prove_change
from rdsssl.ops.server_ssl_plan import SSL_CLOUD, SSL_CUSTOM
from rdsssl.rds import service_profile
from rdsssl.rds.protocol import RdsApi
from rdsssl.store.files import CA_CERT

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
        if not one_call and _sets_up_ssl(outcome):
            assert desired.server is not None
            first = InstanceOutcome(
                outcome.instance_id, outcome.source, DesiredSsl(server=desired.server)
            )
            outcome.first = previewer.preview(target.api, first)
            _warn(outcome, PlanWarning("two-calls", _TWO_CALLS))
        uncovered = _uncovered(target)
        if uncovered:
            _warn(
                outcome,
                PlanWarning("cloud-certificate-one-endpoint", _one_endpoint(target, uncovered)),
            )

    _run_each(targets, plan_one, concurrency=concurrency)


_TWO_CALLS = (
    "the service profile says SSL cannot be switched on together with the client CA "
    "(one_call_ssl_setup: false): SSL first, then the client CA, CRL and ACLs, two calls and "
    "two restarts"
)


def _ssl_changes(plan_: Plan) -> tuple[bool, bool]:
    """(the plan changes the server side, it changes something else too)."""
    server = any(c.field == "ssl" for c in plan_.changes)
    return server, any(c.field != "ssl" for c in plan_.changes)


def _sets_up_ssl(outcome: InstanceOutcome) -> bool:
    """The plan switches SSL on from off together with client settings."""
    preview = outcome.preview
    if preview is None or preview.before is None or preview.before.ssl_enabled:
        return False
    server, client = _ssl_changes(preview.plan)
    return server and client


def _uncovered(target: Target) -> tuple[str, ...]:
    """The connection strings a cloud certificate the plan asks for will not cover."""
    preview, spec, server = target.outcome.preview, target.spec, target.server
    if preview is None or spec is None or server is None or spec.ssl != SSL_CLOUD:
        return ()
    if not _ssl_changes(preview.plan)[0] or preview.plan.request is None:
        return ()
    protected = preview.plan.request.connection_string
    return tuple(n for n in server.endpoints if n != protected)


def _one_endpoint(target: Target, uncovered: tuple[str, ...]) -> str:
    assert target.outcome.preview is not None and target.outcome.preview.plan.request is not None
    protected = target.outcome.preview.plan.request.connection_string
    return (
        f"the cloud certificate covers {protected} only: clients of {', '.join(uncovered)} "
        'cannot use sslmode=verify-full there; ssl = "custom" (a certificate from your server '
        "CA naming every connection string) covers them all"
    )


def _warn(outcome: InstanceOutcome, warning: PlanWarning) -> None:
    """Add `warning` to the plan shown (and, later, to the plan applied)."""
    preview = outcome.preview
    assert preview is not None
    plan_ = preview.plan
    outcome.preview = replace(preview, plan=replace(plan_, warnings=(*plan_.warnings, warning)))


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
    """Sign, in this thread, the CRL every planned change needs (see the module docstring)."""
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
    checked writable first (exit 3 before any instance is touched). `skip_proof`: connection
    strings the server proof does not try (unreachable from here)."""
    todo = [t for t in targets if t.outcome.error is None and t.outcome.needs_run]
    if not todo:
        return
    change.options.audit_log.check_writable()
    sign_up_front(todo)

    def apply_one(target: Target, sleep: Callable[[float], None]) -> None:
        if target.outcome.error is None:
            probe = _probe_for(change.probe, target)
            worker = replace(change, clock=change.clock.sleeping(sleep), probe=probe)
            if target.outcome.first is None:
                try:
                    worker.apply_one(target.api, target.outcome)
                except ApiError as exc:
                    raise _one_call_refused(target.outcome, exc) from None
                _prove_server(target, target.outcome, probe, skip_proof)
            else:
                _in_two_calls(worker, target, skip_proof)
            _keep_warnings(target.outcome)

    _run_each(todo, apply_one, concurrency=concurrency)


def _probe_for(probe: ProbeOptions | None, target: Target) -> ProbeOptions | None:
    """The probe of one instance: under `ssl = "custom"` the server is verified with the
    server CA of the entry, unless a root certificate was given."""
    spec = target.spec
    if probe is None or not probe.given or probe.root_cert is not None or spec is None:
        return probe
    if spec.ssl != SSL_CUSTOM or spec.server_ca_dir is None:
        return probe
    return replace(probe, root_cert=spec.server_ca_dir / CA_CERT)


def _one_call_refused(outcome: InstanceOutcome, exc: ApiError) -> ApiError:
    """A service that refuses SSL and the client CA in one call (IncorrectDBSslStatus on the
    call that sets SSL up): say how to record that, so the next run takes two calls."""
    if exc.code != "IncorrectDBSslStatus" or not _sets_up_ssl(outcome):
        return exc
    return ApiError(
        f"{exc.raw_message}. This service does not take SSL with the client CA in one call: "
        'record it in the service profile ("one_call_ssl_setup": false, --service-profile '
        "or RDSSSL_SERVICE_PROFILE) and apply again: SSL first, then the rest",
        action=exc.action,
        code=exc.code,
        request_id=exc.request_id,
        http_status=exc.http_status,
        retryable=exc.retryable,
    )


def _in_two_calls(worker: InstanceChange, target: Target, skip: frozenset[str]) -> None:
    """SSL first (its own wait, even under --no-wait; no login probe: no client CA is there yet
    to log in with), then the rest, which must be exactly the rest of the plan shown."""
    outcome, first = target.outcome, target.outcome.first
    assert first is not None and outcome.preview is not None
    waited = replace(worker.options, wait=True)  # the rest needs SSL on: --no-wait or not
    replace(worker, options=waited, probe=None).apply_one(target.api, first)
    _prove_server(target, first, None, skip)  # no client CA yet: a TLS proof, no login
    if first.error is not None:
        outcome.error = first.error
        return
    shown = outcome.preview.plan
    rest = [(c.field, c.after) for c in shown.changes if c.field != "ssl"]
    warnings = shown.warnings
    worker.preview(target.api, outcome)  # re-planned against SSL on (Describe calls only)
    assert outcome.preview is not None
    now = outcome.preview.plan
    if [(c.field, c.after) for c in now.changes] != rest:  # `before` may read differently now
        outcome.error = PlanChanged(
            f"{outcome.instance_id}: SSL is on now (first call), but the rest is no longer "
            f"the plan shown: it needs {describe_changes(now)}. Nothing more was sent; run "
            "the command again to see the new plan"
        )
        return
    outcome.preview = replace(outcome.preview, plan=replace(now, warnings=warnings))
    worker.apply_one(target.api, outcome)
    _prove_server(target, outcome, worker.probe, skip)


def _prove_server(
    target: Target,
    outcome: InstanceOutcome,
    probe: ProbeOptions | None,
    skip: frozenset[str] = frozenset(),
) -> None:
    """After a change of the server side: the certificate each connection string presents is
    the one read back, and verify-full gets past it (`rdsssl.ops.server_ssl.prove_change`;
    custom: every connection string, with the server CA; cloud: the one it covers, with the CA
    from ServerCAUrl). A failure is the outcome's `VerificationError`."""
    result, spec = outcome.result, target.spec
    if result is None or not result.applied or spec is None or outcome.error is not None:
        return
    if not any(c.field == "ssl" for c in result.plan.changes):
        return
    root = None
    if spec.ssl == SSL_CUSTOM and spec.server_ca_dir is not None:
        root = probe.root_cert if probe is not None and probe.root_cert else None
        root = root or spec.server_ca_dir / CA_CERT
    outcome.server_proof = prove_change(target.api, outcome, root_cert=root, probe=probe, skip=skip)


def _keep_warnings(outcome: InstanceOutcome) -> None:
    """The plan applied carries the warnings of the plan shown that apply cannot know of (the
    two calls, the endpoints a cloud certificate leaves uncovered)."""
    if outcome.result is None or outcome.preview is None:
        return
    ours = [w for w in outcome.preview.plan.warnings if w.code in _FLEET_WARNINGS]
    have = {w.code for w in outcome.result.plan.warnings}
    extra = tuple(w for w in ours if w.code not in have)
    if extra:
        plan_ = outcome.result.plan
        outcome.result = replace(
            outcome.result, plan=replace(plan_, warnings=(*plan_.warnings, *extra))
        )


_FLEET_WARNINGS = frozenset({"two-calls", "cloud-certificate-one-endpoint"})


def summary(outcomes: Sequence[InstanceOutcome]) -> dict[str, int]:
    """How many instances, and how many in each status."""
    counts = {"instances": len(outcomes)}
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
