"""What ``cert renew`` would renew: the renewal window and the plan it gives.

Due: per user only the newest unrevoked certificate counts (the last one recorded for the CN),
so a renewal supersedes what it renewed and a re-run right after it finds nothing due. Window:
``before`` (``not_after - now <= D``) or ``at`` (elapsed fraction of the validity ``>= P``; a
row with no known start, from an openssl index.txt, counts as due). The old certificate stays
valid (clients switch at their own pace; revoking needs a CRL upload, i.e. a restart). One that
already ends with the CA is "blocked": re-issuing cannot extend it. Revoke to stop renewing.
One user cannot stop the others: a row whose CN is no valid user name (an old store's, from
before the rule), whose ``OUT_ROOT/USER`` is a symlink or holds a link rdsssl did not make, or
whose key type fails over TLS 1.2 (unless forced) is "skipped" with the reason (the caller warns
and exits non-zero), and everyone else is renewed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography import x509

from rdsssl.errors import ConfigError, CryptoError, InputError, UsageError
from rdsssl.models import CertStatus, KeyType
from rdsssl.ops.client_versions import check_user_dir
from rdsssl.pki import crypto
from rdsssl.store.castore import CaStore
from rdsssl.store.files import user_dir
from rdsssl.store.records import CertRecord, format_time

__all__ = [
    "DEFAULT_BEFORE",
    "RenewalNeed",
    "RenewalPlan",
    "RenewalWindow",
    "Skipped",
    "check_key_types",
    "key_type_of",
    "needs_renewal",
    "newest",
    "plan_renewal",
    "tls12_skips",
]

DEFAULT_BEFORE = timedelta(days=30)


@dataclass(frozen=True)
class RenewalWindow:
    """``before``: due when at most this long is left; ``at``: due when this fraction (0-1] of
    the validity has elapsed. Exactly one applies; neither means ``before=30 days``."""

    before: timedelta | None = None
    at: float | None = None

    def __post_init__(self) -> None:
        if self.before is not None and self.at is not None:
            raise UsageError("--before and --at contradict each other; give one")
        if self.at is not None and not 0 < self.at <= 1:
            raise ConfigError(f"--at {self.at:.0%}: give a percentage above 0 and at most 100")

    def contains(self, record: CertRecord, now: datetime) -> bool:
        """True when ``record`` is inside the window at ``now``."""
        if self.at is None:
            return record.not_after - now <= (self.before or DEFAULT_BEFORE)
        if record.not_before is None:
            return True
        total = (record.not_after - record.not_before).total_seconds()
        return total <= 0 or (now - record.not_before).total_seconds() >= self.at * total

    def check_days(self, days: int) -> None:
        """Refuse a validity that would leave new certificates due at once (renewed each run)."""
        before = self.before or (DEFAULT_BEFORE if self.at is None else None)
        if before is not None and timedelta(days=days) <= before:
            raise ConfigError(
                f"--days {days} is not longer than the --before window ({before.days}d): every "
                "new certificate would be due again at once; raise --days or shorten --before"
            )


@dataclass(frozen=True)
class Skipped:
    """A certificate inside the window that is not renewed, and why (says what to do)."""

    record: CertRecord
    problem: str

    def message(self) -> str:
        """One line naming the serial (the name escaped: it may hold control characters)."""
        return f"skipped certificate {self.record.serial_hex} ({self.record.cn!r}): {self.problem}"

    def to_json(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"serial": self.record.serial_hex, "cn": self.record.cn, "problem": self.problem}


@dataclass(frozen=True)
class RenewalPlan:
    """``due``: to re-issue now. ``blocked``: inside the window but already ending with the CA.
    ``skipped``: inside the window but unusable (bad user name, unsafe output directory)."""

    due: list[CertRecord]
    blocked: list[CertRecord]
    skipped: list[Skipped] = field(default_factory=list)


def newest(rows: list[CertRecord]) -> dict[str, CertRecord]:
    """Each CN's newest unrevoked row (rows come oldest first, so the last one wins)."""
    newest: dict[str, CertRecord] = {}
    for row in rows:
        if row.status is not CertStatus.REVOKED:
            newest[row.cn] = row
    return newest


def plan_renewal(
    store: CaStore,
    *,
    now: datetime,
    before: timedelta | None = None,
    at: float | None = None,
    user: str | None = None,
    out_root: Path | None = None,
) -> RenewalPlan:
    """Which users need a new certificate: their newest unrevoked one is inside the window.
    With ``out_root``, a user whose ``out_root/USER`` is unsafe is skipped too."""
    window = RenewalWindow(before=before, at=at)
    latest = store.newest_unrevoked(user=user)  # = newest(store.certificates(user=user))
    inside = sorted((r for r in latest.values() if window.contains(r, now)), key=lambda r: r.cn)
    skipped = [s for s in (_unusable(r, out_root) for r in inside) if s is not None]
    inside = [r for r in inside if r.serial not in {s.record.serial for s in skipped}]
    ca_end = store.ca_cert.not_valid_after_utc
    return RenewalPlan(
        due=[r for r in inside if r.not_after < ca_end],
        blocked=[r for r in inside if r.not_after >= ca_end],
        skipped=skipped,
    )


def _unusable(record: CertRecord, out_root: Path | None) -> Skipped | None:
    """Why ``record`` cannot be renewed (into ``out_root``), or None."""
    try:
        crypto.validate_role_name(record.cn)
    except CryptoError as exc:
        return Skipped(
            record,
            f"{exc}; revoke it to stop renewing it: rdsssl cert revoke --serial "
            f"{record.serial_hex}",
        )
    if out_root is not None:
        try:
            check_user_dir(user_dir(out_root, record.cn))
        except InputError as exc:
            return Skipped(record, str(exc))
    return None


def tls12_skips(plan: RenewalPlan, key_type: KeyType | None = None) -> RenewalPlan:
    """`plan` with the users whose renewed key (theirs, or `key_type`) would fail over TLS 1.2
    (`crypto.tls12_key_problem`) moved to `skipped`: one such user must not stop everyone
    else's renewal in a cron run."""
    keep: list[CertRecord] = []
    skipped = list(plan.skipped)
    for row in plan.due:
        problem = crypto.tls12_key_problem(key_type or key_type_of(row))
        if problem:
            skipped.append(Skipped(row, f"{problem}; renew it with --key-type ec-p256"))
        else:
            keep.append(row)
    return RenewalPlan(due=keep, blocked=plan.blocked, skipped=skipped)


def check_key_types(rows: list[CertRecord], key_type: KeyType | None = None) -> None:
    """CryptoError when a renewed key (theirs, or `key_type`) would fail over TLS 1.2."""
    skipped = tls12_skips(RenewalPlan(due=list(rows), blocked=[]), key_type).skipped
    if skipped:
        raise CryptoError("; ".join(s.message() for s in skipped))


def key_type_of(record: CertRecord) -> KeyType:
    """The renewed certificate keeps its key type (EC P-256 when unknown)."""
    known = {k.value: k for k in KeyType}
    return known.get(record.key_type, KeyType.EC_P256)


@dataclass(frozen=True)
class RenewalNeed:
    """Whether one certificate needs renewal (`rdsssl cert needs-renewal`) and why."""

    needed: bool
    not_before: datetime
    not_after: datetime
    threshold: datetime  # from this moment on it needs renewal
    reason: str

    def to_json(self) -> dict[str, object]:
        return {
            "needs_renewal": self.needed,
            "not_before": format_time(self.not_before),
            "not_after": format_time(self.not_after),
            "renew_from": format_time(self.threshold),
            "reason": self.reason,
        }


def needs_renewal(
    cert: x509.Certificate,
    *,
    now: datetime,
    before: timedelta | None = None,
    at: float | None = None,
) -> RenewalNeed:
    """`step certificate needs-renewal`'s rule: due once `at` (a fraction, default 2/3) of the
    certificate's lifetime has passed, or, with `before`, once it expires within `before`.
    An expired certificate always needs renewal."""
    start, end = cert.not_valid_before_utc, cert.not_valid_after_utc
    if before is not None:
        threshold = end - before
        rule = f"it expires within {before}"
    else:
        fraction = 2 / 3 if at is None else at
        threshold = start + (end - start) * fraction
        rule = f"{fraction:.0%} of its lifetime has passed"
    if now >= end:
        return RenewalNeed(True, start, end, threshold, "it has expired")
    if now >= threshold:
        return RenewalNeed(True, start, end, threshold, rule)
    return RenewalNeed(
        False, start, end, threshold, f"not yet: renew from {format_time(threshold)}"
    )
