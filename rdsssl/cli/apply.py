"""``rdsssl plan | apply -f rdsssl.toml``: parse the options, call the library, render.

The use cases live in the library: `rdsssl.ops.apply_fleet` plans every instance (reads only,
concurrently), and after the one confirmation here applies each one with the one-instance change
(`rdsssl.ops.instance_change.InstanceChange`), `--concurrency` at a time, all API calls sharing
one `--rate` budget. A failing instance never stops the others; the exit code is the highest
exit code among the failures (0 when all succeeded). The instance commands share `finish` and
`change_for` from here.

Saved plans (`rdsssl.ops.plan_file`): `plan --out plan.json` writes the plan, `apply plan.json`
applies exactly it, refusing (exit 6, nothing sent) each instance that changed since. As with
`terraform apply PLANFILE`, applying a saved plan does not ask again: the plan was the review.
`plan --detailed-exitcode` exits 2 when changes are pending, as `terraform plan` does; 2 is also
click's usage error (a usage error writes no plan file and prints "Usage:"; README.md, "Plan
files").
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import click

from rdsssl.cli import jsondoc
from rdsssl.cli.app import App
from rdsssl.cli.cloud import (
    MutatingOptions,
    mutating_options,
    plan_lines,
    probe_options,
    progress_reporter,
    skip_proof_option,
    take_mutating,
    take_probe,
)
from rdsssl.cli.common import get_app, json_option, passphrase_file_option, unlock
from rdsssl.cli.fleet_opts import pacing_options
from rdsssl.errors import ExitCode, StalePlan, UsageError
from rdsssl.ops import apply_fleet, fleet, plan_file, plan_file_read
from rdsssl.ops.apply_fleet import Target
from rdsssl.ops.config import load_desired_state
from rdsssl.ops.desired import DesiredBuilder, resolve
from rdsssl.ops.instance_change import InstanceChange, InstanceOutcome, error_json
from rdsssl.ops.probe_options import ProbeOptions
from rdsssl.ops.rate import Rate, RateCost, choose_rate
from rdsssl.rds.api import AliyunRdsApi
from rdsssl.rds.protocol import RdsApi
from rdsssl.rds.settings import ApiSettings
from rdsssl.store.castore import CaStore

__all__ = ["CHANGES_PENDING", "apply_cmd", "change_for", "finish", "plan_cmd"]

CHANGES_PENDING = 2
"""`plan --detailed-exitcode`: the plan has changes (as `terraform plan -detailed-exitcode`)."""


def change_for(
    app: App, opts: MutatingOptions, probe: ProbeOptions, *, fleet: bool = False
) -> InstanceChange:
    """The one-instance use case under the command's options (progress and notes to stderr;
    in a fleet every progress line names its instance)."""
    return InstanceChange(
        opts.apply_options(app.service_profile()),
        probe=probe,
        on_progress=progress_reporter(app),
        on_note=app.info,
        progress_for=(lambda iid: progress_reporter(app, iid)) if fleet else None,
    )


def finish(app: App, doc: dict[str, Any], failure: BaseException | None) -> int:
    """Hand over the result document; on failure the message goes to stderr, the document
    carries the error as well (`App.fail`), and the exit code is returned. A one-instance
    document is that instance's entry, whose `ok` / `exit_code` are the envelope's own."""
    app.result({k: v for k, v in doc.items() if k not in jsondoc.ENVELOPE_KEYS})
    if failure is None:
        return int(ExitCode.OK)
    return app.fail(failure)


# ------------------------------------------------------------------ the desired-state file


class ApiPool:
    """One API client per region (an entry's `region` overrides --region), all behind one
    limiter of the run's rate (`rdsssl.ops.rate.choose_rate`), whose cost `cost` reports."""

    def __init__(self, app: App, rate: Rate) -> None:
        self._app = app
        self._apis: dict[str | None, RdsApi] = {}
        self.rate = rate
        self._limiter = fleet.RateLimiter(rate.calls_per_second)  # one budget for all

    def cost(self, instances: int) -> dict[str, Any]:
        """What the rate limit cost the calls so far (a line on stderr, the JSON shape)."""
        cost = RateCost.of(self.rate, self._limiter, instances)
        self._app.info(cost.text())
        return cost.to_json()

    def get(self, region: str | None) -> RdsApi:
        """The client for `region` (None: the global --region)."""
        key = region or self._app.region
        if key not in self._apis:
            settings = ApiSettings.from_env(
                region=key, endpoint=self._app.endpoint, profile=self._app.profile
            )
            self._apis[key] = fleet.limited(AliyunRdsApi(settings), self._limiter)
        return self._apis[key]


def _file_option(*, required: bool) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    return click.option(
        "-f",
        "--file",
        "path",
        required=required,
        type=click.Path(path_type=Path, dir_okay=False),
        help="The desired-state file (rdsssl.toml).",
    )


def _targets(
    app: App, path: Path, passphrase_file: Path | None, *, rate: float | None
) -> tuple[list[Target], DesiredBuilder, ApiPool]:
    """Load the file and select its instances (each with the API client of its region)."""
    state = load_desired_state(path)
    apis = ApiPool(app, choose_rate(rate, desired=state, profile=app.service_profile()))

    def unlock_store(store: CaStore) -> None:
        unlock(app, store, passphrase_file)

    builder = DesiredBuilder(now=app.now(), unlock=unlock_store)
    targets = resolve(apis.get(None), state, region=app.region)
    if not targets:
        app.warn(f"{path}: no instance matches its [[instances]] entries")
    found = [
        Target(InstanceOutcome(iid, spec.source), apis.get(spec.region), spec)
        for iid, spec in targets
    ]
    return found, builder, apis


def _show(outcome: InstanceOutcome, *, echo: Callable[[str], None]) -> None:
    """An instance's plan (failures are reported by `_report_failures`)."""
    if outcome.preview is None:
        return
    for line in plan_lines(outcome.preview.plan):
        echo(line)
    if outcome.guard:
        echo(f"  lockout guard: {outcome.guard}; needs a successful --probe-* or --force")


def _report_failures(app: App, outcomes: Sequence[InstanceOutcome]) -> None:
    for o in outcomes:
        if o.error is not None:
            stage = "cannot plan" if o.preview is None else "failed"
            if isinstance(o.error, StalePlan):
                stage = "refused"
            app.warn(f"{o.instance_id}: {stage}: {error_json(o.error)['message']}")


@click.command("plan")
@_file_option(required=True)
@click.option(
    "--out",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Also write the plan to this file (mode 0600) for `rdsssl apply FILE`.",
)
@click.option(
    "--detailed-exitcode",
    is_flag=True,
    help="Exit 0 when nothing would change, 2 when changes are pending (as terraform plan).",
)
@pacing_options
@json_option
def plan_cmd(
    path: Path, out: Path | None, detailed_exitcode: bool, concurrency: int, rate: float | None
) -> int:
    """Show what `apply` would change, instance by instance (reads only; exit 0).

    With --out, the plan is also saved: `rdsssl apply FILE` then sends exactly it. With
    --detailed-exitcode: 0 no changes, 2 changes pending, errors as usual (3, 4, ...).

    \b
    Examples:
      rdsssl plan -f rdsssl.toml
      rdsssl plan -f rdsssl.toml --out plan.json --detailed-exitcode
    """
    app = get_app()
    targets, builder, apis = _targets(app, path, None, rate=rate)
    apply_fleet.plan_all(targets, builder, concurrency=concurrency, profile=app.service_profile())
    outcomes = [t.outcome for t in targets]
    for outcome in outcomes:
        _show(outcome, echo=app.out)
    _report_failures(app, outcomes)
    failed = apply_fleet.failure(outcomes)
    pending = sum(1 for o in outcomes if o.status == "planned")
    doc: dict[str, Any] = {
        "instances": [o.to_json() for o in outcomes],
        "summary": apply_fleet.summary(outcomes),
        "changes_pending": pending > 0,
        "rate": apis.cost(len(targets)),
    }
    if out is not None:
        if failed is not None:
            app.warn(f"{out}: not written: an instance could not be planned")
        else:
            _save(app, path, out, targets, builder)
        doc["plan_file"] = str(out) if failed is None else None
    code = finish(app, doc, failed)
    if code == int(ExitCode.OK) and detailed_exitcode and pending:
        return CHANGES_PENDING
    return code


def _save(
    app: App, path: Path, out: Path, targets: Sequence[Target], builder: DesiredBuilder
) -> None:
    """Write the plan file of `targets` (all planned without error)."""
    items = []
    for t in targets:
        assert t.spec is not None
        region = t.spec.region or app.region
        items.append(plan_file.planned_instance(t.outcome, t.spec, region, builder))
    saved = plan_file.PlanFile(
        created=app.now(),
        source=path.resolve(),
        source_sha256=plan_file.source_digest(path),
        instances=tuple(items),
    )
    plan_file.write(out, saved)
    app.info(f"plan saved to {out}: apply it with `rdsssl apply {out}`")


@click.command("apply")
@click.argument(
    "plan_path",
    metavar="[PLAN_FILE]",
    required=False,
    type=click.Path(path_type=Path, dir_okay=False),
)
@_file_option(required=False)
@mutating_options
@probe_options()
@skip_proof_option
@passphrase_file_option
@pacing_options
@json_option
def apply_cmd(
    plan_path: Path | None,
    path: Path | None,
    passphrase_file: Path | None,
    concurrency: int,
    rate: float | None,
    skip_proof: tuple[str, ...],
    **kwargs: Any,
) -> int:
    """Make every instance of the desired-state file match it, or apply a saved plan.

    Each instance gets at most one ModifyDBInstanceSSL call (CA, CRL and ACLs together: one
    restart); instances that already match get none. A CRL is signed only when an instance's
    CRL is missing, stale or misses a revocation (the CA key is unlocked then: --passphrase-file,
    $RDSSSL_CA_PASSPHRASE, or a prompt on a terminal).

    PLAN_FILE (from `rdsssl plan --out`): exactly that plan, without asking again; an instance
    that changed since the plan was made is refused (exit 6, nothing sent to it).

    \b
    Examples:
      rdsssl apply -f rdsssl.toml --dry-run
      rdsssl apply -f rdsssl.toml --yes --probe-user alice \\
          --probe-cert alice/client.crt --probe-key alice/client.key
      rdsssl apply plan.json
    """
    app = get_app()
    opts, probe = take_mutating(kwargs), take_probe(kwargs)
    if (plan_path is None) == (path is None):
        raise UsageError("give either a plan file (rdsssl apply plan.json) or -f rdsssl.toml")
    if plan_path is not None:
        return _apply_saved(
            app, plan_path, opts, probe, passphrase_file, concurrency=concurrency, rate=rate
        )
    assert path is not None
    targets, builder, apis = _targets(app, path, passphrase_file, rate=rate)
    apply_fleet.plan_all(
        targets, builder, audit=opts.audit, concurrency=concurrency, profile=app.service_profile()
    )
    outcomes = [t.outcome for t in targets]
    for outcome in outcomes:
        _show(outcome, echo=app.info)
    todo = sum(1 for o in outcomes if o.needs_run)
    asks = todo and not opts.dry_run and not opts.yes and app.interactive
    if asks and not click.confirm(f"Apply the changes to {todo} instance(s)?", err=True):
        raise click.Abort()
    return _run_and_report(
        app,
        opts,
        probe,
        targets,
        apis,
        {},
        concurrency=concurrency,
        skip_proof=frozenset(skip_proof),
    )


def _apply_saved(
    app: App,
    plan_path: Path,
    opts: MutatingOptions,
    probe: ProbeOptions,
    passphrase_file: Path | None,
    *,
    concurrency: int,
    rate: float | None,
) -> int:
    """`apply PLAN_FILE`: re-read each planned instance, refuse the stale ones, send the rest."""
    saved = plan_file_read.read(plan_path)
    apis = ApiPool(app, choose_rate(rate, profile=app.service_profile()))

    def unlock_store(store: CaStore) -> None:
        unlock(app, store, passphrase_file)

    days = plan_file.crl_days(saved)
    builder = DesiredBuilder(now=app.now(), unlock=unlock_store)
    if days is not None:
        builder.crl_days = days
    items = saved.pending
    if not items:
        app.info(f"{plan_path}: the plan has no changes")
    targets = [Target(InstanceOutcome(i.instance_id, i.source), apis.get(i.region)) for i in items]
    apply_fleet.recheck_all(targets, items, builder, concurrency=concurrency)
    for target in targets:
        _show(target.outcome, echo=app.info)
    extra = {"plan_file": str(plan_path)}
    return _run_and_report(app, opts, probe, targets, apis, extra, concurrency=concurrency)


def _run_and_report(
    app: App,
    opts: MutatingOptions,
    probe: ProbeOptions,
    targets: Sequence[Target],
    apis: ApiPool,
    extra: dict[str, Any],
    *,
    concurrency: int,
    skip_proof: frozenset[str] = frozenset(),
) -> int:
    """Apply the confirmed plans (not on a dry run), then the summary and the document."""
    if not opts.dry_run:
        apply_fleet.apply_all(
            change_for(app, opts, probe, fleet=True),
            targets,
            concurrency=concurrency,
            skip_proof=skip_proof,
        )
    outcomes = [t.outcome for t in targets]
    summary = apply_fleet.summary(outcomes)
    _report_failures(app, outcomes)
    counts = [f"{v} {k}" for k, v in summary.items() if k != "total"]
    app.info(f"summary: {summary['total']} instance(s), " + ", ".join(counts))
    doc = {
        "dry_run": opts.dry_run,
        **extra,
        "instances": [o.to_json() for o in outcomes],
        "summary": summary,
        "rate": apis.cost(len(outcomes)),
    }
    return finish(app, doc, apply_fleet.failure(outcomes))
