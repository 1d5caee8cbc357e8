"""What goes wrong, through the CLI: a flaky API, a busy instance, a change PostgreSQL refuses,
the lockout guard, bad credentials, nothing listening, and one bad instance among several."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from rdsssl.emulator.pg_hba import render_hba
from rdsssl.errors import ExitCode
from rdsssl.models import DesiredState, InstanceSpec
from rdsssl.ops import audit
from rdsssl.ops.desired import resolve
from tests.e2e.conftest import PROFILES, Cloud

__all__ = ["PROFILES"]  # every test under each emulator profile (tests/e2e/conftest.py)


@pytest.fixture
def ca(fresh: Cloud, tmp_path: Path) -> Path:
    return fresh.new_ca(tmp_path / "ca")


@pytest.fixture
def with_ca(fresh: Cloud, ca: Path) -> Cloud:
    """The instance with the client CA of `ca` enabled (ACL prefer)."""
    result = fresh.cli("instance", "enable-client-ca", fresh.iid, "--ca-dir", ca, "--yes")
    assert result.exit_code == 0, result.stderr
    return fresh


def test_throttling_and_5xx_still_converge_with_the_change_applied_once(
    fresh: Cloud, ca: Path
) -> None:
    faults = fresh.emu.faults
    faults.push("unavailable", action="DescribeDBInstanceSSL", count=2)
    faults.push("throttling", action="ModifyDBInstanceSSL")
    faults.push("internal", action="ModifyDBInstanceSSL", after=True)  # accepted, then a 500
    result = fresh.cli("--json", "instance", "enable-client-ca", fresh.iid, "--ca-dir", ca, "--yes")
    assert result.exit_code == 0, result.stderr
    modifies = fresh.calls("ModifyDBInstanceSSL")
    assert [r.fault for r in modifies] == ["throttling", "internal"]  # never sent a third time
    assert fresh.emu.restarts(fresh.iid) == 1
    assert len(result.json()["fingerprints"]["client_ca"]) == 1


@pytest.fixture
def slow_restarts(fresh: Cloud) -> Iterator[Cloud]:
    fresh.emu.state.restart_seconds = 600.0
    yield fresh
    fresh.emu.state.restart_seconds = 0.3


def _finish_restart_soon(cloud: Cloud) -> threading.Timer:
    def finish_restart() -> None:  # the 600 s restart ends while the next command waits
        cloud.emu.state.restart_seconds = 0.3
        cloud.emu.clock.advance(600.0)

    timer = threading.Timer(1.5, finish_restart)
    timer.start()
    return timer


def test_a_change_sent_earlier_is_confirmed_before_the_next_one(
    slow_restarts: Cloud, ca: Path, tmp_path: Path
) -> None:
    cloud = slow_restarts
    sent = cloud.cli("instance", "enable-client-ca", cloud.iid, "--ca-dir", ca, "--yes",
                     "--no-wait")  # fmt: skip
    assert sent.exit_code == 0, sent.stderr
    timer = _finish_restart_soon(cloud)
    try:  # under a status lag the instance still looks idle: the audit log knows better
        crl = cloud.cli("instance", "upload-crl", cloud.iid, "--ca-dir", ca, "--yes")
    finally:
        timer.cancel()
    assert crl.exit_code == 0, crl.stderr
    assert "a change sent earlier" in crl.stderr and "confirming it first" in crl.stderr
    modifies = cloud.calls("ModifyDBInstanceSSL")
    assert [r.outcome for r in modifies] == ["ok", "ok"]  # no busy answer, nothing twice
    outcomes = [line["outcome"] for line in audit.read(cloud.work / "audit.jsonl")]
    assert outcomes == ["sent", "ok", "sent", "ok"]
    ssl = cloud.emu.instance(cloud.iid).ssl
    assert ssl.client_ca_pem and ssl.crl_pem


def test_a_busy_instance_is_waited_for(slow_restarts: Cloud, ca: Path, tmp_path: Path) -> None:
    cloud = slow_restarts
    elsewhere = ["--audit-log", str(tmp_path / "someone-else.jsonl")]  # another person's run
    sent = cloud.cli("instance", "enable-client-ca", cloud.iid, "--ca-dir", ca, "--yes",
                     "--no-wait", *elsewhere)  # fmt: skip
    assert sent.exit_code == 0, sent.stderr
    if cloud.emu.profile.status_lag_seconds:
        # The service hides the change for a while and this run cannot know of it: a CRL
        # needs the CA that does not show yet, so it stops before sending anything.
        refused = cloud.cli("instance", "upload-crl", cloud.iid, "--ca-dir", ca, "--yes")
        assert refused.exit_code == ExitCode.BAD_INPUT, refused.stderr
        assert "needs the client CA" in refused.stderr
        assert len(cloud.calls("ModifyDBInstanceSSL")) == 1
        return
    assert cloud.emu.instance(cloud.iid).status == "SSL_MODIFYING"
    timer = _finish_restart_soon(cloud)
    try:
        acl = cloud.cli("instance", "upload-crl", cloud.iid, "--ca-dir", ca, "--yes")
    finally:
        timer.cancel()
    assert acl.exit_code == 0, acl.stderr
    assert f"waited for {cloud.iid} to be ready (was SSL_MODIFYING)" in acl.stderr
    modifies = cloud.calls("ModifyDBInstanceSSL")
    assert [r.outcome for r in modifies] == ["ok", "ok"]  # no IncorrectDBInstanceState
    ssl = cloud.emu.instance(cloud.iid).ssl
    assert ssl.client_ca_pem and ssl.crl_pem


def test_a_change_postgresql_refuses_exits_5_with_the_reason(
    with_ca: Cloud, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The emulator renders a pg_hba.conf line that the real PostgreSQL refuses for
    verify-full, so the instance reports LastModifyStatus=failed, as RDS would."""

    def broken(acl: str | None, replication_acl: str | None) -> str:
        text = render_hba(acl, replication_acl)
        if acl == "verify-full":
            text += "hostssl all all 0.0.0.0/0 scram-sha-256 clientcert=no-verify\n"
        return text

    monkeypatch.setattr("rdsssl.emulator.pg.render_hba", broken)  # what PgCluster calls
    cloud = with_ca
    result = cloud.cli("instance", "set-acl", cloud.iid, "--acl", "verify-full", "--yes",
                       "--force")  # fmt: skip
    assert result.exit_code == ExitCode.WAIT_FAILED, result.stderr
    assert "reported the SSL change as failed" in result.stderr
    assert "pg_hba.conf line" in result.stderr  # PostgreSQL's own reason, via ModifyStatusReason
    assert cloud.emu.instance(cloud.iid).ssl.acl == "prefer"  # the old configuration is kept
    last = audit.read(cloud.work / "audit.jsonl")[-1]
    assert (last["action"], last["outcome"]) == ("modify-ssl:acl", "failed")
    monkeypatch.undo()
    waited = cloud.cli("instance", "wait", cloud.iid, "--grace", "0")
    assert waited.exit_code == ExitCode.WAIT_FAILED and "last SSL change failed" in waited.stderr


def test_the_lockout_guard_refuses_without_proof_and_passes_with_it(
    with_ca: Cloud, ca: Path, tmp_path: Path
) -> None:
    cloud = with_ca
    good = cloud.issue(ca, tmp_path / "alice")
    stranger = cloud.issue(cloud.new_ca(tmp_path / "other-ca"), tmp_path / "stranger")
    base = ["instance", "set-acl", cloud.iid, "--acl", "verify-ca", "--yes", "--probe-user",
            "alice", "--probe-password-env", "ALICE_PASSWORD"]  # fmt: skip
    modifies = len(cloud.calls("ModifyDBInstanceSSL"))

    bare = cloud.cli("--json", "instance", "set-acl", cloud.iid, "--acl", "verify-ca", "--yes")
    assert bare.exit_code == ExitCode.VERIFICATION_FAILED
    assert bare.json()["error"]["type"] == "LockoutGuard"
    unknown = cloud.cli(*base, "--probe-cert", stranger[1], "--probe-key", stranger[3])
    assert unknown.exit_code == ExitCode.VERIFICATION_FAILED
    assert "it is not issued by a CA the instance will trust" in unknown.stderr  # before a call
    wrong = cloud.cli(*base, "--probe-cert", good[1], "--probe-key", good[3],
                      env={"ALICE_PASSWORD": "not-her-password"})  # fmt: skip
    assert wrong.exit_code == ExitCode.VERIFICATION_FAILED
    assert "the probe as alice failed (auth-failed" in wrong.stderr  # the live probe
    assert len(cloud.calls("ModifyDBInstanceSSL")) == modifies

    proven = cloud.cli(*base, "--probe-cert", good[1], "--probe-key", good[3])
    assert proven.exit_code == 0, proven.stderr
    assert cloud.emu.instance(cloud.iid).ssl.acl == "verify-ca"


def test_wrong_credentials_exit_4_naming_the_code(fresh: Cloud) -> None:
    env = {"ALIBABA_CLOUD_ACCESS_KEY_SECRET": "not-the-secret"}
    result = fresh.cli("--json", "instance", "show", fresh.iid, env=env)
    assert result.exit_code == ExitCode.API_ERROR
    assert "SignatureDoesNotMatch" in result.stderr
    assert "not-the-secret" not in result.stdout + result.stderr
    assert result.json()["error"]["exit_code"] == 4


def test_an_unreachable_endpoint_exits_4_with_a_clear_message(fresh: Cloud) -> None:
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        endpoint = f"http://127.0.0.1:{sock.getsockname()[1]}"
    result = fresh.cli("instance", "show", fresh.iid, env={"RDSSSL_ENDPOINT": endpoint})
    assert result.exit_code == ExitCode.API_ERROR
    assert f"cannot reach the RDS API at {endpoint}: connection refused" in result.stderr


def test_one_failing_instance_does_not_stop_the_others(fresh: Cloud, ca: Path) -> None:
    tagged = fresh.emu.add_instance(tags={"team": "e2e"}, backend="none")
    config = fresh.work / "fleet.toml"
    config.write_text(
        f'[defaults]\nca_dir = "{ca}"\n\n[[instances]]\nid = "pgm-doesnotexist"\n\n'
        f'[[instances]]\ntags = {{ team = "e2e" }}\n\n[[instances]]\nid = "{fresh.iid}"\n'
    )
    result = fresh.cli("--json", "apply", "-f", config, "--yes")
    assert result.exit_code == ExitCode.API_ERROR, result.stderr
    doc = result.json()
    assert doc["ok"] is False and doc["error"]["exit_code"] == 4
    statuses = {i["instance"]: i["status"] for i in doc["instances"]}
    assert statuses == {"pgm-doesnotexist": "failed", tagged: "changed", fresh.iid: "changed"}
    assert "InvalidDBInstanceId.NotFound" in result.stderr
    assert doc["summary"] == {"total": 3, "failed": 1, "changed": 2}


def test_resolve_dedupes_and_an_explicit_id_wins(fresh: Cloud) -> None:
    a = fresh.emu.add_instance(tags={"env": "dedupe"}, backend="none")
    b = fresh.emu.add_instance(tags={"env": "dedupe", "team": "x"}, backend="none")

    def spec(source: str, **kw: object) -> InstanceSpec:
        base: dict[str, object] = {"id": None, "tags": None, "region": None, "ca_dir": None,
                                   "ca_bundle": Path("b.pem"), "crl": False, "acl": None,
                                   "replication_acl": None, "source": source}  # fmt: skip
        return InstanceSpec(**{**base, **kw})  # type: ignore[arg-type]

    state = DesiredState(
        path=Path("x.toml"),
        instances=(
            spec("tags-1", tags={"env": "dedupe"}),
            spec("tags-2", tags={"team": "x"}),
            spec("explicit", id=b),
        ),
    )
    chosen = resolve(fresh.api(), state, region=fresh.emu.region)
    assert [(iid, s.source) for iid, s in chosen] == [(a, "tags-1"), (b, "explicit")]
