"""`rdsssl ca init | import | show | passphrase`, including a CA made by hand with the openssl
CLI."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import pytest

from rdsssl.ops.rotation_file import prepare, save, state_path
from rdsssl.ops.rotation_state import Step
from rdsssl.pki import crypto
from rdsssl.store.castore import CaStore
from rdsssl.store.fsutil import atomic_write
from tests.cli.helpers import invoke, issue, mode, snapshot

OPENSSL_CNF = """\
[ ca ]
default_ca = CA_default
[ CA_default ]
dir = ./demoCA
database = $dir/index.txt
new_certs_dir = $dir/newcerts
serial = $dir/serial
crlnumber = $dir/crlnumber
default_md = sha256
default_days = 365
default_crl_days = 30
policy = policy_any
unique_subject = no
[ policy_any ]
commonName = supplied
[ usr_cert ]
basicConstraints = CA:FALSE
extendedKeyUsage = clientAuth
"""


@dataclass(frozen=True)
class HandMadeCa:
    """The manual procedure's CA plus an `openssl ca` history: carol revoked, dave valid."""

    root: Path
    cert: Path
    key: Path
    index: Path
    crlnumber: Path
    carol: Path
    dave: Path


def openssl(cwd: Path, *args: str) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture(scope="module")
def hand_made(tmp_path_factory: pytest.TempPathFactory) -> HandMadeCa:
    """Built once with the exact commands of the manual procedure; copy before mutating."""
    d = tmp_path_factory.mktemp("openssl-ca")
    (d / "ca.cnf").write_text(OPENSSL_CNF)
    (d / "demoCA" / "newcerts").mkdir(parents=True)
    (d / "demoCA" / "index.txt").write_text("")
    (d / "demoCA" / "serial").write_text("1000\n")
    (d / "demoCA" / "crlnumber").write_text("1000\n")
    openssl(
        d,
        "req",
        "-new",
        "-x509",
        "-days",
        "3650",
        "-nodes",
        "-out",
        "ca1.crt",
        "-keyout",
        "ca1.key",
        "-subj",
        "/CN=root-ca1",
    )
    ca_args = ["-config", "ca.cnf", "-cert", "ca1.crt", "-keyfile", "ca1.key"]
    for user in ("carol", "dave"):
        openssl(
            d,
            "req",
            "-new",
            "-nodes",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-keyout",
            f"{user}.key",
            "-out",
            f"{user}.csr",
            "-subj",
            f"/CN={user}",
        )
        openssl(
            d,
            "ca",
            "-batch",
            *ca_args,
            "-extensions",
            "usr_cert",
            "-in",
            f"{user}.csr",
            "-out",
            f"{user}.crt",
        )
    openssl(d, "ca", *ca_args, "-revoke", "carol.crt", "-crl_reason", "keyCompromise")
    openssl(d, "ca", *ca_args, "-gencrl", "-out", "crl0.pem")  # advances crlnumber to 1001
    return HandMadeCa(
        d,
        d / "ca1.crt",
        d / "ca1.key",
        d / "demoCA" / "index.txt",
        d / "demoCA" / "crlnumber",
        d / "carol.crt",
        d / "dave.crt",
    )


# --- init -------------------------------------------------------------------------------------


def test_init_creates_private_store_and_reports_json(tmp_path: Path) -> None:
    ca = tmp_path / "ca"
    result = invoke(
        "--json",
        "ca",
        "init",
        "--ca-dir",
        ca,
        "--cn",
        "root-ca1",
        "--key-type",
        "ec-p384",
        "--days",
        "100",
        "--no-passphrase",
    )
    assert result.exit_code == 0, result.stderr
    doc = result.json()
    assert doc["ok"] is True
    assert doc["ca"]["subject"] == "CN=root-ca1"
    assert doc["ca"]["key_type"] == "ec-p384"
    assert doc["ca"]["is_ca"] is True
    assert doc["key_encrypted"] is False
    assert doc["next_crl_number"] == 1
    assert mode(ca) == 0o700
    assert mode(ca / "ca.key") == 0o600
    assert mode(ca / "inventory.sqlite") == 0o600
    assert sorted(p.name for p in ca.iterdir()) == [".lock", "ca.crt", "ca.key", "inventory.sqlite"]
    assert not list(tmp_path.glob(".ca.new-*"))  # the build directory was renamed, not left


def test_init_uses_an_existing_empty_directory(tmp_path: Path) -> None:
    ca = tmp_path / "ca"
    ca.mkdir(mode=0o755)
    assert invoke("ca", "init", "--ca-dir", ca, "--no-passphrase").exit_code == 0
    assert mode(ca) == 0o700


def test_init_refuses_a_non_empty_directory(tmp_path: Path) -> None:
    ca = tmp_path / "ca"
    ca.mkdir()
    (ca / "notes.txt").write_text("mine")
    result = invoke("ca", "init", "--ca-dir", ca, "--no-passphrase")
    assert result.exit_code == 3
    assert f"{ca} already exists and is not empty" in result.stderr
    assert [p.name for p in ca.iterdir()] == ["notes.txt"]


def test_init_encrypts_the_key_with_the_env_passphrase(tmp_path: Path) -> None:
    ca = tmp_path / "ca"
    result = invoke("ca", "init", "--ca-dir", ca, env={"RDSSSL_CA_PASSPHRASE": "s3cret pw"})
    assert result.exit_code == 0, result.stderr
    assert b"BEGIN ENCRYPTED PRIVATE KEY" in (ca / "ca.key").read_bytes()
    assert "s3cret" not in result.stdout + result.stderr


def test_init_reads_the_passphrase_file(tmp_path: Path) -> None:
    pw = tmp_path / "pw"
    pw.write_text("from-a-file\n")
    ca = tmp_path / "ca"
    assert invoke("ca", "init", "--ca-dir", ca, "--passphrase-file", pw).exit_code == 0
    # the same file unlocks it (trailing newline ignored) and wins over the environment
    ok = invoke(
        "crl",
        "build",
        "--ca-dir",
        ca,
        "--out",
        tmp_path / "crl.pem",
        "--passphrase-file",
        pw,
        env={"RDSSSL_CA_PASSPHRASE": "not-this-one"},
    )
    assert ok.exit_code == 0, ok.stderr
    empty = tmp_path / "empty"
    empty.write_text("\n")
    refused = invoke(
        "crl", "build", "--ca-dir", ca, "--out", tmp_path / "crl.pem", "--passphrase-file", empty
    )
    assert refused.exit_code == 3
    assert f"{empty}: the passphrase file is empty" in refused.stderr


def test_init_prompts_with_confirmation_on_a_terminal(tmp_path: Path) -> None:
    ca = tmp_path / "ca"
    result = invoke("ca", "init", "--ca-dir", ca, interactive=True, input="typed-pw\ntyped-pw\n")
    assert result.exit_code == 0, result.stderr
    assert "typed-pw" not in result.stdout + result.stderr
    unlocked = invoke(
        "crl",
        "build",
        "--ca-dir",
        ca,
        "--out",
        tmp_path / "crl.pem",
        interactive=True,
        input="typed-pw\n",
    )
    assert unlocked.exit_code == 0, unlocked.stderr


def test_init_without_a_passphrase_source_says_how_to_give_one(tmp_path: Path) -> None:
    ca = tmp_path / "ca"
    result = invoke("ca", "init", "--ca-dir", ca)
    assert result.exit_code == 3
    assert "RDSSSL_CA_PASSPHRASE" in result.stderr
    assert "--no-passphrase" in result.stderr
    assert not ca.exists()


def test_no_passphrase_and_passphrase_file_contradict(tmp_path: Path) -> None:
    pw = tmp_path / "pw"
    pw.write_text("x\n")
    result = invoke(
        "ca", "init", "--ca-dir", tmp_path / "ca", "--no-passphrase", "--passphrase-file", pw
    )
    assert result.exit_code == 2
    assert "contradict" in result.stderr


# --- show -------------------------------------------------------------------------------------


def test_show_prints_the_ca_and_counts(ca_dir: Path, tmp_path: Path) -> None:
    for user in ("alice", "bob"):
        assert (
            invoke(
                "cert", "issue", "--ca-dir", ca_dir, "--user", user, "--out", tmp_path / user
            ).exit_code
            == 0
        )
    assert invoke("cert", "revoke", "--ca-dir", ca_dir, "--user", "bob").exit_code == 0
    human = invoke("ca", "show", "--ca-dir", ca_dir)
    assert human.exit_code == 0
    assert "Subject:         CN=root-ca1" in human.stdout
    assert "Certificates:    1 valid, 1 revoked, 0 expired" in human.stdout
    assert "Next CRL number: 1" in human.stdout
    doc = invoke("ca", "show", "--ca-dir", ca_dir, "--json").json()
    assert doc["certificate_counts"] == {"valid": 1, "revoked": 1, "expired": 0}
    assert doc["key_encrypted"] is False
    assert len(doc["ca"]["fingerprint"]) == 64


def test_show_of_a_missing_store_says_run_ca_init(tmp_path: Path) -> None:
    result = invoke("ca", "show", "--ca-dir", tmp_path / "nope")
    assert result.exit_code == 3
    assert "not a CA store" in result.stderr and "rdsssl ca init" in result.stderr


# --- import -----------------------------------------------------------------------------------


def test_import_keeps_the_openssl_history(hand_made: HandMadeCa, tmp_path: Path) -> None:
    ca = tmp_path / "ca"
    result = invoke(
        "--json",
        "ca",
        "import",
        "--ca-dir",
        ca,
        "--cert",
        hand_made.cert,
        "--key",
        hand_made.key,
        "--index",
        hand_made.index,
        "--crlnumber",
        hand_made.crlnumber,
        "--no-passphrase",
    )
    assert result.exit_code == 0, result.stderr
    doc = result.json()
    assert doc["ca"]["subject"] == "CN=root-ca1"
    assert doc["imported_certificates"] == 2
    assert doc["next_crl_number"] == 0x1001
    assert mode(ca / "ca.key") == 0o600

    rows = {
        c["cn"]: c for c in invoke("cert", "list", "--ca-dir", ca, "--json").json()["certificates"]
    }
    assert rows["carol"]["status"] == "revoked"
    assert rows["carol"]["reason"] == "keyCompromise"
    assert rows["carol"]["serial"] == "1000"
    assert rows["dave"]["status"] == "valid"
    assert rows["dave"]["fingerprint"] == ""  # not seen yet


def test_import_then_revoke_a_certificate_issued_by_openssl(
    hand_made: HandMadeCa, tmp_path: Path
) -> None:
    ca = tmp_path / "ca"
    assert (
        invoke(
            "ca",
            "import",
            "--ca-dir",
            ca,
            "--cert",
            hand_made.cert,
            "--key",
            hand_made.key,
            "--index",
            hand_made.index,
            "--crlnumber",
            hand_made.crlnumber,
            "--no-passphrase",
        ).exit_code
        == 0
    )
    revoked = invoke(
        "--json",
        "cert",
        "revoke",
        "--ca-dir",
        ca,
        "--cert",
        hand_made.dave,
        "--reason",
        "superseded",
    )
    assert revoked.exit_code == 0, revoked.stderr
    row = revoked.json()["certificate"]
    assert (row["cn"], row["serial"], row["status"]) == ("dave", "1001", "revoked")
    assert len(row["fingerprint"]) == 64  # learnt from the certificate file

    crl = tmp_path / "crl.pem"
    built = invoke("--json", "crl", "build", "--ca-dir", ca, "--out", crl)
    assert built.json()["number"] == 0x1001  # continues openssl's numbering
    shown = invoke("--json", "crl", "show", crl).json()["crls"][0]
    assert shown["revoked_serials"] == ["1000", "1001"]
    for leaf in (hand_made.carol, hand_made.dave):
        check = subprocess.run(
            [
                "openssl",
                "verify",
                "-CAfile",
                str(hand_made.cert),
                "-crl_check",
                "-CRLfile",
                str(crl),
                str(leaf),
            ],
            capture_output=True,
            text=True,
        )
        assert check.returncode != 0 and "certificate revoked" in check.stdout + check.stderr


def test_revoke_cert_adds_a_certificate_missing_from_the_inventory(
    hand_made: HandMadeCa, tmp_path: Path
) -> None:
    ca = tmp_path / "ca"  # imported without index.txt: dave is unknown to the inventory
    assert (
        invoke(
            "ca",
            "import",
            "--ca-dir",
            ca,
            "--cert",
            hand_made.cert,
            "--key",
            hand_made.key,
            "--no-passphrase",
        ).exit_code
        == 0
    )
    result = invoke("--json", "cert", "revoke", "--ca-dir", ca, "--cert", hand_made.dave)
    assert result.exit_code == 0, result.stderr
    assert result.json()["certificate"]["origin"] == "external"
    rows = invoke("--json", "cert", "list", "--ca-dir", ca).json()["certificates"]
    assert [(r["cn"], r["status"]) for r in rows] == [("dave", "revoked")]


def test_import_encrypts_the_adopted_key(hand_made: HandMadeCa, tmp_path: Path) -> None:
    ca = tmp_path / "ca"
    result = invoke(
        "ca",
        "import",
        "--ca-dir",
        ca,
        "--cert",
        hand_made.cert,
        "--key",
        hand_made.key,
        env={"RDSSSL_CA_PASSPHRASE": "pw-for-import"},
    )
    assert result.exit_code == 0, result.stderr
    assert b"ENCRYPTED PRIVATE KEY" in (ca / "ca.key").read_bytes()


def test_import_a_bad_index_line_names_file_and_line(hand_made: HandMadeCa, tmp_path: Path) -> None:
    index = tmp_path / "index.txt"
    index.write_text(hand_made.index.read_text() + "X\tgarbage\n")
    result = invoke(
        "ca",
        "import",
        "--ca-dir",
        tmp_path / "ca",
        "--cert",
        hand_made.cert,
        "--key",
        hand_made.key,
        "--index",
        index,
        "--no-passphrase",
    )
    assert result.exit_code == 3
    assert f"{index}, line 3" in result.stderr
    assert not (tmp_path / "ca").exists()


@pytest.mark.parametrize(
    "subject,problem",
    [
        ("/CN=ev\x1b[31mil", "control character U+001B"),
        ("/CN=a\\/b", "contains '/'"),
        ("/CN=..", "cannot be used as a directory name"),
        ("/O=no-cn", "(no CN)"),
    ],
)
def test_import_refuses_a_cn_that_cannot_be_a_user_name(
    hand_made: HandMadeCa, tmp_path: Path, subject: str, problem: str
) -> None:
    index = tmp_path / "index.txt"
    line = f"R\t271126200022Z\t261126200022Z,keyCompromise\t0BAD\tunknown\t{subject}\n"
    index.write_text(hand_made.index.read_text() + line)
    result = invoke(
        "ca", "import", "--ca-dir", tmp_path / "ca", "--cert", hand_made.cert,
        "--key", hand_made.key, "--index", index, "--no-passphrase",
    )  # fmt: skip
    assert result.exit_code == 3
    assert f"{index}, line 3:" in result.stderr and "of serial 0BAD" in result.stderr
    assert problem in result.stderr and "\x1b" not in result.stderr
    assert not (tmp_path / "ca").exists()


def test_import_does_not_touch_the_source_files(hand_made: HandMadeCa, tmp_path: Path) -> None:
    before = snapshot(hand_made.root)
    assert (
        invoke(
            "ca",
            "import",
            "--ca-dir",
            tmp_path / "ca",
            "--cert",
            hand_made.cert,
            "--key",
            hand_made.key,
            "--no-passphrase",
        ).exit_code
        == 0
    )
    assert snapshot(hand_made.root) == before
    shutil.rmtree(tmp_path / "ca")


# --- the key at rest: ca show, ca passphrase --------------------------------------------------

STRONG = {
    "encrypted": True,
    "scheme": "pbes2",
    "kdf": "pbkdf2-hmac-sha256",
    "rounds": 600_000,
    "cipher": "aes-256-cbc",
    "weak": False,
}
OLD = {"RDSSSL_CA_PASSPHRASE": "correct horse"}  # the passphrase of the enc_ca_dir fixture


def _weaken(ca_dir: Path) -> None:
    """ca.key as rdsssl wrote it before: PBKDF2 at 2,048 rounds (BestAvailableEncryption)."""
    key_path = ca_dir / "ca.key"
    key = crypto.load_private_key(key_path.read_bytes(), source="k", passphrase=b"correct horse")
    atomic_write(key_path, crypto.key_pem(key, b"correct horse"), mode=0o600)


def _builds_a_crl(ca_dir: Path, tmp_path: Path, passphrase: str | None) -> bool:
    env = {} if passphrase is None else {"RDSSSL_CA_PASSPHRASE": passphrase}
    result = invoke("crl", "build", "--ca-dir", ca_dir, "--out", tmp_path / "crl.pem", env=env)
    return result.exit_code == 0


def test_show_reports_the_key_protection_without_a_passphrase(
    enc_ca_dir: Path, ca_dir: Path
) -> None:
    human = invoke("ca", "show", "--ca-dir", enc_ca_dir)  # no passphrase anywhere
    assert human.exit_code == 0, human.stderr
    assert "Key protection:  pbkdf2-hmac-sha256, 600,000 rounds, aes-256-cbc\n" in human.stdout
    doc = invoke("--json", "ca", "show", "--ca-dir", enc_ca_dir).json()
    assert doc["key_encrypted"] is True and doc["key_protection"] == STRONG
    plain = invoke("ca", "show", "--ca-dir", ca_dir)
    assert "Key protection:  not encrypted\n" in plain.stdout
    assert invoke("--json", "ca", "show", "--ca-dir", ca_dir).json()["key_protection"] == {
        "encrypted": False,
        "scheme": "none",
        "kdf": None,
        "rounds": None,
        "cipher": None,
        "weak": True,
    }


def test_show_says_how_to_strengthen_a_weak_key(enc_ca_dir: Path) -> None:
    _weaken(enc_ca_dir)
    human = invoke("ca", "show", "--ca-dir", enc_ca_dir)
    assert (
        "Key protection:  pbkdf2-hmac-sha256, 2,048 rounds, aes-256-cbc; weak "
        "(strengthen it: rdsssl ca passphrase --same-passphrase)\n"
    ) in human.stdout
    doc = invoke("--json", "ca", "show", "--ca-dir", enc_ca_dir).json()
    assert doc["key_protection"]["weak"] is True and doc["key_protection"]["rounds"] == 2048


def test_passphrase_changes_the_passphrase(enc_ca_dir: Path, tmp_path: Path) -> None:
    result = invoke(
        "--json",
        "ca",
        "passphrase",
        "--ca-dir",
        enc_ca_dir,
        env={**OLD, "RDSSSL_NEW_CA_PASSPHRASE": "battery staple"},
    )
    assert result.exit_code == 0, result.stderr
    assert result.body() == {
        "ca_dir": str(enc_ca_dir),
        "key": str(enc_ca_dir / "ca.key"),
        "passphrase_changed": True,
        "before": STRONG,
        "after": STRONG,
        "kept_old": None,
    }
    for secret in ("correct horse", "battery staple"):
        assert secret not in result.stdout + result.stderr
    assert mode(enc_ca_dir / "ca.key") == 0o600
    assert sorted(p.name for p in enc_ca_dir.iterdir()) == [
        ".lock", "ca.crt", "ca.key", "inventory.sqlite"
    ]  # fmt: skip
    assert not _builds_a_crl(enc_ca_dir, tmp_path, "correct horse")
    assert _builds_a_crl(enc_ca_dir, tmp_path, "battery staple")


def test_passphrase_same_passphrase_strengthens_a_weak_key(
    enc_ca_dir: Path, tmp_path: Path
) -> None:
    _weaken(enc_ca_dir)
    result = invoke("ca", "passphrase", "--ca-dir", enc_ca_dir, "--same-passphrase", env=OLD)
    assert result.exit_code == 0, result.stderr
    assert "passphrase unchanged (strengthened only)" in result.stderr
    assert "was: pbkdf2-hmac-sha256, 2,048 rounds, aes-256-cbc; weak" in result.stderr
    doc = invoke("--json", "ca", "show", "--ca-dir", enc_ca_dir).json()
    assert doc["key_protection"] == STRONG
    assert _builds_a_crl(enc_ca_dir, tmp_path, "correct horse")


def test_passphrase_with_a_wrong_current_passphrase_changes_nothing(enc_ca_dir: Path) -> None:
    before = snapshot(enc_ca_dir)
    result = invoke(
        "ca",
        "passphrase",
        "--ca-dir",
        enc_ca_dir,
        env={"RDSSSL_CA_PASSPHRASE": "wrong horse", "RDSSSL_NEW_CA_PASSPHRASE": "new one"},
    )
    assert result.exit_code == 3
    assert f"wrong passphrase for {enc_ca_dir}/ca.key" in result.stderr
    assert "wrong horse" not in result.stderr and "new one" not in result.stderr
    assert snapshot(enc_ca_dir) == before


def test_passphrase_prompts_for_both_on_a_terminal(enc_ca_dir: Path, tmp_path: Path) -> None:
    result = invoke(
        "ca",
        "passphrase",
        "--ca-dir",
        enc_ca_dir,
        interactive=True,
        input="correct horse\ntyped new\ntyped new\n",
    )
    assert result.exit_code == 0, result.stderr
    assert "New passphrase for" in result.stderr  # confirmed: asked twice
    assert "typed new" not in result.stdout + result.stderr
    assert _builds_a_crl(enc_ca_dir, tmp_path, "typed new")


def test_passphrase_reads_files_and_keeps_the_old_key_on_request(
    enc_ca_dir: Path, tmp_path: Path
) -> None:
    old, new = tmp_path / "old", tmp_path / "new"
    old.write_text("correct horse\n")
    new.write_text("from a file\n")
    result = invoke(
        "--json",
        "ca",
        "passphrase",
        "--ca-dir",
        enc_ca_dir,
        "--passphrase-file",
        old,
        "--new-passphrase-file",
        new,
        "--keep-old",
        clock=lambda: datetime(2026, 3, 1, 8, 30, tzinfo=timezone.utc),
    )
    assert result.exit_code == 0, result.stderr
    kept = enc_ca_dir / "ca.key.bak-20260301T083000Z"
    assert result.json()["kept_old"] == str(kept)
    assert f"the previous key is kept as {kept}" in result.stderr
    assert mode(kept) == 0o600
    assert crypto.load_private_key(kept.read_bytes(), source="bak", passphrase=b"correct horse")
    assert _builds_a_crl(enc_ca_dir, tmp_path, "from a file")


def test_passphrase_without_a_new_one_says_how_to_give_it(enc_ca_dir: Path) -> None:
    before = snapshot(enc_ca_dir)
    result = invoke("ca", "passphrase", "--ca-dir", enc_ca_dir, env=OLD)
    assert result.exit_code == 3
    assert "RDSSSL_NEW_CA_PASSPHRASE" in result.stderr and "--new-passphrase-file" in result.stderr
    assert snapshot(enc_ca_dir) == before


def test_passphrase_no_passphrase_stores_the_key_in_the_clear(
    enc_ca_dir: Path, tmp_path: Path
) -> None:
    result = invoke("ca", "passphrase", "--ca-dir", enc_ca_dir, "--no-passphrase", env=OLD)
    assert result.exit_code == 0, result.stderr
    assert "is NOT encrypted now" in result.stderr
    assert _builds_a_crl(enc_ca_dir, tmp_path, None)
    # and back: an unencrypted key has no passphrase to keep, but takes a new one
    same = invoke("ca", "passphrase", "--ca-dir", enc_ca_dir, "--same-passphrase")
    assert same.exit_code == 3 and "no passphrase to keep" in same.stderr
    again = invoke(
        "ca", "passphrase", "--ca-dir", enc_ca_dir, env={"RDSSSL_NEW_CA_PASSPHRASE": "n3w"}
    )
    assert again.exit_code == 0, again.stderr
    assert _builds_a_crl(enc_ca_dir, tmp_path, "n3w")


@pytest.mark.parametrize(
    "flags",
    [
        ("--same-passphrase", "--no-passphrase"),
        ("--no-passphrase", "--keep-old", "--same-passphrase"),
    ],
)
def test_passphrase_options_that_contradict(enc_ca_dir: Path, flags: tuple[str, ...]) -> None:
    before = snapshot(enc_ca_dir)
    result = invoke("ca", "passphrase", "--ca-dir", enc_ca_dir, *flags, env=OLD)
    assert result.exit_code == 2
    assert "--same-passphrase and --no-passphrase contradict each other" in result.stderr
    assert snapshot(enc_ca_dir) == before


# --- renew ------------------------------------------------------------------------------------


def _openssl_verify(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["openssl", "verify", *args], cwd=cwd, capture_output=True, text=True, check=False
    )


def test_renew_keeps_every_certificate_and_crl_valid_for_openssl(
    ca_dir: Path, tmp_path: Path
) -> None:
    issue(ca_dir, "alice", tmp_path / "alice")
    issue(ca_dir, "bob", tmp_path / "bob")
    assert invoke("cert", "revoke", "--ca-dir", ca_dir, "--user", "bob").exit_code == 0
    assert invoke("crl", "build", "--ca-dir", ca_dir, "--out", tmp_path / "crl1.pem").exit_code == 0
    old_pem = (ca_dir / "ca.crt").read_bytes()

    result = invoke("--json", "ca", "renew", "--ca-dir", ca_dir, "--days", "7300")
    assert result.exit_code == 0, result.stderr
    doc = result.json()
    new_pem = (ca_dir / "ca.crt").read_bytes()
    (new,) = crypto.load_certificates(new_pem, source="ca.crt")
    (old,) = crypto.load_certificates(old_pem, source="old ca.crt")
    assert doc["ca"]["fingerprint"] == crypto.fingerprint(new) != doc["previous"]["fingerprint"]
    assert doc["previous"]["fingerprint"] == crypto.fingerprint(old)
    assert (doc["ca"]["subject"], doc["stranded"]) == (doc["previous"]["subject"], [])
    assert [(h["serial"], h["current"]) for h in doc["history"]] == [
        (doc["previous"]["serial"], False),
        (doc["ca"]["serial"], True),
    ]
    assert "put it on the instances with rdsssl apply" in result.stderr

    issue(ca_dir, "carol", tmp_path / "carol")  # issued after the renewal, by the new CA
    assert invoke("crl", "build", "--ca-dir", ca_dir, "--out", tmp_path / "crl2.pem").exit_code == 0
    (tmp_path / "old-ca.crt").write_bytes(old_pem)
    for ca_file in ("old-ca.crt", str(ca_dir / "ca.crt")):  # either CA certificate, either CRL
        for crl in ("crl1.pem", "crl2.pem"):
            check = ["-crl_check_all", "-CAfile", ca_file, "-CRLfile", crl]
            for user in ("alice", "carol"):
                ok = _openssl_verify(tmp_path, *check, f"{user}/client.crt")
                assert ok.returncode == 0, (ca_file, crl, user, ok.stdout + ok.stderr)
            revoked = _openssl_verify(tmp_path, *check, "bob/client.crt")
            assert (
                revoked.returncode != 0 and "certificate revoked" in revoked.stdout + revoked.stderr
            )


def test_renew_then_show_lists_the_history(ca_dir: Path) -> None:
    before = invoke("--json", "ca", "show", "--ca-dir", ca_dir).json()
    assert [h["current"] for h in before["history"]] == [True]
    assert before["history"][0]["recorded_at"] is None  # never renewed: nothing recorded yet
    assert invoke("ca", "renew", "--ca-dir", ca_dir).exit_code == 0
    doc = invoke("--json", "ca", "show", "--ca-dir", ca_dir).json()
    first, second = doc["history"]
    assert (first["fingerprint"], first["current"]) == (before["ca"]["fingerprint"], False)
    assert (second["fingerprint"], second["current"]) == (doc["ca"]["fingerprint"], True)
    human = invoke("ca", "show", "--ca-dir", ca_dir).stdout
    assert f"previous serial {first['serial']}" in human
    assert f"current  serial {second['serial']}" in human
    assert f"SHA-256 {second['fingerprint']}" in human


def test_renew_that_would_shorten_the_ca_is_exit_3_unless_forced(ca_dir: Path) -> None:
    before = snapshot(ca_dir)
    refused = invoke("ca", "renew", "--ca-dir", ca_dir, "--days", "30")
    assert refused.exit_code == 3
    assert "a renewal does not shorten the CA's life; give at least 3650 days" in refused.stderr
    assert snapshot(ca_dir) == before
    forced = invoke("--json", "ca", "renew", "--ca-dir", ca_dir, "--days", "30", "--force")
    assert forced.exit_code == 0, forced.stderr
    assert "ends earlier than the previous one" in forced.stderr
    doc = forced.json()
    assert doc["ca"]["not_after"] < doc["previous"]["not_after"]


def test_renew_needs_the_passphrase_and_a_wrong_one_changes_nothing(enc_ca_dir: Path) -> None:
    before = snapshot(enc_ca_dir)
    wrong = invoke("ca", "renew", "--ca-dir", enc_ca_dir, env={"RDSSSL_CA_PASSPHRASE": "nope"})
    assert wrong.exit_code == 3 and "wrong passphrase" in wrong.stderr
    missing = invoke("ca", "renew", "--ca-dir", enc_ca_dir)
    assert missing.exit_code == 3 and "RDSSSL_CA_PASSPHRASE" in missing.stderr
    assert snapshot(enc_ca_dir) == before
    done = invoke("ca", "renew", "--ca-dir", enc_ca_dir, env=OLD)
    assert done.exit_code == 0, done.stderr
    assert "correct horse" not in done.stdout + done.stderr


def _record_rotation(old_dir: Path, new_dir: Path, out_root: Path, *steps: Step) -> None:
    """rotation.json of a rotation from ``old_dir`` that has completed ``steps``."""
    with CaStore.open(old_dir) as old, CaStore.open(new_dir) as new:
        now = datetime.now(timezone.utc)
        state = prepare(None, old=old, new=new, instances=["pgm-x"], out_root=out_root, now=now)
    for step in steps:
        state.begin(step, at="2026-01-01T00:00:00Z")
        state.complete(step, at="2026-01-01T00:00:00Z")
    save(state_path(old_dir), state)


def test_renew_is_refused_while_a_rotation_from_the_store_is_under_way(
    ca_dir: Path, tmp_path: Path
) -> None:
    new_ca = tmp_path / "ca2"
    assert invoke("ca", "init", "--ca-dir", new_ca, "--no-passphrase").exit_code == 0
    _record_rotation(ca_dir, new_ca, tmp_path)  # nothing done yet, as after a refused bundle
    assert invoke("ca", "renew", "--ca-dir", ca_dir).exit_code == 0
    stale = invoke("rotate", "ca", "--ca-dir", ca_dir, "--yes")  # refused before any call
    assert stale.exit_code == 3
    assert "has since renewed (rdsssl ca renew)" in stale.stderr
    assert "move " in stale.stderr and "rotation.json aside" in stale.stderr
    _record_rotation(ca_dir, new_ca, tmp_path, Step.STAGE)
    before = snapshot(ca_dir)
    refused = invoke("ca", "renew", "--ca-dir", ca_dir)
    assert refused.exit_code == 3
    assert "is in progress (phase staged): finish it" in refused.stderr
    assert snapshot(ca_dir) == before


def test_renew_an_imported_openssl_ca_keeps_its_crl_and_certificates(
    hand_made: HandMadeCa, tmp_path: Path
) -> None:
    ca = tmp_path / "ca"
    imported = invoke(
        "ca", "import", "--ca-dir", ca, "--cert", hand_made.cert, "--key", hand_made.key,
        "--index", hand_made.index, "--no-passphrase",
    )  # fmt: skip
    assert imported.exit_code == 0, imported.stderr
    renewed = invoke("ca", "renew", "--ca-dir", ca)
    assert renewed.exit_code == 0, renewed.stderr
    check = ["-crl_check_all", "-CAfile", str(ca / "ca.crt"), "-CRLfile", "crl0.pem"]
    dave = _openssl_verify(hand_made.root, *check, "dave.crt")
    assert dave.returncode == 0, dave.stdout + dave.stderr
    carol = _openssl_verify(hand_made.root, *check, "carol.crt")
    assert "certificate revoked" in carol.stdout + carol.stderr


# --- the one passphrase resolver (cli/common.resolve_passphrase) ---------------------------------


def test_resolver_takes_the_file_first_then_the_variables_in_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from rdsssl.cli.app import App
    from rdsssl.cli.common import resolve_passphrase

    app = App(interactive=False)
    monkeypatch.setenv("FIRST_PASS", "from-first")
    monkeypatch.setenv("SECOND_PASS", "from-second")
    given = tmp_path / "pass"
    given.write_bytes(b"from-file\nignored\n")
    envs = ("FIRST_PASS", "SECOND_PASS")
    assert resolve_passphrase(app, passphrase_file=given, envs=envs, prompt="p") == b"from-file"
    assert resolve_passphrase(app, passphrase_file=None, envs=envs, prompt="p") == b"from-first"
    monkeypatch.setenv("FIRST_PASS", "")  # set but empty: not a source
    assert resolve_passphrase(app, passphrase_file=None, envs=envs, prompt="p") == b"from-second"
    monkeypatch.delenv("SECOND_PASS")
    assert resolve_passphrase(app, passphrase_file=None, envs=envs, prompt="p") is None


def test_resolver_prompts_only_on_a_terminal_and_only_with_a_prompt(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import click

    from rdsssl.cli.app import App
    from rdsssl.cli.common import resolve_passphrase

    asked: list[tuple[str, bool]] = []

    def fake_prompt(text: str, **kwargs: object) -> str:
        asked.append((text, bool(kwargs.get("confirmation_prompt"))))
        return "typed"

    monkeypatch.setattr(click, "prompt", fake_prompt)
    monkeypatch.delenv("NO_SUCH_PASS", raising=False)
    tty, cron = App(interactive=True), App(interactive=False)
    envs = ("NO_SUCH_PASS",)
    assert resolve_passphrase(cron, passphrase_file=None, envs=envs, prompt="Pass") is None
    assert resolve_passphrase(tty, passphrase_file=None, envs=envs, prompt=None) is None
    assert asked == []
    got = resolve_passphrase(tty, passphrase_file=None, envs=envs, prompt="Pass", confirm=True)
    assert got == b"typed"
    assert asked == [("Pass", True)]


def test_unlock_names_every_variable_it_tried(
    enc_ca_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from rdsssl.cli.app import App
    from rdsssl.cli.common import unlock
    from rdsssl.errors import StoreError

    monkeypatch.delenv("RDSSSL_CA_PASSPHRASE", raising=False)
    monkeypatch.delenv("NEW_PASS", raising=False)
    envs = ("RDSSSL_CA_PASSPHRASE", "NEW_PASS")
    with CaStore.open(enc_ca_dir) as store:
        with pytest.raises(StoreError, match="set RDSSSL_CA_PASSPHRASE or NEW_PASS"):
            unlock(App(interactive=False), store, None, envs=envs)
        assert not store.unlocked
        monkeypatch.setenv("NEW_PASS", "correct horse")  # the second variable is tried too
        unlock(App(interactive=False), store, None, envs=envs)
        assert store.unlocked
