"""`rdsssl check`: what needs action before it hurts, for one instance or a fleet.

Per instance (Describe calls only, never a change): the client CA's expiry, the CRL on the
instance (present, covering every CA of the bundle, nextUpdate far enough away), revocations in
the local CA store not yet on the instance's CRL, the server certificate (RequireUpdate,
SSLExpireTime), a failed last SSL change, and drift from a desired-state file. Locally, per CA
store: the CA's expiry and the certificates due for renewal.

Every finding has a severity, Nagios-style (ok / warning / critical), and a message that says
what to do. Expiry is `critical` once expired or within `Thresholds.critical` (7 days), and
`warning` within `Thresholds.warn` (30 days; the CRL uses `crl_min_remaining`). A revoked
certificate that the instance still accepts is critical, as is a CA without a CRL (its users
are refused: docs/postgres-client-cert-behaviour.md R3/R4). The judging functions
(`check_instance`, `check_store`) are pure, so they are tested on crafted states; the Prometheus
text (`prometheus_text`) is the node_exporter textfile format.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from cryptography import x509

from rdsssl.models import InstanceInfo, SslState
from rdsssl.ops.crl_refresh import StoreCrl
from rdsssl.ops.plan import Plan
from rdsssl.ops.renewal_plan import RenewalPlan
from rdsssl.pki import crl_policy, crl_verdict, crypto
from rdsssl.pki.crypto import KeyProtection
from rdsssl.store.records import format_time

__all__ = [
    "Finding",
    "InstanceReport",
    "Severity",
    "StoreReport",
    "Thresholds",
    "check_instance",
    "check_store",
    "prometheus_text",
]


class Severity(enum.IntEnum):
    """Nagios' scale; `rdsssl_check_status` exports the value (3 = the check itself failed)."""

    OK = 0
    WARNING = 1
    CRITICAL = 2


UNKNOWN_STATUS = 3  # the instance could not be checked (API error, ...)


@dataclass(frozen=True)
class Thresholds:
    """When an expiry becomes a warning, and when critical."""

    warn: timedelta = timedelta(days=30)
    critical: timedelta = timedelta(days=7)
    crl_min_remaining: timedelta = timedelta(days=30)
    restart_margin: timedelta = crl_policy.DEFAULT_RESTART_MARGIN


@dataclass(frozen=True)
class Finding:
    """One result: which check, how bad, and what to do about it; `code` is a stable word for
    programs where there is one (a `crl_policy.Code` value for CRL findings)."""

    check: str
    severity: Severity
    message: str
    code: str = ""

    def to_dict(self) -> dict[str, str]:
        """The JSON shape."""
        doc = {"check": self.check, "severity": self.severity.name.lower(), "msg": self.message}
        if self.code:
            doc["code"] = self.code
        return doc


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
class StoreReport:
    """The findings for one local CA store."""

    ca_dir: Path
    findings: tuple[Finding, ...]
    ca_not_after: datetime
    due_renewal: int = 0

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


def _expiry(
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
        return Finding(check, Severity.CRITICAL, f"{what} expired at {stamp}: {action}")
    if left < critical:
        return Finding(
            check, Severity.CRITICAL, f"{what} expires in {_left(left)} ({stamp}): {action}"
        )
    if left < warn:
        return Finding(
            check, Severity.WARNING, f"{what} expires in {_left(left)} ({stamp}): {action}"
        )
    return Finding(check, Severity.OK, f"{what} valid until {stamp} ({_left(left)})")


# ------------------------------------------------------------------ one instance


def check_instance(
    info: InstanceInfo,
    ssl: SslState,
    *,
    now: datetime,
    thresholds: Thresholds = Thresholds(),
    stores: Sequence[StoreCrl] = (),
    drift: Plan | None = None,
    drift_source: str = "the desired-state file",
) -> InstanceReport:
    """Judge one instance from what Describe returned (pure: no I/O)."""
    iid = info.instance_id
    found: list[Finding] = []
    if info.status != "Running":
        found.append(Finding("status", Severity.OK, f"instance status is {info.status}"))
    if ssl.last_modify_status == "failed":
        reason = ssl.modify_status_reason or "no reason given"
        found.append(
            Finding(
                "last_change",
                Severity.WARNING,
                f"the last SSL change failed ({reason}); the instance kept its previous "
                "configuration: fix the cause and run the change again",
            )
        )
    if not ssl.ssl_enabled:
        found.append(
            Finding(
                "ssl",
                Severity.CRITICAL,
                "SSL is off on the instance, so client certificates cannot work: enable SSL in "
                "the RDS console (rdsssl never switches it, to keep the server certificate)",
            )
        )
        return InstanceReport(iid, tuple(found))
    server_after = ssl.ssl_expire_time
    found.extend(_server_findings(ssl, now, thresholds))
    if not ssl.client_ca_pem:
        found.append(
            Finding(
                "client_ca",
                Severity.WARNING,
                "no client CA: certificate authentication is off; configure one "
                f"(rdsssl apply -f rdsssl.toml, or rdsssl instance enable-client-ca {iid})",
            )
        )
        found.extend(_drift_findings(drift, drift_source))
        return InstanceReport(iid, tuple(found), server_cert_not_after=server_after)
    cas = crypto.load_certificates(ssl.client_ca_pem.encode(), source=f"{iid}'s client CA")
    for ca in cas:
        found.append(
            _expiry(
                "client_ca",
                f"client CA {ca.subject.rfc4514_string()}",
                ca.not_valid_after_utc,
                now,
                warn=thresholds.warn,
                critical=thresholds.critical,
                action=_client_ca_action(iid, ca, stores),
            )
        )
    crl_findings, next_update, listed = _crl_findings(
        iid, ssl.crl_pem, ssl.client_ca_pem, now, thresholds
    )
    found.extend(crl_findings)
    pending: int | None = None
    if stores:
        revocation, pending = _revocation_findings(iid, cas, stores, listed)
        found.extend(revocation)
    found.extend(_drift_findings(drift, drift_source))
    return InstanceReport(
        iid,
        tuple(found),
        client_ca_not_after=min(ca.not_valid_after_utc for ca in cas),
        crl_next_update=next_update,
        server_cert_not_after=server_after,
        pending_revocations=pending,
    )


def _client_ca_action(iid: str, ca: x509.Certificate, stores: Sequence[StoreCrl]) -> str:
    """What to do about an instance's client CA that expires: renew it with the same key
    (`ca renew`, in the store of that CA when one was given), then apply it; `rotate ca` only
    for a key change."""
    dirs = [str(s.ca_dir) for s in stores if s.signs_for(ca)]
    ca_dir = dirs[0] if dirs else "DIR"
    return (
        f"renew it with the same key before then (rdsssl ca renew --ca-dir {ca_dir}, then "
        "rdsssl apply: one restart, no client re-issue); to change the key instead, rotate "
        f"to a new CA (rdsssl rotate ca {iid} ...)"
    )


def _server_findings(ssl: SslState, now: datetime, th: Thresholds) -> list[Finding]:
    found: list[Finding] = []
    if ssl.require_update:
        found.append(
            Finding(
                "server_cert",
                Severity.WARNING,
                "RDS flags the server certificate for an update (RequireUpdate): renew it in "
                "the RDS console; clients that pin the server CA need the new one",
            )
        )
    if ssl.ssl_expire_time is not None:
        found.append(
            _expiry(
                "server_cert",
                "the server certificate",
                ssl.ssl_expire_time,
                now,
                warn=th.warn,
                critical=th.critical,
                action="renew it in the RDS console before then",
            )
        )
    return found


def _crl_findings(
    iid: str,
    crl_pem: str | None,
    ca_pem: str,
    now: datetime,
    th: Thresholds,
) -> tuple[list[Finding], datetime | None, frozenset[int]]:
    """Findings from the one CRL policy (`rdsssl.pki.crl_policy`), the earliest nextUpdate of the
    CRLs in use, and every serial the CRLs list. Anything the policy refuses on the instance
    (missing for a CA, expired, not yet valid, listing a CA, ...) locks users out: critical."""
    refresh = f"rdsssl crl refresh {iid} --ca-dir DIR"
    verdict = crl_policy.evaluate_pem(
        ca_pem, crl_pem, now=now, restart_margin=th.restart_margin, source=f"{iid}'s CRL"
    )
    if verdict.codes == {crl_verdict.Code.NO_CRL}:
        message = f"no CRL: revoked certificates are still accepted; upload one ({refresh})"
        return [Finding("crl", Severity.WARNING, message)], None, frozenset()
    found = [
        Finding("crl", Severity.CRITICAL, f"{f.message()} ({refresh})", code=f.code.value)
        for f in verdict.findings
    ]
    for cover in verdict.coverage:
        if cover.next_update is None or cover.crl_fingerprint is None:
            continue
        found.append(
            _expiry(
                "crl",
                f"the CRL of {cover.ca_subject} (nextUpdate)",
                cover.next_update,
                now,
                warn=th.crl_min_remaining,
                critical=min(th.critical, th.crl_min_remaining),
                action=f"an expired CRL locks out every certificate user; {refresh}",
            )
        )
    return found, verdict.next_update, verdict.listed


def _revocation_findings(
    iid: str,
    cas: Sequence[x509.Certificate],
    stores: Sequence[StoreCrl],
    listed: frozenset[int],
) -> tuple[list[Finding], int | None]:
    """Revocations of the stores whose CA the instance trusts that its CRL does not list."""
    used = [s for s in stores if any(s.signs_for(ca) for ca in cas)]
    if not used:
        dirs = ", ".join(str(s.ca_dir) for s in stores)
        message = (
            f"the instance's client CA is not the CA of {dirs}: local revocations cannot be "
            "compared; check with the store that issued its CA"
        )
        return [Finding("revocations", Severity.WARNING, message)], None
    found: list[Finding] = []
    total = 0
    for store in used:
        pending = store.requirement.revoked - listed
        total += len(pending)
        if pending:
            shown = ", ".join(crypto.serial_hex(s) for s in sorted(pending)[:5])
            more = f" and {len(pending) - 5} more" if len(pending) > 5 else ""
            found.append(
                Finding(
                    "revocations",
                    Severity.CRITICAL,
                    f"{len(pending)} certificate(s) revoked in {store.ca_dir} are still "
                    f"accepted (serials {shown}{more}): rdsssl crl refresh {iid} "
                    f"--ca-dir {store.ca_dir}",
                )
            )
        else:
            found.append(
                Finding(
                    "revocations",
                    Severity.OK,
                    f"every revocation of {store.ca_dir} is on the instance's CRL",
                )
            )
    return found, total


def _drift_findings(drift: Plan | None, source: str) -> list[Finding]:
    if drift is None:
        return []
    if drift.noop:
        return [Finding("drift", Severity.OK, f"matches {source}")]
    changes = "; ".join(f"{c.field}: {c.before} -> {c.after}" for c in drift.changes)
    message = f"differs from {source}: {changes}: run rdsssl apply -f {source}"
    return [Finding("drift", Severity.WARNING, message)]


# ------------------------------------------------------------------ a local CA store


def check_store(
    ca_dir: Path,
    ca_cert: x509.Certificate,
    renewal: RenewalPlan,
    *,
    now: datetime,
    thresholds: Thresholds = Thresholds(),
    key: KeyProtection | None = None,
) -> StoreReport:
    """Judge a CA store: its CA's expiry, how its key is wrapped (`key`), and the certificates
    due for renewal (pure)."""
    found = [
        *_key_findings(ca_dir, key),
        _expiry(
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
            )
        )
    due = len(renewal.due) + len(renewal.blocked)
    if not due:
        found.append(Finding("renewal", Severity.OK, "no certificate is due for renewal"))
    return StoreReport(ca_dir, tuple(found), ca_cert.not_valid_after_utc, due)


def _key_findings(ca_dir: Path, key: KeyProtection | None) -> list[Finding]:
    """A CA key wrapped more weakly than rdsssl wraps it is a warning (copied, it can be
    brute-forced cheaply); an unencrypted one is reported, since --no-passphrase is explicit."""
    if key is None:
        return []
    if not key.encrypted:
        message = f"the CA key of {ca_dir} is not encrypted (--no-passphrase): protect the file"
        return [Finding("ca_key", Severity.OK, message)]
    if key.weak:
        how = f"{key.kdf or key.scheme}" + (f" at {key.rounds} rounds" if key.rounds else "")
        return [
            Finding(
                "ca_key",
                Severity.WARNING,
                f"the CA key of {ca_dir} is wrapped weakly ({how}): a copy of ca.key can be "
                f"brute-forced cheaply; strengthen it: rdsssl ca passphrase --ca-dir {ca_dir}",
                code="weak-key-encryption",
            )
        ]
    return [Finding("ca_key", Severity.OK, f"the CA key of {ca_dir} is wrapped with {key.kdf}")]


# ------------------------------------------------------------------ Prometheus


_METRICS: tuple[tuple[str, str], ...] = (
    ("rdsssl_check_status", "Worst finding per instance: 0 ok, 1 warning, 2 critical, 3 unknown."),
    ("rdsssl_client_ca_not_after_seconds", "Earliest notAfter of the instance's client CAs."),
    ("rdsssl_crl_next_update_seconds", "Earliest nextUpdate of the instance's CRLs (per CA)."),
    ("rdsssl_server_cert_not_after_seconds", "The instance's server certificate expiry."),
    ("rdsssl_local_revocations_pending", "Local revocations not yet on the instance's CRL."),
    ("rdsssl_ca_check_status", "Worst finding per local CA store (0 ok, 1 warning, 2 critical)."),
    ("rdsssl_ca_not_after_seconds", "notAfter of the local CA."),
    ("rdsssl_certificates_due_renewal", "Certificates of the local CA due for renewal."),
    ("rdsssl_check_timestamp_seconds", "When this check ran."),
)


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _ts(value: datetime | None) -> str | None:
    return None if value is None else f"{value.timestamp():.0f}"


def prometheus_text(
    instances: Sequence[tuple[str, InstanceReport | None]],
    stores: Sequence[StoreReport],
    *,
    now: datetime,
) -> str:
    """The node_exporter textfile: gauges with HELP and TYPE, one sample per instance (an
    instance that could not be checked, report None, gets only status 3)."""
    samples: dict[str, list[str]] = {name: [] for name, _ in _METRICS}
    for iid, report in instances:
        label = f'{{instance="{_label(iid)}"}}'
        status = UNKNOWN_STATUS if report is None else int(report.severity)
        samples["rdsssl_check_status"].append(f"{label} {status}")
        if report is None:
            continue
        for name, value in (
            ("rdsssl_client_ca_not_after_seconds", _ts(report.client_ca_not_after)),
            ("rdsssl_crl_next_update_seconds", _ts(report.crl_next_update)),
            ("rdsssl_server_cert_not_after_seconds", _ts(report.server_cert_not_after)),
            ("rdsssl_local_revocations_pending", _opt_int(report.pending_revocations)),
        ):
            if value is not None:
                samples[name].append(f"{label} {value}")
    for store in stores:
        label = f'{{ca_dir="{_label(str(store.ca_dir))}"}}'
        samples["rdsssl_ca_check_status"].append(f"{label} {int(store.severity)}")
        samples["rdsssl_ca_not_after_seconds"].append(f"{label} {_ts(store.ca_not_after)}")
        samples["rdsssl_certificates_due_renewal"].append(f"{label} {store.due_renewal}")
    samples["rdsssl_check_timestamp_seconds"].append(f" {_ts(now)}")
    lines: list[str] = []
    for name, help_text in _METRICS:
        if not samples[name]:
            continue
        lines += [f"# HELP {name} {help_text}", f"# TYPE {name} gauge"]
        lines += [f"{name}{sample}" for sample in samples[name]]
    return "\n".join(lines) + "\n"


def _opt_int(value: int | None) -> str | None:
    return None if value is None else str(value)
