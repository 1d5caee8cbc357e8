"""``rdsssl crl refresh``: upload a fresh CRL where one is due (cloud). The command parses its
options into `rdsssl.ops.crl_fleet.RefreshOptions`, runs `refresh_all` and renders the result:
progress as each instance finishes, one JSON document, a table for fleets."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import click

from rdsssl.cli.app import App
from rdsssl.cli.cloud import mutating_options, plan_lines, take_mutating
from rdsssl.cli.common import (
    Duration,
    get_app,
    json_option,
    passphrase_file_option,
    unlock,
    wait_lock_option,
)
from rdsssl.cli.fleet_opts import (
    error_json,
    error_text,
    fleet_options,
    outcome_json,
    print_results,
    progress_for,
    summary_line,
    take_fleet,
)
from rdsssl.cli.last_success import last_success
from rdsssl.ops import crl_refresh, fleet
from rdsssl.ops.crl_fleet import FleetRefresh, RefreshOptions, refresh_all
from rdsssl.ops.crl_refresh import RefreshResult, Window
from rdsssl.ops.desired import DesiredBuilder
from rdsssl.rds import service_profile

__all__ = ["refresh"]

_MESSAGES = {
    "current": "the CRL is current; nothing to do",
    "refreshed": "uploaded a fresh CRL ({entries}, {size} bytes); the instance restarted: {reason}",
    "sent": "uploaded a fresh CRL ({entries}, {size} bytes), not waiting (--no-wait): {reason}",
    "would-refresh": "would upload a fresh CRL ({entries}) and RESTART the instance: {reason}",
    "deferred": "due but outside the window {window}: {reason}; it runs inside the window, "
    "or now with --now",
    "skipped": "{reason}",
}


def _describe(result: RefreshResult, window: Window | None) -> str:
    entries = f"{result.entries} entry" if result.entries == 1 else f"{result.entries} entries"
    return _MESSAGES[result.status].format(
        entries=entries, size=result.size, reason=result.reason, window=window
    )


def _reporter(
    app: App, window: Window | None, *, many: bool
) -> Callable[[fleet.Outcome[RefreshResult]], None]:
    """As each instance finishes (a fleet of restarts takes a while); in a fleet, the
    instances with nothing to do are listed only at -v and in the final table."""

    def report(outcome: fleet.Outcome[RefreshResult]) -> None:
        result, iid = outcome.result, outcome.instance_id
        if result is None:
            app.warn(f"{iid}: " + (error_text(outcome.error) if outcome.error else "interrupted"))
            return
        if result.status == "would-refresh" and result.applied is not None:
            for line in plan_lines(result.applied.plan):
                app.info(line)
        say = app.debug if many and result.status in ("current", "skipped") else app.info
        say(f"{iid}: {_describe(result, window)}")
        for warning in result.warnings:
            app.warn(f"{iid}: {warning}")

    return report


def _render(app: App, run: FleetRefresh, window: Window | None, *, many: bool) -> int:
    """The JSON document, the table of a fleet and the summary line; returns the exit code."""
    code, counts = run.exit_code, run.counts()
    instances = [outcome_json(o, lambda r: r.to_dict()) for o in run.outcomes]
    failed = sum(1 for o in run.outcomes if not o.ok)
    summary = {"total": len(run.outcomes), **counts, **({"failed": failed} if failed else {})}
    app.result({"summary": summary, "instances": instances})
    if many:
        rows = [
            (
                o.instance_id,
                o.result.status if o.result else "error",
                _describe(o.result, window) if o.result else error_json(o.error, 0)["message"],
            )
            for o in run.outcomes
        ]
        print_results(app, ("INSTANCE", "RESULT", "DETAIL"), rows)
    app.info(summary_line(run.outcomes, counts))
    return code


@click.command("refresh")
@last_success("crl-refresh")
@fleet_options
@click.option(
    "--ca-dir",
    "ca_dirs",
    multiple=True,
    envvar="RDSSSL_CA_DIR",
    type=click.Path(path_type=Path, file_okay=False),
    help="CA store that signs the CRL (repeatable, e.g. both stores during a CA "
    "rotation; env RDSSSL_CA_DIR). Default with -f: each entry's ca_dir.",
)
@click.option(
    "--min-remaining",
    type=Duration(),
    default="30d",
    show_default=True,
    help="Refresh when the instance's CRL reaches nextUpdate within this.",
)
@click.option(
    "--days",
    type=click.IntRange(min=1),
    default=crl_refresh.DEFAULT_CRL_DAYS,
    show_default=True,
    help="Validity of a new CRL in days (months: each upload restarts the instance).",
)
@click.option(
    "--window",
    metavar="HH:MM-HH:MM",
    help="Maintenance window in local time (may wrap midnight); outside it a due "
    "refresh is deferred (exit 0).",
)
@click.option("--now", "ignore_window", is_flag=True, help="Ignore --window: restart now.")
@click.option(
    "--max-size",
    type=click.IntRange(min=1),
    default=service_profile.CRL_SIZE_BUDGET,
    show_default=True,
    metavar="BYTES",
    help="Warn when the uploaded CRL is larger than this.",
)
@passphrase_file_option
@wait_lock_option
@mutating_options
@json_option
def refresh(
    ca_dirs: tuple[Path, ...],
    min_remaining: timedelta,
    days: int,
    window: str | None,
    ignore_window: bool,
    max_size: int,
    passphrase_file: Path | None,
    wait_lock: float,
    **kwargs: Any,
) -> int:
    """Upload a fresh CRL where one is due; otherwise do nothing (exit 0).

    Due: the instance's CRL reaches nextUpdate within --min-remaining, a revocation in
    the CA store is not on it yet, or it does not cover every CA of the instance's
    bundle. Each upload RESTARTS the instance (~3 min), hence --window.

    Exit codes: 0 done or nothing due (also when deferred by --window), 3 bad input,
    4 API error, 5 the change failed or timed out, 7 CA store locked.

    \b
    Examples:
      rdsssl crl refresh pgm-bp1example --ca-dir ./ca --window 02:00-04:00
      rdsssl crl refresh --tag env=prod --ca-dir ./ca --yes --now
      rdsssl crl refresh -f rdsssl.toml --dry-run
    """
    app, mutating, selection = get_app(), take_mutating(kwargs), take_fleet(kwargs)
    win = Window.parse(window) if window else None
    options = RefreshOptions(
        ca_dirs=ca_dirs, min_remaining=min_remaining, days=days, window=win,
        ignore_window=ignore_window, max_size=max_size, dry_run=mutating.dry_run,
        wait=not mutating.no_wait, timeout=mutating.timeout,
        restart_margin=mutating.restart_margin, audit=mutating.audit,
        profile=app.service_profile(), concurrency=selection.concurrency,
    )  # fmt: skip
    options.check(from_file=selection.desired_file is not None)
    now = app.now()
    builder = DesiredBuilder(
        now=now,
        unlock=lambda store: unlock(app, store, passphrase_file),
        crl_days=days,
        min_remaining=min_remaining,
        wait_lock=wait_lock,
    )
    api = selection.api(app)
    items = selection.select(app, api)
    many = len(items) > 1

    def confirm(due: int) -> bool:  # a terminal: the plans are shown, now ask once
        question = f"Upload a fresh CRL to {due} instance(s)? Each one restarts."
        return click.confirm(question, default=False, err=True)

    asking = app.interactive and not (mutating.yes or mutating.dry_run)  # cron never asks
    run = refresh_all(
        api, items, builder, options, now=now, confirm=confirm if asking else None,
        progress_for=lambda iid: progress_for(app, iid, many=many),
        on_done=_reporter(app, win, many=many),
    )  # fmt: skip
    if run.declined:
        app.info("nothing changed")
        return 0
    return _render(app, run, win, many=many)
