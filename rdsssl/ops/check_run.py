"""`rdsssl check` as a library call: `run_checks` judges the selected instances (through the
fleet runner, Describe calls only) and the CA stores (the `--ca-dir` ones and those of the
desired-state entries), and writes the Prometheus textfile when asked.

The CLI parses options into `CheckOptions`, selects the instances, calls `run_checks` and
renders the `CheckRun`. Exit codes: 0 all is well; 10 (`NEEDS_ACTION`) when a finding is not
ok; an error code when an instance or a store could not be checked (4 API error, 3 bad input,
...), which wins over 10 because then nothing is known about it. The Prometheus file
(`ops.check_prometheus`) is written atomically, even when some instances or stores failed
(their state is "unknown").

`nagios` turns a run into a Nagios plugin answer (``check --nagios``): exit 0 OK, 1 WARNING,
2 CRITICAL, 3 UNKNOWN, and the plugin output, ``RDSSSL STATE - text|perfdata`` on the first
line, then one line per finding that is not ok. The state is the worst one, with CRITICAL above
UNKNOWN (an instance that could not be checked) above WARNING: a known critical finding is the
most urgent, and an unknown instance may hide one, which a warning elsewhere must not mask.

CA store directories are resolved (`Path.resolve()`) before anything else, so `--ca-dir ./ca`
and a desired-state entry naming the same store are one store: checked once, one series.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path

from rdsssl.errors import ExitCode, UsageError
from rdsssl.models import CertStatus, InstanceSpec, SslState
from rdsssl.ops import fleet
from rdsssl.ops import plan as planning
from rdsssl.ops.check_findings import (
    CertExpiry,
    InstanceReport,
    Severity,
    StoreReport,
    Thresholds,
)
from rdsssl.ops.check_instance import check_instance
from rdsssl.ops.check_prometheus import (
    InstanceSample,
    StoreSample,
    check_registry,
    write_prometheus,
)
from rdsssl.ops.check_store import check_store
from rdsssl.ops.crl_refresh import StoreCrl, store_crl
from rdsssl.ops.desired import DesiredBuilder
from rdsssl.ops.plan import Plan
from rdsssl.ops.renewal_plan import plan_renewal
from rdsssl.rds.protocol import RdsApi
from rdsssl.store.castore import CaStore

__all__ = [
    "CheckOptions",
    "CheckRun",
    "Checker",
    "Nagios",
    "NagiosState",
    "nagios",
    "nagios_unknown",
    "run_checks",
]


@dataclass(frozen=True)
class CheckOptions:
    """Everything one `check` run decides with, besides the instances."""

    ca_dirs: tuple[Path, ...] = ()
    thresholds: Thresholds = field(default_factory=Thresholds)
    drift_source: str = "the desired-state file"
    concurrency: int = fleet.DEFAULT_CONCURRENCY
    prometheus_file: Path | None = None
    region: str = ""  # the default region: the label of an instance that could not be checked

    def check(self, *, selecting: bool) -> None:
        """A usage error unless there is something to check."""
        if not selecting and not self.ca_dirs:
            raise UsageError("name instances (ID..., --tag KEY=VALUE, -f FILE) and/or --ca-dir DIR")


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
            if spec.ca_dir is not None and spec.crl and spec.ca_dir.resolve() not in dirs:
                dirs.append(spec.ca_dir.resolve())
            drift = self._drift(spec, ssl, iid)
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

    def _drift(self, spec: InstanceSpec, ssl: SslState, iid: str) -> Plan | None:
        """What `apply -f` would change, server SSL included (`ssl` in the entry); None for an
        instance with SSL off that the entry does not switch on (the ssl-off finding says
        what to do, and a plan for it cannot name an endpoint)."""
        if not ssl.ssl_enabled and spec.ssl is None:
            return None
        assert self.api is not None
        desired, _ = self.builder.server_with(self.builder.for_spec(spec), spec, self.api, iid)
        return planning.plan(desired, ssl, instance_id=iid, now=self.now)

    def store(self, ca_dir: Path) -> StoreReport:
        """The local checks of one CA store (reading only: no key, no lock)."""
        with CaStore.open(ca_dir) as store:
            renewal = plan_renewal(store, before=self.thresholds.warn, now=self.now)
            report = check_store(
                ca_dir,
                store.ca_cert,
                renewal,
                now=self.now,
                thresholds=self.thresholds,
                key=store.key_protection(),
            )
            return replace(report, certificates=_valid_certificates(store, self.now))


def _valid_certificates(store: CaStore, now: datetime) -> tuple[CertExpiry, ...]:
    """The store's unrevoked, unexpired certificates. The inventory offers no streaming read
    (`CaStore.certificates` returns whole rows), so this reads them all once; only the three
    exported values are kept."""
    return tuple(
        CertExpiry(r.cn, r.serial_hex, r.not_after)
        for r in store.certificates()
        if r.status is CertStatus.VALID and r.not_after > now
    )


@dataclass(frozen=True)
class CheckRun:
    """The outcome of a run: one `fleet.Outcome` per instance (selection order) and per CA
    store, and the Prometheus file written, if any."""

    instances: list[fleet.Outcome[InstanceReport]]
    stores: list[fleet.Outcome[StoreReport]]
    prometheus_file: Path | None = None

    @property
    def outcomes(self) -> list[fleet.Outcome[InstanceReport] | fleet.Outcome[StoreReport]]:
        return [*self.instances, *self.stores]

    @property
    def exit_code(self) -> int:
        return fleet.worst_exit_code(self.outcomes)

    @property
    def needs_action(self) -> bool:
        return any(o.ok and o.exit_code == ExitCode.NEEDS_ACTION for o in self.outcomes)

    def counts(self) -> dict[str, int]:
        """How many instances and stores are ok, and how many need action."""
        return {
            "ok": sum(1 for o in self.outcomes if o.ok and o.exit_code == ExitCode.OK),
            "need action": sum(1 for o in self.outcomes if o.exit_code == ExitCode.NEEDS_ACTION),
        }


def _needs_action(report: InstanceReport | StoreReport) -> int:
    return int(ExitCode.NEEDS_ACTION if report.severity > Severity.OK else ExitCode.OK)


def run_checks(
    api: RdsApi | None,
    items: Sequence[fleet.Item],
    options: CheckOptions,
    *,
    now: datetime,
) -> CheckRun:
    """Check `items` (an api is needed when there are any) and every CA store named by the
    options or by a desired-state entry; write the Prometheus file when asked."""
    builder = DesiredBuilder(now=now, min_remaining=options.thresholds.crl_min_remaining)
    ca_dirs = _unique_dirs(options.ca_dirs)
    checker = Checker(api, now, builder, options.thresholds, ca_dirs, options.drift_source)
    found = fleet.run(
        items, checker.instance, concurrency=options.concurrency, exit_code_of=_needs_action
    )
    spec_dirs = [i[1].ca_dir for i in items if not isinstance(i, str) and i[1].ca_dir]
    dirs = _unique_dirs([*ca_dirs, *(d for d in spec_dirs if d is not None)])
    local = fleet.run(
        [str(d) for d in dirs],
        lambda d: checker.store(Path(fleet.instance_id_of(d))),
        concurrency=1,
        exit_code_of=_needs_action,
    )
    if options.prometheus_file is not None:
        regions = {fleet.instance_id_of(i): _region_of(i, options.region) for i in items}
        registry = check_registry(
            [
                InstanceSample(o.instance_id, regions.get(o.instance_id, options.region), o.result)
                for o in found
            ],
            [StoreSample(Path(o.instance_id), o.result) for o in local],
            now=now,
        )
        write_prometheus(options.prometheus_file, registry)
    return CheckRun(found, local, options.prometheus_file)


def _unique_dirs(dirs: Sequence[Path]) -> tuple[Path, ...]:
    """Resolved, in order, each store once."""
    return tuple(dict.fromkeys(d.resolve() for d in dirs))


def _region_of(item: fleet.Item, default: str) -> str:
    return default if isinstance(item, str) else (item[1].region or default)


class NagiosState(enum.IntEnum):
    """A Nagios plugin's exit code."""

    OK = 0
    WARNING = 1
    CRITICAL = 2
    UNKNOWN = 3


_NAGIOS_ORDER = (NagiosState.OK, NagiosState.WARNING, NagiosState.UNKNOWN, NagiosState.CRITICAL)


@dataclass(frozen=True)
class Nagios:
    """A plugin answer: the exit code and the output lines (the first one is the status)."""

    state: NagiosState
    lines: tuple[str, ...]

    @property
    def output(self) -> str:
        return "\n".join(self.lines)


def _plain(text: str) -> str:
    """One line without "|", which starts the performance data in a plugin's output."""
    return " ".join(text.replace("|", "/").split())


def _state_of(outcome: fleet.Outcome[InstanceReport] | fleet.Outcome[StoreReport]) -> NagiosState:
    if not outcome.ok or outcome.result is None:
        return NagiosState.UNKNOWN
    return NagiosState(int(outcome.result.severity))


def nagios(run: CheckRun) -> Nagios:
    """The plugin answer for a run (see the module docstring)."""
    states = [(_state_of(o), o) for o in run.outcomes]
    count = {s: sum(1 for state, _ in states if state is s) for s in NagiosState}
    worst = max((s for s, _ in states), key=_NAGIOS_ORDER.index, default=NagiosState.OK)
    details: list[str] = []
    for state, outcome in sorted(states, key=lambda p: -_NAGIOS_ORDER.index(p[0])):
        if state is NagiosState.UNKNOWN:
            error = outcome.error
            details.append(f"{outcome.instance_id}: unknown: {error if error else 'interrupted'}")
        elif outcome.result is not None:
            details += [
                f"{outcome.instance_id}: {f.severity.name.lower()}: {f.message}"
                for f in sorted(outcome.result.findings, key=lambda f: -f.severity)
                if f.severity > Severity.OK
            ]
    details = [_plain(d) for d in details]
    total = len(states)
    parts = [f"{count[s]} {s.name.lower()}" for s in reversed(_NAGIOS_ORDER[1:]) if count[s]]
    text = f"{total} checked, " + ", ".join(parts) if parts else f"{total} checked, all well"
    if details:
        text += f"; {details[0]}"
    perfdata = f"checked={total};;;0 " + " ".join(
        f"{s.name.lower()}={count[s]};;;0" for s in _NAGIOS_ORDER
    )
    return Nagios(worst, (f"RDSSSL {worst.name} - {text}|{perfdata}", *details))


def nagios_unknown(message: str) -> Nagios:
    """The plugin answer when the check could not run at all (bad options, no instance)."""
    return Nagios(NagiosState.UNKNOWN, (f"RDSSSL UNKNOWN - {_plain(message)}",))
