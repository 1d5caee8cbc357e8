"""`rdsssl check`'s judgements (rdsssl.ops.check_instance, check_store, check_prometheus) on
crafted states: every finding, its severity, advice and code, and the Prometheus textfile read
back by prometheus_client's parser and checked by promtool (tests/unit/promtext.py)."""

from __future__ import annotations

import dataclasses
import os
import stat
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from cryptography import x509

from rdsssl.errors import ExitCode, InputError, UsageError
from rdsssl.models import CertStatus, InstanceInfo, KeyType, RevocationReason, SslState
from rdsssl.ops.check_findings import (
    CertExpiry,
    Finding,
    InstanceReport,
    Severity,
    StoreReport,
    Thresholds,
)
from rdsssl.ops.check_instance import check_instance
from rdsssl.ops.check_prometheus import (
    STATES,
    InstanceSample,
    StoreSample,
    check_registry,
    prometheus_text,
    write_prometheus,
)
from rdsssl.ops.check_run import CheckOptions, run_checks
from rdsssl.ops.check_store import check_store
from rdsssl.ops.crl_refresh import StoreCrl
from rdsssl.ops.plan import Change, CrlFromStore, Effect, Plan
from rdsssl.ops.renewal_plan import RenewalPlan
from rdsssl.pki import crypto
from rdsssl.pki.hostnames import names_host
from rdsssl.pki.server_certs import issue_server_cert
from rdsssl.store.castore import CaStore
from rdsssl.store.records import CertRecord

from .conftest import NOW, Pki, make_pki
from .promtext import labels, read_metrics

CA = make_pki(KeyType.EC_P256, cn="root-ca1", days=3650)
CA2 = make_pki(KeyType.EC_P256, cn="root-ca2", days=3650, role="ca2")
SOON_CA = make_pki(KeyType.EC_P256, cn="short-ca", days=20, role="short")
SERVER_CA = make_pki(KeyType.EC_P256, cn="db-server-ca", days=3650, role="server-ca")


def _pem(*pkis: Pki) -> str:
    return "".join(crypto.cert_pem(p.cert).decode() for p in pkis)


def _crl(pki: Pki, serials: tuple[int, ...] = (), days: int = 180, at: datetime = NOW) -> str:
    revs = [
        crypto.Revocation(s, at - timedelta(hours=1), RevocationReason.UNSPECIFIED) for s in serials
    ]
    crl = crypto.build_crl(pki.cert, pki.key, revs, number=1, now=at, days=days)
    return crypto.crl_pem(crl).decode()


def _ssl(**kw: object) -> SslState:
    base: dict[str, object] = dict(
        ssl_enabled=True,
        ca_type="aliyun",
        connection_string="pgm-x.pg.rds.aliyuncs.com",
        server_cert_pem="",
        server_ca_url="",
        ssl_expire_time=NOW + timedelta(days=365),
        require_update=False,
        client_ca_pem=_pem(CA),
        crl_pem=_crl(CA),
        acl=None,
        replication_acl=None,
        last_modify_status="success",
        modify_status_reason="",
    )
    base.update(kw)
    return SslState(**base)  # type: ignore[arg-type]


INFO = InstanceInfo(
    "pgm-x",
    "cn-hangzhou",
    "Running",
    "Unlock",
    "PostgreSQL",
    "15.0",
    "cloud_essd",
    "pgm-x.pg.rds.aliyuncs.com",
    5432,
    "Postpaid",
)


def _store(pki: Pki, revoked: frozenset[int] = frozenset()) -> StoreCrl:
    return StoreCrl(
        Path("/ca") / (pki.cert.subject.rfc4514_string()[3:]),
        crypto.fingerprint(pki.cert),
        pki.cert.subject.rfc4514_string(),
        CrlFromStore(revoked=revoked, build=lambda: ""),
    )


def _by_check(report: InstanceReport | StoreReport, check: str) -> list[Finding]:
    return [f for f in report.findings if f.check == check]


def test_a_healthy_instance_is_all_ok() -> None:
    report = check_instance(INFO, _ssl(), now=NOW, stores=[_store(CA)])
    assert report.severity is Severity.OK, [f.message for f in report.findings]
    assert {f.check for f in report.findings} == {"client_ca", "crl", "server_cert", "revocations"}
    assert report.client_ca_not_after == CA.cert.not_valid_after_utc
    assert report.crl_next_update == NOW + timedelta(days=180)
    assert report.pending_revocations == 0
    assert report.to_dict()["status"] == "ok"


@pytest.mark.parametrize(
    ("days_left", "severity"),
    [(400, Severity.OK), (20, Severity.WARNING), (3, Severity.CRITICAL), (-1, Severity.CRITICAL)],
)
def test_client_ca_expiry_is_graded(days_left: int, severity: Severity) -> None:
    now = SOON_CA.cert.not_valid_after_utc - timedelta(days=days_left)
    ssl = _ssl(client_ca_pem=_pem(SOON_CA), crl_pem=_crl(SOON_CA, days=1000))
    found = _by_check(check_instance(INFO, ssl, now=now), "client_ca")
    assert [f.severity for f in found] == [severity]
    if severity is not Severity.OK:
        assert "rdsssl ca renew --ca-dir DIR, then rdsssl apply" in found[0].message
        assert "to change the key instead" in found[0].message
        assert "rdsssl rotate ca pgm-x" in found[0].message


def _renewed(pki: Pki) -> x509.Certificate:
    return crypto.renew_ca(pki.cert, pki.key, now=NOW, days=7300)


def _store_of(cert: x509.Certificate, revoked: frozenset[int] = frozenset()) -> StoreCrl:
    """A store as `crl_refresh.store_crl` reads it, whose CA certificate is `cert`."""
    return StoreCrl(
        Path("/srv/ca"),
        crypto.fingerprint(cert),
        cert.subject.rfc4514_string(),
        CrlFromStore(revoked=revoked, build=lambda: ""),
        crypto.ca_identity(cert),
    )


def test_an_expiring_client_ca_names_the_store_that_renews_it() -> None:
    now = SOON_CA.cert.not_valid_after_utc - timedelta(days=3)
    ssl = _ssl(client_ca_pem=_pem(SOON_CA), crl_pem=_crl(SOON_CA, days=1000))
    renewed = _store_of(_renewed(SOON_CA))  # renewed locally, not applied yet
    (finding,) = _by_check(check_instance(INFO, ssl, now=now, stores=[renewed]), "client_ca")
    assert finding.severity is Severity.CRITICAL
    assert "rdsssl ca renew --ca-dir /srv/ca, then rdsssl apply" in finding.message


def test_a_store_renewed_since_the_instance_was_configured_is_still_its_store() -> None:
    store = _store_of(_renewed(CA), frozenset({0x1001, 0x2002}))
    ssl = _ssl(crl_pem=_crl(CA, serials=(0x1001,)))  # the instance still holds the old CA
    report = check_instance(INFO, ssl, now=NOW, stores=[store])
    (finding,) = _by_check(report, "revocations")
    assert finding.severity is Severity.CRITICAL and "2002" in finding.message
    assert report.pending_revocations == 1
    impostor = make_pki(KeyType.EC_P256, cn="root-ca1", role="same-name-other-key")
    other = check_instance(INFO, ssl, now=NOW, stores=[_store_of(impostor.cert)])
    (refused,) = _by_check(other, "revocations")
    assert refused.severity is Severity.WARNING and "not the CA of" in refused.message


def test_crl_near_next_update_needs_a_refresh() -> None:
    ssl = _ssl(crl_pem=_crl(CA, days=20))
    report = check_instance(
        INFO, ssl, now=NOW, thresholds=Thresholds(crl_min_remaining=timedelta(days=30))
    )
    (crl,) = _by_check(report, "crl")
    assert crl.severity is Severity.WARNING
    assert "rdsssl crl refresh pgm-x" in crl.message
    late = check_instance(INFO, _ssl(crl_pem=_crl(CA, days=2)), now=NOW)
    assert _by_check(late, "crl")[0].severity is Severity.CRITICAL
    expired = check_instance(INFO, _ssl(crl_pem=_crl(CA, days=2)), now=NOW + timedelta(days=3))
    assert "expired" in _by_check(expired, "crl")[0].message


def test_a_ca_without_a_crl_is_critical_and_no_crl_at_all_a_warning() -> None:
    both = _ssl(client_ca_pem=_pem(CA, CA2), crl_pem=_crl(CA))
    found = _by_check(check_instance(INFO, both, now=NOW), "crl")
    assert sorted(f.severity for f in found) == [Severity.OK, Severity.CRITICAL]
    (critical,) = [f for f in found if f.severity is Severity.CRITICAL]
    assert "root-ca2" in critical.message and "unknown ca" in critical.message
    assert critical.code == "missing-ca"
    none = _by_check(check_instance(INFO, _ssl(crl_pem=None), now=NOW), "crl")
    assert [f.severity for f in none] == [Severity.WARNING]
    assert "still accepted" in none[0].message


def test_local_revocations_not_on_the_instance_are_critical() -> None:
    ssl = _ssl(crl_pem=_crl(CA, serials=(0x1001,)))
    report = check_instance(INFO, ssl, now=NOW, stores=[_store(CA, frozenset({0x1001, 0x2002}))])
    (finding,) = _by_check(report, "revocations")
    assert finding.severity is Severity.CRITICAL
    assert "2002" in finding.message and "1001" not in finding.message
    assert "rdsssl crl refresh pgm-x --ca-dir" in finding.message
    assert report.pending_revocations == 1


def test_a_store_of_another_ca_cannot_be_compared() -> None:
    report = check_instance(INFO, _ssl(), now=NOW, stores=[_store(CA2, frozenset({5}))])
    (finding,) = _by_check(report, "revocations")
    assert finding.severity is Severity.WARNING and "not the CA of" in finding.message
    assert report.pending_revocations is None


def test_server_certificate_require_update_and_expiry() -> None:
    flagged = check_instance(INFO, _ssl(require_update=True), now=NOW)
    assert Severity.WARNING in [f.severity for f in _by_check(flagged, "server_cert")]
    soon = check_instance(INFO, _ssl(ssl_expire_time=NOW + timedelta(days=5)), now=NOW)
    (finding,) = _by_check(soon, "server_cert")
    assert finding.severity is Severity.CRITICAL and "RDS console" in finding.message
    assert soon.server_cert_not_after == NOW + timedelta(days=5)


def _server_pem(names: list[str], days: int) -> str:
    leaf = make_pki(KeyType.EC_P256, cn="leaf", role="server-leaf").key.public_key()
    issued = issue_server_cert(SERVER_CA.cert, SERVER_CA.key, leaf, names=names, now=NOW, days=days)
    return crypto.cert_pem(issued.cert).decode() + _pem(SERVER_CA)  # leaf first, then its CA


def test_the_server_certificate_itself_counts_when_it_ends_before_ssl_expire_time() -> None:
    pem = _server_pem(["pgm-x.pg.rds.aliyuncs.com", "pgm-x-pub.example"], days=20)
    ssl = _ssl(ca_type="custom", server_cert_pem=pem, ssl_expire_time=NOW + timedelta(days=365))
    report = check_instance(INFO, ssl, now=NOW)
    (finding,) = _by_check(report, "server_cert")
    assert finding.severity is Severity.WARNING and finding.code.value == "expires-soon"
    assert "the server certificate (custom) expires in 20 days" in finding.message
    assert "rdsssl instance renew-server-cert pgm-x" in finding.message
    assert report.server_cert_not_after == NOW + timedelta(days=20)  # the earlier end
    near = check_instance(INFO, ssl, now=NOW + timedelta(days=15))
    assert _by_check(near, "server_cert")[0].severity is Severity.CRITICAL  # under 7 days
    late = _ssl(server_cert_pem=_server_pem(["pgm-x.pg.rds.aliyuncs.com"], days=300))
    late = dataclasses.replace(late, ssl_expire_time=NOW + timedelta(days=3))
    assert check_instance(INFO, late, now=NOW).server_cert_not_after == NOW + timedelta(days=3)


def test_a_server_certificate_that_does_not_name_the_endpoint_is_a_warning() -> None:
    pem = _server_pem(["pgm-x-pub.example"], days=300)
    report = check_instance(INFO, _ssl(server_cert_pem=pem), now=NOW)
    assert _codes(report, "server_cert") == ["valid", "server-cert-name-mismatch"]
    (mismatch,) = [f for f in report.findings if f.code.value == "server-cert-name-mismatch"]
    assert mismatch.severity is Severity.WARNING
    assert "does not name pgm-x.pg.rds.aliyuncs.com" in mismatch.message
    assert "verify-full" in mismatch.message
    wildcard = _server_pem(["*.pg.rds.aliyuncs.com"], days=300)
    assert _codes(check_instance(INFO, _ssl(server_cert_pem=wildcard), now=NOW), "server_cert") == [
        "valid"
    ]


def test_an_unreadable_or_missing_server_certificate() -> None:
    garbage = _ssl(
        server_cert_pem="-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n"
    )
    report = check_instance(INFO, garbage, now=NOW)
    assert _codes(report, "server_cert") == ["server-cert-unreadable", "valid"]
    assert report.server_cert_not_after == NOW + timedelta(days=365)  # SSLExpireTime alone
    unknown = check_instance(INFO, _ssl(ssl_expire_time=None), now=NOW)
    assert _codes(unknown, "server_cert") == ["server-cert-unknown"]
    assert unknown.server_cert_not_after is None
    assert _by_check(unknown, "server_cert")[0].severity is Severity.WARNING


def test_require_update_says_how_to_renew_by_kind() -> None:
    cloud = check_instance(INFO, _ssl(require_update=True), now=NOW)
    (flag,) = [f for f in cloud.findings if f.code.value == "server-cert-update-required"]
    assert "rdsssl instance renew-server-cert pgm-x" in flag.message
    assert "rdsssl instance server-ca pgm-x" in flag.message  # cloud: clients need the new CA
    pem = _server_pem(["pgm-x.pg.rds.aliyuncs.com"], days=300)
    custom = check_instance(
        INFO, _ssl(require_update=True, ca_type="custom", server_cert_pem=pem), now=NOW
    )
    (flag,) = [f for f in custom.findings if f.code.value == "server-cert-update-required"]
    assert "from the server CA" in flag.message and "server-ca pgm-x" not in flag.message


def test_failed_last_change_ssl_off_and_no_client_ca() -> None:
    failed = check_instance(
        INFO, _ssl(last_modify_status="failed", modify_status_reason="bad CRL"), now=NOW
    )
    (finding,) = _by_check(failed, "last_change")
    assert finding.severity is Severity.WARNING and "bad CRL" in finding.message
    off = check_instance(INFO, _ssl(ssl_enabled=False), now=NOW)
    assert off.severity is Severity.CRITICAL and "SSL is off" in off.findings[-1].message
    assert "rdsssl instance enable-ssl pgm-x" in off.findings[-1].message
    bare = check_instance(INFO, _ssl(client_ca_pem=None, crl_pem=None), now=NOW)
    assert _by_check(bare, "client_ca")[0].severity is Severity.WARNING
    assert bare.client_ca_not_after is None


def test_drift_lists_every_change() -> None:
    plan = Plan(
        "pgm-x",
        (
            Change("acl", "prefer", "cert", Effect.ACL_LOCK),
            Change("crl", "(none)", "a fresh CRL (no CRL on the instance)", Effect.RESTART),
        ),
        None,
    )
    report = check_instance(INFO, _ssl(), now=NOW, drift=plan, drift_source="prod.toml")
    (finding,) = _by_check(report, "drift")
    assert finding.severity is Severity.WARNING
    assert "acl: prefer -> cert" in finding.message and "crl: (none) ->" in finding.message
    assert "rdsssl apply -f prod.toml" in finding.message
    same = check_instance(INFO, _ssl(), now=NOW, drift=Plan("pgm-x", (), None))
    assert _by_check(same, "drift")[0].severity is Severity.OK


def _record(cn: str, not_after: datetime) -> CertRecord:
    return CertRecord(
        0xABC,
        cn,
        None,
        not_after,
        CertStatus.VALID,
        None,
        None,
        "fp",
        "ca-fp",
        "ec-p256",
        "issued",
        NOW,
    )


def test_store_checks_ca_expiry_and_renewals() -> None:
    due = RenewalPlan(due=[_record("alice", NOW + timedelta(days=10))], blocked=[])
    report = check_store(Path("/ca"), CA.cert, due, now=NOW)
    (renewal,) = _by_check(report, "renewal")
    assert renewal.severity is Severity.WARNING
    assert "rdsssl cert renew --ca-dir /ca --user alice" in renewal.message
    assert report.due_renewal == 1 and report.severity is Severity.WARNING
    quiet = check_store(Path("/ca"), CA.cert, RenewalPlan([], []), now=NOW)
    assert quiet.severity is Severity.OK
    ending = check_store(Path("/ca"), SOON_CA.cert, RenewalPlan([], []), now=NOW)
    (ca,) = _by_check(ending, "ca")
    assert ca.severity is Severity.WARNING
    assert "renew it with the same key (rdsssl ca renew --ca-dir /ca, then rdsssl apply" in (
        ca.message
    )
    assert "only a key change needs a rotation" in ca.message
    stuck = _record("bob", SOON_CA.cert.not_valid_after_utc)
    blocked = check_store(Path("/ca"), SOON_CA.cert, RenewalPlan([], [stuck]), now=NOW)
    (renewal,) = _by_check(blocked, "renewal")
    assert "renew the CA first (rdsssl ca renew --ca-dir /ca)" in renewal.message


def _codes(report: InstanceReport | StoreReport, check: str) -> list[str]:
    """The codes of one check's findings, read from the JSON shape (where programs read them)."""
    shape = report.to_dict()["findings"]
    assert isinstance(shape, list)
    return [f["code"] for f in shape if f["check"] == check]


def test_every_instance_finding_carries_a_stable_code() -> None:
    healthy = check_instance(INFO, _ssl(), now=NOW, stores=[_store(CA)])
    for check in ("client_ca", "crl", "server_cert"):
        assert _codes(healthy, check) == ["valid"]
    assert _codes(healthy, "revocations") == ["revocations-live"]
    assert _codes(check_instance(INFO, _ssl(crl_pem=None), now=NOW), "crl") == ["no-crl"]
    pending = check_instance(INFO, _ssl(), now=NOW, stores=[_store(CA, frozenset({7}))])
    assert _codes(pending, "revocations") == ["revocations-pending"]
    foreign = check_instance(INFO, _ssl(), now=NOW, stores=[_store(CA2)])
    assert _codes(foreign, "revocations") == ["foreign-ca"]
    server = _ssl(require_update=True, ssl_expire_time=NOW + timedelta(days=5))
    flagged = check_instance(INFO, server, now=NOW)
    assert _codes(flagged, "server_cert") == ["server-cert-update-required", "expires-soon"]
    gone = check_instance(INFO, _ssl(ssl_expire_time=NOW - timedelta(days=1)), now=NOW)
    assert _codes(gone, "server_cert") == ["expired"]
    failed = _ssl(last_modify_status="failed", ssl_enabled=False)
    creating = dataclasses.replace(INFO, status="Creating")
    off = check_instance(creating, failed, now=NOW)
    assert [f.code for f in off.findings] == ["instance-status", "last-change-failed", "ssl-off"]
    bare = check_instance(INFO, _ssl(client_ca_pem=None, crl_pem=None), now=NOW)
    assert _codes(bare, "client_ca") == ["no-client-ca"]
    same = Plan("pgm-x", (), None)
    assert _codes(check_instance(INFO, _ssl(), now=NOW, drift=same), "drift") == ["in-sync"]
    change = Plan("pgm-x", (Change("acl", "prefer", "cert", Effect.ACL_LOCK),), None)
    assert _codes(check_instance(INFO, _ssl(), now=NOW, drift=change), "drift") == ["drift"]


def test_every_store_finding_carries_a_stable_code() -> None:
    due = RenewalPlan(due=[_record("alice", NOW + timedelta(days=10))], blocked=[])
    weak = crypto.KeyProtection("pbes2", "pbkdf2-hmac-sha1", 1000, "aes-128-cbc")
    report = check_store(Path("/ca"), CA.cert, due, now=NOW, key=weak)
    assert _codes(report, "ca_key") == ["weak-key-encryption"]
    assert _codes(report, "ca") == ["valid"] and _codes(report, "renewal") == ["renewal-due"]
    stuck = RenewalPlan([], [_record("bob", SOON_CA.cert.not_valid_after_utc)])
    plain = check_store(Path("/ca"), SOON_CA.cert, stuck, now=NOW, key=crypto.KeyProtection("none"))
    assert _codes(plain, "ca_key") == ["key-unencrypted"]
    assert _codes(plain, "ca") == ["expires-soon"]
    assert _codes(plain, "renewal") == ["renewal-blocked"]
    strong = crypto.KeyProtection("pbes2", "pbkdf2-hmac-sha256", 600_000, "aes-256-cbc")
    quiet = check_store(Path("/ca"), CA.cert, RenewalPlan([], []), now=NOW, key=strong)
    assert _codes(quiet, "ca_key") == ["key-encrypted"]
    assert _codes(quiet, "renewal") == ["nothing-due"]


# ------------------------------------------------------------------ Prometheus exposition format

TIMESTAMPS = (
    "rdsssl_client_ca_expiration_timestamp_seconds",
    "rdsssl_crl_next_update_timestamp_seconds",
    "rdsssl_server_certificate_expiration_timestamp_seconds",
)


def test_prometheus_text_names_types_labels_and_values() -> None:
    ok = check_instance(INFO, _ssl(), now=NOW, stores=[_store(CA, frozenset({7}))])
    store = check_store(Path('/ca "main"'), CA.cert, RenewalPlan([], []), now=NOW)
    alice = CertExpiry("alice", "1f", NOW + timedelta(days=40))
    store = dataclasses.replace(store, certificates=(alice,))
    text = prometheus_text(
        [InstanceSample("pgm-x", "", ok), InstanceSample("pgm-gone", "cn-beijing", None)],
        [StoreSample(store.ca_dir, store), StoreSample(Path("/gone"), None)],
        now=NOW,
    )
    metrics = read_metrics(text)
    assert {f.type for f in metrics.values()} == {"gauge"}
    assert all(f.help for f in metrics.values())
    x = labels(rds_instance="pgm-x", region="cn-hangzhou")  # the region of the report
    status = metrics["rdsssl_check_status"].samples
    assert {k: v for k, v in status.items() if v} == {
        labels(rds_instance="pgm-x", region="cn-hangzhou", state="critical"): 1.0,
        labels(rds_instance="pgm-gone", region="cn-beijing", state="unknown"): 1.0,
    }
    assert len(status) == 2 * len(STATES)  # one-hot: every state, 0 for the others
    assert metrics["rdsssl_local_revocations_pending"].samples == {x: 1.0}
    assert metrics["rdsssl_crl_next_update_timestamp_seconds"].samples == {
        x: (NOW + timedelta(days=180)).timestamp()
    }
    assert metrics["rdsssl_client_ca_expiration_timestamp_seconds"].samples == {
        x: CA.cert.not_valid_after_utc.timestamp()
    }
    assert metrics["rdsssl_server_certificate_expiration_timestamp_seconds"].samples == {
        x: (NOW + timedelta(days=365)).timestamp()
    }
    main = '/ca "main"'
    store_status = metrics["rdsssl_ca_check_status"].samples
    assert {k: v for k, v in store_status.items() if v} == {
        labels(ca_dir=main, state="ok"): 1.0,
        labels(ca_dir="/gone", state="unknown"): 1.0,
    }
    assert metrics["rdsssl_ca_expiration_timestamp_seconds"].samples == {
        labels(ca_dir=main): CA.cert.not_valid_after_utc.timestamp()
    }
    assert metrics["rdsssl_certificates_due_renewal"].samples == {labels(ca_dir=main): 0.0}
    assert metrics["rdsssl_certificate_expiration_timestamp_seconds"].samples == {
        labels(ca=main, user="alice", serial="1f"): alice.not_after.timestamp()
    }
    assert metrics["rdsssl_check_timestamp_seconds"].samples == {(): NOW.timestamp()}
    assert "instance=" not in text.replace("rds_instance=", "")  # never `instance`


def test_prometheus_text_with_nothing_checked_has_only_the_timestamp() -> None:
    when = datetime(2030, 1, 1, tzinfo=timezone.utc)
    metrics = read_metrics(prometheus_text([], [], now=when))
    assert {n: f.samples for n, f in metrics.items() if f.samples} == {
        "rdsssl_check_timestamp_seconds": {(): when.timestamp()}
    }
    assert all(name in metrics for name in TIMESTAMPS)  # HELP and TYPE all the same


def test_write_prometheus_replaces_the_file_atomically_and_readably(tmp_path: Path) -> None:
    prom = tmp_path / "rdsssl.prom"
    prom.write_text("old\n")
    os.chmod(prom, 0o600)
    write_prometheus(prom, check_registry([], [], now=NOW))
    assert "rdsssl_check_timestamp_seconds" in read_metrics(prom.read_text())
    assert stat.S_IMODE(prom.stat().st_mode) == 0o644
    assert [p.name for p in tmp_path.iterdir()] == ["rdsssl.prom"]  # no temp file left
    with pytest.raises(InputError, match="cannot write the Prometheus file"):
        write_prometheus(tmp_path / "missing" / "x.prom", check_registry([], [], now=NOW))


# ------------------------------------------------------------------ the library entry point


def test_run_checks_needs_something_to_check() -> None:
    with pytest.raises(UsageError, match="--ca-dir DIR"):
        CheckOptions().check(selecting=False)
    CheckOptions(ca_dirs=(Path("/ca"),)).check(selecting=False)
    CheckOptions().check(selecting=True)


def test_run_checks_on_stores_alone_writes_the_prometheus_file(tmp_path: Path) -> None:
    ca_dir = tmp_path / "ca"
    CaStore.init(
        ca_dir, cn="run-ca", key_type=KeyType.EC_P256, days=20, passphrase=None, now=NOW
    ).close()
    prom = tmp_path / "rdsssl.prom"
    options = CheckOptions(ca_dirs=(ca_dir,), prometheus_file=prom)
    run = run_checks(None, [], options, now=NOW)
    assert run.instances == [] and [o.instance_id for o in run.stores] == [str(ca_dir)]
    assert run.exit_code == ExitCode.NEEDS_ACTION and run.needs_action
    assert run.counts() == {"ok": 0, "need action": 1}
    status = read_metrics(prom.read_text())["rdsssl_ca_check_status"].samples
    assert status[labels(ca_dir=str(ca_dir), state="warning")] == 1.0
    assert sum(status.values()) == 1.0


def test_run_checks_counts_a_store_named_twice_once_and_exports_its_valid_certificates(
    tmp_path: Path,
) -> None:
    ca_dir = tmp_path / "ca"
    then = NOW - timedelta(days=40)
    with CaStore.init(
        ca_dir, cn="run-ca", key_type=KeyType.EC_P256, days=400, passphrase=None, now=then
    ) as store:
        store.unlock(None)
        expired = store.issue(user="carol", key_type=KeyType.EC_P256, days=10, now=then)
        alice = store.issue(user="alice", key_type=KeyType.EC_P256, days=90, now=NOW)
        bob = store.issue(user="bob", key_type=KeyType.EC_P256, days=90, now=NOW)
        store.revoke(serial=bob.record.serial, now=NOW)
    (tmp_path / "link").symlink_to(ca_dir)
    (tmp_path / "sub").mkdir()
    prom = tmp_path / "rdsssl.prom"
    names = (ca_dir, tmp_path / "link", tmp_path / "sub" / ".." / "ca")
    run = run_checks(None, [], CheckOptions(ca_dirs=names, prometheus_file=prom), now=NOW)
    assert [o.instance_id for o in run.stores] == [str(ca_dir.resolve())]
    metrics = read_metrics(prom.read_text())
    where = str(ca_dir.resolve())
    status = metrics["rdsssl_ca_check_status"].samples
    assert set(status) == {labels(ca_dir=where, state=s) for s in STATES}  # one store, once
    assert sum(status.values()) == 1.0 and status[labels(ca_dir=where, state="unknown")] == 0
    assert metrics["rdsssl_certificate_expiration_timestamp_seconds"].samples == {
        labels(ca=where, user="alice", serial=alice.record.serial_hex): (
            alice.record.not_after.timestamp()
        )
    }  # not bob (revoked), not carol (expired)
    assert expired.record.not_after < NOW


def test_the_server_certificate_gauge_is_the_certificate_s_own_end() -> None:
    pem = _server_pem(["pgm-x.pg.rds.aliyuncs.com"], days=40)
    report = check_instance(INFO, _ssl(ca_type="custom", server_cert_pem=pem), now=NOW)
    metrics = read_metrics(prometheus_text([InstanceSample("pgm-x", "", report)], [], now=NOW))
    assert metrics["rdsssl_server_certificate_expiration_timestamp_seconds"].samples == {
        labels(rds_instance="pgm-x", region="cn-hangzhou"): (NOW + timedelta(days=40)).timestamp()
    }
    off = check_instance(INFO, _ssl(ssl_enabled=False), now=NOW)  # no certificate: no sample
    metrics = read_metrics(prometheus_text([InstanceSample("pgm-x", "", off)], [], now=NOW))
    assert "rdsssl_server_certificate_expiration_timestamp_seconds" not in metrics or not (
        metrics["rdsssl_server_certificate_expiration_timestamp_seconds"].samples
    )


@pytest.mark.parametrize(
    ("names", "host", "named"),
    [
        (["db.example"], "DB.example.", True),
        (["*.example"], "db.example", True),
        (["*.example"], "a.db.example", False),
        (["*.example"], "example", False),
        (["10.0.0.5"], "10.0.0.5", True),
        (["10.0.0.5"], "10.0.0.6", False),
    ],
)
def test_names_host_follows_verify_full(names: list[str], host: str, named: bool) -> None:
    pem = _server_pem(names, days=30)
    cert = crypto.load_certificates(pem.encode(), source="test")[0]
    assert names_host(cert, host) is named
