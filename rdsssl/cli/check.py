"""``rdsssl check``: expiry, revocation and drift checks with Nagios-style exit codes.

Exit codes: 0 all is well; 10 something needs action (every such finding is listed); an error
code when an instance or a store could not be checked (4 API error, 3 bad input, ...), which
wins over 10 because then nothing is known about that instance. Only Describe calls are made;
the CA key is never needed. ``--prometheus FILE`` writes a node_exporter textfile atomically
(temp file + rename), even when some instances failed (they get status 3).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import click

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
from rdsssl.errors import ExitCode, InputError, UsageError
from rdsssl.ops import fleet
from rdsssl.ops import plan as planning
from rdsssl.ops.checks import (
    InstanceReport,
    Severity,
    StoreReport,
    Thresholds,
    check_instance,
    check_store,
    prometheus_text,
)
from rdsssl.ops.crl_refresh import StoreCrl, store_crl
from rdsssl.ops.desired import DesiredBuilder
from rdsssl.ops.plan import Plan
from rdsssl.ops.renewal_plan import plan_renewal
from rdsssl.rds.api import RdsApi
from rdsssl.store.castore import CaStore
from rdsssl.store.fsutil import atomic_write

__all__ = ["Checker", "check_cmd"]


@dataclass
class Checker:
    """Runs the checks against the API and the local stores. `instance` is called from several
    fleet workers at once: the builder reads each store once, under its lock."""

    api: RdsApi | None
    now: datetime
    builder: DesiredBuilder
    thresholds: Thresholds
    ca_dirs: Sequence[Path] = ()
    drift_source: str = "the desired-state file"

    def instance(self, item: fleet.Item) -> InstanceReport:
        """Two Describe calls, then the judgement; with a desired-state entry also the drift
        (`planning.plan`, which signs nothing) and the revocations of its CA store."""
        assert self.api is not None
        iid, spec = (item, None) if isinstance(item, str) else item
        info = self.api.describe_instance(iid)
        ssl = self.api.describe_ssl(iid)
        dirs = list(self.ca_dirs)
        drift: Plan | None = None
        if spec is not None:
            if spec.ca_dir is not None and spec.crl and spec.ca_dir not in dirs:
                dirs.append(spec.ca_dir)
            drift = planning.plan(self.builder.for_spec(spec), ssl, instance_id=iid, now=self.now)
        stores: list[StoreCrl] = [store_crl(self.builder, d) for d in dirs]
        return check_instance(
            info,
            ssl,
            now=self.now,
            thresholds=self.thresholds,
            stores=stores,
            drift=drift,
            drift_source=self.drift_source,
        )

    def store(self, ca_dir: Path) -> StoreReport:
        """The local checks of one CA store (reading only: no key, no lock)."""
        with CaStore.open(ca_dir) as store:
            renewal = plan_renewal(store, before=self.thresholds.warn, now=self.now)
            return check_store(
                ca_dir,
                store.ca_cert,
                renewal,
                now=self.now,
                thresholds=self.thresholds,
                key=store.key_protection(),
            )


def _needs_action(report: InstanceReport | StoreReport) -> int:
    return int(ExitCode.NEEDS_ACTION if report.severity > Severity.OK else ExitCode.OK)


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


def _write_prometheus(path: Path, text: str) -> None:
    try:
        atomic_write(path, text.encode(), mode=0o644)
    except OSError as exc:
        raise InputError(f"cannot write the Prometheus file {path}: {exc.strerror}") from None


@click.command("check")
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
    type=click.Path(path_type=Path, dir_okay=False),
    help="Write a node_exporter textfile here (atomically).",
)
@restart_margin_option
@json_option
def check_cmd(
    ca_dirs: tuple[Path, ...],
    warn_days: int,
    crl_min_remaining: timedelta,
    prometheus_file: Path | None,
    restart_margin: timedelta,
    **kwargs: Any,
) -> int:
    """Check instances and CA stores for what needs action; change nothing.

    Per instance: client CA expiry, the CRL (present, covering every CA, nextUpdate), local
    revocations not yet live (with --ca-dir), the server certificate (RequireUpdate, expiry),
    a failed last change, and drift from a desired-state file (with -f). Per CA store: CA
    expiry and certificates due for renewal.

    Exit codes: 0 all well, 10 something needs action, 4 API error, 3 bad input.

    \b
    Examples:
      rdsssl check pgm-bp1example --ca-dir ./ca
      rdsssl check --tag env=prod --ca-dir ./ca --prometheus /var/lib/node_exporter/rdsssl.prom
      rdsssl check -f rdsssl.toml --json
    """
    app = get_app()
    opts: FleetOptions = take_fleet(kwargs)
    selecting = bool(opts.ids or opts.tags or opts.desired_file)
    if not selecting and not ca_dirs:
        raise UsageError("name instances (ID..., --tag KEY=VALUE, -f FILE) and/or --ca-dir DIR")
    now = app.now()
    thresholds = Thresholds(
        warn=timedelta(days=warn_days),
        crl_min_remaining=crl_min_remaining,
        restart_margin=restart_margin,
    )
    builder = DesiredBuilder(now=now, min_remaining=crl_min_remaining)
    api = opts.api(app) if selecting else None
    items = opts.select(app, api) if api is not None else []
    checker = Checker(
        api, now, builder, thresholds, ca_dirs, str(opts.desired_file or "the desired-state file")
    )
    found = fleet.run(
        items, checker.instance, concurrency=opts.concurrency, exit_code_of=_needs_action
    )
    spec_dirs = [i[1].ca_dir for i in items if not isinstance(i, str) and i[1].ca_dir]
    dirs = list(dict.fromkeys([*ca_dirs, *(d for d in spec_dirs if d is not None)]))
    local = fleet.run(
        [str(d) for d in dirs],
        lambda d: checker.store(Path(fleet.instance_id_of(d))),
        concurrency=1,
        exit_code_of=_needs_action,
    )
    everything: list[fleet.Outcome[Any]] = [*found, *local]
    code = fleet.worst_exit_code(everything)
    if prometheus_file is not None:
        text = prometheus_text(
            [(o.instance_id, o.result if o.ok else None) for o in found],
            [o.result for o in local if o.ok and o.result is not None],
            now=now,
        )
        _write_prometheus(prometheus_file, text)
        app.debug(f"wrote {prometheus_file}")

    def report_json(report: InstanceReport | StoreReport) -> dict[str, Any]:
        return report.to_dict()

    app.result(
        {
            "ok": code in (ExitCode.OK, ExitCode.NEEDS_ACTION),
            "exit_code": code,
            "needs_action": any(o.ok and o.exit_code == ExitCode.NEEDS_ACTION for o in everything),
            "instances": [outcome_json(o, report_json) for o in found],
            "stores": [outcome_json(o, report_json) for o in local],
            "prometheus": str(prometheus_file) if prometheus_file else None,
        }
    )
    verbose = app.verbosity > 0
    rows = [r for o in found for r in _rows(o.instance_id, o, verbose)]
    rows += [r for o in local for r in _rows(o.instance_id, o, verbose)]
    print_results(app, ("INSTANCE / STORE", "STATUS", "FINDING"), rows)
    counts = {
        "ok": sum(1 for o in everything if o.ok and o.exit_code == ExitCode.OK),
        "need action": sum(1 for o in everything if o.exit_code == ExitCode.NEEDS_ACTION),
    }
    app.info(summary_line(everything, counts).replace("instance(s)", "checked"))
    return code
