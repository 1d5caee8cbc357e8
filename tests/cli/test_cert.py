"""`rdsssl cert issue | sign | list | revoke | renew`."""

from __future__ import annotations

import os
import subprocess
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.serialization import Encoding, pkcs12
from cryptography.x509.oid import NameOID

from rdsssl.cli import cert as cert_cli
from tests.cli.helpers import invoke, issue, mode, snapshot


def load_cert(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


# --- issue ------------------------------------------------------------------------------------


def test_issue_writes_the_client_files_with_private_modes(ca_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "alice"
    result = invoke(
        "--json",
        "cert",
        "issue",
        "--ca-dir",
        ca_dir,
        "--user",
        "alice",
        "--out",
        out,
        "--days",
        "30",
    )
    assert result.exit_code == 0, result.stderr
    doc = result.json()
    assert doc["ok"] is True
    assert doc["certificate"]["cn"] == "alice"
    assert doc["certificate"]["status"] == "valid"
    assert doc["truncated"] is False
    assert sorted(doc["files"]) == sorted(
        str(out / n) for n in ("client.crt", "client.key", "root.crt")
    )
    assert mode(out) == 0o700
    assert mode(out / "client.key") == 0o600
    cert = load_cert(out / "client.crt")
    assert format(cert.serial_number, "x") == doc["certificate"]["serial"]
    assert (out / "root.crt").read_bytes() == (ca_dir / "ca.crt").read_bytes()
    # the stdout document is all there is on stdout; messages went to stderr
    assert "issued certificate" in result.stderr
    verify = subprocess.run(
        ["openssl", "verify", "-CAfile", str(out / "root.crt"), str(out / "client.crt")],
        capture_output=True,
        text=True,
    )
    assert verify.returncode == 0, verify.stdout + verify.stderr


def test_issue_defaults_to_a_directory_named_after_the_user(ca_dir: Path, tmp_path: Path) -> None:
    result = invoke("cert", "issue", "--ca-dir", ca_dir, "--user", "bob", cwd=tmp_path)
    assert result.exit_code == 0, result.stderr
    assert (tmp_path / "bob" / "client.key").is_file()


def test_issue_never_overwrites_without_force(ca_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "alice"
    first = issue(ca_dir, "alice", out)
    before = snapshot(out)
    again = invoke("cert", "issue", "--ca-dir", ca_dir, "--user", "alice", "--out", out)
    assert again.exit_code == 3
    assert f"{out / 'root.crt'} already exists; pass --force" in again.stderr
    assert snapshot(out) == before
    # the refusal came before anything was issued
    listed = invoke("--json", "cert", "list", "--ca-dir", ca_dir).json()["certificates"]
    assert [c["serial"] for c in listed] == [first["serial"]]

    forced = invoke(
        "--json", "cert", "issue", "--ca-dir", ca_dir, "--user", "alice", "--out", out, "--force"
    )
    assert forced.exit_code == 0, forced.stderr
    new_serial = forced.json()["certificate"]["serial"]
    assert format(load_cert(out / "client.crt").serial_number, "x") == new_serial
    assert mode(out / "client.key") == 0o600


def test_issue_pk8_adds_the_jdbc_key(ca_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "jdbc"
    issue(ca_dir, "alice", out, "--format", "pk8")
    assert mode(out / "client.pk8") == 0o600
    der = subprocess.run(
        ["openssl", "pkey", "-inform", "DER", "-in", str(out / "client.pk8"), "-noout"],
        capture_output=True,
    )
    assert der.returncode == 0


def test_issue_p12_with_a_passphrase_from_the_environment(ca_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "java"
    result = invoke(
        "cert",
        "issue",
        "--ca-dir",
        ca_dir,
        "--user",
        "alice",
        "--out",
        out,
        "--format",
        "p12",
        "--p12-passphrase-env",
        "P12_PW",
        env={"P12_PW": "changeit"},
    )
    assert result.exit_code == 0, result.stderr
    assert mode(out / "client.p12") == 0o600
    key, cert, extra = pkcs12.load_key_and_certificates(
        (out / "client.p12").read_bytes(), b"changeit"
    )
    assert key is not None and cert is not None and len(extra) == 1


def test_issue_p12_passphrase_variable_must_be_set(ca_dir: Path, tmp_path: Path) -> None:
    result = invoke(
        "cert",
        "issue",
        "--ca-dir",
        ca_dir,
        "--user",
        "alice",
        "--out",
        tmp_path / "x",
        "--format",
        "p12",
        "--p12-passphrase-env",
        "UNSET_VAR_X",
    )
    assert result.exit_code == 3
    assert "UNSET_VAR_X" in result.stderr


def test_issue_with_an_encrypted_key_and_no_passphrase_source(
    enc_ca_dir: Path, tmp_path: Path
) -> None:
    before = snapshot(enc_ca_dir)
    result = invoke(
        "cert", "issue", "--ca-dir", enc_ca_dir, "--user", "alice", "--out", tmp_path / "alice"
    )
    assert result.exit_code == 3
    assert "RDSSSL_CA_PASSPHRASE" in result.stderr and "--passphrase-file" in result.stderr
    assert snapshot(enc_ca_dir) == before


def test_issue_with_the_right_passphrase(enc_ca_dir: Path, tmp_path: Path) -> None:
    result = invoke(
        "cert",
        "issue",
        "--ca-dir",
        enc_ca_dir,
        "--user",
        "alice",
        "--out",
        tmp_path / "alice",
        env={"RDSSSL_CA_PASSPHRASE": "correct horse"},
    )
    assert result.exit_code == 0, result.stderr
    assert "correct horse" not in result.stdout + result.stderr


# --- sign -------------------------------------------------------------------------------------


def make_csr(directory: Path, cn: str) -> Path:
    subprocess.run(
        [
            "openssl",
            "req",
            "-new",
            "-nodes",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-keyout",
            str(directory / f"{cn}.key"),
            "-out",
            str(directory / f"{cn}.csr"),
            "-subj",
            f"/CN={cn}",
        ],
        check=True,
        capture_output=True,
    )
    return directory / f"{cn}.csr"


def test_sign_prints_the_certificate_on_stdout(ca_dir: Path, tmp_path: Path) -> None:
    csr = make_csr(tmp_path, "bob")
    result = invoke("cert", "sign", "--ca-dir", ca_dir, "--csr", csr)
    assert result.exit_code == 0, result.stderr
    cert = x509.load_pem_x509_certificate(result.stdout.encode())
    assert cert.subject.rfc4514_string() == "CN=bob"
    assert "signed certificate" in result.stderr


def test_sign_to_a_file_and_json(ca_dir: Path, tmp_path: Path) -> None:
    csr = make_csr(tmp_path, "bob")
    out = tmp_path / "bob.crt"
    result = invoke(
        "--json", "cert", "sign", "--ca-dir", ca_dir, "--csr", csr, "--out", out, "--user", "bob"
    )
    assert result.exit_code == 0, result.stderr
    doc = result.json()
    assert doc["out"] == str(out) and "certificate_pem" not in doc
    assert format(load_cert(out).serial_number, "x") == doc["certificate"]["serial"]
    assert doc["certificate"]["origin"] == "signed"
    again = invoke("cert", "sign", "--ca-dir", ca_dir, "--csr", csr, "--out", out)
    assert again.exit_code == 3 and f"{out} already exists" in again.stderr


def test_sign_with_json_and_no_out_carries_the_pem(ca_dir: Path, tmp_path: Path) -> None:
    result = invoke(
        "cert", "sign", "--ca-dir", ca_dir, "--csr", make_csr(tmp_path, "bob"), "--json"
    )
    doc = result.json()
    assert doc["certificate_pem"].startswith("-----BEGIN CERTIFICATE-----")


def test_sign_refuses_a_user_other_than_the_csr_cn(ca_dir: Path, tmp_path: Path) -> None:
    csr = make_csr(tmp_path, "bob")
    result = invoke("cert", "sign", "--ca-dir", ca_dir, "--csr", csr, "--user", "alice")
    assert result.exit_code == 3
    assert str(csr) in result.stderr and "'bob'" in result.stderr


# --- list -------------------------------------------------------------------------------------


def test_list_computes_valid_revoked_and_expired(ca_dir: Path, tmp_path: Path) -> None:
    a = issue(ca_dir, "alice", tmp_path / "a", "--days", "10")
    b = issue(ca_dir, "bob", tmp_path / "b", "--days", "100")
    c = issue(ca_dir, "carol", tmp_path / "c", "--days", "100")
    assert invoke("cert", "revoke", "--ca-dir", ca_dir, "--serial", c["serial"]).exit_code == 0
    later = datetime.now(timezone.utc) + timedelta(days=20)
    doc = invoke("--json", "cert", "list", "--ca-dir", ca_dir, clock=lambda: later).json()
    states = {r["serial"]: r["status"] for r in doc["certificates"]}
    assert states == {a["serial"]: "expired", b["serial"]: "valid", c["serial"]: "revoked"}

    only_valid = invoke(
        "--json", "cert", "list", "--ca-dir", ca_dir, "--status", "valid", clock=lambda: later
    ).json()["certificates"]
    assert [r["cn"] for r in only_valid] == ["bob"]

    human = invoke("cert", "list", "--ca-dir", ca_dir, clock=lambda: later)
    lines = human.stdout.splitlines()
    assert lines[0].split() == [
        "SERIAL",
        "CN",
        "STATUS",
        "NOT",
        "AFTER",
        "FINGERPRINT",
        "(SHA-256)",
    ]
    assert any(
        a["serial"] in line and "expired" in line and a["fingerprint"] in line for line in lines[1:]
    )


def test_list_table_is_aligned_across_batches_in_insertion_order(
    ca_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cert_cli, "_TABLE_BATCH", 2)  # five rows: three writes
    users = ["al", "bob", "a-much-longer-user", "al", "di"]
    issued = [issue(ca_dir, u, tmp_path / f"{n}") for n, u in enumerate(users)]
    later = datetime.now(timezone.utc) + timedelta(days=400)  # the default 365 days are over
    human = invoke("cert", "list", "--ca-dir", ca_dir, clock=lambda: later)
    assert human.exit_code == 0, human.stderr
    header, *lines = human.stdout.splitlines()
    assert [line.split() for line in lines] == [
        [c["serial"], c["cn"], "expired", c["not_after"], c["fingerprint"]] for c in issued
    ]
    for label in ("CN", "STATUS", "NOT AFTER", "FINGERPRINT"):  # every row under its heading
        column = header.index(label)
        assert all(line[column - 1] == " " and line[column] != " " for line in lines)
    only_al = invoke("cert", "list", "--ca-dir", ca_dir, "--user", "al").stdout.splitlines()
    assert only_al[0].startswith("SERIAL") and len(only_al) == 3
    assert (
        only_al[0].index("STATUS")
        == len(max(issued[0]["serial"], issued[3]["serial"], key=len)) + 8
    )


def test_list_filtered_to_nothing_says_so(ca_dir: Path, tmp_path: Path) -> None:
    issue(ca_dir, "alice", tmp_path / "a")
    result = invoke("cert", "list", "--ca-dir", ca_dir, "--status", "revoked")
    assert result.exit_code == 0 and result.stdout == ""
    assert "no certificates" in result.stderr


def test_list_of_an_empty_store(ca_dir: Path) -> None:
    assert invoke("--json", "cert", "list", "--ca-dir", ca_dir).body() == {
        "certificates": [],
    }


# --- revoke -----------------------------------------------------------------------------------


def test_revoke_by_serial_with_reason(ca_dir: Path, tmp_path: Path) -> None:
    a = issue(ca_dir, "alice", tmp_path / "a")
    colons = ":".join(a["serial"][i : i + 2] for i in range(0, len(a["serial"]), 2)).upper()
    result = invoke(
        "--json",
        "cert",
        "revoke",
        "--ca-dir",
        ca_dir,
        "--serial",
        colons,
        "--reason",
        "keyCompromise",
    )
    assert result.exit_code == 0, result.stderr
    doc = result.json()
    assert doc["changed"] is True
    assert doc["certificate"]["status"] == "revoked"
    assert doc["certificate"]["reason"] == "keyCompromise"
    again = invoke("--json", "cert", "revoke", "--ca-dir", ca_dir, "--serial", a["serial"])
    assert again.exit_code == 0
    assert again.json()["changed"] is False
    assert again.json()["certificate"]["reason"] == "keyCompromise"  # first revocation kept


def test_revoke_by_user_refuses_when_ambiguous_and_lists_candidates(
    ca_dir: Path, tmp_path: Path
) -> None:
    a1 = issue(ca_dir, "alice", tmp_path / "a1")
    a2 = issue(ca_dir, "alice", tmp_path / "a2")
    before = snapshot(ca_dir)
    result = invoke("--json", "cert", "revoke", "--ca-dir", ca_dir, "--user", "alice")
    assert result.exit_code == 3
    message = result.json()["error"]["message"]
    assert a1["serial"] in message and a2["serial"] in message
    assert "--serial" in message
    assert a1["serial"] in result.stderr
    assert snapshot(ca_dir) == before

    # once one is revoked, --user selects the other unambiguously
    assert invoke("cert", "revoke", "--ca-dir", ca_dir, "--serial", a1["serial"]).exit_code == 0
    by_user = invoke("--json", "cert", "revoke", "--ca-dir", ca_dir, "--user", "alice")
    assert by_user.exit_code == 0
    assert by_user.json()["certificate"]["serial"] == a2["serial"]


def test_revoke_by_user_without_valid_certificates(ca_dir: Path) -> None:
    result = invoke("cert", "revoke", "--ca-dir", ca_dir, "--user", "nobody")
    assert result.exit_code == 3
    assert "no valid certificate for user 'nobody'" in result.stderr


def test_revoke_by_cert_file(ca_dir: Path, tmp_path: Path) -> None:
    a = issue(ca_dir, "alice", tmp_path / "a")
    result = invoke(
        "--json", "cert", "revoke", "--ca-dir", ca_dir, "--cert", tmp_path / "a" / "client.crt"
    )
    assert result.exit_code == 0, result.stderr
    assert result.json()["certificate"]["serial"] == a["serial"]
    assert result.json()["certificate"]["origin"] == "issued"


def test_revoke_needs_exactly_one_selector(ca_dir: Path) -> None:
    result = invoke("cert", "revoke", "--ca-dir", ca_dir, "--serial", "1", "--user", "x")
    assert result.exit_code == 2
    assert "exactly one of --serial, --cert, --user" in result.stderr


def test_revoke_refuses_a_certificate_from_another_ca(ca_dir: Path, tmp_path: Path) -> None:
    other = tmp_path / "other-ca"
    assert (
        invoke("ca", "init", "--ca-dir", other, "--cn", "root-ca1", "--no-passphrase").exit_code
        == 0
    )
    issue(other, "alice", tmp_path / "foreign")
    before = snapshot(ca_dir)
    foreign = tmp_path / "foreign" / "client.crt"
    result = invoke("cert", "revoke", "--ca-dir", ca_dir, "--cert", foreign)
    assert result.exit_code == 3
    assert f"{foreign}: not issued by this CA" in result.stderr
    assert snapshot(ca_dir) == before


def test_revoke_does_not_need_the_ca_passphrase(enc_ca_dir: Path, tmp_path: Path) -> None:
    pw = {"RDSSSL_CA_PASSPHRASE": "correct horse"}
    r = invoke(
        "--json",
        "cert",
        "issue",
        "--ca-dir",
        enc_ca_dir,
        "--user",
        "alice",
        "--out",
        tmp_path / "a",
        env=pw,
    )
    serial = r.json()["certificate"]["serial"]
    assert invoke("cert", "revoke", "--ca-dir", enc_ca_dir, "--serial", serial).exit_code == 0


# --- renew ------------------------------------------------------------------------------------


def test_renew_reissues_only_what_is_due(ca_dir: Path, tmp_path: Path) -> None:
    short = issue(ca_dir, "alice", tmp_path / "a", "--days", "10", "--key-type", "ed25519")
    issue(ca_dir, "bob", tmp_path / "b", "--days", "300")
    out_root = tmp_path / "renewed"

    dry = invoke(
        "--json",
        "cert",
        "renew",
        "--ca-dir",
        ca_dir,
        "--before",
        "30d",
        "--out-root",
        out_root,
        "--dry-run",
    )
    assert dry.exit_code == 0, dry.stderr
    assert [c["cn"] for c in dry.json()["due"]] == ["alice"]
    assert dry.json()["renewed"] == []
    assert not out_root.exists()

    result = invoke(
        "--json", "cert", "renew", "--ca-dir", ca_dir, "--before", "30d", "--out-root", out_root
    )
    assert result.exit_code == 0, result.stderr
    (renewed,) = result.json()["renewed"]
    assert renewed["user"] == "alice" and renewed["old_serial"] == short["serial"]
    assert renewed["certificate"]["key_type"] == "ed25519"  # same key type as before
    cert = load_cert(out_root / "alice" / "client.crt")
    assert format(cert.serial_number, "x") == renewed["certificate"]["serial"]
    assert mode(out_root / "alice" / "client.key") == 0o600

    # re-running is a no-op: alice's newest certificate is no longer due
    rerun = invoke(
        "--json", "cert", "renew", "--ca-dir", ca_dir, "--before", "30d", "--out-root", out_root
    )
    assert rerun.exit_code == 0
    assert rerun.json()["renewed"] == [] and rerun.json()["due"] == []
    assert "nothing to renew" in rerun.stderr


def test_renew_for_one_user(ca_dir: Path, tmp_path: Path) -> None:
    issue(ca_dir, "alice", tmp_path / "a", "--days", "5")
    issue(ca_dir, "bob", tmp_path / "b", "--days", "5")
    result = invoke(
        "--json", "cert", "renew", "--ca-dir", ca_dir, "--user", "bob", "--out-root", tmp_path / "r"
    )
    assert [r["user"] for r in result.json()["renewed"]] == ["bob"]


def test_renew_rejects_a_bad_duration(ca_dir: Path) -> None:
    result = invoke("cert", "renew", "--ca-dir", ca_dir, "--before", "soon")
    assert result.exit_code == 2
    assert "not a duration" in result.stderr


@pytest.mark.parametrize("text", ["99999999999d", "9999999999w"])
def test_renew_rejects_a_duration_too_long_for_python(ca_dir: Path, text: str) -> None:
    result = invoke("cert", "renew", "--ca-dir", ca_dir, "--before", text)
    assert result.exit_code == 2, result.stderr  # a bad flag value, not an OverflowError
    assert "is longer than any certificate can live" in result.stderr


@pytest.mark.parametrize("text,days", [("30d", 30), ("2w", 14), ("48h", 2), ("7", 7)])
def test_renew_durations(ca_dir: Path, tmp_path: Path, text: str, days: int) -> None:
    issue(ca_dir, "alice", tmp_path / "a", "--days", str(days + 1))
    just_outside = invoke(
        "--json", "cert", "renew", "--ca-dir", ca_dir, "--before", text, "--dry-run"
    ).json()
    assert just_outside["due"] == []
    later = datetime.now(timezone.utc) + timedelta(days=2)
    inside = invoke(
        "--json",
        "cert",
        "renew",
        "--ca-dir",
        ca_dir,
        "--before",
        text,
        "--dry-run",
        clock=lambda: later,
    ).json()
    assert [c["cn"] for c in inside["due"]] == ["alice"]


def test_a_user_name_that_is_no_directory_name_is_refused(ca_dir: Path, tmp_path: Path) -> None:
    """A name with '/' cannot be OUT_ROOT/USER for renewals either, so it is refused even with
    an explicit --out (it used to be accepted there)."""
    result = invoke("cert", "issue", "--ca-dir", ca_dir, "--user", "../evil", cwd=tmp_path)
    assert result.exit_code == 3
    assert "invalid database user name '../evil'" in result.stderr
    assert "cannot be a directory name" in result.stderr
    with_out = invoke(
        "cert", "issue", "--ca-dir", ca_dir, "--user", "../evil", "--out", tmp_path / "evil"
    )
    assert with_out.exit_code == 3 and "cannot be a directory name" in with_out.stderr
    assert invoke("--json", "cert", "list", "--ca-dir", ca_dir).json()["certificates"] == []
    assert not (tmp_path / "evil").exists() and not (tmp_path.parent / "evil").exists()


def test_issue_reports_the_recorded_serial_when_files_cannot_be_written(
    ca_dir: Path, tmp_path: Path
) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the output directory should be")
    result = invoke(
        "cert", "issue", "--ca-dir", ca_dir, "--user", "alice", "--out", blocker / "alice"
    )
    assert result.exit_code == 3
    (row,) = invoke("--json", "cert", "list", "--ca-dir", ca_dir).json()["certificates"]
    assert f"certificate {row['serial']} for alice is recorded" in result.stderr
    assert f"rdsssl cert revoke --serial {row['serial']}" in result.stderr


# --- names and output directories another user may control -----------------------------------


def rows(ca_dir: Path) -> list[dict[str, object]]:
    found: list[dict[str, object]] = invoke("--json", "cert", "list", "--ca-dir", ca_dir).json()[
        "certificates"
    ]
    return found


@pytest.mark.parametrize("user", ["ev\x1b[2Jil", "new\nline", "c1\x9bx", "..", "."])
def test_issue_refuses_control_characters_and_dot_names(
    ca_dir: Path, tmp_path: Path, user: str
) -> None:
    result = invoke("cert", "issue", "--ca-dir", ca_dir, "--user", user, "--out", tmp_path / "o")
    assert result.exit_code == 3 and "invalid database user name" in result.stderr
    assert result.stderr.rstrip("\n").isprintable()  # the name is escaped, never raw
    assert rows(ca_dir) == [] and not (tmp_path / "o").exists()


def test_sign_refuses_a_csr_whose_cn_holds_a_control_character(
    ca_dir: Path, tmp_path: Path
) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "bob\x1b]0;pwned\x07")])
    csr = x509.CertificateSigningRequestBuilder().subject_name(name).sign(key, SHA256())
    path = tmp_path / "bob.csr"
    path.write_bytes(csr.public_bytes(Encoding.PEM))
    result = invoke("cert", "sign", "--ca-dir", ca_dir, "--csr", path)
    assert result.exit_code == 3 and "control character U+001B" in result.stderr
    assert "\x1b" not in result.stderr and result.stdout == ""
    assert rows(ca_dir) == []


def test_issue_refuses_an_output_directory_that_is_a_symlink(ca_dir: Path, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmp_path / "out").symlink_to(elsewhere)
    result = invoke(
        "cert", "issue", "--ca-dir", ca_dir, "--user", "alice", "--out", tmp_path / "out"
    )
    assert result.exit_code == 3 and "is a symbolic link" in result.stderr
    # the default ./USER too
    (tmp_path / "bob").symlink_to(elsewhere)
    default = invoke("cert", "issue", "--ca-dir", ca_dir, "--user", "bob", cwd=tmp_path)
    assert default.exit_code == 3 and "bob is a symbolic link" in default.stderr
    assert rows(ca_dir) == [] and list(elsewhere.iterdir()) == []  # no row, nothing written


@pytest.mark.parametrize("dangling", [True, False])
def test_issue_refuses_a_symlink_in_place_of_a_client_file(
    ca_dir: Path, tmp_path: Path, dangling: bool
) -> None:
    out = tmp_path / "alice"
    out.mkdir(mode=0o700)
    target = tmp_path / ("planted-key" if dangling else "existing-file")
    if not dangling:
        target.write_text("someone's file")
    (out / "client.key").symlink_to(target)
    result = invoke("cert", "issue", "--ca-dir", ca_dir, "--user", "alice", "--out", out, "--force")
    assert result.exit_code == 3
    kind = "a dangling symbolic link" if dangling else "a symbolic link"
    assert f"{out / 'client.key'} is {kind}" in result.stderr
    assert rows(ca_dir) == [] and sorted(p.name for p in out.iterdir()) == ["client.key"]
    assert target.exists() is (not dangling)
    if not dangling:
        assert target.read_text() == "someone's file"


def test_issue_into_a_directory_others_can_read_warns_and_issues(
    ca_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "shared"
    out.mkdir()
    out.chmod(0o755)
    result = invoke("cert", "issue", "--ca-dir", ca_dir, "--user", "alice", "--out", out)
    assert result.exit_code == 0, result.stderr
    assert f"warning: {out} is accessible to other users (mode 0755)" in result.stderr
    assert "private key" in result.stderr and mode(out / "client.key") == 0o600
    private = invoke(
        "cert", "issue", "--ca-dir", ca_dir, "--user", "bob", "--out", tmp_path / "b" / "bob"
    )
    assert private.exit_code == 0 and "warning" not in private.stderr


def test_issue_creates_missing_parents_0700_whatever_the_umask(
    ca_dir: Path, tmp_path: Path
) -> None:
    old = os.umask(0o002)
    try:
        result = invoke(
            "cert", "issue", "--ca-dir", ca_dir, "--user", "alice", "--out",
            tmp_path / "certs" / "team" / "alice",
        )  # fmt: skip
    finally:
        os.umask(old)
    assert result.exit_code == 0, result.stderr
    for level in ("certs", "certs/team", "certs/team/alice"):
        assert mode(tmp_path / level) == 0o700, level


# --- keys that fail over TLS 1.2 ------------------------------------------------------------------


def test_issue_refuses_a_key_type_that_fails_over_tls_1_2_unless_forced(
    ca_dir: Path, tmp_path: Path
) -> None:
    before = invoke("--json", "cert", "list", "--ca-dir", ca_dir).stdout
    refused = invoke("cert", "issue", "--ca-dir", ca_dir, "--user", "alice", "--out",
                     tmp_path / "a", "--key-type", "ec-p384")  # fmt: skip
    assert refused.exit_code == 3 and "TLS 1.2" in refused.stderr
    assert not (tmp_path / "a").exists()
    assert invoke("--json", "cert", "list", "--ca-dir", ca_dir).stdout == before
    forced = invoke("cert", "issue", "--ca-dir", ca_dir, "--user", "alice", "--out",
                    tmp_path / "a", "--key-type", "ec-p384", "--force")  # fmt: skip
    assert forced.exit_code == 0, forced.stderr


def test_sign_refuses_a_p384_csr_unless_forced(ca_dir: Path, tmp_path: Path) -> None:
    key = ec.generate_private_key(ec.SECP384R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "bob")])
    csr = x509.CertificateSigningRequestBuilder().subject_name(name).sign(key, SHA256())
    path = tmp_path / "bob.csr"
    path.write_bytes(csr.public_bytes(Encoding.PEM))
    refused = invoke("cert", "sign", "--ca-dir", ca_dir, "--csr", path, "--out", tmp_path / "b")
    assert refused.exit_code == 3 and "fails over TLS 1.2" in refused.stderr
    forced = invoke("cert", "sign", "--ca-dir", ca_dir, "--csr", path, "--out", tmp_path / "b",
                    "--force")  # fmt: skip
    assert forced.exit_code == 0, forced.stderr


def test_renew_skips_a_p384_user_and_renews_everyone_else(ca_dir: Path, tmp_path: Path) -> None:
    issue(ca_dir, "alice", tmp_path / "a", "--days", "10", "--key-type", "ec-p384", "--force")
    issue(ca_dir, "bob", tmp_path / "b", "--days", "10")
    out_root = tmp_path / "renewed"
    args = ("--json", "cert", "renew", "--ca-dir", ca_dir, "--out-root", out_root)
    skipped = invoke(*args)
    assert skipped.exit_code == 3, skipped.stderr
    doc = skipped.json()
    assert [r["user"] for r in doc["renewed"]] == ["bob"]
    assert [s["cn"] for s in doc["skipped"]] == ["alice"]
    assert "--key-type ec-p256" in doc["skipped"][0]["problem"]
    switched = invoke(*args, "--user", "alice", "--key-type", "ec-p256")
    assert switched.exit_code == 0, switched.stderr
    assert switched.json()["renewed"][0]["certificate"]["key_type"] == "ec-p256"
