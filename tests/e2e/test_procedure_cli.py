"""The whole procedure through the CLI, against the emulator with a real PostgreSQL: what a user
types, what the instance then holds, and how many calls and restarts it cost. Under both
emulator profiles: what the documentation says, and every unhelpful answer at once."""

from __future__ import annotations

import json
from pathlib import Path

from rdsssl.errors import ExitCode
from rdsssl.ops import audit
from tests.e2e.conftest import PROFILES, Cloud

__all__ = ["PROFILES"]  # run every test under each emulator profile (tests/e2e/conftest.py)


def _toml(path: Path, iid: str, **keys: str | bool) -> Path:
    lines = ["[defaults]"]
    for key, value in keys.items():
        lines.append(f"{key} = {json.dumps(value)}")
    lines += ["", "[[instances]]", f'id = "{iid}"', ""]
    path.write_text("\n".join(lines))
    return path


def test_the_whole_procedure(fresh: Cloud, tmp_path: Path) -> None:
    cloud, iid = fresh, fresh.iid
    ca = cloud.new_ca(tmp_path / "ca")
    alice = cloud.issue(ca, tmp_path / "alice")
    password = ["--password-env", "ALICE_PASSWORD"]

    enabled = cloud.cli("--json", "instance", "enable-client-ca", iid, "--ca-dir", ca, "--yes")
    assert enabled.exit_code == 0, enabled.stderr
    doc = enabled.json()
    assert (doc["status"], doc["plan"]["effect"], cloud.emu.restarts(iid)) == (
        "changed",
        "restart",
        1,
    )
    assert doc["request_id"] and len(doc["fingerprints"]["client_ca"]) == 1
    assert "RESTARTS the instance" in enabled.stderr
    assert cloud.cli("probe", iid, "--user", "alice", *alice, *password).exit_code == 0

    assert cloud.cli("cert", "revoke", "--ca-dir", ca, "--user", "alice").exit_code == 0
    crl = tmp_path / "crl.pem"
    assert cloud.cli("crl", "build", "--ca-dir", ca, "--out", crl).exit_code == 0
    expect = ["--expect-revoked-cert", alice[1], "--expect-revoked-key", alice[3]]
    uploaded = cloud.cli("instance", "upload-crl", iid, "--crl", crl, "--yes", *expect)
    assert uploaded.exit_code == 0, uploaded.stderr
    assert "the revoked certificate of alice is refused: ok" in uploaded.stderr
    refused = cloud.cli("--json", "probe", iid, "--user", "alice", *alice, *password)
    assert refused.exit_code == 6
    assert (refused.json()["ok"], refused.json()["probe"]["outcome"]) == (False, "revoked")
    expected = cloud.cli("probe", iid, "--user", "alice", *alice, *password, "--expect", "revoked")
    assert expected.exit_code == 0 and "outcome: revoked" in expected.stdout

    alice2 = cloud.issue(ca, tmp_path / "alice2")
    modifies = len(cloud.calls("ModifyDBInstanceSSL"))
    guarded = cloud.cli("instance", "set-acl", iid, "--acl", "cert", "--yes")
    assert guarded.exit_code == 6 and "Prove a certificate works" in guarded.stderr
    assert len(cloud.calls("ModifyDBInstanceSSL")) == modifies  # refused before any call
    probe_opts = ["--probe-user", "alice", "--probe-cert", alice2[1], "--probe-key", alice2[3]]
    acl = cloud.cli("instance", "set-acl", iid, "--acl", "cert", "--yes", *probe_opts,
                    "--probe-password-env", "ALICE_PASSWORD")  # fmt: skip
    assert acl.exit_code == 0, acl.stderr
    assert "probe as alice after the change: ok" in acl.stderr
    # CA, CRL; the ACL change reloads, or restarts where the service restarts for it
    acl_restarts = cloud.emu.profile.acl_change_restarts
    assert (cloud.emu.restarts(iid), cloud.emu.reloads(iid)) == ((3, 0) if acl_restarts else (2, 1))

    assert cloud.cli("probe", iid, "--user", "alice", *alice2).exit_code == 0  # no password
    plain = cloud.cli("probe", iid, "--user", "alice", "--sslmode", "disable", *password,
                      "--expect", "no-encryption")  # fmt: skip
    assert plain.exit_code == 0, plain.stdout

    shown = cloud.cli("--json", "instance", "show", iid).json()["ssl"]
    assert (shown["acl"], shown["crl"][0]["entries"]) == ("cert", 1)
    assert shown["client_ca"][0]["subject"] == "CN=root-ca1"
    lines = audit.read(cloud.work / "audit.jsonl")[-6:]  # `sent`, then the outcome, per change
    assert [(r["instance"], r["outcome"]) for r in lines] == [(iid, "sent"), (iid, "ok")] * 3
    assert [r["action"] for r in lines[1::2]] == [
        "modify-ssl:client_ca", "modify-ssl:crl", "modify-ssl:acl"
    ]  # fmt: skip


def test_a_crl_that_does_not_refuse_the_expected_certificate_exits_6(
    fresh: Cloud, tmp_path: Path
) -> None:
    cloud, iid = fresh, fresh.iid
    ca = cloud.new_ca(tmp_path / "ca")
    bob = cloud.issue(ca, tmp_path / "bob", user="bob")
    assert cloud.cli("instance", "enable-client-ca", iid, "--ca-dir", ca, "--yes").exit_code == 0
    crl = tmp_path / "crl.pem"  # built before bob is revoked: it does not list him
    assert cloud.cli("crl", "build", "--ca-dir", ca, "--out", crl).exit_code == 0
    assert cloud.cli("cert", "revoke", "--ca-dir", ca, "--user", "bob").exit_code == 0
    expect = ["--expect-revoked-cert", bob[1], "--expect-revoked-key", bob[3]]
    uploaded = cloud.cli("--json", "instance", "upload-crl", iid, "--crl", crl, "--yes", *expect)
    assert uploaded.exit_code == ExitCode.VERIFICATION_FAILED, uploaded.stderr
    assert "the revoked certificate of bob was not refused as revoked" in uploaded.stderr
    doc = uploaded.json()
    assert doc["ok"] is False and doc["revoked_probe"]["user"] == "bob"
    assert doc["revoked_probe"]["outcome"] != "revoked"
    assert cloud.emu.instance(iid).ssl.crl_pem  # the CRL itself went live: only the proof failed
    no_wait = cloud.cli("instance", "upload-crl", iid, "--crl", crl, "--yes", "--no-wait", *expect)
    assert no_wait.exit_code == ExitCode.USAGE and "needs the wait" in no_wait.stderr


def test_ca_crl_and_acl_in_one_apply_cost_one_call_and_one_restart(
    fresh: Cloud, tmp_path: Path
) -> None:
    cloud, iid = fresh, fresh.iid
    ca = cloud.new_ca(tmp_path / "ca")
    alice = cloud.issue(ca, tmp_path / "alice")
    config = _toml(tmp_path / "rdsssl.toml", iid, ca_dir="ca", crl=True, acl="cert")
    planned = cloud.cli("--json", "plan", "-f", config)
    assert planned.exit_code == 0, planned.stderr
    plan = planned.json()["instances"][0]
    assert [c["field"] for c in plan["plan"]["changes"]] == ["client_ca", "crl", "acl"]
    assert plan["guard"].startswith("ACL becomes cert")
    probe = ["--probe-user", "alice", "--probe-cert", alice[1], "--probe-key", alice[3],
             "--probe-password-env", "ALICE_PASSWORD"]  # fmt: skip

    applied = cloud.cli("--json", "apply", "-f", config, "--yes", *probe)
    assert applied.exit_code == 0, applied.stderr
    doc = applied.json()["instances"][0]
    assert (doc["status"], doc["guard_probe"]["outcome"], doc["verification"]["ok"]) == (
        "changed", "ok", True
    )  # fmt: skip
    assert doc["fingerprints"]["acl"] == "cert" and len(doc["fingerprints"]["crl"]) == 1
    assert len(cloud.calls("ModifyDBInstanceSSL")) == 1
    assert (cloud.emu.restarts(iid), cloud.emu.reloads(iid)) == (1, 0)

    again = cloud.cli("--json", "apply", "-f", config, "--yes")
    assert again.exit_code == 0, again.stderr
    assert again.json()["summary"] == {"total": 1, "up-to-date": 1}
    assert len(cloud.calls("ModifyDBInstanceSSL")) == 1
    assert cloud.cli("plan", "-f", config).stdout.strip().endswith("up to date, nothing to change")
    store = cloud.cli("--json", "ca", "show", "--ca-dir", ca).json()
    assert store["next_crl_number"] == 2  # one CRL signed, by the first apply only


def test_dry_run_makes_no_mutating_call_and_signs_nothing(fresh: Cloud, tmp_path: Path) -> None:
    cloud, iid = fresh, fresh.iid
    ca = cloud.new_ca(tmp_path / "ca")
    assert cloud.cli("cert", "issue", "--ca-dir", ca, "--user", "bob", "--out",
                     tmp_path / "bob").exit_code == 0  # fmt: skip
    assert cloud.cli("cert", "revoke", "--ca-dir", ca, "--user", "bob").exit_code == 0
    config = _toml(tmp_path / "rdsssl.toml", iid, ca_dir="ca", crl=True, acl="verify-full")
    runs = [
        cloud.cli("--json", "apply", "-f", config, "--dry-run"),
        cloud.cli("instance", "enable-client-ca", iid, "--ca-dir", ca, "--dry-run"),
        cloud.cli("instance", "upload-crl", iid, "--ca-dir", ca, "--dry-run"),
    ]
    assert [r.exit_code for r in runs] == [0, 0, 3], [r.stderr for r in runs]
    assert "needs the client CA enabled" in runs[2].stderr  # validated locally, not sent
    doc = runs[0].json()
    assert doc["dry_run"] is True and doc["instances"][0]["status"] == "planned"
    assert "lockout guard" in runs[0].stderr
    assert cloud.mutating() == []
    assert cloud.cli("--json", "ca", "show", "--ca-dir", ca).json()["next_crl_number"] == 1


def test_no_wait_then_wait_and_the_server_ca(fresh: Cloud, tmp_path: Path) -> None:
    cloud, iid = fresh, fresh.iid
    ca = cloud.new_ca(tmp_path / "ca")
    sent = cloud.cli("--json", "instance", "enable-client-ca", iid, "--ca-dir", ca, "--yes",
                     "--no-wait")  # fmt: skip
    assert sent.exit_code == 0, sent.stderr
    assert (sent.json()["status"], sent.json()["waited"]) == ("sent", False)
    waited = cloud.cli("--json", "instance", "wait", iid, "--timeout", "60")
    assert waited.exit_code == 0, waited.stderr
    doc = waited.json()
    assert (doc["status"], doc["last_modify_status"]) == ("Running", "success")
    assert len(doc["fingerprints"]["client_ca"]) == 1

    out = tmp_path / "server-ca.pem"
    fetched = cloud.cli("--json", "instance", "server-ca", iid, "--out", out)
    assert fetched.exit_code == 0, fetched.stderr
    assert out.read_bytes() == cloud.emu.server_ca_pem
    assert fetched.json()["certificates"][0]["fingerprint"]
    pinned = cloud.cli("probe", iid, "--user", "alice", "--root-cert", out,
                       "--password-env", "ALICE_PASSWORD")  # fmt: skip
    assert pinned.exit_code == 0, pinned.stdout


def test_show_never_prints_a_private_key(fresh: Cloud, tmp_path: Path) -> None:
    cloud, iid = fresh, fresh.iid
    cloud.emu.faults.switches.return_server_key = True  # as RDS does in DescribeDBInstanceSSL
    ca = cloud.new_ca(tmp_path / "ca")
    assert cloud.cli("instance", "enable-client-ca", iid, "--ca-dir", ca, "--yes").exit_code == 0
    for args in (("--json", "instance", "show", iid), ("instance", "show", iid)):
        shown = cloud.cli(*args)
        assert shown.exit_code == 0, shown.stderr
        assert "PRIVATE KEY" not in shown.stdout + shown.stderr
    doc = cloud.cli("--json", "instance", "show", iid).json()
    assert doc["instance"]["status"] == "Running" and doc["ssl"]["server_cert_expires"]
    assert "PRIVATE KEY" not in (cloud.work / "audit.jsonl").read_text()
