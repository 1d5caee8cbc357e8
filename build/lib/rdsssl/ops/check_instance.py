"""`rdsssl check` on one instance, judged from what Describe returned (pure: no I/O).

The client CA's expiry, the CRL on the instance (present, covering every CA of the bundle,
nextUpdate far enough away: the one CRL policy, `rdsssl.pki.crl_policy`), revocations in the
local CA stores not yet on the instance's CRL, the server certificate (RequireUpdate,
SSLExpireTime), a failed last SSL change, and drift from a desired-state file. A revoked
certificate that the instance still accepts is critical, as is a CA without a CRL (its users
are refused: docs/postgres-client-cert-behaviour.md R3/R4).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from cryptography import x509

from rdsssl.models import InstanceInfo, SslState
from rdsssl.ops.check_findings import (
    DEFAULT_THRESHOLDS,
    Code,
    Finding,
    InstanceReport,
    Severity,
    Thresholds,
    expiry,
)
from rdsssl.ops.crl_refresh import StoreCrl
from rdsssl.ops.plan import Plan
from rdsssl.pki import crl_policy, crl_verdict, crypto

__all__ = ["check_instance"]


def check_instance(
    info: InstanceInfo,
    ssl: SslState,
    *,
    now: datetime,
    thresholds: Thresholds = DEFAULT_THRESHOLDS,
    stores: Sequence[StoreCrl] = (),
    drift: Plan | None = None,
    drift_source: str = "the desired-state file",
) -> InstanceReport:
    """Judge one instance from what Describe returned (pure: no I/O)."""
    iid = info.instance_id
    found = _state_findings(info, ssl)
    if not ssl.ssl_enabled:
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
                Code.NO_CLIENT_CA,
            )
        )
        found.extend(_drift_findings(drift, drift_source))
        return InstanceReport(iid, tuple(found), server_cert_not_after=server_after)
    cas = crypto.load_certificates(ssl.client_ca_pem.encode(), source=f"{iid}'s client CA")
    for ca in cas:
        found.append(
            expiry(
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


def _state_findings(info: InstanceInfo, ssl: SslState) -> list[Finding]:
    """The instance's status, a failed last change, and SSL switched off."""
    found: list[Finding] = []
    if info.status != "Running":
        found.append(
            Finding(
                "status", Severity.OK, f"instance status is {info.status}", Code.INSTANCE_STATUS
            )
        )
    if ssl.last_modify_status == "failed":
        reason = ssl.modify_status_reason or "no reason given"
        found.append(
            Finding(
                "last_change",
                Severity.WARNING,
                f"the last SSL change failed ({reason}); the instance kept its previous "
                "configuration: fix the cause and run the change again",
                Code.LAST_CHANGE_FAILED,
            )
        )
    if not ssl.ssl_enabled:
        found.append(
            Finding(
                "ssl",
                Severity.CRITICAL,
                "SSL is off on the instance, so client certificates cannot work: enable SSL in "
                "the RDS console (rdsssl never switches it, to keep the server certificate)",
                Code.SSL_OFF,
            )
        )
    return found


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
                Code.SERVER_CERT_UPDATE,
            )
        )
    if ssl.ssl_expire_time is not None:
        found.append(
            expiry(
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
        finding = Finding("crl", Severity.WARNING, message, crl_verdict.Code.NO_CRL)
        return [finding], None, frozenset()
    found = [
        Finding("crl", Severity.CRITICAL, f"{f.message()} ({refresh})", f.code)
        for f in verdict.findings
    ]
    for cover in verdict.coverage:
        if cover.next_update is None or cover.crl_fingerprint is None:
            continue
        found.append(
            expiry(
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
        return [Finding("revocations", Severity.WARNING, message, Code.FOREIGN_CA)], None
    found: list[Finding] = []
    total = 0
    for store in used:
        pending = store.requirement.revoked - listed
        total += len(pending)
        found.append(_pending_finding(iid, store, pending))
    return found, total


def _pending_finding(iid: str, store: StoreCrl, pending: frozenset[int]) -> Finding:
    if not pending:
        message = f"every revocation of {store.ca_dir} is on the instance's CRL"
        return Finding("revocations", Severity.OK, message, Code.REVOCATIONS_LIVE)
    shown = ", ".join(crypto.serial_hex(s) for s in sorted(pending)[:5])
    more = f" and {len(pending) - 5} more" if len(pending) > 5 else ""
    return Finding(
        "revocations",
        Severity.CRITICAL,
        f"{len(pending)} certificate(s) revoked in {store.ca_dir} are still "
        f"accepted (serials {shown}{more}): rdsssl crl refresh {iid} "
        f"--ca-dir {store.ca_dir}",
        Code.REVOCATIONS_PENDING,
    )


def _drift_findings(drift: Plan | None, source: str) -> list[Finding]:
    if drift is None:
        return []
    if drift.noop:
        return [Finding("drift", Severity.OK, f"matches {source}", Code.IN_SYNC)]
    changes = "; ".join(f"{c.field}: {c.before} -> {c.after}" for c in drift.changes)
    message = f"differs from {source}: {changes}: run rdsssl apply -f {source}"
    return [Finding("drift", Severity.WARNING, message, Code.DRIFT)]
