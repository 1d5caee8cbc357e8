"""``rdsssl plan | apply -f rdsssl.toml``, and the one-instance change every mutating command
makes (``instance enable-client-ca`` and friends reuse `preview_one` / `apply_one`).

One instance, one change: a dry-run `service.apply` first (Describe calls only, never a CRL
signed) gives the plan to show and confirm; the real `service.apply` then re-reads, guards and
makes at most one ModifyDBInstanceSSL call. With probe options, a probe after the change proves
that the certificate still works (exit 6 otherwise).

Many instances: every plan is made and shown first, confirmed once, then each instance is
applied by `apply_one` through `run_each`, `--concurrency` at a time, all API calls sharing one
`--rate` budget (`rdsssl.ops.fleet.RateLimiter`). A failing instance never stops the others; the
exit code is the highest exit code among the failures (0 when all succeeded).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any

import click

from rdsssl.cli.app import App
from rdsssl.cli.cloud import (
    MutatingOptions,
    ProbeOptions,
    mutating_options,
    plan_lines,
    probe_options,
    progress_reporter,
    run_probe,
    take_mutating,
    take_probe,
)
from rdsssl.cli.common import get_app, json_option, passphrase_file_option, unlock
from rdsssl.cli.fleet_opts import pacing_options
from rdsssl.errors import ExitCode, RdsSslError, VerificationError
from rdsssl.models import AclMode, InstanceSpec
from rdsssl.ops import fleet
from rdsssl.ops.apply import ApplyOptions, ApplyResult
from rdsssl.ops.apply import apply as service_apply
from rdsssl.ops.audit import AuditLog
from rdsssl.ops.clock import Clock
from rdsssl.ops.config import load_desired_state
from rdsssl.ops.desired import DesiredBuilder, resolve
from rdsssl.ops.guard import Proof
from rdsssl.ops.plan import DesiredSsl, fingerprints, guard_reason
from rdsssl.ops.probe import ProbeResult
from rdsssl.rds.api import AliyunRdsApi, ApiSettings, RdsApi
from rdsssl.store.castore import CaStore

__all__ = [
    "Outcome",
    "apply_cmd",
    "apply_one",
    "error_json",
    "finish",
    "outcome_json",
    "plan_cmd",
    "preview_one",
    "probe_json",
    "run_each",
]


@dataclass
class Outcome:
    """One instance's way through a command: its plan, the change, the proof, or the error."""

    instance_id: str
    source: str  # the desired-state entry, or "command line"
    desired: DesiredSsl | None = None
    preview: ApplyResult | None = None
    result: ApplyResult | None = None
    verification: ProbeResult | None = None
    error: BaseException | None = None

    @property
    def exit_code(self) -> int:
        """0, or the exit code of the error (1 for one that is not an rdsssl error)."""
        if self.error is None:
            return int(ExitCode.OK)
        if isinstance(self.error, RdsSslError):
            return int(self.error.exit_code)
        return int(ExitCode.UNEXPECTED)

    @property
    def guard(self) -> str | None:
        """Why the planned change could lock users out (the lockout guard's reason)."""
        if self.preview is None or self.preview.before is None:
            return None
        return guard_reason(self.preview.plan, self.preview.before)

    @property
    def needs_run(self) -> bool:
        """Something to send, or an earlier run's change to confirm first."""
        return self.preview is not None and (
            not self.preview.plan.noop or self.preview.pending is not None
        )

    @property
    def status(self) -> str:
        """One word for summaries: failed, changed, sent, planned, up-to-date."""
        if self.error is not None:
            return "failed"
        if self.result is not None and self.result.applied:
            return "changed" if self.result.final is not None else "sent"
        if self.preview is not None and not self.preview.plan.noop:
            return "planned"
        return "up-to-date"


def run_each(
    outcomes: Sequence[Outcome],
    fn: Callable[[Outcome, Callable[[float], None]], Outcome],
    *,
    concurrency: int = 1,
) -> None:
    """Run `fn` over `outcomes` through the fleet runner (`rdsssl.ops.fleet.run`), at most
    `concurrency` at a time. `fn` keeps its own errors in the outcome (see `captured`), so one
    instance never stops the others; it gets a `sleep` that ends with `Interrupted` once the
    run is interrupted, so Ctrl-C or SIGTERM stops every wait promptly."""
    cancel = threading.Event()
    by_id = {o.instance_id: o for o in outcomes}
    sleep = fleet.sleeper(cancel)
    fleet.run(
        list(by_id),
        lambda iid: fn(by_id[fleet.instance_id_of(iid)], sleep),
        concurrency=max(1, concurrency),
        cancel=cancel,
    )


def probe_json(result: ProbeResult) -> dict[str, Any]:
    """The JSON shape of a probe (no secret: the detail has the password masked)."""
    return {
        "outcome": result.outcome.value,
        "ok": result.ok,
        "user": result.user,
        "host": result.target.host,
        "port": result.target.port,
        "sslmode": result.sslmode,
        "detail": result.detail,
        "hint": result.hint,
        "elapsed": round(result.elapsed, 3),
    }


def error_json(exc: BaseException) -> dict[str, Any]:
    """The JSON shape of an error, as `App.fail` prints it (secret-free: errors never hold one)."""
    code = int(exc.exit_code) if isinstance(exc, RdsSslError) else int(ExitCode.UNEXPECTED)
    message = str(exc) if isinstance(exc, RdsSslError) else f"unexpected {type(exc).__name__}"
    return {"type": type(exc).__name__, "message": " ".join(message.split()), "exit_code": code}


def preview_one(api: RdsApi, outcome: Outcome, audit: AuditLog | None = None) -> Outcome:
    """The plan, validated locally: a dry run (Describe calls only), guard not yet applied.
    With `audit`, an earlier run's unconfirmed change is reported (`preview.pending`)."""
    assert outcome.desired is not None
    outcome.preview = service_apply(
        api,
        outcome.instance_id,
        outcome.desired,
        ApplyOptions(dry_run=True, force=True, audit=audit),
    )
    return outcome


def apply_one(
    app: App,
    api: RdsApi,
    outcome: Outcome,
    opts: MutatingOptions,
    probe: ProbeOptions,
    *,
    sleep: Callable[[float], None] = time.sleep,
) -> Outcome:
    """The change itself: re-read (stop if the plan differs from the one shown), guard (a
    proof unless --force), one Modify call, wait, and with probe options a probe afterwards:
    without a password when the ACL is now `cert`, so a certificate-only login is what it
    proves. A failed proof is a `VerificationError` in `error`."""
    assert outcome.desired is not None
    iid = outcome.instance_id
    proof = None
    if probe.given:
        assert probe.user is not None
        proof = Proof(probe.user, probe.cert, probe.key, lambda: run_probe(api, iid, probe))
    result = service_apply(
        api,
        iid,
        outcome.desired,
        replace(opts.apply_options(app.service_profile()), dry_run=False),
        proof=proof,
        expected=outcome.preview.plan if outcome.preview is not None else None,
        clock=Clock(sleep=sleep),
        on_progress=progress_reporter(app),
    )
    outcome.result = result
    for note in result.notes:
        app.info(f"{iid}: {note}")
    if result.applied and result.final is not None and probe.given:
        cert_only = result.final.acl is AclMode.CERT
        after = replace(probe, password_env=None) if cert_only else probe
        checked = run_probe(api, iid, after)
        outcome.verification = checked
        if not checked.ok:
            raise VerificationError(
                f"{iid}: the change was applied, but the probe as {checked.user} now fails "
                f"({checked.outcome.value}: {checked.detail}); {checked.hint}".rstrip("; ")
            )
    return outcome


def captured(fn: Callable[[Outcome], Outcome]) -> Callable[[Outcome], Outcome]:
    """`fn` with its errors kept in the outcome, so one instance never stops the others."""

    def run(outcome: Outcome) -> Outcome:
        try:
            return fn(outcome)
        except Exception as exc:  # an unexpected error is reported for this instance only
            outcome.error = exc
            return outcome

    return run


def outcome_json(outcome: Outcome) -> dict[str, Any]:
    """One instance in a JSON document: plan, request id, fingerprints, proofs, error."""
    result = outcome.result or outcome.preview
    doc: dict[str, Any] = {
        "instance": outcome.instance_id,
        "ok": outcome.error is None,  # the same per-instance key as every fleet command
        "source": outcome.source,
        "status": outcome.status,
        "plan": result.plan.to_dict() if result else None,
        "guard": outcome.guard,
        "applied": bool(outcome.result and outcome.result.applied),
        "waited": bool(outcome.result and outcome.result.final is not None),
        "request_id": outcome.result.request_id if outcome.result else None,
        "fingerprints": fingerprints(result.final) if result and result.final else None,
        "guard_probe": probe_json(outcome.result.guard)
        if outcome.result and outcome.result.guard
        else None,
        "verification": probe_json(outcome.verification) if outcome.verification else None,
        "elapsed": round(outcome.result.elapsed, 1) if outcome.result else None,
    }
    if outcome.error is not None:
        doc["error"] = error_json(outcome.error)
    return doc


def finish(app: App, doc: dict[str, Any], failure: BaseException | None) -> int:
    """Emit the result document; on failure it says `"ok": false` and carries the error, the
    message goes to stderr, and the exit code is returned."""
    if failure is None:
        app.result(doc)
        return int(ExitCode.OK)
    app.result({**doc, "ok": False, "error": error_json(failure)})
    return app.fail(failure)


# ------------------------------------------------------------------ the desired-state file


class ApiPool:
    """One API client per region (an entry's `region` overrides --region)."""

    def __init__(self, app: App, rate: float = fleet.DEFAULT_RATE) -> None:
        self._app = app
        self._apis: dict[str | None, RdsApi] = {}
        self._limiter = fleet.RateLimiter(rate)  # one budget for every region and worker

    def get(self, region: str | None) -> RdsApi:
        """The client for `region` (None: the global --region)."""
        key = region or self._app.region
        if key not in self._apis:
            settings = ApiSettings.from_env(
                region=key, endpoint=self._app.endpoint, profile=self._app.profile
            )
            self._apis[key] = fleet.limited(AliyunRdsApi(settings), self._limiter)
        return self._apis[key]


def _file_option(f: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "-f",
        "--file",
        "path",
        required=True,
        type=click.Path(path_type=Path, dir_okay=False),
        help="The desired-state file (rdsssl.toml).",
    )(f)


def _plan_all(
    app: App,
    path: Path,
    passphrase_file: Path | None,
    *,
    concurrency: int,
    rate: float,
    audit: AuditLog | None = None,
) -> list[tuple[Outcome, RdsApi]]:
    """Load the file, select the instances, and make every plan (reads only, concurrently)."""
    state = load_desired_state(path)
    apis = ApiPool(app, rate)

    def unlock_store(store: CaStore) -> None:
        unlock(app, store, passphrase_file)

    builder = DesiredBuilder(now=app.now(), unlock=unlock_store)
    targets = resolve(apis.get(None), state, region=app.region)
    if not targets:
        app.warn(f"{path}: no instance matches its [[instances]] entries")
    planned = [(Outcome(iid, spec.source), apis.get(spec.region)) for iid, spec in targets]
    specs = [spec for _, spec in targets]

    index = {o.instance_id: n for n, (o, _) in enumerate(planned)}

    def plan_item(outcome: Outcome, _sleep: Callable[[float], None]) -> Outcome:
        n = index[outcome.instance_id]
        entry = partial(_plan_entry, builder, planned[n][1], specs[n], audit=audit)
        return captured(entry)(outcome)

    run_each([o for o, _ in planned], plan_item, concurrency=concurrency)
    return planned


def _plan_entry(
    builder: DesiredBuilder,
    api: RdsApi,
    spec: InstanceSpec,
    outcome: Outcome,
    *,
    audit: AuditLog | None = None,
) -> Outcome:
    outcome.desired = builder.for_spec(spec)
    return preview_one(api, outcome, audit)


def _show(outcome: Outcome, *, echo: Callable[[str], None]) -> None:
    """An instance's plan (failures are reported by `_report_failures`)."""
    if outcome.preview is None:
        return
    for line in plan_lines(outcome.preview.plan):
        echo(line)
    if outcome.guard:
        echo(f"  lockout guard: {outcome.guard}; needs a successful --probe-* or --force")


def _summary(outcomes: Sequence[Outcome]) -> dict[str, int]:
    counts = {"instances": len(outcomes)}
    for o in outcomes:
        counts[o.status] = counts.get(o.status, 0) + 1
    return counts


def _failure(outcomes: Sequence[Outcome]) -> RdsSslError | None:
    """None when every instance succeeded; else one error whose exit code is the highest of the
    failures (each failure itself was already reported with its instance)."""
    failed = [o for o in outcomes if o.error is not None]
    if not failed:
        return None
    error = RdsSslError(
        f"{len(failed)} of {len(outcomes)} instance(s) failed: "
        + ", ".join(o.instance_id for o in failed)
    )
    error.exit_code = ExitCode(max(o.exit_code for o in failed))
    return error


def _report_failures(app: App, outcomes: Sequence[Outcome]) -> None:
    for o in outcomes:
        if o.error is not None:
            stage = "cannot plan" if o.preview is None else "failed"
            app.warn(f"{o.instance_id}: {stage}: {error_json(o.error)['message']}")


@click.command("plan")
@_file_option
@pacing_options
@json_option
def plan_cmd(path: Path, concurrency: int, rate: float) -> int:
    """Show what `apply` would change, instance by instance (reads only; exit 0).

    \b
    Example:
      rdsssl plan -f rdsssl.toml
    """
    app = get_app()
    outcomes = [o for o, _ in _plan_all(app, path, None, concurrency=concurrency, rate=rate)]
    for outcome in outcomes:
        _show(outcome, echo=app.out)
    _report_failures(app, outcomes)
    doc = {"instances": [outcome_json(o) for o in outcomes], "summary": _summary(outcomes)}
    return finish(app, doc, _failure(outcomes))


@click.command("apply")
@_file_option
@mutating_options
@probe_options()
@passphrase_file_option
@pacing_options
@json_option
def apply_cmd(
    path: Path, passphrase_file: Path | None, concurrency: int, rate: float, **kwargs: Any
) -> int:
    """Make every instance of the desired-state file match it.

    Each instance gets at most one ModifyDBInstanceSSL call (CA, CRL and ACLs together: one
    restart); instances that already match get none. A CRL is signed only when an instance's
    CRL is missing, stale or misses a revocation (the CA key is unlocked then: --passphrase-file,
    $RDSSSL_CA_PASSPHRASE, or a prompt on a terminal).

    \b
    Examples:
      rdsssl apply -f rdsssl.toml --dry-run
      rdsssl apply -f rdsssl.toml --yes --probe-user alice \\
          --probe-cert alice/client.crt --probe-key alice/client.key
    """
    app = get_app()
    opts, probe = take_mutating(kwargs), take_probe(kwargs)
    planned = _plan_all(
        app, path, passphrase_file, concurrency=concurrency, rate=rate, audit=opts.audit
    )
    for outcome, _ in planned:
        _show(outcome, echo=app.info)
    todo = [(o, api) for o, api in planned if o.preview and o.needs_run]
    if todo and not opts.dry_run and not opts.yes and app.interactive:
        question = f"Apply the changes to {len(todo)} instance(s)?"
        if not click.confirm(question, default=False, err=True):
            raise click.Abort()

    apis = {o.instance_id: api for o, api in todo}

    def apply_item(outcome: Outcome, sleep: Callable[[float], None]) -> Outcome:
        api = apis[outcome.instance_id]
        return captured(lambda o: apply_one(app, api, o, opts, probe, sleep=sleep))(outcome)

    if not opts.dry_run:
        if todo:
            opts.audit.check_writable()  # exit 3 before any instance is touched
        run_each([o for o, _ in todo], apply_item, concurrency=concurrency)
    outcomes = [o for o, _ in planned]
    summary = _summary(outcomes)
    _report_failures(app, outcomes)
    app.info("summary: " + ", ".join(f"{v} {k}" for k, v in summary.items()))
    doc = {
        "dry_run": opts.dry_run,
        "instances": [outcome_json(o) for o in outcomes],
        "summary": summary,
    }
    return finish(app, doc, _failure(outcomes))
