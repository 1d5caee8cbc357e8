"""`rdsssl crl build | show`."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from rdsssl.pki import crypto, inspection
from tests.cli.helpers import invoke, issue, mode


def test_build_and_show_a_crl_with_the_revoked_serial(ca_dir: Path, tmp_path: Path) -> None:
    alice = issue(ca_dir, "alice", tmp_path / "alice")
    bob = issue(ca_dir, "bob", tmp_path / "bob")
    assert (
        invoke(
            "cert",
            "revoke",
            "--ca-dir",
            ca_dir,
            "--serial",
            alice["serial"],
            "--reason",
            "keyCompromise",
        ).exit_code
        == 0
    )
    crl = tmp_path / "crl.pem"
    built = invoke("--json", "crl", "build", "--ca-dir", ca_dir, "--out", crl, "--days", "90")
    assert built.exit_code == 0, built.stderr
    doc = built.json()
    assert (doc["number"], doc["entries"], doc["over_budget"]) == (1, 1, False)
    assert doc["size"] == crl.stat().st_size
    assert mode(crl) == 0o644
    assert "CRL number 1, 1 entry," in built.stderr

    shown = invoke("--json", "crl", "show", crl)
    assert shown.exit_code == 0
    (info,) = shown.json()["crls"]
    assert info["issuer"] == "CN=root-ca1"
    assert info["number"] == 1
    assert info["revoked_serials"] == [alice["serial"]]
    assert info["next_update"] == doc["next_update"]

    human = invoke("crl", "show", crl).stdout
    assert "Issuer:       CN=root-ca1" in human
    assert f"  {alice['serial']}" in human.splitlines()

    for leaf, expect_ok in ((tmp_path / "alice", False), (tmp_path / "bob", True)):
        check = subprocess.run(
            [
                "openssl",
                "verify",
                "-CAfile",
                str(ca_dir / "ca.crt"),
                "-crl_check",
                "-CRLfile",
                str(crl),
                str(leaf / "client.crt"),
            ],
            capture_output=True,
            text=True,
        )
        assert (check.returncode == 0) is expect_ok, check.stdout + check.stderr
    assert bob["serial"] not in info["revoked_serials"]


def test_build_fingerprints_the_crl_once_and_reports_what_it_recorded(
    ca_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    crl_fingerprints: list[str] = []
    real = inspection.fingerprint

    def counting(obj: x509.Certificate | x509.CertificateRevocationList) -> str:
        found = real(obj)
        if isinstance(obj, x509.CertificateRevocationList):
            crl_fingerprints.append(found)
        return found

    monkeypatch.setattr(crypto, "fingerprint", counting)
    out = tmp_path / "crl.pem"
    doc = invoke("--json", "crl", "build", "--ca-dir", ca_dir, "--out", out).json()
    assert len(crl_fingerprints) == 1
    der = x509.load_pem_x509_crl(out.read_bytes()).public_bytes(Encoding.DER)
    assert doc["fingerprint"] == crl_fingerprints[0] == hashlib.sha256(der).hexdigest()
    shown = invoke("--json", "ca", "show", "--ca-dir", ca_dir).json()
    assert shown["last_crl"]["fingerprint"] == doc["fingerprint"]


def test_crl_numbers_increase_and_are_shown_by_ca_show(ca_dir: Path, tmp_path: Path) -> None:
    numbers = [
        invoke("--json", "crl", "build", "--ca-dir", ca_dir, "--out", tmp_path / "crl.pem").json()[
            "number"
        ]
        for _ in range(3)
    ]
    assert numbers == [1, 2, 3]
    shown = invoke("--json", "ca", "show", "--ca-dir", ca_dir).json()
    assert shown["next_crl_number"] == 4
    assert shown["last_crl"]["number"] == 3


def test_build_warns_above_the_size_budget(ca_dir: Path, tmp_path: Path) -> None:
    result = invoke(
        "--json",
        "crl",
        "build",
        "--ca-dir",
        ca_dir,
        "--out",
        tmp_path / "c.pem",
        "--size-budget",
        "100",
    )
    assert result.exit_code == 0
    assert result.json()["over_budget"] is True
    assert "rdsssl: warning: the CRL is" in result.stderr


def test_build_with_a_wrong_passphrase(enc_ca_dir: Path, tmp_path: Path) -> None:
    result = invoke(
        "crl",
        "build",
        "--ca-dir",
        enc_ca_dir,
        "--out",
        tmp_path / "crl.pem",
        env={"RDSSSL_CA_PASSPHRASE": "wrong"},
    )
    assert result.exit_code == 3
    assert result.stderr.strip() == f"rdsssl: error: wrong passphrase for {enc_ca_dir}/ca.key"
    assert not (tmp_path / "crl.pem").exists()


def test_show_a_crl_made_by_openssl(tmp_path: Path) -> None:
    key, crt, crl = tmp_path / "k.pem", tmp_path / "c.pem", tmp_path / "crl.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-new",
            "-x509",
            "-nodes",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-keyout",
            str(key),
            "-out",
            str(crt),
            "-subj",
            "/CN=hand",
        ],
        check=True,
        capture_output=True,
    )
    (tmp_path / "index.txt").write_text("")
    cnf = tmp_path / "ca.cnf"
    cnf.write_text(
        f"[ca]\ndefault_ca=d\n[d]\ndatabase={tmp_path}/index.txt\n"
        "default_md=sha256\ndefault_crl_days=7\n"
    )
    subprocess.run(
        [
            "openssl",
            "ca",
            "-config",
            str(cnf),
            "-gencrl",
            "-cert",
            str(crt),
            "-keyfile",
            str(key),
            "-out",
            str(crl),
        ],
        check=True,
        capture_output=True,
    )
    (info,) = invoke("--json", "crl", "show", crl).json()["crls"]
    assert info["issuer"] == "CN=hand"
    assert info["number"] is None  # no crlnumber file: openssl writes no CRL number
    assert info["entries"] == 0
