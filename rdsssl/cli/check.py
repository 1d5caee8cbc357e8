"""``rdsssl check``: expiry, revocation and drift checks, for cron and for monitoring.

Exit codes: 0 all is well; 10 something needs action (every such finding is listed); an error
code when an instance or a store could not be checked (4 API error, 3 bad input, ...), which
wins over 10 because then nothing is known about that instance. With ``--nagios`` it is a
Nagios plugin instead (`rdsssl.ops.check_run.nagios`): 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN
(every error of ours is UNKNOWN) and the plugin output on stdout. Only Describe calls are made;
the CA key is never needed. ``--prometheus FILE`` writes a node_exporter textfile atomically
(``rdsssl.ops.check_prometheus``), even when some instances failed (their state is "unknown"),
and, when the check ran (exit 0 or 10), the last success next to it
(``rdsssl.ops.last_success``).
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import click

from rdsssl.cli.app import App
from rdsssl.cli.common import Duration, get_app, json_option, restart_margin_option
from rdsssl.cli.fleet_opts import (
    FleetOptions,
    error_text,
    fleet_options,
    outcome_json,
    print_results,
    summary_line,
    take_fleet,
)
from rdsssl.cli.last_success import last_success
from rdsssl.errors import ExitCode, RdsSslError
from rdsssl.ops import fleet
from rdsssl.ops.check_findings import InstanceReport, Severity, StoreReport, Thresholds
from rdsssl.ops.check_run import (
    CheckOptions,
    CheckRun,
    Nagios,
    NagiosState,
    nagios,
    nagios_unknown,
    run_checks,
)
from rdsssl.ops.last_success import record_success

__all__ = ["check_cmd"]


def _rows(name: str, outcome: fleet.Outcome[Any], verbose: bool) -> list[tuple[str, str, str]]:
    """Table rows for one instance or store: its non-ok findings (all with -v)."""
    if not outcome.ok:
        text = error_text(outcome.error) if outcome.error else "interrupted"
        return [(name, "error", text)]
    report: InstanceReport | StoreReport | None = outcome.result
    assert report is not None
    shown = [f for f in report.findings if verbose or f.severity > Severity.OK]
    if not shown:
        return [(name, "ok", "all checks passed")]
    status = report.severity.name.lower()
    return [
        (
            name if n == 0 else "",
            status if n == 0 else "",
            f"{f.severity.name.lower()}: {f.message}",
        )
        for n, f in enumerate(shown)
    ]


def _report_json(report: InstanceReport | StoreReport) -> dict[str, Any]:
    return report.to_dict()


def _render(app: App, run: CheckRun) -> None:
    """The JSON document, the table (non-ok findings; all with -v) and the summary line."""
    app.result(
        {
            "needs_action": run.needs_action,
            "instances": [outcome_json(o, _report_json) for o in run.instances],
            "stores": [outcome_json(o, _report_json) for o in run.stores],
            "prometheus": str(run.prometheus_file) if run.prometheus_file else None,
        }
    )
    verbose = app.verbosity > 0
    rows = [r for o in run.outcomes for r in _rows(o.instance_id, o, verbose)]
    print_results(app, ("INSTANCE / STORE", "STATUS", "FINDING"), rows)
    app.info(summary_line(run.outcomes, run.counts()).replace("instance(s)", "checked"))


@click.command("check")
@last_success("check", success=(ExitCode.OK, ExitCode.NEEDS_ACTION), own_option=False)
@fleet_options
@click.option(
    "--ca-dir",
    "ca_dirs",
    multiple=True,
    envvar="RDSSSL_CA_DIR",
    type=click.Path(path_type=Path, file_okay=False),
    help="Also check this CA store (repeatable): CA expiry, renewals, and its revocations "
    "against each instance's CRL (env RDSSSL_CA_DIR).",
)
@click.option(
    "--warn-days",
    type=click.IntRange(min=1),
    default=30,
    show_default=True,
    help="Warn when a CA or certificate expires within this many days (critical within 7).",
)
@click.option(
    "--crl-min-remaining",
    type=Duration(),
    default="30d",
    show_default=True,
    help="Warn when an instance's CRL reaches nextUpdate within this (e.g. 30d).",
)
@click.option(
    "--prometheus",
    "prometheus_file",
    envvar="RDSSSL_PROMETHEUS_FILE",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Write a node_exporter textfile here (atomically), and the time of the last "
    "successful check next to it (env RDSSSL_PROMETHEUS_FILE).",
)
@click.option(
    "--nagios",
    "as_nagios",
    is_flag=True,
    help="Be a Nagios plugin: exit 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN, and print "
    "'RDSSSL STATE - summary|perfdata' then the findings.",
)
@restart_margin_option
@json_option
def check_cmd(
    ca_dirs: tuple[Path, ...],
    warn_days: int,
    crl_min_remaining: timedelta,
    prometheus_file: Path | None,
    as_nagios: bool,
    restart_margin: timedelta,
    **kwargs: Any,
) -> int:
    """Check instances and CA stores for what needs action; change nothing.

    Per instance: client CA expiry, the CRL (present, covering every CA, nextUpdate), local
    revocations not yet live (with --ca-dir), the server certificate (RequireUpdate, expiry),
    a failed last change, and drift from a desired-state file (with -f). Per CA store: CA
    expiry and certificates due for renewal.

    Exit codes: 0 all well, 10 something needs action, 4 API error, 3 bad input. With
    --nagios: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN (Nagios / Icinga / NRPE plugin).

    \b
    Examples:
      rdsssl check pgm-bp1example --ca-dir ./ca
      rdsssl check --tag env=prod --ca-dir ./ca --nagios
      rdsssl check --tag env=prod --ca-dir ./ca --prometheus /var/lib/node_exporter/rdsssl.prom
      rdsssl check -f rdsssl.toml --json
    """
    app = get_app()
    opts: FleetOptions = take_fleet(kwargs)
    options = CheckOptions(
        ca_dirs=ca_dirs,
        thresholds=Thresholds(
            warn=timedelta(days=warn_days),
            crl_min_remaining=crl_min_remaining,
            restart_margin=restart_margin,
        ),
        drift_source=str(opts.desired_file or "the desired-state file"),
        concurrency=opts.concurrency,
        prometheus_file=prometheus_file,
        region=app.region or "",
    )
    if not as_nagios:
        run = _check(app, opts, options)
        _render(app, run)
        return run.exit_code
    if app.json:
        return _answer(nagios_unknown("--nagios and --json exclude each other"))
    try:
        answer = nagios(_check(app, opts, options))
    except RdsSslError as exc:
        return _answer(nagios_unknown(str(exc)))
    if prometheus_file is not None and answer.state in (NagiosState.WARNING, NagiosState.CRITICAL):
        _record_check_success(app, prometheus_file)  # the check ran (exit 0: the decorator)
    return _answer(answer)


def _check(app: App, opts: FleetOptions, options: CheckOptions) -> CheckRun:
    """Select the instances and run the checks."""
    selecting = bool(opts.ids or opts.tags or opts.desired_file)
    options.check(selecting=selecting)
    api = opts.api(app) if selecting else None
    items = opts.select(app, api) if api is not None else []
    run = run_checks(api, items, options, now=app.now())
    if options.prometheus_file is not None:
        app.debug(f"wrote {options.prometheus_file}")
    return run


def _answer(answer: Nagios) -> int:
    """The plugin output on stdout (its first line is the status); the plugin's exit code."""
    click.echo(answer.output)
    return int(answer.state)


def _record_check_success(app: App, prometheus_file: Path) -> None:
    """What `last_success` does for exit 0 and 10, for the plugin's WARNING and CRITICAL."""
    try:
        record_success(prometheus_file, "check", now=app.now())
    except RdsSslError as exc:
        app.warn(f"the check run succeeded, but its last success was not recorded: {exc}")
