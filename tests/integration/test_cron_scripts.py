"""The cron wrappers in scripts/cron/, run for real: bash, flock(1) and the installed `rdsssl`.

renew-client-certs works on a temporary CA store; refresh-crl and check talk to a state-only
emulator through the real SDK, configured only through the environment (as cron would).
The emulator set-up helpers are shared with the crl refresh end-to-end tests.
"""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509

from rdsssl.emulator.server import Emulator
from tests.cli.helpers import invoke, issue
from tests.e2e.test_crl_refresh import Cloud, cloud_for, make_store

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts" / "cron"
RDSSSL = Path(sys.executable).parent / "rdsssl"  # the console script of this environment


def run_script(name: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    base = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/root")}
    return subprocess.run(
        [str(SCRIPTS / name)], env={**base, "RDSSSL_BIN": str(RDSSSL), **env},
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def serial_of(path: Path) -> str:
    return format(x509.load_pem_x509_certificate(path.read_bytes()).serial_number, "x")


# --- renew-client-certs ---------------------------------------------------------------------------


@pytest.fixture
def renew_env(tmp_path: Path) -> dict[str, str]:
    return {
        "RDSSSL_CA_DIR": str(make_store(tmp_path / "ca")),
        "RDSSSL_OUT_ROOT": str(tmp_path / "out"),
        "RDSSSL_LOCK_DIR": str(tmp_path),
    }


def test_renew_client_certs_renews_what_is_due_then_nothing(
    renew_env: dict[str, str], tmp_path: Path
) -> None:
    ca_dir, alice = Path(renew_env["RDSSSL_CA_DIR"]), tmp_path / "out" / "alice"
    old = issue(ca_dir, "alice", alice, "--days", "5")
    issue(ca_dir, "bob", tmp_path / "bob", "--days", "300")
    log = tmp_path / "renew.json"

    first = run_script("renew-client-certs", {**renew_env, "RDSSSL_JSON_LOG": str(log)})
    assert first.returncode == 0, first.stderr
    assert first.stdout == "" and first.stderr == ""  # --quiet: a cron mail only on trouble
    assert serial_of(alice / "client.crt") not in ("", old["serial"])
    assert '"renewed"' in log.read_text()
    assert not (tmp_path / "out" / "bob").exists()

    state = serial_of(alice / "client.crt")
    second = run_script("renew-client-certs", renew_env)
    assert second.returncode == 0 and second.stdout == "" and second.stderr == ""
    assert serial_of(alice / "client.crt") == state


def test_renew_client_certs_exits_7_while_another_run_holds_the_lock(
    renew_env: dict[str, str], tmp_path: Path
) -> None:
    ca_dir = Path(renew_env["RDSSSL_CA_DIR"])
    issue(ca_dir, "alice", tmp_path / "out" / "alice", "--days", "5")
    with open(tmp_path / "rdsssl-renew-client-certs.lock", "a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # another process as far as flock(1) is concerned
        blocked = run_script("renew-client-certs", renew_env)
    assert blocked.returncode == 7
    assert "another run holds the lock" in blocked.stderr
    rows = invoke("--json", "cert", "list", "--ca-dir", ca_dir).json()["certificates"]
    assert len(rows) == 1  # nothing was renewed


def test_renew_client_certs_passes_on_a_hook_failure(
    renew_env: dict[str, str], tmp_path: Path
) -> None:
    issue(Path(renew_env["RDSSSL_CA_DIR"]), "alice", tmp_path / "out" / "alice", "--days", "5")
    failed = run_script("renew-client-certs", {**renew_env, "RDSSSL_DEPLOY_HOOK": "exit 4"})
    assert failed.returncode == 1
    assert "the deploy hook failed for alice (exit 4)" in failed.stderr


def test_a_wrapper_without_its_configuration_exits_3(tmp_path: Path) -> None:
    result = run_script("renew-client-certs", {"RDSSSL_LOCK_DIR": str(tmp_path)})
    assert result.returncode == 3 and "set RDSSSL_CA_DIR" in result.stderr
    result = run_script("refresh-crl", {"RDSSSL_LOCK_DIR": str(tmp_path)})
    assert result.returncode == 3 and "set RDSSSL_INSTANCES" in result.stderr


# --- refresh-crl and check against the emulator ---------------------------------------------------


@pytest.fixture(scope="module")
def module_emu() -> Iterator[Emulator]:
    with Emulator(instances=1, backend="none", restart_seconds=0.3, acl_lock_seconds=0.2) as emu:
        yield emu


@pytest.fixture
def cloud(module_emu: Emulator, tmp_path: Path) -> Cloud:
    module_emu.reset()
    return cloud_for(module_emu, tmp_path / "audit.jsonl")


@pytest.fixture
def cloud_env(cloud: Cloud, tmp_path: Path) -> dict[str, str]:
    """An instance with the store's CA and a fresh CRL; the wrappers' environment for it."""
    ca_dir = make_store(tmp_path / "ca")
    iid = cloud.emu.instance_ids[0]
    cloud.configure(iid, ca_dir)
    return {
        **cloud.env,
        "RDSSSL_INSTANCES": iid,
        "RDSSSL_CA_DIR": str(ca_dir),
        "RDSSSL_LOCK_DIR": str(tmp_path),
    }


def test_refresh_crl_does_nothing_when_fresh_and_uploads_a_revocation(
    cloud: Cloud, cloud_env: dict[str, str], tmp_path: Path
) -> None:
    iid, ca_dir = cloud_env["RDSSSL_INSTANCES"], Path(cloud_env["RDSSSL_CA_DIR"])
    calls = len(cloud.modifies())
    fresh = run_script("refresh-crl", cloud_env)
    assert fresh.returncode == 0, fresh.stderr
    assert fresh.stdout == "" and len(cloud.modifies()) == calls

    gone = issue(ca_dir, "alice", tmp_path / "alice")
    assert invoke("cert", "revoke", "--ca-dir", ca_dir, "--user", "alice").exit_code == 0
    restarts = cloud.emu.restarts(iid)
    due = run_script("refresh-crl", cloud_env)
    assert due.returncode == 0, due.stderr
    assert len(cloud.modifies()) == calls + 1 and cloud.emu.restarts(iid) == restarts + 1
    assert int(gone["serial"], 16) in cloud.crl_info(iid).revoked_serials


def test_refresh_crl_outside_its_window_defers(
    cloud: Cloud, cloud_env: dict[str, str], tmp_path: Path
) -> None:
    ca_dir = Path(cloud_env["RDSSSL_CA_DIR"])
    issue(ca_dir, "alice", tmp_path / "alice")
    assert invoke("cert", "revoke", "--ca-dir", ca_dir, "--user", "alice").exit_code == 0
    calls = len(cloud.modifies())
    # a one-minute window twelve hours away (local time, wrapping midnight if need be)
    hour = (int(subprocess.check_output(["date", "+%H"], text=True)) + 12) % 24
    window = f"{hour:02d}:00-{hour:02d}:01"
    deferred = run_script("refresh-crl", {**cloud_env, "RDSSSL_CRL_WINDOW": window})
    assert deferred.returncode == 0, deferred.stderr
    assert len(cloud.modifies()) == calls


def test_check_exits_0_when_well_and_10_with_findings(
    cloud: Cloud, cloud_env: dict[str, str], tmp_path: Path
) -> None:
    prom = tmp_path / "rdsssl.prom"
    env = {**cloud_env, "RDSSSL_PROMETHEUS_FILE": str(prom)}
    well = run_script("check", env)
    assert well.returncode == 0, well.stdout + well.stderr
    assert well.stdout == "" and "rdsssl_check_status" in prom.read_text()

    issue(Path(cloud_env["RDSSSL_CA_DIR"]), "bob", tmp_path / "bob", "--days", "5")
    action = run_script("check", env)
    assert action.returncode == 10, action.stderr
    assert "bob" in action.stdout and "rdsssl cert renew" in action.stdout  # the cron mail
    assert not cloud.modifies()[1:]  # check changes nothing (the one call is the set-up)
