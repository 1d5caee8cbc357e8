"""The openssl CLI, a tool nobody here wrote, must agree with rdsssl.pki.crypto.

It verifies our certificates and CRLs (and proves a revoked certificate is refused), and rdsssl
adopts a CA and a CSR made with the exact commands of the manual procedure. The `openssl` binary
is required: its absence is an error, never a skip.
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
from datetime import datetime, timezone
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from rdsssl.models import KeyType, RevocationReason
from rdsssl.pki import crypto

VERIFY_KEY_TYPES = [KeyType.EC_P256, KeyType.RSA_2048, KeyType.ED25519]
MANUAL_PROCEDURE = [
    'openssl req -new -x509 -days 3650 -nodes -out ca1.crt -keyout ca1.key -subj "/CN=root-ca1"',
    'openssl req -new -nodes -newkey rsa:2048 -keyout client.key -out client.csr -subj "/CN=alice"',
]


@pytest.fixture(scope="module")
def openssl() -> str:
    path = shutil.which("openssl")
    assert path, "the openssl CLI is required for the interop tests (apt-get install openssl)"
    return path


def _run(openssl: str, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [openssl, *args], cwd=cwd, capture_output=True, text=True, timeout=60, check=False
    )


def _ok(openssl: str, *args: str, cwd: Path) -> str:
    result = _run(openssl, *args, cwd=cwd)
    assert result.returncode == 0, f"openssl {' '.join(args)}: {result.stdout}{result.stderr}"
    return result.stdout + result.stderr


def _verify(
    openssl: str, leaf: str, cwd: Path, ca: str = "ca.crt"
) -> subprocess.CompletedProcess[str]:
    return _run(
        openssl,
        "verify",
        "-CAfile",
        ca,
        "-crl_check",
        "-CRLfile",
        "crl.pem",
        "-purpose",
        "sslclient",
        leaf,
        cwd=cwd,
    )


@pytest.mark.parametrize("key_type", VERIFY_KEY_TYPES, ids=str)
def test_openssl_verifies_our_certs_and_crl(
    openssl: str, key_type: KeyType, tmp_path: Path
) -> None:
    now = datetime.now(timezone.utc)
    ca_key = crypto.generate_key(key_type)
    ca = crypto.make_ca(ca_key, cn="root-ca1", now=now)
    good = crypto.issue_client_cert(
        ca, ca_key, crypto.generate_key(key_type).public_key(), user="alice", now=now
    ).cert
    bad = crypto.issue_client_cert(
        ca, ca_key, crypto.generate_key(key_type).public_key(), user="bob", now=now
    ).cert
    revoked = crypto.Revocation(
        serial=bad.serial_number,
        revoked_at=now,
        reason=RevocationReason.KEY_COMPROMISE,
        not_after=bad.not_valid_after_utc,
    )
    crl = crypto.build_crl(ca, ca_key, [revoked], number=7, now=now)
    (tmp_path / "ca.crt").write_bytes(crypto.cert_pem(ca))
    (tmp_path / "good.crt").write_bytes(crypto.cert_pem(good))
    (tmp_path / "bad.crt").write_bytes(crypto.cert_pem(bad))
    (tmp_path / "crl.pem").write_bytes(crypto.crl_pem(crl))

    accepted = _verify(openssl, "good.crt", tmp_path)
    assert accepted.returncode == 0, accepted.stdout + accepted.stderr
    assert "good.crt: OK" in accepted.stdout

    refused = _verify(openssl, "bad.crt", tmp_path)
    assert refused.returncode != 0
    assert "certificate revoked" in refused.stdout + refused.stderr

    assert "verify OK" in _ok(
        openssl, "crl", "-in", "crl.pem", "-CAfile", "ca.crt", "-noout", cwd=tmp_path
    )
    text = _ok(openssl, "crl", "-in", "crl.pem", "-noout", "-text", cwd=tmp_path)
    assert "Version 2" in text
    assert "X509v3 CRL Number" in text and "7" in text
    assert "X509v3 Authority Key Identifier" in text
    assert "Key Compromise" in text
    assert crypto.serial_hex(bad.serial_number).upper() in text.replace(":", "").upper()


def test_openssl_rejects_a_crl_from_another_ca(openssl: str, tmp_path: Path) -> None:
    now = datetime.now(timezone.utc)
    key, other_key = crypto.generate_key(), crypto.generate_key()
    crl = crypto.build_crl(crypto.make_ca(key, cn="ca", now=now), key, [], number=1, now=now)
    (tmp_path / "crl.pem").write_bytes(crypto.crl_pem(crl))
    (tmp_path / "other.crt").write_bytes(
        crypto.cert_pem(crypto.make_ca(other_key, cn="ca", now=now))
    )
    result = _run(openssl, "crl", "-in", "crl.pem", "-CAfile", "other.crt", "-noout", cwd=tmp_path)
    assert "verify OK" not in result.stdout + result.stderr
    assert "verify failure" in result.stdout + result.stderr


def test_manual_procedure_ca_and_csr_are_adopted(openssl: str, tmp_path: Path) -> None:
    for command in MANUAL_PROCEDURE:  # verbatim, as a runbook has them
        _ok(openssl, *shlex.split(command)[1:], cwd=tmp_path)
    now = datetime.now(timezone.utc)

    [ca] = crypto.load_ca_certificates(
        (tmp_path / "ca1.crt").read_bytes(), source="ca1.crt", now=now
    )
    ca_key = crypto.load_private_key(
        (tmp_path / "ca1.key").read_bytes(), source="ca1.key", passphrase=None
    )
    crypto.check_key_matches(ca, ca_key, source="ca1.key")
    assert crypto.inspect_cert(ca).cn == "root-ca1" and crypto.inspect_cert(ca).is_ca

    csr = crypto.load_csr((tmp_path / "client.csr").read_bytes(), source="client.csr")
    issued = crypto.sign_csr(ca, ca_key, csr, user=None, now=now)
    assert crypto.inspect_cert(issued.cert).cn == "alice"
    (tmp_path / "client.crt").write_bytes(crypto.cert_pem(issued.cert))
    assert "client.crt: OK" in _ok(
        openssl, "verify", "-CAfile", "ca1.crt", "-purpose", "sslclient", "client.crt", cwd=tmp_path
    )
    # the certificate really carries the key of client.key
    modulus_cert = _ok(openssl, "x509", "-in", "client.crt", "-noout", "-modulus", cwd=tmp_path)
    modulus_key = _ok(openssl, "rsa", "-in", "client.key", "-noout", "-modulus", cwd=tmp_path)
    assert modulus_cert == modulus_key

    # and revoking it with a CRL signed by the hand-made CA works for openssl too
    revocation = crypto.Revocation(
        serial=issued.cert.serial_number, revoked_at=now, reason=RevocationReason.SUPERSEDED
    )
    crl = crypto.build_crl(ca, ca_key, [revocation], number=1, now=now)
    (tmp_path / "crl.pem").write_bytes(crypto.crl_pem(crl))
    refused = _verify(openssl, "client.crt", tmp_path, ca="ca1.crt")
    assert refused.returncode != 0
    assert "certificate revoked" in refused.stdout + refused.stderr


def test_openssl_reads_our_key_exports(openssl: str, tmp_path: Path) -> None:
    now = datetime.now(timezone.utc)
    ca_key, key = crypto.generate_key(), crypto.generate_key(KeyType.RSA_2048)
    ca = crypto.make_ca(ca_key, cn="root-ca1", now=now)
    cert = crypto.issue_client_cert(ca, ca_key, key.public_key(), user="alice", now=now).cert
    (tmp_path / "client.key").write_bytes(crypto.key_pem(key, b"s3cret"))
    (tmp_path / "client.pk8").write_bytes(crypto.key_pk8_der(key))
    (tmp_path / "client.p12").write_bytes(
        crypto.pkcs12(cert, key, ca, name="alice", passphrase=b"s3cret")
    )
    _ok(openssl, "pkey", "-in", "client.key", "-passin", "pass:s3cret", "-noout", cwd=tmp_path)
    wrong = _run(
        openssl, "pkey", "-in", "client.key", "-passin", "pass:nope", "-noout", cwd=tmp_path
    )
    assert wrong.returncode != 0
    _ok(openssl, "pkey", "-inform", "DER", "-in", "client.pk8", "-noout", cwd=tmp_path)
    listing = _ok(
        openssl, "pkcs12", "-in", "client.p12", "-passin", "pass:s3cret", "-nokeys", cwd=tmp_path
    )
    assert "subject=CN = alice" in listing and "subject=CN = root-ca1" in listing


def test_openssl_reads_our_ca_key(openssl: str, tmp_path: Path) -> None:
    key = crypto.generate_key()
    (tmp_path / "ca.key").write_bytes(crypto.ca_key_pem(key, b"s3cret pw"))
    public = _ok(
        openssl, "pkey", "-in", "ca.key", "-passin", "pass:s3cret pw", "-pubout", cwd=tmp_path
    )
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    assert (
        public.strip()
        == key.public_key().public_bytes(serialization.Encoding.PEM, spki).decode().strip()
    )
    wrong = _run(openssl, "pkey", "-in", "ca.key", "-passin", "pass:nope", "-noout", cwd=tmp_path)
    assert wrong.returncode != 0
    # and openssl sees the parameters we claim: PBES2, PBKDF2 + hmacWithSHA256, AES-256-CBC
    parsed = _ok(openssl, "asn1parse", "-in", "ca.key", cwd=tmp_path)
    for name in (":PBES2", ":PBKDF2", ":hmacWithSHA256", ":aes-256-cbc"):
        assert name in parsed
    rounds = format(crypto.KDF_ROUNDS, "X")
    rounds = rounds.zfill(len(rounds) + len(rounds) % 2)  # openssl prints whole bytes: 0927C0
    assert f"prim:INTEGER:{rounds}\n" in parsed.replace(" ", "")


OPENSSL_PKCS8 = {
    "strong": (
        ["-v2", "aes-256-cbc", "-v2prf", "hmacWithSHA256", "-iter", "600000"],
        crypto.KeyProtection("pbes2", "pbkdf2-hmac-sha256", 600_000, "aes-256-cbc"),
    ),
    "sha1-aes128": (
        ["-v2", "aes-128-cbc", "-v2prf", "hmacWithSHA1", "-iter", "1000"],
        crypto.KeyProtection("pbes2", "pbkdf2-hmac-sha1", 1000, "aes-128-cbc"),
    ),
    "pbes1": (
        ["-v1", "PBE-SHA1-3DES", "-iter", "2048"],
        crypto.KeyProtection("pkcs12-pbe", "pkcs12-kdf-sha1", 2048, "des-ede3-cbc"),
    ),
    "scrypt": (["-scrypt"], crypto.KeyProtection("pbes2", "scrypt", 16384, "aes-256-cbc")),
}


@pytest.mark.parametrize("variant", list(OPENSSL_PKCS8))
def test_key_protection_of_keys_encrypted_by_openssl(
    openssl: str, variant: str, tmp_path: Path
) -> None:
    args, expected = OPENSSL_PKCS8[variant]
    (tmp_path / "plain.key").write_bytes(crypto.key_pem(crypto.generate_key()))
    _ok(openssl, "pkcs8", "-topk8", "-in", "plain.key", *args, "-passout", "pass:pw",
        "-out", "ca.key", cwd=tmp_path)  # fmt: skip
    data = (tmp_path / "ca.key").read_bytes()
    protection = crypto.key_protection(data, source="ca.key")
    assert protection == expected
    assert protection.weak is (variant != "strong")
    crypto.load_private_key(data, source="ca.key", passphrase=b"pw")  # and it opens


def test_key_protection_of_a_traditional_openssl_key(openssl: str, tmp_path: Path) -> None:
    (tmp_path / "plain.key").write_bytes(crypto.key_pem(crypto.generate_key()))
    _ok(openssl, "pkey", "-in", "plain.key", "-traditional", "-aes256", "-passout", "pass:pw",
        "-out", "ca.key", cwd=tmp_path)  # fmt: skip
    protection = crypto.key_protection((tmp_path / "ca.key").read_bytes(), source="ca.key")
    assert protection == crypto.KeyProtection("traditional", "openssl-md5", 1, "aes-256-cbc")
    assert protection.weak
