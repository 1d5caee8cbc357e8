"""`crl refresh` over a fleet: the selected instances, each refreshed by `crl_refresh.refresh`
through the fleet runner, with one optional confirmation between the plans and the uploads.

The CLI parses options into `RefreshOptions`, calls `refresh_all`, renders the outcomes.
Each CA store is read once and signs at most one CRL per run, whatever the number of instances
(the `DesiredBuilder` caches both).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from rdsssl.errors import UsageError
from rdsssl.ops import crl_refresh, fleet
from rdsssl.ops.audit import AuditLog
from rdsssl.ops.crl_refresh import RefreshResult, Window
from rdsssl.ops.desired import DesiredBuilder
from rdsssl.pki import crl_policy
from rdsssl.rds import service_profile, waiters
from rdsssl.rds.protocol import RdsApi
from rdsssl.rds.service_profile import ServiceProfile
from rdsssl.rds.waiters import Progress

__all__ = ["FleetRefresh", "RefreshOptions", "refresh_all"]


@dataclass(frozen=True)
class RefreshOptions:
    """Everything one `crl refresh` run decides with, besides the instances."""

    ca_dirs: tuple[Path, ...] = ()
    min_remaining: timedelta = crl_refresh.DEFAULT_MIN_REMAINING
    days: int = crl_refresh.DEFAULT_CRL_DAYS
    window: Window | None = None
    ignore_window: bool = False
    max_size: int = service_profile.CRL_SIZE_BUDGET
    dry_run: bool = False
    wait: bool = True
    timeout: float = waiters.DEFAULT_TIMEOUT
    restart_margin: timedelta = crl_policy.DEFAULT_RESTART_MARGIN
    audit: AuditLog | None = None
    profile: ServiceProfile | None = None
    concurrency: int = fleet.DEFAULT_CONCURRENCY

    def check(self, *, from_file: bool) -> None:
        """Usage errors before anything is read: a CRL that outlives the refresh threshold,
        and a store to sign with."""
        if timedelta(days=self.days) <= self.min_remaining:
            raise UsageError(
                f"--days {self.days} must be longer than --min-remaining, or every run would "
                "upload again"
            )
        if not (self.ca_dirs or from_file):
            raise UsageError("crl refresh needs the CA store that signs: --ca-dir DIR (or -f FILE)")


@dataclass
class FleetRefresh:
    """The outcome of a run: one `fleet.Outcome` per instance, in selection order, and whether
    the person at the terminal declined the uploads (nothing was changed then)."""

    outcomes: list[fleet.Outcome[RefreshResult]]
    declined: bool = False

    @property
    def exit_code(self) -> int:
        return fleet.worst_exit_code(self.outcomes)

    def counts(self) -> dict[str, int]:
        """How many instances ended in each status (`current`, `refreshed`, ...)."""
        counts: dict[str, int] = {}
        for outcome in self.outcomes:
            if outcome.result is not None:
                counts[outcome.result.status] = counts.get(outcome.result.status, 0) + 1
        return counts


def _skipped(iid: str, why: str) -> RefreshResult:
    return RefreshResult(iid, "skipped", why, 0, None, (), None)


def refresh_all(
    api: RdsApi,
    items: Sequence[fleet.Item],
    builder: DesiredBuilder,
    options: RefreshOptions,
    *,
    now: datetime,
    confirm: Callable[[int], bool] | None = None,
    progress_for: Callable[[str], Callable[[Progress], None] | None] = lambda _iid: None,
    on_done: Callable[[fleet.Outcome[RefreshResult]], None] | None = None,
) -> FleetRefresh:
    """Refresh every selected instance's CRL where due. With `confirm` (a terminal), every
    instance is planned first and `confirm(number due)` decides whether the due ones upload."""
    cancel = threading.Event()

    def one(item: fleet.Item, *, dry_run: bool) -> RefreshResult:
        iid = fleet.instance_id_of(item)
        dirs = options.ca_dirs
        if not dirs and not isinstance(item, str):  # -f without --ca-dir: the entry's store
            spec = item[1]
            if not spec.crl or spec.ca_dir is None:
                return _skipped(iid, f"skipped: {spec.source} sets no crl = true")
            dirs = (spec.ca_dir,)
        return crl_refresh.refresh(
            api,
            iid,
            [crl_refresh.store_crl(builder, d) for d in dirs],  # the builder reads each once
            now=now,
            min_remaining=options.min_remaining,
            window=options.window,
            ignore_window=options.ignore_window,
            max_size=options.max_size,
            dry_run=dry_run,
            wait=options.wait,
            timeout=options.timeout,
            on_progress=progress_for(iid),
            sleep=fleet.sleeper(cancel),
            audit=options.audit,
            restart_margin=options.restart_margin,
            profile=options.profile,
        )

    def run(batch: Sequence[fleet.Item], dry_run: bool) -> list[fleet.Outcome[RefreshResult]]:
        return fleet.run(
            batch,
            lambda item: one(item, dry_run=dry_run),
            concurrency=options.concurrency,
            on_done=on_done,
            cancel=cancel,
        )

    asking = confirm is not None and not options.dry_run
    outcomes = run(items, options.dry_run or asking)
    due = [n for n, o in enumerate(outcomes) if o.result and o.result.status == "would-refresh"]
    if not (asking and due):
        return FleetRefresh(outcomes)
    assert confirm is not None
    if not confirm(len(due)):
        return FleetRefresh(outcomes, declined=True)
    for n, outcome in zip(due, run([items[n] for n in due], False), strict=True):
        outcomes[n] = outcome
    return FleetRefresh(outcomes)
