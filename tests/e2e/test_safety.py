"""The safety rules through the CLI against the emulator: one restart per change under every
fault, the audit trail through SIGKILL / SIGTERM / Ctrl-C, every tightening guarded, the plan
that is sent is the plan that was shown, and the CA that never revokes itself."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from rdsssl.emulator.faults import FAULT_KINDS
from rdsssl.errors import ExitCode
from rdsssl.ops import audit
from tests.cli.helpers import invoke
from tests.e2e.conftest import Cloud

# Documented profile by default; the rules whose proof depends on the service's timing (a fault
# after acceptance, a change between plan and call, signals during the wait) also run under the
# pessimistic one.
BOTH = pytest.mark.profiles("documented", "pessimistic")

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def ca(fresh: Cloud, tmp_path: Path) -> Path:
    return fresh.new_ca(tmp_path / "ca")


@pytest.fixture
def with_ca(fresh: Cloud, ca: Path) -> Cloud:
    result = fresh.cli("instance", "enable-client-ca", fresh.iid, "--ca-dir", ca, "--yes")
    assert result.exit_code == 0, result.stderr
    return fresh


# ------------------------------------------------------------------ one change, one restart

ERROR_KINDS = [k for k in FAULT_KINDS if k != "latency"]


@BOTH
@pytest.mark.parametrize("kind", ERROR_KINDS)
def test_an_error_after_the_change_was_accepted_costs_exactly_one_restart(
    fresh: Cloud, ca: Path, kind: str
) -> None:
    fresh.emu.faults.push(kind, action="ModifyDBInstanceSSL", after=True)
    result = fresh.cli("instance", "enable-client-ca", fresh.iid, "--ca-dir", ca, "--yes")
    assert result.exit_code == 0, result.stderr
    assert len(fresh.calls("ModifyDBInstanceSSL")) == 1
    assert fresh.emu.restarts(fresh.iid) == 1
    assert fresh.emu.instance(fresh.iid).ssl.client_ca_pem


@pytest.mark.parametrize("kind", ERROR_KINDS)
def test_an_error_before_the_change_was_accepted_is_sent_again_once(
    fresh: Cloud, ca: Path, kind: str
) -> None:
    fresh.emu.faults.push(kind, action="ModifyDBInstanceSSL")
    result = fresh.cli("instance", "enable-client-ca", fresh.iid, "--ca-dir", ca, "--yes")
    assert result.exit_code == 0, result.stderr
    assert [r.fault for r in fresh.calls("ModifyDBInstanceSSL")] == [kind, None]
    assert fresh.emu.restarts(fresh.iid) == 1


def test_two_concurrent_crl_refreshes_upload_once(with_ca: Cloud, ca: Path) -> None:
    cloud = with_ca
    revoked = cloud.issue(ca, cloud.work / "bob", user="bob")
    assert invoke("cert", "revoke", "--ca-dir", ca, "--cert", revoked[1]).exit_code == 0
    cloud.emu.state.restart_seconds = 1.0
    try:  # two processes, as two cron jobs would be
        runs = [_start(cloud, "crl", "refresh", cloud.iid, "--ca-dir", ca, "--yes")
                for _ in range(2)]  # fmt: skip
        results = [run.wait(timeout=120) for run in runs]
    finally:
        cloud.emu.state.restart_seconds = 0.3
    assert results == [0, 0], [run.communicate() for run in runs]
    assert len(cloud.calls("ModifyDBInstanceSSL")) == 2  # the CA (set-up), then ONE CRL upload
    assert cloud.emu.restarts(cloud.iid) == 2


# ------------------------------------------------------------------ the audit trail


@pytest.fixture
def long_restart(fresh: Cloud) -> Iterator[Cloud]:
    fresh.emu.state.restart_seconds = 600.0
    yield fresh
    fresh.emu.state.restart_seconds = 0.3
    fresh.emu.clock.advance(600.0)


def _start(cloud: Cloud, *args: str | Path) -> subprocess.Popen[str]:
    """`python -m rdsssl ARGS` as its own process (signals reach it as they would in cron)."""
    env = {**os.environ, **cloud.env, "PYTHONPATH": str(REPO)}
    return subprocess.Popen(
        [sys.executable, "-m", "rdsssl", *map(str, args)],
        cwd=cloud.work,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_for_sent(log: Path, proc: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if log.exists() and any(r["outcome"] == "sent" for r in audit.read(log)):
            return
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.1)
    raise AssertionError("no `sent` audit line within 60 s")


@BOTH
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM, signal.SIGINT])
def test_a_signal_during_the_wait_leaves_the_sent_line(
    long_restart: Cloud, ca: Path, sig: signal.Signals
) -> None:
    cloud = long_restart
    log = cloud.work / "audit.jsonl"
    log.unlink(missing_ok=True)
    proc = _start(cloud, "--json", "instance", "enable-client-ca", cloud.iid, "--ca-dir", ca,
                  "--yes", "--audit-log", log)  # fmt: skip
    _wait_for_sent(log, proc)
    proc.send_signal(sig)
    stdout, stderr = proc.communicate(timeout=60)
    lines = audit.read(log)
    assert lines[0]["outcome"] == "sent" and lines[0]["request_id"]
    if sig is signal.SIGKILL:
        assert proc.returncode == -signal.SIGKILL and len(lines) == 1
        _rerun_confirms(cloud, ca, log)
        return
    code = ExitCode.TERMINATED if sig is signal.SIGTERM else ExitCode.INTERRUPTED
    assert proc.returncode == code, stderr
    assert [r["outcome"] for r in lines] == ["sent", "interrupted"]
    assert "Traceback" not in stderr and stderr.count("rdsssl:") == 1
    assert "re-run the same command to confirm" in stderr and cloud.iid in stderr
    doc = json.loads(stdout)  # exactly one document
    assert doc["ok"] is False and doc["error"]["exit_code"] == code
    assert doc["unconfirmed"] == [{"instance": cloud.iid, "request_id": lines[0]["request_id"]}]
    _rerun_confirms(cloud, ca, log)


def _rerun_confirms(cloud: Cloud, ca: Path, log: Path) -> None:
    """Running the same command again confirms the change that was sent, sends nothing."""
    cloud.emu.clock.advance(600.0)  # the long restart ends
    rerun = cloud.cli("instance", "enable-client-ca", cloud.iid, "--ca-dir", ca, "--yes",
                      "--audit-log", log)  # fmt: skip
    assert rerun.exit_code == 0, rerun.stderr
    assert len(cloud.calls("ModifyDBInstanceSSL")) == 1  # not sent again
    last = audit.read(log)[-1]
    assert (last["outcome"], last["detail"]) == ("ok", "confirmed by a later run")
    assert last["request_id"] == audit.read(log)[0]["request_id"]


def test_ctrl_c_during_a_concurrent_apply_stops_every_wait_promptly(
    long_restart: Cloud, tmp_path: Path
) -> None:
    cloud = long_restart
    ca = cloud.new_ca(tmp_path / "fleet-ca")
    config = tmp_path / "rdsssl.toml"
    config.write_text(f'[defaults]\nca_dir = "{ca}"\n[[instances]]\nid = "{cloud.iid}"\n')
    log = cloud.work / "audit.jsonl"
    log.unlink(missing_ok=True)
    proc = _start(cloud, "apply", "-f", config, "--yes", "--audit-log", log, "--concurrency", "4")
    _wait_for_sent(log, proc)
    started = time.monotonic()
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=30)
    assert time.monotonic() - started < 15  # not the 600 s restart
    assert proc.returncode == ExitCode.INTERRUPTED, stderr
    assert "Traceback" not in stderr and "re-run the same command to confirm" in stderr


def test_an_unwritable_audit_log_is_exit_3_before_any_call(fresh: Cloud, ca: Path) -> None:
    blocker = fresh.work / "a-file"
    blocker.write_text("")
    result = fresh.cli("instance", "enable-client-ca", fresh.iid, "--ca-dir", ca, "--yes",
                       "--audit-log", blocker / "audit.jsonl")  # fmt: skip
    assert result.exit_code == ExitCode.BAD_INPUT and "audit log" in result.stderr
    assert fresh.mutating() == []


# ------------------------------------------------------------------ every tightening guarded


def test_replication_acl_tightening_is_guarded(with_ca: Cloud) -> None:
    result = with_ca.cli("instance", "set-acl", with_ca.iid, "--replication-acl", "cert", "--yes")
    assert result.exit_code == ExitCode.VERIFICATION_FAILED
    assert "ReplicationACL becomes cert" in result.stderr
    assert with_ca.calls("ModifyDBInstanceSSL")[-1].params.get("ACL") is None  # set-up only
    assert len(with_ca.calls("ModifyDBInstanceSSL")) == 1


def test_disabling_the_client_ca_under_a_certificate_acl_is_guarded(
    with_ca: Cloud, ca: Path, tmp_path: Path
) -> None:
    cloud = with_ca
    alice = cloud.issue(ca, tmp_path / "alice")
    probe = ["--probe-user", "alice", "--probe-password-env", "ALICE_PASSWORD", *[
        "--probe-cert", alice[1], "--probe-key", alice[3]]]  # fmt: skip
    tight = cloud.cli("instance", "set-acl", cloud.iid, "--acl", "cert", "--yes", *probe)
    assert tight.exit_code == 0, tight.stderr
    refused = cloud.cli("instance", "disable-client-ca", cloud.iid, "--yes", *probe)
    assert refused.exit_code == ExitCode.VERIFICATION_FAILED
    assert "set-acl ID --acl prefer" in refused.stderr
    assert cloud.emu.instance(cloud.iid).ssl.client_ca_pem
    forced = cloud.cli("instance", "disable-client-ca", cloud.iid, "--yes", "--force")
    assert forced.exit_code == 0, forced.stderr
    assert not cloud.emu.instance(cloud.iid).ssl.client_ca_pem


def test_replacing_the_ca_needs_a_certificate_of_the_new_one(
    with_ca: Cloud, tmp_path: Path
) -> None:
    cloud = with_ca
    new_ca = cloud.new_ca(tmp_path / "ca2")
    result = cloud.cli("instance", "enable-client-ca", cloud.iid, "--ca-dir", new_ca, "--yes")
    assert result.exit_code == ExitCode.VERIFICATION_FAILED
    assert "drops 1 CA(s)" in result.stderr
    assert len(cloud.calls("ModifyDBInstanceSSL")) == 1


@BOTH
def test_a_changed_instance_between_plan_and_call_sends_nothing(
    with_ca: Cloud, ca: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cloud = with_ca
    from rdsssl.ops import apply as applying

    real = applying.apply

    def after_someone_else(api, iid, desired, options, **kw):  # type: ignore[no-untyped-def]
        if not options.dry_run:  # between the plan shown and the call, the ACL moves
            cloud.emu.state.modify_ssl(
                {"DBInstanceId": iid, "ConnectionString": cloud.emu.instance(iid)
                 .connection_string, "ACL": "verify-ca"}
            )  # fmt: skip
            cloud.emu.clock.advance(1.0)
        return real(api, iid, desired, options, **kw)

    monkeypatch.setattr(applying, "apply", after_someone_else)
    before = len(cloud.calls("ModifyDBInstanceSSL"))
    result = cloud.cli("instance", "set-acl", cloud.iid, "--acl", "prefer",
                       "--replication-acl", "verify-ca", "--yes", "--force")  # fmt: skip
    assert result.exit_code == ExitCode.VERIFICATION_FAILED, result.stderr
    sent = cloud.calls("ModifyDBInstanceSSL")[before:]
    if cloud.emu.profile.status_lag_seconds:  # the other change hides behind the status lag:
        assert "another change ran on the instance" in result.stderr  # caught when sending,
        assert [r.outcome for r in sent] == [cloud.emu.profile.busy_error.code]  # refused
    else:
        assert "changed since the plan was shown" in result.stderr
        assert sent == []


# ------------------------------------------------------------------ the CA never revokes itself


def test_the_ca_cannot_be_revoked_by_any_selector(ca: Path) -> None:
    before = invoke("--json", "cert", "list", "--ca-dir", ca).stdout
    serial = invoke("--json", "ca", "show", "--ca-dir", ca).json()["ca"]["serial"]
    for selector in (["--cert", ca / "ca.crt"], ["--serial", serial]):
        result = invoke("cert", "revoke", "--ca-dir", ca, *selector)
        assert result.exit_code == ExitCode.BAD_INPUT, result.stderr
        assert "CA certificate" in result.stderr
    assert invoke("--json", "cert", "list", "--ca-dir", ca).stdout == before


def test_an_old_store_that_lists_its_ca_as_revoked_signs_no_crl(ca: Path, tmp_path: Path) -> None:
    import sqlite3

    serial = invoke("--json", "ca", "show", "--ca-dir", ca).json()["ca"]["serial"]
    with sqlite3.connect(ca / "inventory.sqlite") as db:  # what an old rdsssl could leave
        db.execute(
            "INSERT INTO certs VALUES (?, 'root-ca1', NULL, '2099-01-01T00:00:00Z', 'revoked',"
            " '2025-01-01T00:00:00Z', NULL, '', '', '', 'imported', '2025-01-01T00:00:00Z',"
            " NULL, 999)",
            (serial,),
        )
    number = invoke("--json", "ca", "show", "--ca-dir", ca).json()["next_crl_number"]
    result = invoke("crl", "build", "--ca-dir", ca, "--out", tmp_path / "crl.pem")
    assert result.exit_code == ExitCode.BAD_INPUT
    assert "it is the CA's own serial" in result.stderr
    assert not (tmp_path / "crl.pem").exists()
    assert invoke("--json", "ca", "show", "--ca-dir", ca).json()["next_crl_number"] == number


# ------------------------------------------------------------------ a new CA over an old CRL


def test_apply_plans_a_new_ca_over_the_old_cas_crl(
    with_ca: Cloud, ca: Path, tmp_path: Path
) -> None:
    cloud = with_ca
    crl = cloud.cli("instance", "upload-crl", cloud.iid, "--ca-dir", ca, "--yes")
    assert crl.exit_code == 0, crl.stderr
    new_ca = cloud.new_ca(tmp_path / "ca2")
    config = tmp_path / "rdsssl.toml"
    config.write_text(
        f'[defaults]\nca_dir = "{new_ca}"\ncrl = true\n[[instances]]\nid = "{cloud.iid}"\n'
    )
    planned = cloud.cli("--json", "plan", "-f", config)
    assert planned.exit_code == 0, planned.stderr
    (entry,) = planned.json()["instances"]
    assert [c["field"] for c in entry["plan"]["changes"]] == ["client_ca", "crl"]
    applied = cloud.cli("apply", "-f", config, "--yes", "--force")
    assert applied.exit_code == 0, applied.stderr
    assert cloud.emu.restarts(cloud.iid) == 3  # CA, CRL, then CA + fresh CRL in one call


# ------------------------------------------------------------------ SSL off


def test_every_mutating_command_stops_when_ssl_is_off(
    fresh: Cloud, ca: Path, tmp_path: Path
) -> None:
    fresh.emu.set_ssl_enabled(fresh.iid, False)
    config = tmp_path / "rdsssl.toml"
    config.write_text(
        f'[defaults]\nca_dir = "{ca}"\ncrl = true\n[[instances]]\nid = "{fresh.iid}"\n'
    )
    commands: list[tuple[str | Path, ...]] = [
        ("instance", "enable-client-ca", fresh.iid, "--ca-dir", ca, "--yes"),
        ("instance", "upload-crl", fresh.iid, "--ca-dir", ca, "--yes"),
        ("instance", "set-acl", fresh.iid, "--acl", "prefer", "--yes"),
        ("apply", "-f", config, "--yes"),
        ("crl", "refresh", fresh.iid, "--ca-dir", ca, "--yes"),
    ]
    try:
        for command in commands:
            result = fresh.cli(*command)
            assert result.exit_code == ExitCode.BAD_INPUT, (command, result.stderr)
            assert "SSL must be enabled on the instance first" in result.stderr, command
        assert fresh.mutating() == []
    finally:
        fresh.emu.set_ssl_enabled(fresh.iid, True)
