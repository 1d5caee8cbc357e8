"""`rdsssl check` on a local CA store (pure): the CA's expiry, how its key is wrapped, and the
certificates due for renewal."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from cryptography import x509

from rdsssl.ops.check_findings import (
    DEFAULT_THRESHOLDS,
    Code,
    Finding,
    Severity,
    StoreReport,
    Thresholds,
    expiry,
)
from rdsssl.ops.renewal_plan import RenewalPlan
from rdsssl.pki.crypto import KeyProtection
from rdsssl.store.records import format_time

__all__ = ["check_store"]


def check_store(
    ca_dir: Path,
    ca_cert: x509.Certificate,
    renewal: RenewalPlan,
    *,
    now: datetime,
    thresholds: Thresholds = DEFAULT_THRESHOLDS,
    key: KeyProtection | None = None,
) -> StoreReport:
    """Judge a CA store: its CA's expiry, how its key is wrapped (`key`), and the certificates
    due for renewal (pure)."""
    found = [
        *_key_findings(ca_dir, key),
        expiry(
            "ca",
            f"the CA of {ca_dir} ({ca_cert.subject.rfc4514_string()})",
            ca_cert.not_valid_after_utc,
            now,
            warn=thresholds.warn,
            critical=thresholds.critical,
            action=f"renew it with the same key (rdsssl ca renew --ca-dir {ca_dir}, then "
            "rdsssl apply: one restart per instance, no client re-issue); only a key change "
            "needs a rotation to a new CA (rdsssl rotate ca)",
        ),
    ]
    for row in renewal.due:
        found.append(
            Finding(
                "renewal",
                Severity.WARNING,
                f"the certificate of {row.cn} (serial {row.serial_hex}) ends "
                f"{format_time(row.not_after)}: rdsssl cert renew --ca-dir {ca_dir} "
                f"--user {row.cn}",
                Code.RENEWAL_DUE,
            )
        )
    for row in renewal.blocked:
        found.append(
            Finding(
                "renewal",
                Severity.WARNING,
                f"the certificate of {row.cn} (serial {row.serial_hex}) ends with the CA "
                f"({format_time(row.not_after)}) and cannot be renewed from it: renew the CA "
                f"first (rdsssl ca renew --ca-dir {ca_dir}), then the certificate",
                Code.RENEWAL_BLOCKED,
            )
        )
    due = len(renewal.due) + len(renewal.blocked)
    if not due:
        found.append(
            Finding("renewal", Severity.OK, "no certificate is due for renewal", Code.NOTHING_DUE)
        )
    return StoreReport(ca_dir, tuple(found), ca_cert.not_valid_after_utc, due)


def _key_findings(ca_dir: Path, key: KeyProtection | None) -> list[Finding]:
    """A CA key wrapped more weakly than rdsssl wraps it is a warning (copied, it can be
    brute-forced cheaply); an unencrypted one is reported, since --no-passphrase is explicit."""
    if key is None:
        return []
    if not key.encrypted:
        message = f"the CA key of {ca_dir} is not encrypted (--no-passphrase): protect the file"
        return [Finding("ca_key", Severity.OK, message, Code.KEY_UNENCRYPTED)]
    if key.weak:
        how = f"{key.kdf or key.scheme}" + (f" at {key.rounds} rounds" if key.rounds else "")
        return [
            Finding(
                "ca_key",
                Severity.WARNING,
                f"the CA key of {ca_dir} is wrapped weakly ({how}): a copy of ca.key can be "
                f"brute-forced cheaply; strengthen it: rdsssl ca passphrase --ca-dir {ca_dir}",
                Code.KEY_WEAK,
            )
        ]
    message = f"the CA key of {ca_dir} is wrapped with {key.kdf}"
    return [Finding("ca_key", Severity.OK, message, Code.KEY_ENCRYPTED)]
