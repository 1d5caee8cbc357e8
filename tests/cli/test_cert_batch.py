"""`rdsssl cert issue --users-file / --user ...` and `rdsssl cert revoke --serials-file`: many
certificates per run, checked whole before anything is written, one unlock, one transaction."""

from __future__ import annotations

import subprocess
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509

from rdsssl.cli.jsondoc import ENVELOPE_KEYS
from rdsssl.errors import InputError
from rdsssl.models import KeyType
from rdsssl.ops.client_issue import BatchOptions, ClientSpec, issue_many
from rdsssl.pki import crypto
from rdsssl.store import ca_key
from rdsssl.store.records import parse_time
from tests.cli.helpers import invoke, issue, mode, snapshot

SINGLE_KEYS = {"certificate", "files", "truncated"}  # the document of `cert issue --user X`


def listed(ca_dir: Path) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = invoke("--json", "cert", "list", "--ca-dir", ca_dir).json()[
        "certificates"
    ]
    return rows


def batch(ca_dir: Path, *args: str | Path, **kwargs: Any) -> dict[str, Any]:
    """`cert issue --json ...` of several users that must succeed: its document."""
    result = invoke("--json", "cert", "issue", "--ca-dir", ca_dir, *args, **kwargs)
    assert result.exit_code == 0, result.stderr
    doc: dict[str, Any] = result.json()
    return doc


# --- issue ------------------------------------------------------------------------------------


def test_a_users_file_issues_each_user_into_out_root_and_prints_a_line_each(
    ca_dir: Path, tmp_path: Path
) -> None:
    users = tmp_path / "users.txt"
    users.write_text("# the analysts\nalice\n\n  bob  \ncarol\n")
    out = tmp_path / "clients"
    result = invoke("cert", "issue", "--ca-dir", ca_dir, "--users-file", users, "--out-root", out)
    assert result.exit_code == 0, result.stderr
    rows = {r["cn"]: r for r in listed(ca_dir)}
    lines = [line.split("\t") for line in result.stdout.splitlines()]
    assert [line[0] for line in lines] == ["alice", "bob", "carol"]
    for user, serial, not_after, folder in lines:
        assert rows[user]["serial"] == serial and rows[user]["not_after"] == not_after
        assert folder == str(out / user)
        assert mode(out / user) == 0o700 and mode(out / user / "client.key") == 0o600
        cert = x509.load_pem_x509_certificate((out / user / "client.crt").read_bytes())
        assert format(cert.serial_number, "x") == serial
        assert crypto.cn_of(cert.subject) == user
    verify = subprocess.run(
        ["openssl", "verify", "-CAfile", str(out / "bob" / "root.crt")]
        + [str(out / u / "client.crt") for u in ("alice", "bob", "carol")],
        capture_output=True,
        text=True,
    )
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert "issued 3 certificates" in result.stderr


def test_a_csv_users_file_takes_days_and_key_type_per_row_and_the_json_lists_each(
    ca_dir: Path, tmp_path: Path
) -> None:
    doc = batch(
        ca_dir,
        "--users-file",
        "-",
        "--days",
        "60",
        "--key-type",
        "ed25519",
        cwd=tmp_path,
        input="user,days,key-type\nalice,30,ec-p256\nbob,,\ncarol,7\n",
    )
    assert doc["ok"] is True and set(doc) >= {"issued"}
    issued = doc["issued"]
    assert [set(one) for one in issued] == [SINGLE_KEYS] * 3
    by_cn = {one["certificate"]["cn"]: one for one in issued}
    assert [one["certificate"]["cn"] for one in issued] == ["alice", "bob", "carol"]
    assert by_cn["alice"]["certificate"]["key_type"] == "ec-p256"
    assert by_cn["bob"]["certificate"]["key_type"] == "ed25519"  # the --key-type default
    assert by_cn["carol"]["certificate"]["key_type"] == "ed25519"
    lifetimes = {
        cn: parse_time(one["certificate"]["not_after"])
        - parse_time(one["certificate"]["not_before"])
        for cn, one in by_cn.items()
    }
    # not_before is backdated a little for clock skew: compare whole days
    assert {cn: life.days for cn, life in lifetimes.items()} == {
        "alice": 30,
        "bob": 60,
        "carol": 7,
    }
    assert by_cn["bob"]["files"] == [
        str(Path("bob") / n) for n in ("root.crt", "client.crt", "client.key")
    ]
    assert (tmp_path / "bob" / "client.key").is_file()  # ./USER, as the single form
    assert {r["serial"] for r in listed(ca_dir)} == {one["certificate"]["serial"] for one in issued}


def test_repeated_user_options_are_a_batch_too(ca_dir: Path, tmp_path: Path) -> None:
    doc = batch(ca_dir, "--user", "alice", "--user", "bob", "--out-root", tmp_path / "o")
    assert [one["certificate"]["cn"] for one in doc["issued"]] == ["alice", "bob"]
    assert (tmp_path / "o" / "alice" / "client.crt").is_file()
    assert (tmp_path / "o" / "bob" / "client.crt").is_file()


def test_one_user_keeps_the_single_document_and_out_root_works_for_it(
    ca_dir: Path, tmp_path: Path
) -> None:
    doc = batch(ca_dir, "--user", "alice", "--out-root", tmp_path / "o")
    assert set(doc) - ENVELOPE_KEYS == SINGLE_KEYS
    assert doc["files"][0] == str(tmp_path / "o" / "alice" / "root.crt")


def test_a_bad_line_in_the_middle_issues_nothing_and_names_every_problem(
    ca_dir: Path, tmp_path: Path
) -> None:
    issue(ca_dir, "dave", tmp_path / "o" / "dave")  # dave's files are already there
    before, rows_before = snapshot(ca_dir), listed(ca_dir)
    users = tmp_path / "users.txt"
    users.write_text("alice\nev\x1bil\nbob\nalice\ndave\ncarol\n")
    result = invoke(
        "--json",
        "cert",
        "issue",
        "--ca-dir",
        ca_dir,
        "--users-file",
        users,
        "--out-root",
        tmp_path / "o",
    )
    assert result.exit_code == 3
    message = result.json()["error"]["message"]
    assert message.startswith("nothing issued: 3 of 6 entries refused: ")
    assert f"{users} line 2: invalid database user name 'ev\\x1bil'" in message
    assert f"{users} line 4: user 'alice' is also on {users} line 1" in message
    assert f"{users} line 5: {tmp_path / 'o' / 'dave' / 'root.crt'} already exists" in message
    assert f"{users} line 1:" not in message and f"{users} line 6:" not in message
    assert snapshot(ca_dir) == before and listed(ca_dir) == rows_before  # no row, no serial
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == ["dave"]  # no file written


def test_a_users_file_syntax_error_is_refused_before_the_store_is_opened(
    ca_dir: Path, tmp_path: Path
) -> None:
    before = snapshot(ca_dir)
    result = invoke(
        "cert",
        "issue",
        "--ca-dir",
        ca_dir,
        "--users-file",
        "-",
        cwd=tmp_path,
        input="user,days\nalice,30\nbob,soon\n",
    )
    assert result.exit_code == 3
    assert "stdin line 3: days 'soon' is not a whole number of days" in result.stderr
    assert snapshot(ca_dir) == before and not (tmp_path / "alice").exists()


def test_a_batch_unlocks_the_ca_key_once(
    enc_ca_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[Path] = []
    real = ca_key.unlock

    def counting(path: Path, passphrase: bytes | None, cert: x509.Certificate) -> Any:
        calls.append(path)
        return real(path, passphrase, cert)

    monkeypatch.setattr(ca_key, "unlock", counting)
    users = tmp_path / "users.txt"
    users.write_text("".join(f"user{i}\n" for i in range(6)))
    doc = batch(
        enc_ca_dir,
        "--users-file",
        users,
        "--out-root",
        tmp_path / "o",
        env={"RDSSSL_CA_PASSPHRASE": "correct horse"},
    )
    assert len(doc["issued"]) == 6
    assert calls == [enc_ca_dir / "ca.key"]


@pytest.mark.parametrize(
    ("args", "problem"),
    [
        ((), "name the users: --user NAME (repeatable) or --users-file FILE"),
        (("--user", "a", "--user", "b", "--out", "x"), "--out is the directory of one user"),
        (("--user", "a", "--out", "x", "--out-root", "y"), "--out and --out-root contradict"),
    ],
)
def test_usage_errors_of_the_batch_forms(
    ca_dir: Path, tmp_path: Path, args: tuple[str, ...], problem: str
) -> None:
    result = invoke("cert", "issue", "--ca-dir", ca_dir, *args, cwd=tmp_path)
    assert result.exit_code == 2
    assert problem in result.stderr
    assert listed(ca_dir) == []


def test_a_users_file_of_one_user_may_use_out(ca_dir: Path, tmp_path: Path) -> None:
    doc = batch(ca_dir, "--users-file", "-", "--out", tmp_path / "here", input="alice\n")
    assert [one["certificate"]["cn"] for one in doc["issued"]] == ["alice"]
    assert (tmp_path / "here" / "client.key").is_file()


# --- revoke -----------------------------------------------------------------------------------


def _three(ca_dir: Path, tmp_path: Path) -> list[str]:
    doc = batch(ca_dir, "--user", "a", "--user", "b", "--user", "c", "--out-root", tmp_path / "o")
    return [one["certificate"]["serial"] for one in doc["issued"]]


def test_a_serials_file_revokes_every_serial_and_a_rerun_changes_nothing(
    ca_dir: Path, tmp_path: Path
) -> None:
    a, b, c = _three(ca_dir, tmp_path)
    serials = tmp_path / "leavers.txt"
    colons = ":".join(c[i : i + 2] for i in range(0, len(c), 2)).upper()
    serials.write_text(f"# December leavers\n{a}\n\n{colons}\n")
    result = invoke(
        "cert",
        "revoke",
        "--ca-dir",
        ca_dir,
        "--serials-file",
        serials,
        "--reason",
        "cessationOfOperation",
    )
    assert result.exit_code == 0, result.stderr
    assert result.stdout.splitlines() == [f"{a}\ta\trevoked", f"{c}\tc\trevoked"]
    states = {r["serial"]: (r["status"], r["reason"]) for r in listed(ca_dir)}
    assert states == {
        a: ("revoked", "cessationOfOperation"),
        b: ("valid", None),
        c: ("revoked", "cessationOfOperation"),
    }
    again = invoke(
        "--json", "cert", "revoke", "--ca-dir", ca_dir, "--serials-file", "-", input=f"{b}\n{a}\n"
    )
    assert again.exit_code == 0, again.stderr
    revoked = again.json()["revoked"]
    assert [(r["changed"], r["certificate"]["serial"]) for r in revoked] == [(True, b), (False, a)]
    assert [set(r) for r in revoked] == [{"changed", "certificate"}] * 2  # the single document
    assert revoked[1]["certificate"]["reason"] == "cessationOfOperation"  # first one kept


def test_a_serials_file_is_all_or_nothing_and_names_each_bad_line(
    ca_dir: Path, tmp_path: Path
) -> None:
    a, b, _ = _three(ca_dir, tmp_path)
    ca_serial = crypto.serial_hex(
        x509.load_pem_x509_certificate((ca_dir / "ca.crt").read_bytes()).serial_number
    )
    before = snapshot(ca_dir)
    serials = tmp_path / "s.txt"
    serials.write_text(f"{a}\nabcdef\n{ca_serial}\n{a}\n{b}\n")
    result = invoke("--json", "cert", "revoke", "--ca-dir", ca_dir, "--serials-file", serials)
    assert result.exit_code == 3
    message = result.json()["error"]["message"]
    assert message.startswith("nothing revoked: 3 of 5 entries refused: ")
    assert f"{serials} line 2: no certificate with serial abcdef" in message
    assert f"{serials} line 3: serial {ca_serial} is a CA certificate" in message
    assert f"{serials} line 4: serial {a} is also on {serials} line 1" in message
    assert snapshot(ca_dir) == before
    assert {r["status"] for r in listed(ca_dir)} == {"valid"}

    not_hex = invoke(
        "cert", "revoke", "--ca-dir", ca_dir, "--serials-file", "-", input=f"{a}\nxyz\n"
    )
    assert not_hex.exit_code == 3
    assert "stdin line 2: invalid serial 'xyz'" in not_hex.stderr
    assert snapshot(ca_dir) == before


def test_a_serials_file_excludes_the_other_selectors_and_needs_no_passphrase(
    enc_ca_dir: Path, tmp_path: Path
) -> None:
    both = invoke("cert", "revoke", "--ca-dir", enc_ca_dir, "--serial", "1", "--serials-file", "-")
    assert both.exit_code == 2
    assert "exactly one of --serial, --cert, --user, --serials-file" in both.stderr
    doc = batch(
        enc_ca_dir,
        "--user",
        "a",
        "--user",
        "b",
        "--out-root",
        tmp_path / "o",
        env={"RDSSSL_CA_PASSPHRASE": "correct horse"},
    )
    text = "".join(one["certificate"]["serial"] + "\n" for one in doc["issued"])
    result = invoke("cert", "revoke", "--ca-dir", enc_ca_dir, "--serials-file", "-", input=text)
    assert result.exit_code == 0, result.stderr
    assert {r["status"] for r in listed(enc_ca_dir)} == {"revoked"}


def test_the_serials_printed_by_a_batch_feed_a_serials_file(ca_dir: Path, tmp_path: Path) -> None:
    """The runbook's round trip: issue from a users file, revoke from the first column."""
    issued = invoke(
        "cert",
        "issue",
        "--ca-dir",
        ca_dir,
        "--users-file",
        "-",
        "--out-root",
        tmp_path / "o",
        input="x1\nx2\n",
    )
    assert issued.exit_code == 0, issued.stderr
    serials = "".join(line.split("\t")[1] + "\n" for line in issued.stdout.splitlines())
    revoked = invoke("cert", "revoke", "--ca-dir", ca_dir, "--serials-file", "-", input=serials)
    assert revoked.exit_code == 0, revoked.stderr
    assert len(revoked.stdout.splitlines()) == 2
    assert "revoked 2 certificates (0 already revoked)" in revoked.stderr


# --- the library: files that cannot be written after the COMMIT -------------------------------


def test_files_that_fail_after_the_commit_name_their_serials_and_the_rest_are_written(
    ca_dir: Path, tmp_path: Path
) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where a parent directory should be")
    options = BatchOptions(
        ca_dir=ca_dir,
        clients=(
            ClientSpec("alice", 30, KeyType.EC_P256, out_dir=tmp_path / "alice"),
            ClientSpec("bob", 30, KeyType.EC_P256, out_dir=blocker / "bob"),
            ClientSpec("carol", 30, KeyType.EC_P256, out_dir=tmp_path / "carol"),
        ),
        now=datetime.now(timezone.utc),
    )
    with pytest.raises(InputError) as failed:
        issue_many(options, unlock=lambda store: store.unlock(None), warn=lambda _: None)
    rows = {r["cn"]: r["serial"] for r in listed(ca_dir)}
    assert sorted(rows) == ["alice", "bob", "carol"]  # all recorded: each can be revoked
    message = str(failed.value)
    assert message.startswith(
        f"1 of 3 certificates are recorded but their files were not written: bob {rows['bob']} ("
    )
    assert "the other 2 were written" in message
    assert f"(serials: {rows['bob']})" in message
    for user in ("alice", "carol"):
        cert = x509.load_pem_x509_certificate((tmp_path / user / "client.crt").read_bytes())
        assert format(cert.serial_number, "x") == rows[user]
