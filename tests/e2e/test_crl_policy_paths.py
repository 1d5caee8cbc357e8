"""The one CRL policy, through every command that uploads, signs or judges a CRL: `upload-crl`,
`crl build`, `crl refresh`, `check` and `plan` refuse or repair exactly what would lock users out
(a CRL listing its CA, not yet valid, expiring within the restart margin, with an unhandled
critical extension, holding a certificate, not covering a CA, from another CA)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ObjectIdentifier

from rdsssl.errors import ExitCode
from rdsssl.pki import crypto
from tests.cli.helpers import invoke
from tests.e2e.conftest import Cloud

# The policy judges PEM text, not the service's timing: the documented profile is enough here
# (the procedure, safety and failure modules run under the pessimistic one too).

NOW = datetime.now(timezone.utc).replace(microsecond=0)


def _ca(ca_dir: Path) -> tuple[x509.Certificate, crypto.PrivateKey]:
    cert = x509.load_pem_x509_certificate((ca_dir / "ca.crt").read_bytes())
    key = crypto.load_private_key((ca_dir / "ca.key").read_bytes(), source="ca", passphrase=None)
    return cert, key


def _crl(
    ca_dir: Path,
    *,
    last: datetime = NOW - timedelta(minutes=5),
    next: datetime = NOW + timedelta(days=90),
    serials: tuple[int, ...] = (),
    critical: bool = False,
) -> str:
    """A CRL signed by the store's CA with cryptography's builder, knobs the policy judges."""
    cert, key = _ca(ca_dir)
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(cert.subject)
        .last_update(last)
        .next_update(next)
        .add_extension(x509.CRLNumber(99), critical=False)
    )
    if critical:
        unknown = x509.UnrecognizedExtension(ObjectIdentifier("1.3.6.1.4.1.55555.1"), b"\x05\x00")
        builder = builder.add_extension(unknown, critical=True)
    for serial in serials:
        entry = x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(last)
        builder = builder.add_revoked_certificate(entry.build())
    signed = builder.sign(key, crypto.hash_for(key))
    return signed.public_bytes(serialization.Encoding.PEM).decode()


@pytest.fixture
def ca(fresh: Cloud, tmp_path: Path) -> Path:
    return fresh.new_ca(tmp_path / "ca")


@pytest.fixture
def with_ca(fresh: Cloud, ca: Path) -> Cloud:
    result = fresh.cli("instance", "enable-client-ca", fresh.iid, "--ca-dir", ca, "--yes")
    assert result.exit_code == 0, result.stderr
    return fresh


def _put_on_instance(cloud: Cloud, crl: str) -> None:
    """What an old rdsssl, a person at the console or another tool could have uploaded."""
    conn = cloud.emu.instance(cloud.iid).connection_string
    cloud.emu.state.modify_ssl(
        {
            "DBInstanceId": cloud.iid,
            "ConnectionString": conn,
            "ClientCrlEnabled": "1",
            "ClientCertRevocationList": crl,
        }
    )
    cloud.emu.clock.advance(5.0)
    assert cloud.emu.instance(cloud.iid).status == "Running"


def _serial(ca_dir: Path) -> int:
    return _ca(ca_dir)[0].serial_number


BAD: dict[str, Callable[[Path], str]] = {
    "lists-ca": lambda d: _crl(d, serials=(_serial(d),)),
    "not-yet-valid": lambda d: _crl(d, last=NOW + timedelta(hours=3)),
    "expires-in-margin": lambda d: _crl(d, next=NOW + timedelta(minutes=20)),
    "expired": lambda d: _crl(d, last=NOW - timedelta(days=9), next=NOW - timedelta(days=1)),
    "unhandled-critical-extension": lambda d: _crl(d, critical=True),
}


@pytest.mark.parametrize("code", list(BAD))
def test_upload_crl_refuses_what_would_lock_users_out(with_ca: Cloud, ca: Path, code: str) -> None:
    path = with_ca.work / f"{code}.pem"
    path.write_text(BAD[code](ca))
    before = len(with_ca.calls("ModifyDBInstanceSSL"))
    result = with_ca.cli("--json", "instance", "upload-crl", with_ca.iid, "--crl", path, "--yes")
    assert result.exit_code == ExitCode.BAD_INPUT, result.stderr
    assert "refusing to upload this CRL" in result.stderr
    assert len(with_ca.calls("ModifyDBInstanceSSL")) == before


def test_upload_crl_refuses_a_certificate_in_the_crl_file(with_ca: Cloud, ca: Path) -> None:
    path = with_ca.work / "smuggled.pem"
    path.write_text(_crl(ca) + (ca / "ca.crt").read_text())
    result = with_ca.cli("instance", "upload-crl", with_ca.iid, "--crl", path, "--yes")
    assert result.exit_code == ExitCode.BAD_INPUT
    assert "PostgreSQL would trust a certificate placed in the CRL file" in result.stderr
    assert len(with_ca.calls("ModifyDBInstanceSSL")) == 1


def test_upload_crl_refuses_a_crl_of_another_ca(with_ca: Cloud, tmp_path: Path) -> None:
    other = with_ca.new_ca(tmp_path / "other")
    path = with_ca.work / "foreign.pem"
    path.write_text(_crl(other))
    result = with_ca.cli("instance", "upload-crl", with_ca.iid, "--crl", path, "--yes")
    assert result.exit_code == ExitCode.BAD_INPUT
    assert len(with_ca.calls("ModifyDBInstanceSSL")) == 1


def test_the_margin_is_configurable(with_ca: Cloud, ca: Path) -> None:
    path = with_ca.work / "ten-hours.pem"
    path.write_text(_crl(ca, next=NOW + timedelta(hours=10)))
    refused = with_ca.cli("instance", "upload-crl", with_ca.iid, "--crl", path, "--yes",
                          "--restart-margin", "1d")  # fmt: skip
    assert refused.exit_code == ExitCode.BAD_INPUT, refused.stderr
    taken = with_ca.cli("instance", "upload-crl", with_ca.iid, "--crl", path, "--yes")
    assert taken.exit_code == 0, taken.stderr


@pytest.mark.parametrize("code", ["lists-ca", "not-yet-valid", "expires-in-margin", "expired"])
def test_check_is_critical_and_crl_refresh_repairs_a_bad_crl_on_the_instance(
    with_ca: Cloud, ca: Path, code: str
) -> None:
    cloud = with_ca
    _put_on_instance(cloud, BAD[code](ca))
    checked = cloud.cli("--json", "check", cloud.iid, "--ca-dir", ca)
    assert checked.exit_code == ExitCode.NEEDS_ACTION, checked.stderr
    (entry,) = checked.json()["instances"]
    crl = [f for f in entry["findings"] if f["check"] == "crl" and f["severity"] == "critical"]
    assert code in {f.get("code") for f in crl}, crl
    refreshed = cloud.cli("--json", "crl", "refresh", cloud.iid, "--ca-dir", ca, "--yes")
    assert refreshed.exit_code == 0, refreshed.stderr
    (done,) = refreshed.json()["instances"]
    assert (done["status"], done["reason_code"]) == ("refreshed", code)
    again = cloud.cli("--json", "check", cloud.iid, "--ca-dir", ca)
    findings = again.json()["instances"][0]["findings"]
    assert not [f for f in findings if f["check"] == "crl" and f["severity"] != "ok"]


def test_plan_names_why_the_crl_is_due(with_ca: Cloud, ca: Path, tmp_path: Path) -> None:
    _put_on_instance(with_ca, BAD["lists-ca"](ca))
    config = tmp_path / "rdsssl.toml"
    config.write_text(
        f'[defaults]\nca_dir = "{ca}"\ncrl = true\n[[instances]]\nid = "{with_ca.iid}"\n'
    )
    planned = with_ca.cli("--json", "plan", "-f", config)
    assert planned.exit_code == 0, planned.stderr
    (change,) = planned.json()["instances"][0]["plan"]["changes"]
    assert (change["field"], change["code"]) == ("crl", "lists-ca")


def test_crl_build_refuses_a_crl_that_would_expire_within_the_margin(
    ca: Path, tmp_path: Path
) -> None:
    before = invoke("--json", "ca", "show", "--ca-dir", ca).json()["next_crl_number"]
    result = invoke("crl", "build", "--ca-dir", ca, "--out", tmp_path / "crl.pem", "--days", "1",
                    "--restart-margin", "2d")  # fmt: skip
    assert result.exit_code == ExitCode.BAD_INPUT, result.stderr
    assert "refusing to sign this CRL" in result.stderr
    assert not (tmp_path / "crl.pem").exists()
    assert invoke("--json", "ca", "show", "--ca-dir", ca).json()["next_crl_number"] == before
