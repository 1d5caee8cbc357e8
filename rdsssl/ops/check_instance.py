"""`rdsssl check` on one instance, judged from what Describe returned (pure: no I/O).

The client CA's expiry, the CRL on the instance (present, covering every CA of the bundle,
nextUpdate far enough away: the one CRL policy, `rdsssl.pki.crl_policy`), revocations in the
local CA stores not yet on the instance's CRL, the server certificate, a failed last SSL
change, and drift from a desired-state file. A revoked certificate that the instance still
accepts is critical, as is a CA without a CRL (its users are refused:
docs/postgres-client-cert-behaviour.md R3/R4).

The server certificate is judged from the certificate itself (ServerCert: its notAfter, and
whether it names the connection string SSL protects, which `sslmode=verify-full` checks) and
from what RDS says about it (SSLExpireTime, RequireUpdate), with the thresholds of the client
certificates. The earlier of notAfter and SSLExpireTime counts: either end breaks clients.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from cryptography import x509

from rdsssl.errors import CryptoError
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
from rdsssl.pki.hostnames import names_host

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
        found.extend(_drift_findings(drift, drift_source))
        return InstanceReport(iid, tuple(found), region=info.region)
    server_found, server_after = _server_findings(iid, ssl, now, thresholds)
    found.extend(server_found)
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
        return InstanceReport(
            iid, tuple(found), server_cert_not_after=server_after, region=info.region
        )
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
        region=info.region,
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
                "SSL is off on the instance, so client certificates cannot work: enable it "
                f'(rdsssl instance enable-ssl {info.instance_id}, or ssl = "cloud" | '
                '"custom" in rdsssl.toml, then rdsssl apply -f rdsssl.toml)',
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


def _server_action(iid: str, ssl: SslState) -> str:
    """How to renew the server certificate of this kind (custom: from the server CA)."""
    if ssl.ca_type == "custom":
        return (
            f"renew it before then (rdsssl instance renew-server-cert {iid}: a new certificate "
            "from the server CA, one restart; clients keep verifying with the server CA)"
        )
    return (
        f"renew it before then (rdsssl instance renew-server-cert {iid}, or in the RDS "
        f"console); clients that pin the server CA need the new one (rdsssl instance server-ca "
        f"{iid})"
    )


def _server_findings(
    iid: str, ssl: SslState, now: datetime, th: Thresholds
) -> tuple[list[Finding], datetime | None]:
    """The server certificate's findings (module docstring) and its effective end."""
    found: list[Finding] = []
    action = _server_action(iid, ssl)
    if ssl.require_update:
        found.append(
            Finding(
                "server_cert",
                Severity.WARNING,
                "RDS flags the server certificate for an update (RequireUpdate): "
                + action.replace(" before then", ""),
                Code.SERVER_CERT_UPDATE,
            )
        )
    leaf = _server_leaf(iid, ssl.server_cert_pem, found)
    ends = [ssl.ssl_expire_time] if ssl.ssl_expire_time is not None else []
    if leaf is not None:
        ends.append(leaf.not_valid_after_utc)
    if not ends:
        message = (
            "SSL is on, but DescribeDBInstanceSSL shows neither the server certificate nor "
            "SSLExpireTime: its expiry cannot be watched; check the instance in the RDS console"
        )
        found.append(Finding("server_cert", Severity.WARNING, message, Code.SERVER_CERT_UNKNOWN))
        return found, None
    kind = "custom" if ssl.ca_type == "custom" else "cloud"
    ends_at = min(ends)
    what = f"the server certificate ({kind})"
    found.append(
        expiry("server_cert", what, ends_at, now, warn=th.warn, critical=th.critical, action=action)
    )
    endpoint = ssl.connection_string
    if leaf is not None and endpoint and not names_host(leaf, endpoint):
        message = (
            f"the server certificate does not name {endpoint}, the connection string SSL "
            f"protects: clients with sslmode=verify-full are refused there; "
            + action.replace("renew it before then", "replace it")
        )
        found.append(Finding("server_cert", Severity.WARNING, message, Code.SERVER_CERT_NAME))
    return found, ends_at


def _server_leaf(iid: str, pem: str, found: list[Finding]) -> x509.Certificate | None:
    """The first certificate of ServerCert (the server's own), or None; an unreadable one adds
    a finding (the expiry then rests on SSLExpireTime alone)."""
    if not pem.strip():
        return None
    try:
        return crypto.load_certificates(pem.encode(), source=f"{iid}'s ServerCert")[0]
    except CryptoError as exc:
        message = (
            f"the server certificate cannot be read ({exc}); its expiry rests on SSLExpireTime"
        )
        found.append(Finding("server_cert", Severity.WARNING, message, Code.SERVER_CERT_UNREADABLE))
        return None


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
