"""The vocabulary of `rdsssl check`: severities, thresholds, findings with their stable codes,
the reports they make up, and the one graded expiry finding.

Every finding has a severity, Nagios-style (ok / warning / critical), a message that says what
to do, and a `code`: a stable word for programs (the `code` of the JSON), so a monitoring rule
never parses the human text. CRL findings carry the code of the one CRL policy
(`rdsssl.pki.crl_verdict.Code`); every other finding a `Code` of this module. Expiry is
`critical` once expired or within `Thresholds.critical` (7 days), and `warning` within
`Thresholds.warn` (30 days; the CRL uses `crl_min_remaining`).
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from rdsssl.pki import crl_policy, crl_verdict
from rdsssl.store.records import format_time

__all__ = [
    "DEFAULT_THRESHOLDS",
    "UNKNOWN_STATUS",
    "CertExpiry",
    "Code",
    "Finding",
    "InstanceReport",
    "Severity",
    "StoreReport",
    "Thresholds",
    "expiry",
]


class Severity(enum.IntEnum):
    """Nagios' scale; `rdsssl_check_status` exports it one-hot as its `state` label, with
    "unknown" when the check itself failed."""

    OK = 0
    WARNING = 1
    CRITICAL = 2


UNKNOWN_STATUS = 3  # the instance could not be checked (API error, ...)


class Code(str, enum.Enum):
    """What a finding other than a CRL policy finding says, as a stable word."""

    INSTANCE_STATUS = "instance-status"  # the instance is not Running (informative)
    LAST_CHANGE_FAILED = "last-change-failed"
    SSL_OFF = "ssl-off"
    SERVER_CERT_UPDATE = "server-cert-update-required"  # RequireUpdate
    SERVER_CERT_UNREADABLE = "server-cert-unreadable"  # ServerCert is not a certificate
    SERVER_CERT_UNKNOWN = "server-cert-unknown"  # SSL on, yet no ServerCert nor SSLExpireTime
    SERVER_CERT_NAME = "server-cert-name-mismatch"  # it does not name the protected endpoint
    NO_CLIENT_CA = "no-client-ca"
    EXPIRED = "expired"  # a CA, certificate or CRL (nextUpdate) is past its end
    EXPIRES_SOON = "expires-soon"  # within the warning or critical threshold
    VALID = "valid"  # far enough from its end
    FOREIGN_CA = "foreign-ca"  # the instance's client CA is the CA of no store given
    REVOCATIONS_PENDING = "revocations-pending"  # revoked locally, still accepted
    REVOCATIONS_LIVE = "revocations-live"  # every local revocation is on the instance's CRL
    IN_SYNC = "in-sync"  # matches the desired-state file
    DRIFT = "drift"
    RENEWAL_DUE = "renewal-due"
    RENEWAL_BLOCKED = "renewal-blocked"  # ends with the CA: renew the CA first
    NOTHING_DUE = "nothing-due"
    KEY_UNENCRYPTED = "key-unencrypted"
    KEY_WEAK = "weak-key-encryption"
    KEY_ENCRYPTED = "key-encrypted"


@dataclass(frozen=True)
class Thresholds:
    """When an expiry becomes a warning, and when critical."""

    warn: timedelta = timedelta(days=30)
    critical: timedelta = timedelta(days=7)
    crl_min_remaining: timedelta = timedelta(days=30)
    restart_margin: timedelta = crl_policy.DEFAULT_RESTART_MARGIN


DEFAULT_THRESHOLDS = Thresholds()


@dataclass(frozen=True)
class Finding:
    """One result: which check, how bad, what to do about it, and its stable `code`."""

    check: str
    severity: Severity
    message: str
    code: Code | crl_verdict.Code

    def to_dict(self) -> dict[str, str]:
        """The JSON shape."""
        return {
            "check": self.check,
            "severity": self.severity.name.lower(),
            "msg": self.message,
            "code": self.code.value,
        }


def _worst(findings: Sequence[Finding]) -> Severity:
    return max((f.severity for f in findings), default=Severity.OK)


@dataclass(frozen=True)
class InstanceReport:
    """The findings for one instance and the values exported as gauges."""

    instance_id: str
    findings: tuple[Finding, ...]
    client_ca_not_after: datetime | None = None
    crl_next_update: datetime | None = None
    server_cert_not_after: datetime | None = None
    pending_revocations: int | None = None  # None: no local store to compare with
    region: str = ""  # the instance's RegionId, a label of the Prometheus gauges

    @property
    def severity(self) -> Severity:
        """The worst finding."""
        return _worst(self.findings)

    def to_dict(self) -> dict[str, object]:
        """The JSON shape."""
        return {
            "status": self.severity.name.lower(),
            "findings": [f.to_dict() for f in self.findings],
            "client_ca_not_after": _iso(self.client_ca_not_after),
            "crl_next_update": _iso(self.crl_next_update),
            "server_cert_not_after": _iso(self.server_cert_not_after),
            "pending_revocations": self.pending_revocations,
        }


@dataclass(frozen=True)
class CertExpiry:
    """One valid (unrevoked, unexpired) certificate of a CA store, as the Prometheus textfile
    exports it."""

    user: str
    serial: str  # lowercase hex, as printed everywhere
    not_after: datetime


@dataclass(frozen=True)
class StoreReport:
    """The findings for one local CA store, and its valid certificates (for the gauges only:
    not part of the JSON shape)."""

    ca_dir: Path
    findings: tuple[Finding, ...]
    ca_not_after: datetime
    due_renewal: int = 0
    certificates: tuple[CertExpiry, ...] = field(default=(), repr=False)

    @property
    def severity(self) -> Severity:
        """The worst finding."""
        return _worst(self.findings)

    def to_dict(self) -> dict[str, object]:
        """The JSON shape."""
        return {
            "ca_dir": str(self.ca_dir),
            "status": self.severity.name.lower(),
            "findings": [f.to_dict() for f in self.findings],
            "ca_not_after": _iso(self.ca_not_after),
            "due_renewal": self.due_renewal,
        }


def _iso(value: datetime | None) -> str | None:
    return None if value is None else format_time(value)


def _left(delta: timedelta) -> str:
    days = delta.total_seconds() / 86400
    return f"{days:.0f} days" if days >= 2 else f"{delta.total_seconds() / 3600:.0f} hours"


def expiry(
    check: str,
    what: str,
    when: datetime,
    now: datetime,
    *,
    warn: timedelta,
    critical: timedelta,
    action: str,
) -> Finding:
    """A graded expiry finding: critical when expired or close, warning when near."""
    left = when - now
    stamp = format_time(when)
    if left <= timedelta(0):
        return Finding(
            check, Severity.CRITICAL, f"{what} expired at {stamp}: {action}", Code.EXPIRED
        )
    if left < critical or left < warn:
        severity = Severity.CRITICAL if left < critical else Severity.WARNING
        message = f"{what} expires in {_left(left)} ({stamp}): {action}"
        return Finding(check, severity, message, Code.EXPIRES_SOON)
    return Finding(check, Severity.OK, f"{what} valid until {stamp} ({_left(left)})", Code.VALID)
