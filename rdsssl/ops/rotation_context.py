"""What every step of a ``rotate ca`` run shares: its options, the events it reports, and the
context the step modules work in (``rotation_converge``, ``rotation_reissue``,
``rotation_probe``), driven by ``rotation.Rotation``.

The context is the one place that saves the state (never on a dry run, never without a path)
and stamps times, so every step records its progress the same way.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from rdsssl.errors import UsageError
from rdsssl.ops import plan as planning
from rdsssl.ops.apply import ApplyOptions
from rdsssl.ops.audit import AuditLog
from rdsssl.ops.probe import ProbeResult
from rdsssl.ops.rotation_file import save
from rdsssl.ops.rotation_state import RotationState, Step
from rdsssl.pki import crl_policy, crypto
from rdsssl.rds import waiters
from rdsssl.rds.protocol import RdsApi
from rdsssl.rds.service_profile import ServiceProfile
from rdsssl.rds.waiters import Progress
from rdsssl.store.castore import CaStore
from rdsssl.store.records import format_time

__all__ = ["Context", "Event", "Options", "Prober"]

Prober = Callable[[str, str, Path, Path], ProbeResult]  # (instance, user, cert, key)


@dataclass(frozen=True)
class Options:
    """How a run behaves; the defaults suit a library caller that waits for every change."""

    dry_run: bool = False
    wait: bool = True
    force: bool = False
    timeout: float = waiters.DEFAULT_TIMEOUT
    audit: AuditLog | None = None
    days: int = crypto.DEFAULT_LEAF_DAYS
    crl_days: int = crypto.DEFAULT_CRL_DAYS
    probe_user: str | None = None
    probe_cert: Path | None = None
    probe_key: Path | None = None
    on_progress: Callable[[Progress], None] | None = None
    restart_margin: timedelta = crl_policy.DEFAULT_RESTART_MARGIN
    profile: ServiceProfile | None = None
    settle: float | None = None

    def apply_options(self) -> ApplyOptions:
        """The options of each instance's change."""
        return ApplyOptions(
            dry_run=self.dry_run,
            wait=self.wait,
            force=self.force,
            timeout=self.timeout,
            settle=self.settle,
            restart_margin=self.restart_margin,
            profile=self.profile,
            audit=self.audit,
        )


@dataclass(frozen=True)
class Event:
    """One thing a run did (or would do, on a dry run), reported as it happens.

    ``outcome``: changing (with the plan, before the call) | changed | unchanged | sent |
    would-change | reissued | adopted |
    would-reissue | refused (a certificate that cannot be reissued) | ok | failed |
    would-probe | skipped | done."""

    step: Step
    outcome: str
    instance: str | None = None
    user: str | None = None
    detail: str = ""
    request_id: str | None = None
    plan: planning.Plan | None = None

    def to_json(self) -> dict[str, Any]:
        """JSON-ready form (fingerprints only, never PEM)."""
        return {
            "step": self.step.value,
            "outcome": self.outcome,
            "instance": self.instance,
            "user": self.user,
            "detail": self.detail,
            "request_id": self.request_id,
            "plan": self.plan.to_dict() if self.plan else None,
        }


@dataclass(frozen=True)
class Context:
    """One run's stores, state and means. ``path`` None (dry runs) keeps the state in memory."""

    api: RdsApi
    old: CaStore
    new: CaStore
    state: RotationState
    path: Path | None
    options: Options
    clock: Callable[[], datetime]
    report: Callable[[Event], None]
    prober: Prober | None

    def at(self) -> str:
        """Now, as the state file writes times."""
        return format_time(self.clock())

    def save(self) -> None:
        """Write the state (not on a dry run, nor without a path)."""
        if self.path is not None and not self.options.dry_run:
            save(self.path, self.state)

    def emit(self, event: Event) -> None:
        """Report ``event`` to the caller."""
        self.report(event)

    def probe(self, iid: str, user: str, cert: Path, key: Path) -> ProbeResult:
        """A login to ``iid`` as ``user`` with ``cert``/``key`` through the caller's prober."""
        if self.prober is None:
            raise UsageError("this run has no way to probe instances (no prober given)")
        return self.prober(iid, user, cert, key)
