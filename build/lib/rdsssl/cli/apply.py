"""``rdsssl plan | apply -f rdsssl.toml``: parse the options, call the library, render.

The use cases live in the library: `rdsssl.ops.apply_fleet` plans every instance (reads only,
concurrently), and after the one confirmation here applies each one with the one-instance change
(`rdsssl.ops.instance_change.InstanceChange`), `--concurrency` at a time, all API calls sharing
one `--rate` budget. A failing instance never stops the others; the exit code is the highest
exit code among the failures (0 when all succeeded). The instance commands share `finish` and
`change_for` from here.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import click

from rdsssl.cli.app import App
from rdsssl.cli.cloud import (
    MutatingOptions,
    mutating_options,
    plan_lines,
    probe_options,
    progress_reporter,
    take_mutating,
    take_probe,
)
from rdsssl.cli.common import get_app, json_option, passphrase_file_option, unlock
from rdsssl.cli.fleet_opts import pacing_options
from rdsssl.errors import ExitCode
from rdsssl.ops import apply_fleet, fleet
from rdsssl.ops.apply_fleet import Target
from rdsssl.ops.config import load_desired_state
from rdsssl.ops.desired import DesiredBuilder, resolve
from rdsssl.ops.instance_change import InstanceChange, InstanceOutcome, error_json
from rdsssl.ops.probe_options import ProbeOptions
from rdsssl.rds.api import AliyunRdsApi, RdsApi
from rdsssl.rds.settings import ApiSettings
from rdsssl.store.castore import CaStore

__all__ = ["apply_cmd", "change_for", "finish", "plan_cmd"]


def change_for(app: App, opts: MutatingOptions, probe: ProbeOptions) -> InstanceChange:
    """The one-instance use case under the command's options (progress and notes to stderr)."""
    return InstanceChange(
        opts.apply_options(app.service_profile()),
        probe=probe,
        on_progress=progress_reporter(app),
        on_note=app.info,
    )


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


def _targets(
    app: App, path: Path, passphrase_file: Path | None, *, rate: float
) -> tuple[list[Target], DesiredBuilder]:
    """Load the file and select its instances (each with the API client of its region)."""
    state = load_desired_state(path)
    apis = ApiPool(app, rate)

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
    return found, builder


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
    targets, builder = _targets(app, path, None, rate=rate)
    apply_fleet.plan_all(targets, builder, concurrency=concurrency)
    outcomes = [t.outcome for t in targets]
    for outcome in outcomes:
        _show(outcome, echo=app.out)
    _report_failures(app, outcomes)
    doc = {"instances": [o.to_json() for o in outcomes], "summary": apply_fleet.summary(outcomes)}
    return finish(app, doc, apply_fleet.failure(outcomes))


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
    targets, builder = _targets(app, path, passphrase_file, rate=rate)
    apply_fleet.plan_all(targets, builder, audit=opts.audit, concurrency=concurrency)
    outcomes = [t.outcome for t in targets]
    for outcome in outcomes:
        _show(outcome, echo=app.info)
    todo = sum(1 for o in outcomes if o.needs_run)
    asks = todo and not opts.dry_run and not opts.yes and app.interactive
    if asks and not click.confirm(f"Apply the changes to {todo} instance(s)?", err=True):
        raise click.Abort()
    if not opts.dry_run:
        apply_fleet.apply_all(change_for(app, opts, probe), targets, concurrency=concurrency)
    summary = apply_fleet.summary(outcomes)
    _report_failures(app, outcomes)
    app.info("summary: " + ", ".join(f"{v} {k}" for k, v in summary.items()))
    doc = {
        "dry_run": opts.dry_run,
        "instances": [o.to_json() for o in outcomes],
        "summary": summary,
    }
    return finish(app, doc, apply_fleet.failure(outcomes))
