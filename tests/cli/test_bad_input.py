"""Bad input, one test per case: exit 3, one line naming the file and the problem, and the CA
store (or the would-be store) byte-identical afterwards."""

from __future__ import annotations

import os
import shutil
import sqlite3
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, rsa

from rdsssl.models import KeyType
from rdsssl.pki import crypto
from tests.cli.helpers import Result, invoke, issue, snapshot


def error_line(result: Result) -> str:
    """The single error line; anything else on stderr is a failure of the one-line rule."""
    assert result.exit_code == 3, (result.exit_code, result.stderr)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, lines
    assert lines[0].startswith("rdsssl: error: ")
    return lines[0]


@pytest.fixture
def target(tmp_path: Path) -> Path:
    """An empty directory that `ca import` would turn into a store."""
    path = tmp_path / "new-ca"
    path.mkdir(mode=0o700)
    return path


def pem_files(tmp_path: Path, *, ca: bool = True, expired: bool = False) -> tuple[Path, Path]:
    """A CA (or leaf) certificate and its key, written as PEM files."""
    key = crypto.generate_key(KeyType.EC_P256)
    now = datetime.now(timezone.utc)
    if ca:
        made = now - timedelta(days=30) if expired else now
        cert = crypto.make_ca(key, cn="root-ca1", now=made, days=10 if expired else 100)
    else:
        ca_key = crypto.generate_key(KeyType.EC_P256)
        ca_cert = crypto.make_ca(ca_key, cn="other", now=now)
        cert = crypto.issue_client_cert(
            ca_cert, ca_key, key.public_key(), user="leaf", now=now
        ).cert
    cert_path, key_path = tmp_path / "ca1.crt", tmp_path / "ca1.key"
    cert_path.write_bytes(crypto.cert_pem(cert))
    key_path.write_bytes(crypto.key_pem(key))
    return cert_path, key_path


def test_not_pem(ca_dir: Path, tmp_path: Path) -> None:
    garbage = tmp_path / "notes.txt"
    garbage.write_text("this is not a certificate\n")
    before = snapshot(ca_dir)
    line = error_line(invoke("cert", "revoke", "--ca-dir", ca_dir, "--cert", garbage))
    assert f"{garbage}: not PEM" in line
    assert snapshot(ca_dir) == before


def test_import_not_pem(target: Path, tmp_path: Path) -> None:
    _, key = pem_files(tmp_path)
    garbage = tmp_path / "garbage.crt"
    garbage.write_bytes(b"\x00\x01binary junk")
    before = snapshot(target)
    line = error_line(
        invoke(
            "ca", "import", "--ca-dir", target, "--cert", garbage, "--key", key, "--no-passphrase"
        )
    )
    assert f"{garbage}: not PEM" in line
    assert snapshot(target) == before


def test_ca_without_ca_true(target: Path, tmp_path: Path) -> None:
    cert, key = pem_files(tmp_path, ca=False)
    before = snapshot(target)
    line = error_line(
        invoke("ca", "import", "--ca-dir", target, "--cert", cert, "--key", key, "--no-passphrase")
    )
    assert str(cert) in line and "CA:TRUE" in line
    assert snapshot(target) == before


def test_key_not_matching_the_certificate(target: Path, tmp_path: Path) -> None:
    cert, _ = pem_files(tmp_path)
    other_key = tmp_path / "other.key"
    other_key.write_bytes(crypto.key_pem(crypto.generate_key(KeyType.EC_P256)))
    before = snapshot(target)
    line = error_line(
        invoke(
            "ca",
            "import",
            "--ca-dir",
            target,
            "--cert",
            cert,
            "--key",
            other_key,
            "--no-passphrase",
        )
    )
    assert f"{other_key}: the private key does not match" in line
    assert snapshot(target) == before


def test_expired_ca(target: Path, tmp_path: Path) -> None:
    cert, key = pem_files(tmp_path, expired=True)
    before = snapshot(target)
    line = error_line(
        invoke("ca", "import", "--ca-dir", target, "--cert", cert, "--key", key, "--no-passphrase")
    )
    assert str(cert) in line and "expired" in line
    assert snapshot(target) == before


def test_wrong_passphrase(enc_ca_dir: Path, tmp_path: Path) -> None:
    before = snapshot(enc_ca_dir)
    result = invoke(
        "cert",
        "issue",
        "--ca-dir",
        enc_ca_dir,
        "--user",
        "alice",
        "--out",
        tmp_path / "alice",
        env={"RDSSSL_CA_PASSPHRASE": "wrong horse"},
    )
    assert error_line(result) == f"rdsssl: error: wrong passphrase for {enc_ca_dir}/ca.key"
    assert "wrong horse" not in result.stdout + result.stderr
    assert snapshot(enc_ca_dir) == before
    assert not (tmp_path / "alice").exists()


def test_wrong_passphrase_from_a_prompt(enc_ca_dir: Path, tmp_path: Path) -> None:
    before = snapshot(enc_ca_dir)
    result = invoke(
        "crl",
        "build",
        "--ca-dir",
        enc_ca_dir,
        "--out",
        tmp_path / "crl.pem",
        interactive=True,
        input="typo\n",
    )
    assert result.exit_code == 3
    assert f"wrong passphrase for {enc_ca_dir}/ca.key" in result.stderr
    assert "typo" not in result.stdout + result.stderr
    assert snapshot(enc_ca_dir) == before


@pytest.mark.parametrize("user", ["pg_monitor", "", "x" * 64, "public"])
def test_invalid_role_name(ca_dir: Path, tmp_path: Path, user: str) -> None:
    before = snapshot(ca_dir)
    line = error_line(
        invoke("cert", "issue", "--ca-dir", ca_dir, "--user", user, "--out", tmp_path / "out")
    )
    assert f"invalid database user name {user!r}" in line
    assert snapshot(ca_dir) == before
    assert not (tmp_path / "out").exists()


def test_csr_with_a_bad_signature(ca_dir: Path, tmp_path: Path) -> None:
    key = crypto.generate_key(KeyType.EC_P256)
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "mallory")]))
        .sign(key, crypto.hash_for(key))
    )
    der = bytearray(csr.public_bytes(serialization.Encoding.DER))
    der[-1] ^= 0x01  # last byte of the signature
    bad = tmp_path / "mallory.csr"
    bad.write_bytes(x509.load_der_x509_csr(bytes(der)).public_bytes(serialization.Encoding.PEM))
    before = snapshot(ca_dir)
    line = error_line(invoke("cert", "sign", "--ca-dir", ca_dir, "--csr", bad))
    assert f"{bad}: the CSR signature does not verify" in line
    assert snapshot(ca_dir) == before


def test_revoking_an_unknown_serial(ca_dir: Path, tmp_path: Path) -> None:
    issue(ca_dir, "alice", tmp_path / "alice")
    before = snapshot(ca_dir)
    line = error_line(invoke("cert", "revoke", "--ca-dir", ca_dir, "--serial", "deadbeef"))
    assert f"no certificate with serial deadbeef in {ca_dir}/inventory.sqlite" in line
    assert snapshot(ca_dir) == before


def test_crl_file_containing_a_certificate(ca_dir: Path, tmp_path: Path) -> None:
    crl = tmp_path / "crl.pem"
    assert invoke("crl", "build", "--ca-dir", ca_dir, "--out", crl).exit_code == 0
    mixed = tmp_path / "mixed.pem"
    mixed.write_bytes(crl.read_bytes() + (ca_dir / "ca.crt").read_bytes())
    before = snapshot(tmp_path)
    line = error_line(invoke("crl", "show", mixed))
    assert f"{mixed}: block 2 is a certificate" in line
    assert snapshot(tmp_path) == before


def test_unreadable_ca_directory(ca_dir: Path) -> None:
    before = snapshot(ca_dir)
    ca_dir.chmod(0o000)
    try:
        line = error_line(invoke("cert", "list", "--ca-dir", ca_dir))
    finally:
        ca_dir.chmod(0o700)
    assert f"the CA directory {ca_dir} is not readable" in line
    assert f"chmod 700 {ca_dir}" in line
    assert snapshot(ca_dir) == before


def test_group_writable_ca_directory(ca_dir: Path, tmp_path: Path) -> None:
    before = snapshot(ca_dir)
    ca_dir.chmod(0o770)
    line = error_line(
        invoke("cert", "issue", "--ca-dir", ca_dir, "--user", "alice", "--out", tmp_path / "alice")
    )
    assert f"{ca_dir} is writable by others (mode 0770)" in line and "chmod 700" in line
    ca_dir.chmod(0o700)
    assert snapshot(ca_dir) == before


def test_readable_ca_key(ca_dir: Path, tmp_path: Path) -> None:
    (ca_dir / "ca.key").chmod(0o644)
    line = error_line(invoke("crl", "build", "--ca-dir", ca_dir, "--out", tmp_path / "c.pem"))
    assert f"{ca_dir}/ca.key must be private" in line and "chmod 600" in line


def test_foreign_owned_ca_directory(ca_dir: Path) -> None:
    if os.geteuid() == 0:
        os.chown(ca_dir, 65534, -1)
        store = ca_dir
    else:  # without root we cannot give a directory away; any root-owned one will do
        store = Path("/var")
    before = snapshot(ca_dir)
    line = error_line(invoke("cert", "revoke", "--ca-dir", store, "--serial", "1"))
    assert f"the CA directory {store} is owned by uid" in line
    assert f"chown -R {os.geteuid()} {store}" in line
    assert snapshot(ca_dir) == before


# --- a damaged inventory: exit 3 naming the file, from every command that opens the store ----

STORE_COMMANDS = {
    "ca show": ("ca", "show"),
    "cert list": ("cert", "list"),
    "cert issue": ("cert", "issue", "--user", "alice", "--out", "{tmp}/alice"),
    "cert revoke": ("cert", "revoke", "--serial", "{serial}"),
    "crl build": ("crl", "build", "--out", "{tmp}/crl.pem"),
}


def _damage(inventory: Path, how: str) -> None:
    """Replace the inventory with a truncated, foreign or empty file."""
    data = inventory.read_bytes()
    if how == "first 1000 bytes":
        inventory.write_bytes(data[:1000])
    elif how == "truncated to half":
        inventory.write_bytes(data[: len(data) // 2])
    elif how == "random bytes":
        inventory.write_bytes(os.urandom(len(data)))
    elif how == "empty":
        inventory.write_bytes(b"")
    elif how in ("another schema", "meta only"):
        conn = sqlite3.connect(inventory)
        meta = conn.execute("SELECT key, value FROM meta").fetchall()
        conn.close()
        inventory.unlink()
        conn = sqlite3.connect(inventory)
        conn.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT)")
        conn.executemany("INSERT INTO meta VALUES (?, ?)", meta)  # the right version and CA
        if how == "another schema":  # same table names, other columns
            conn.execute("CREATE TABLE certs (id INTEGER PRIMARY KEY, pem TEXT)")
            conn.execute("CREATE TABLE crls (id INTEGER PRIMARY KEY)")
        conn.commit()
        conn.close()
    else:  # pragma: no cover - a typo in the parameters
        raise AssertionError(how)


@pytest.fixture(scope="module")
def filled_store(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A store with enough certificates for its inventory to span several sqlite pages, and
    the serial of one of them (copied per test: issuing 40 certificates takes a while)."""
    root = tmp_path_factory.mktemp("filled")
    path = root / "ca"
    assert invoke("ca", "init", "--ca-dir", path, "--no-passphrase").exit_code == 0
    serial = ""
    for n in range(40):
        serial = issue(path, f"user{n}", root / f"u{n}")["serial"]
    return path, serial


@pytest.mark.parametrize(
    "how",
    [
        "first 1000 bytes",
        "truncated to half",
        "random bytes",
        "empty",
        "another schema",
        "meta only",
    ],
)
@pytest.mark.parametrize("command", list(STORE_COMMANDS))
def test_damaged_inventory(
    filled_store: tuple[Path, str], tmp_path: Path, how: str, command: str
) -> None:
    ca_dir = tmp_path / "ca"
    shutil.copytree(filled_store[0], ca_dir)
    inventory = ca_dir / "inventory.sqlite"
    _damage(inventory, how)
    args = [a.format(tmp=tmp_path, serial=filled_store[1]) for a in STORE_COMMANDS[command]]
    before = snapshot(ca_dir)
    line = error_line(invoke(*args, "--ca-dir", ca_dir))
    assert f"{inventory} is not a usable inventory" in line
    assert snapshot(ca_dir) == before
    assert not (tmp_path / "alice").exists() and not (tmp_path / "crl.pem").exists()


# --- absurd --days: exit 3 with the maximum that works, before any work ---------------------

ABSURD = str(10**9)


def _days_commands(ca_dir: Path, tmp_path: Path) -> dict[str, list[str | Path]]:
    key = crypto.generate_key(KeyType.EC_P256)
    csr = tmp_path / "bob.csr"
    csr.write_bytes(
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "bob")]))
        .sign(key, crypto.hash_for(key))
        .public_bytes(serialization.Encoding.PEM)
    )
    new_ca = tmp_path / "new-ca"
    return {
        "ca init": ["ca", "init", "--ca-dir", new_ca, "--no-passphrase", "--days", ABSURD],
        "cert issue": [
            "cert",
            "issue",
            "--ca-dir",
            ca_dir,
            "--user",
            "bob",
            "--out",
            tmp_path / "bob",
            "--days",
            ABSURD,
        ],
        "cert sign": [
            "cert",
            "sign",
            "--ca-dir",
            ca_dir,
            "--csr",
            csr,
            "--out",
            tmp_path / "bob.crt",
            "--days",
            ABSURD,
        ],
        "cert renew": [
            "cert",
            "renew",
            "--ca-dir",
            ca_dir,
            "--out-root",
            tmp_path / "users",
            "--days",
            ABSURD,
        ],
        "ca renew": ["ca", "renew", "--ca-dir", ca_dir, "--days", ABSURD],
        "crl build": [
            "crl",
            "build",
            "--ca-dir",
            ca_dir,
            "--out",
            tmp_path / "crl.pem",
            "--days",
            ABSURD,
        ],
        "rotate --days": [
            "rotate",
            "ca",
            "--ca-dir",
            ca_dir,
            "--new-ca-dir",
            new_ca,
            "pgm-x",
            "--days",
            ABSURD,
        ],
        "rotate --crl-days": [
            "rotate",
            "ca",
            "--ca-dir",
            ca_dir,
            "--new-ca-dir",
            new_ca,
            "pgm-x",
            "--crl-days",
            ABSURD,
        ],
    }


@pytest.mark.parametrize(
    ("command", "what"),
    [
        ("ca init", "CA"),
        ("cert issue", "certificate"),
        ("cert sign", "certificate"),
        ("cert renew", "certificate"),
        ("ca renew", "CA"),
        ("crl build", "CRL"),
        ("rotate --days", "certificate"),
        ("rotate --crl-days", "CRL"),
    ],
)
def test_absurd_days(ca_dir: Path, tmp_path: Path, command: str, what: str) -> None:
    issue(ca_dir, "alice", tmp_path / "users" / "alice")  # something cert renew could renew
    args = _days_commands(ca_dir, tmp_path)[command]
    before, around = snapshot(ca_dir), sorted(p.name for p in tmp_path.iterdir())
    line = error_line(invoke(*args, env={"RDSSSL_ENDPOINT": "http://127.0.0.1:9"}))
    most = crypto.max_days(datetime.now(timezone.utc))
    option = "--crl-days" if command.endswith("--crl-days") else "--days"
    assert f"{option} {ABSURD}: {what} validity of {ABSURD} days would end after 9999-12-31" in line
    assert f"use at most {most} days" in line or f"use at most {most - 1} days" in line
    assert snapshot(ca_dir) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == around


# --- crl build --out somewhere it cannot write: exit 3, the CRL number not used up -------------


@pytest.mark.parametrize("where", ["missing directory", "parent is a file"])
def test_crl_out_that_cannot_be_written(ca_dir: Path, tmp_path: Path, where: str) -> None:
    if where == "parent is a file":
        (tmp_path / "file").write_text("not a directory\n")
        out = tmp_path / "file" / "crl.pem"
    else:
        out = tmp_path / "missing" / "crl.pem"
    before = snapshot(ca_dir)
    line = error_line(invoke("crl", "build", "--ca-dir", ca_dir, "--out", out))
    assert f"cannot write the CRL to {out}: {out.parent}" in line
    assert snapshot(ca_dir) == before  # the CRL number is not used up, no CRL recorded
    good = tmp_path / "crl.pem"
    result = invoke("--json", "crl", "build", "--ca-dir", ca_dir, "--out", good)
    assert result.exit_code == 0, result.stderr
    assert result.json()["number"] == 1
    assert crypto.inspect_crl(crypto.load_crls(good.read_bytes(), source="crl")[0]).number == 1


# --- ca import of a CA key weaker than what leaves may have --------------------------------


def _hand_made_ca(tmp_path: Path, key: Any) -> tuple[Path, Path]:
    """A self-signed CA:TRUE certificate for `key` (any type), as openssl would make it."""
    name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "weak-ca")])
    now = datetime.now(timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "weak.crt", tmp_path / "weak.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


@pytest.mark.parametrize(
    ("make", "problem"),
    [
        (lambda: rsa.generate_private_key(65537, 1024), "RSA key of 1024 bits is too weak"),
        (lambda: dsa.generate_private_key(2048), "unsupported key type dsa-2048"),
        (lambda: ec.generate_private_key(ec.SECP192R1()), "EC key on secp192r1 is too weak"),
    ],
    ids=["rsa-1024", "dsa-2048", "ec-p192"],
)
def test_import_a_ca_with_a_weak_key(
    target: Path, tmp_path: Path, make: Callable[[], Any], problem: str
) -> None:
    cert, key = _hand_made_ca(tmp_path, make())
    before = snapshot(target)
    line = error_line(
        invoke("ca", "import", "--ca-dir", target, "--cert", cert, "--key", key, "--no-passphrase")
    )
    assert f"{cert} (CN=weak-ca): {problem}" in line
    assert snapshot(target) == before
