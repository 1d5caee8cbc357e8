"""Server SSL in ``plan -f`` / ``apply -f`` (`ssl = "cloud" | "custom"` in an entry): what the
fleet does beyond the one-instance change (`rdsssl.ops.instance_change`).

- **One call from SSL off.** The plan of an instance with SSL off holds SSL (`SSLEnabled=1`,
  `CAType`, a custom certificate), the client CA, the CRL and the ACLs: ONE
  ModifyDBInstanceSSL call and one restart, as Terraform's acceptance test sends them
  (docs/aliyun-rds-ssl-api.md §1.3). A service that refuses that answers
  `IncorrectDBSslStatus`; the error then says how to record it (`one_call_refused`).
- **Two calls when recorded.** A service profile with `one_call_ssl_setup: false` splits it
  into the fewest calls (`plan_server`): SSL alone first (`InstanceOutcome.first`: its own
  wait, even under --no-wait, and its own server proof), then the rest, re-planned against
  SSL on and required to be exactly the rest of the plan shown (`apply_server`).
- **The proof.** After a server change the certificate each connection string presents must
  be the one read back, and verify-full must get past it (`rdsssl.ops.server_ssl.prove_change`:
  custom, every connection string with `server_ca_dir/ca.crt`; cloud, the one it covers with
  the CA from ServerCAUrl). The probe after the change verifies a custom server with the
  entry's server CA unless a root certificate was given (`probe_for`).
- **What the plan says.** A cloud certificate covers one connection string: the plan names the
  ones it leaves out. These warnings are kept on the plan applied (`keep_warnings`).
"""

from __future__ import annotations

from dataclasses import replace

from rdsssl.errors import ApiError, PlanChanged
from rdsssl.models import InstanceSpec
from rdsssl.ops.desired import ServerTarget
from rdsssl.ops.instance_change import InstanceChange, InstanceOutcome
from rdsssl.ops.plan import DesiredSsl, Plan, PlanWarning, describe_changes
from rdsssl.ops.probe_options import ProbeOptions
from rdsssl.ops.server_ssl import prove_change
from rdsssl.ops.server_ssl_plan import SSL_CLOUD, SSL_CUSTOM
from rdsssl.rds.protocol import RdsApi
from rdsssl.store.files import CA_CERT

__all__ = [
    "TWO_CALLS",
    "UNCOVERED",
    "apply_server",
    "keep_warnings",
    "one_call_refused",
    "plan_server",
    "probe_for",
    "sets_up_ssl",
]

TWO_CALLS = "two-calls"  # warning codes this module adds to a plan
UNCOVERED = "cloud-certificate-one-endpoint"
_OURS = frozenset({TWO_CALLS, UNCOVERED})
_TWO_CALLS_TEXT = (
    "the service profile says SSL cannot be switched on together with the client CA "
    "(one_call_ssl_setup: false): SSL first, then the client CA, CRL and ACLs, two calls and "
    "two restarts"
)


# ---------------------------------------------------------------- planning


def plan_server(
    previewer: InstanceChange,
    api: RdsApi,
    outcome: InstanceOutcome,
    spec: InstanceSpec,
    server: ServerTarget | None,
    one_call: bool,
) -> None:
    """After the preview of `outcome`: the first call of a two-call setup (planned too, Describe
    calls only) and the plan's warnings about it and about uncovered endpoints."""
    desired = outcome.desired
    if not one_call and desired is not None and desired.server is not None and sets_up_ssl(outcome):
        first = InstanceOutcome(
            outcome.instance_id, outcome.source, DesiredSsl(server=desired.server)
        )
        outcome.first = previewer.preview(api, first)
        _warn(outcome, PlanWarning(TWO_CALLS, _TWO_CALLS_TEXT))
    uncovered = _uncovered(outcome, spec, server)
    if uncovered:
        _warn(outcome, PlanWarning(UNCOVERED, _one_endpoint(outcome, uncovered)))


def _ssl_changes(plan_: Plan) -> tuple[bool, bool]:
    """(the plan changes the server side, it changes something else too)."""
    server = any(c.field == "ssl" for c in plan_.changes)
    return server, any(c.field != "ssl" for c in plan_.changes)


def sets_up_ssl(outcome: InstanceOutcome) -> bool:
    """The plan shown switches SSL on from off together with client settings."""
    preview = outcome.preview
    if preview is None or preview.before is None or preview.before.ssl_enabled:
        return False
    server, client = _ssl_changes(preview.plan)
    return server and client


def _uncovered(
    outcome: InstanceOutcome, spec: InstanceSpec, server: ServerTarget | None
) -> tuple[str, ...]:
    """The connection strings a cloud certificate the plan asks for will not cover."""
    preview = outcome.preview
    if preview is None or server is None or spec.ssl != SSL_CLOUD:
        return ()
    if not _ssl_changes(preview.plan)[0] or preview.plan.request is None:
        return ()
    protected = preview.plan.request.connection_string
    return tuple(n for n in server.endpoints if n != protected)


def _one_endpoint(outcome: InstanceOutcome, uncovered: tuple[str, ...]) -> str:
    assert outcome.preview is not None and outcome.preview.plan.request is not None
    protected = outcome.preview.plan.request.connection_string
    return (
        f"the cloud certificate covers {protected} only: clients of {', '.join(uncovered)} "
        'cannot use sslmode=verify-full there; ssl = "custom" (a certificate from your server '
        "CA naming every connection string) covers them all"
    )


def _warn(outcome: InstanceOutcome, warning: PlanWarning) -> None:
    """Add `warning` to the plan shown (and, through `keep_warnings`, to the plan applied)."""
    preview = outcome.preview
    assert preview is not None
    plan_ = preview.plan
    outcome.preview = replace(preview, plan=replace(plan_, warnings=(*plan_.warnings, warning)))


# ---------------------------------------------------------------- applying


def probe_for(probe: ProbeOptions | None, spec: InstanceSpec | None) -> ProbeOptions | None:
    """The probe of one instance: under `ssl = "custom"` the server is verified with the
    server CA of the entry, unless a root certificate was given."""
    if probe is None or not probe.given or probe.root_cert is not None or spec is None:
        return probe
    if spec.ssl != SSL_CUSTOM or spec.server_ca_dir is None:
        return probe
    return replace(probe, root_cert=spec.server_ca_dir / CA_CERT)


def apply_server(
    worker: InstanceChange,
    api: RdsApi,
    outcome: InstanceOutcome,
    spec: InstanceSpec | None,
    skip: frozenset[str] = frozenset(),
) -> None:
    """The change of one instance (one call, or two: see the module docstring), then the
    server proof where the server side changed. Errors as in `InstanceChange.apply_one`."""
    if outcome.first is None:
        try:
            worker.apply_one(api, outcome)
        except ApiError as exc:
            raise one_call_refused(outcome, exc) from None
        _prove(api, outcome, spec, worker.probe, skip)
    else:
        _in_two_calls(worker, api, outcome, spec, skip)
    keep_warnings(outcome)


def one_call_refused(outcome: InstanceOutcome, exc: ApiError) -> ApiError:
    """A service that refuses SSL and the client CA in one call (IncorrectDBSslStatus on the
    call that sets SSL up): say how to record that, so the next run takes two calls."""
    if exc.code != "IncorrectDBSslStatus" or not sets_up_ssl(outcome):
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


def _in_two_calls(
    worker: InstanceChange,
    api: RdsApi,
    outcome: InstanceOutcome,
    spec: InstanceSpec | None,
    skip: frozenset[str],
) -> None:
    """SSL first (its own wait, even under --no-wait; no login probe: no client CA is there yet
    to log in with), then the rest, which must be exactly the rest of the plan shown."""
    first = outcome.first
    assert first is not None and outcome.preview is not None
    waited = replace(worker.options, wait=True)  # the rest needs SSL on: --no-wait or not
    replace(worker, options=waited, probe=None).apply_one(api, first)
    _prove(api, first, spec, None, skip)  # no client CA yet: a TLS proof, no login
    if first.error is not None:
        outcome.error = first.error
        return
    shown = outcome.preview.plan
    rest = [(c.field, c.after) for c in shown.changes if c.field != "ssl"]
    worker.preview(api, outcome)  # re-planned against SSL on (Describe calls only)
    assert outcome.preview is not None
    now = outcome.preview.plan
    if [(c.field, c.after) for c in now.changes] != rest:  # `before` may read differently now
        outcome.error = PlanChanged(
            f"{outcome.instance_id}: SSL is on now (first call), but the rest is no longer "
            f"the plan shown: it needs {describe_changes(now)}. Nothing more was sent; run "
            "the command again to see the new plan"
        )
        return
    outcome.preview = replace(outcome.preview, plan=replace(now, warnings=shown.warnings))
    worker.apply_one(api, outcome)
    _prove(api, outcome, spec, worker.probe, skip)


def _prove(
    api: RdsApi,
    outcome: InstanceOutcome,
    spec: InstanceSpec | None,
    probe: ProbeOptions | None,
    skip: frozenset[str],
) -> None:
    """The server proof (module docstring) after a change that touched the server side; a
    failure is the outcome's `VerificationError`."""
    result = outcome.result
    if result is None or not result.applied or spec is None or outcome.error is not None:
        return
    if not _ssl_changes(result.plan)[0]:
        return
    root = None
    if spec.ssl == SSL_CUSTOM and spec.server_ca_dir is not None:
        given = probe.root_cert if probe is not None else None
        root = given or spec.server_ca_dir / CA_CERT
    outcome.server_proof = prove_change(api, outcome, root_cert=root, probe=probe, skip=skip)


def keep_warnings(outcome: InstanceOutcome) -> None:
    """The plan applied carries the warnings of the plan shown that apply cannot know of (the
    two calls, the endpoints a cloud certificate leaves uncovered)."""
    if outcome.result is None or outcome.preview is None:
        return
    have = {w.code for w in outcome.result.plan.warnings}
    extra = tuple(
        w for w in outcome.preview.plan.warnings if w.code in _OURS and w.code not in have
    )
    if extra:
        plan_ = outcome.result.plan
        outcome.result = replace(
            outcome.result, plan=replace(plan_, warnings=(*plan_.warnings, *extra))
        )
