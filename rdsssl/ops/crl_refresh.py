"""`crl refresh`: upload a freshly signed CRL only when the instance needs one.

Every CRL upload restarts the instance, so a refresh happens only when it is due: the CRL on the
instance is refused by the CRL policy (`rdsssl.pki.crl_policy`: missing for a CA of the bundle,
expired or expiring within the restart margin, not yet valid, listing a CA, ...), reaches
nextUpdate within `min_remaining`, or misses a local revocation. That rule is
`plan.crl_status`, reached through `apply.apply` with `DesiredSsl(crl=CrlFromStore(...))`:
a no-op plan is "nothing to do", otherwise ONE ModifyDBInstanceSSL call uploads the CRL and
waits.

Decisions:
- Several CA stores may be given (e.g. both stores during a CA rotation); each instance uses
  the stores whose CA is in its bundle, and is refused before anything is signed when a CA of
  its bundle has no store (its users would fail with `unknown ca`, docs R4).
- Each store signs at most one CRL per run (`DesiredBuilder` caches it), shared by every
  instance of a fleet; the store's CRL number moves once per run, never on a dry run.
- The maintenance window is in the LOCAL time of the machine running rdsssl, like the crontab
  that starts it, and may wrap midnight (`22:00-02:00`). A refresh that is due outside the
  window is deferred, not an error: status `deferred`, exit 0, so a cron job does not alarm;
  `rdsssl check` is what alarms when a CRL nears expiry. `now=True` (--now) ignores the window.
- The size of the uploaded CRL is reported and compared with a budget (the RDS API carries
  it inline); entries of long-expired certificates are dropped by `crypto.build_crl`.
"""

from __future__ import annotations

import re
import time as _time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from pathlib import Path

from cryptography import x509

from rdsssl.errors import ConfigError, UsageError
from rdsssl.models import InstanceSpec
from rdsssl.ops import plan as planning
from rdsssl.ops.apply import ApplyOptions, ApplyResult, apply
from rdsssl.ops.audit import AuditLog
from rdsssl.ops.clock import Clock
from rdsssl.ops.desired import DesiredBuilder
from rdsssl.ops.plan import CrlFromStore, DesiredSsl
from rdsssl.pki import crl_policy, crypto
from rdsssl.rds import service_profile, waiters
from rdsssl.rds.protocol import RdsApi
from rdsssl.rds.service_profile import ServiceProfile
from rdsssl.rds.waiters import Progress

__all__ = [
    "DEFAULT_CRL_DAYS",
    "DEFAULT_MIN_REMAINING",
    "RefreshResult",
    "StoreCrl",
    "Window",
    "refresh",
    "requirement_for",
    "store_crl",
]

DEFAULT_CRL_DAYS = crypto.DEFAULT_CRL_DAYS  # 180: months, since every upload is a restart
DEFAULT_MIN_REMAINING = timedelta(days=30)


# ------------------------------------------------------------------ the maintenance window


@dataclass(frozen=True)
class Window:
    """A daily maintenance window `HH:MM-HH:MM` in local time; `end` before `start` wraps
    midnight. The start is included, the end is not."""

    start: time
    end: time

    @classmethod
    def parse(cls, text: str) -> Window:
        """`02:00-04:00` or `22:30-01:00`; ConfigError otherwise."""
        found = re.fullmatch(r"\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*", text)
        if not found:
            raise ConfigError(f"window {text!r}: use HH:MM-HH:MM in local time, e.g. 02:00-04:00")
        h1, m1, h2, m2 = (int(g) for g in found.groups())
        if h1 > 23 or h2 > 23 or m1 > 59 or m2 > 59:
            raise ConfigError(f"window {text!r}: hours are 00-23 and minutes 00-59")
        if (h1, m1) == (h2, m2):
            raise ConfigError(f"window {text!r} is empty: start and end are the same")
        return cls(time(h1, m1), time(h2, m2))

    def contains(self, moment: datetime) -> bool:
        """Whether `moment` (aware) falls inside the window, in this machine's local time."""
        local = moment.astimezone().time().replace(second=0, microsecond=0, tzinfo=None)
        if self.start < self.end:
            return self.start <= local < self.end
        return local >= self.start or local < self.end

    def __str__(self) -> str:
        return f"{self.start:%H:%M}-{self.end:%H:%M}"


# ------------------------------------------------------------------ CRLs from CA stores


@dataclass(frozen=True)
class StoreCrl:
    """A CA store as a CRL source: its CA (by fingerprint and identity) and what a fresh CRL
    would list."""

    ca_dir: Path
    ca_fingerprint: str
    ca_subject: str
    requirement: CrlFromStore
    ca_identity: crypto.CaIdentity | None = None

    def signs_for(self, cert: x509.Certificate) -> bool:
        """True when this store's CRL is the CRL of the CA `cert`: the store's CA certificate,
        or another certificate of the same CA (`crypto.ca_identity`), such as the one a
        `ca renew` replaced while instances still hold it."""
        if crypto.fingerprint(cert) == self.ca_fingerprint:
            return True
        return self.ca_identity is not None and crypto.ca_identity(cert) == self.ca_identity


def store_crl(builder: DesiredBuilder, ca_dir: Path) -> StoreCrl:
    """Read a store through `builder` (cached per store; signing happens only when the
    requirement's `build()` is called, at most once per store)."""
    spec = InstanceSpec(
        id=None,
        tags=None,
        region=None,
        ca_dir=ca_dir,
        ca_bundle=None,
        crl=True,
        acl=None,
        replication_acl=None,
        source=f"--ca-dir {ca_dir}",
    )
    desired = builder.for_spec(spec)
    assert isinstance(desired.crl, CrlFromStore) and desired.client_ca_pem is not None
    cert = crypto.load_certificates(desired.client_ca_pem.encode(), source=str(ca_dir))[0]
    return StoreCrl(
        ca_dir=ca_dir,
        ca_fingerprint=crypto.fingerprint(cert),
        ca_subject=cert.subject.rfc4514_string(),
        requirement=desired.crl,
        ca_identity=crypto.ca_identity(cert),
    )


def requirement_for(
    instance_id: str, ca_pem: str | None, stores: Sequence[StoreCrl], min_remaining: timedelta
) -> CrlFromStore:
    """The CRL requirement for one instance: from the stores whose CA is in its bundle, which
    must cover every CA of the bundle. ConfigError (nothing signed) otherwise."""
    if not ca_pem:
        raise ConfigError(
            f"{instance_id} has no client CA, so no CRL to refresh: configure one first "
            "(rdsssl apply -f rdsssl.toml, or rdsssl instance enable-client-ca)"
        )
    bundle = crypto.load_certificates(ca_pem.encode(), source=f"{instance_id}'s client CA")
    used = tuple(s for s in stores if any(s.signs_for(c) for c in bundle))
    if not used:
        dirs = ", ".join(str(s.ca_dir) for s in stores)
        subjects = "; ".join(c.subject.rfc4514_string() for c in bundle)
        raise ConfigError(
            f"{instance_id}: its client CA ({subjects}) is not the CA of "
            f"{dirs}: pass the CA store that issued it with --ca-dir"
        )
    missing = [c.subject.rfc4514_string() for c in bundle if not any(s.signs_for(c) for s in used)]
    if missing:
        raise ConfigError(
            f"{instance_id}: its client CA bundle also holds {'; '.join(missing)}, which no "
            "--ca-dir store signs; a CRL must cover every CA of the bundle (else its users fail "
            "with 'unknown ca'): pass that CA's store too (--ca-dir is repeatable)"
        )

    def build() -> str:
        return "".join(s.requirement.build() for s in used)

    revoked = frozenset().union(*(s.requirement.revoked for s in used))
    return CrlFromStore(revoked=revoked, build=build, min_remaining=min_remaining)


# ------------------------------------------------------------------ one instance


@dataclass(frozen=True)
class RefreshResult:
    """What `refresh` did for one instance.

    status: `current` (nothing due), `refreshed` (uploaded and applied), `sent` (uploaded,
    --no-wait), `would-refresh` (dry run), `deferred` (due, outside the window).
    """

    instance_id: str
    status: str
    reason: str
    entries: int
    size: int | None
    warnings: tuple[str, ...]
    applied: ApplyResult | None
    code: str = "current"  # why it is due: `planning.CrlStatus.code`

    @property
    def changed(self) -> bool:
        """True when a Modify call was made."""
        return self.status in ("refreshed", "sent")

    def to_dict(self) -> dict[str, object]:
        """The JSON shape (no PEM)."""
        result = self.applied
        return {
            "status": self.status,
            "reason": self.reason,
            "reason_code": self.code,
            "entries": self.entries,
            "size": self.size,
            "warnings": list(self.warnings),
            "request_id": result.request_id if result else None,
            "plan": result.plan.to_dict() if result else None,
        }


def _due(result: ApplyResult) -> tuple[str, str]:
    """Why the CRL is due: the `crl` change's code and its reason (`planning.CrlStatus`)."""
    for item in result.plan.changes:
        if item.field == "crl":
            return item.code, item.reason
    return "differs", "the CRL differs"


def refresh(
    api: RdsApi,
    instance_id: str,
    stores: Sequence[StoreCrl],
    *,
    now: datetime,
    min_remaining: timedelta = DEFAULT_MIN_REMAINING,
    window: Window | None = None,
    ignore_window: bool = False,
    max_size: int = service_profile.CRL_SIZE_BUDGET,
    dry_run: bool = False,
    wait: bool = True,
    timeout: float = waiters.DEFAULT_TIMEOUT,
    on_progress: Callable[[Progress], None] | None = None,
    sleep: Callable[[float], None] = _time.sleep,
    audit: AuditLog | None = None,
    restart_margin: timedelta = crl_policy.DEFAULT_RESTART_MARGIN,
    profile: ServiceProfile | None = None,
) -> RefreshResult:
    """Refresh one instance's CRL if due (see the module docstring)."""
    if not stores:
        raise UsageError("crl refresh needs a CA store to sign with (--ca-dir DIR)")
    ssl = api.describe_ssl(instance_id)
    planning.refuse_ssl_off(instance_id, ssl)
    requirement = requirement_for(instance_id, ssl.client_ca_pem, stores, min_remaining)
    desired = DesiredSsl(crl=requirement)
    entries = len(requirement.revoked)
    in_window = ignore_window or window is None or window.contains(now)
    plan_only = dry_run or not in_window
    options = ApplyOptions(
        dry_run=plan_only,
        wait=wait,
        timeout=timeout,
        restart_margin=restart_margin,
        crl_size_budget=max_size,
        profile=profile,
        audit=audit,
    )
    clock = Clock(sleep=sleep).at(now)
    result = apply(api, instance_id, desired, options, clock=clock, on_progress=on_progress)
    if result.plan.noop:
        return RefreshResult(instance_id, "current", "current", entries, None, (), result)
    code, reason = _due(result)
    warnings = tuple(w.message for w in result.plan.warnings)
    if plan_only:
        status = "would-refresh" if dry_run else "deferred"
        return RefreshResult(instance_id, status, reason, entries, None, warnings, result, code)
    request = result.plan.request
    size = len(request.crl_pem.encode()) if request is not None and request.crl_pem else None
    status = "refreshed" if wait else "sent"
    return RefreshResult(instance_id, status, reason, entries, size, warnings, result, code)
