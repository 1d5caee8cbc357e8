"""The cron jobs run for real: the one-line shims in scripts/cron/ (`exec rdsssl cron JOB`) and
`rdsssl cron JOB` itself, with the installed `rdsssl` in child processes.

The jobs refuse what another user could have prepared: a lock directory that is not ours
and 0700 (by default a private one under the state dir), and an env file someone else can write.

renew-client-certs works on a temporary CA store; refresh-crl and check talk to a state-only
emulator through the real SDK, configured only through the environment (as cron would).
The emulator set-up helpers are shared with the crl refresh end-to-end tests.
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

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


def rows_of(ca_dir: Path) -> list[dict[str, object]]:
    found: list[dict[str, object]] = invoke("--json", "cert", "list", "--ca-dir", ca_dir).json()[
        "certificates"
    ]
    return found


def test_the_default_lock_dir_is_private_under_the_state_dir(
    renew_env: dict[str, str], tmp_path: Path
) -> None:
    env = {k: v for k, v in renew_env.items() if k != "RDSSSL_LOCK_DIR"}
    home = tmp_path / "home"
    home.mkdir()
    result = run_script("renew-client-certs", {**env, "HOME": str(home)})
    assert result.returncode == 0, result.stderr
    state = home / ".local" / "state"
    for level in (home / ".local", state, state / "rdsssl", state / "rdsssl" / "locks"):
        assert stat.S_IMODE(level.stat().st_mode) == 0o700, level
    assert (state / "rdsssl" / "locks" / "rdsssl-renew-client-certs.lock").is_file()

    xdg = run_script("check", {**env, "HOME": str(home), "XDG_STATE_HOME": str(tmp_path / "x")})
    assert (tmp_path / "x" / "rdsssl" / "locks").is_dir(), xdg.stderr
    mine = run_script("renew-client-certs", {**env, "RDSSSL_STATE_DIR": str(tmp_path / "st")})
    assert mine.returncode == 0, mine.stderr
    assert (tmp_path / "st" / "locks" / "rdsssl-renew-client-certs.lock").is_file()
    assert stat.S_IMODE((tmp_path / "st" / "locks").stat().st_mode) == 0o700


@pytest.mark.parametrize(
    "setup,message",
    [
        ("world-writable", "open to other users (mode 1777)"),
        ("group-readable", "open to other users (mode 750)"),
        ("foreign", "is owned by uid 65534, not by you"),
        ("symlink", "is a symbolic link"),
    ],
)
def test_a_lock_dir_others_could_use_is_refused(
    renew_env: dict[str, str], tmp_path: Path, setup: str, message: str
) -> None:
    ca_dir = Path(renew_env["RDSSSL_CA_DIR"])
    issue(ca_dir, "alice", tmp_path / "out" / "alice", "--days", "5")
    locks = tmp_path / "locks"
    locks.mkdir(mode=0o700)
    if setup == "world-writable":
        locks.chmod(0o1777)
    elif setup == "group-readable":
        locks.chmod(0o750)
    elif setup == "foreign":
        os.chown(locks, 65534, 65534)
    else:
        (tmp_path / "link").symlink_to(locks)
        locks = tmp_path / "link"
    result = run_script("renew-client-certs", {**renew_env, "RDSSSL_LOCK_DIR": str(locks)})
    assert result.returncode == 3
    assert message in result.stderr and str(locks) in result.stderr
    assert len(rows_of(ca_dir)) == 1  # nothing was renewed


def write_env_file(path: Path, renew_env: dict[str, str]) -> Path:
    path.write_text("".join(f"{k}='{v}'\n" for k, v in renew_env.items()))
    path.chmod(0o600)
    return path


def test_the_env_file_is_read_when_it_is_private(renew_env: dict[str, str], tmp_path: Path) -> None:
    issue(Path(renew_env["RDSSSL_CA_DIR"]), "alice", tmp_path / "out" / "alice", "--days", "5")
    env_file = write_env_file(tmp_path / "cron.env", renew_env)
    result = run_script("renew-client-certs", {"RDSSSL_ENV_FILE": str(env_file)})
    assert result.returncode == 0, result.stderr
    assert len(rows_of(Path(renew_env["RDSSSL_CA_DIR"]))) == 2  # renewed from the file's settings


@pytest.mark.parametrize(
    "setup,fix",
    [
        ("group-writable", "fix it: chmod go-w"),
        ("world-writable", "fix it: chmod go-w"),
        ("foreign", "fix it: chown"),
    ],
)
def test_an_env_file_others_could_write_is_refused(
    renew_env: dict[str, str], tmp_path: Path, setup: str, fix: str
) -> None:
    ca_dir = Path(renew_env["RDSSSL_CA_DIR"])
    issue(ca_dir, "alice", tmp_path / "out" / "alice", "--days", "5")
    marker = tmp_path / "sourced"
    env_file = write_env_file(tmp_path / "cron.env", renew_env)
    with env_file.open("a") as f:
        f.write(f"touch {marker}\n")  # would run if the file were sourced
    if setup == "group-writable":
        env_file.chmod(0o660)
    elif setup == "world-writable":
        env_file.chmod(0o602)
    else:
        os.chown(env_file, 65534, 65534)
    for script in ("renew-client-certs", "refresh-crl", "check"):
        result = run_script(script, {"RDSSSL_ENV_FILE": str(env_file)})
        assert result.returncode == 3, (script, result.stderr)
        assert f"RDSSSL_ENV_FILE={env_file}" in result.stderr and fix in result.stderr
    assert not marker.exists() and len(rows_of(ca_dir)) == 1


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


def documents(text: str) -> list[Any]:
    """The JSON documents appended one after the other to a log."""
    found: list[Any] = []
    decoder, at = json.JSONDecoder(), 0
    while text[at:].strip():
        at += len(text[at:]) - len(text[at:].lstrip())
        doc, at = decoder.raw_decode(text, at)
        found.append(doc)
    return found


def test_check_with_a_json_log_still_prints_the_findings_on_exit_10(
    cloud: Cloud, cloud_env: dict[str, str], tmp_path: Path
) -> None:
    """The JSON document goes to the log; the cron mail still gets the human findings."""
    log = tmp_path / "check.jsonl"
    env = {**cloud_env, "RDSSSL_JSON_LOG": str(log)}
    well = run_script("check", env)
    assert well.returncode == 0 and well.stdout == "", well.stderr
    issue(Path(cloud_env["RDSSSL_CA_DIR"]), "bob", tmp_path / "bob", "--days", "5")
    env_file = write_env_file(tmp_path / "cron.env", env)
    direct = subprocess.run(
        [str(RDSSSL), "cron", "check", "--env-file", str(env_file)],
        env={"PATH": os.environ["PATH"], "HOME": str(tmp_path)},
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert direct.returncode == 10, direct.stderr
    assert "bob" in direct.stdout and "rdsssl cert renew" in direct.stdout
    assert direct.stdout.startswith("INSTANCE / STORE")
    first, second = documents(log.read_text())
    assert len(log.read_text().splitlines()) == 2  # JSON Lines: one document per run and line
    assert first["exit_code"] == 0 and second["exit_code"] == 10
    assert any(f["code"] == "renewal-due" for f in second["stores"][0]["findings"])


def test_cron_renew_passes_the_pre_and_post_hooks_on(
    renew_env: dict[str, str], tmp_path: Path
) -> None:
    for user in ("alice", "bob"):
        issue(Path(renew_env["RDSSSL_CA_DIR"]), user, tmp_path / "out" / user, "--days", "5")
    log = tmp_path / "hooks.log"
    env = {
        **renew_env,
        "RDSSSL_PRE_HOOK": f"echo pre >> {log}",
        "RDSSSL_POST_HOOK": f'echo "post $RDSSSL_RENEWED_USERS" >> {log}',
    }
    result = run_script("renew-client-certs", env)
    assert result.returncode == 0 and result.stdout == "" and result.stderr == "", result.stderr
    assert log.read_text().splitlines() == ["pre", "post alice bob"]  # one reload for both


def test_sigterm_to_the_job_reaches_rdsssl_and_the_lock_is_released(
    renew_env: dict[str, str], tmp_path: Path
) -> None:
    """`timeout` or a person stopping the job: rdsssl is told too (it stops its hook and exits
    143), so nothing keeps running, or holding the lock, behind the job's back."""
    issue(Path(renew_env["RDSSSL_CA_DIR"]), "alice", tmp_path / "out" / "alice", "--days", "5")
    started = tmp_path / "hook.pid"
    env = {**renew_env, "RDSSSL_PRE_HOOK": f"echo $$ > {started}; exec sleep 60"}
    base = {"PATH": os.environ["PATH"], "HOME": str(tmp_path)}
    job = subprocess.Popen(
        [str(RDSSSL), "cron", "renew"], env={**base, **env},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 30
    while not (started.exists() and started.read_text().strip()):
        assert time.monotonic() < deadline and job.poll() is None, job.communicate()
        time.sleep(0.05)
    hook = int(started.read_text())
    job.send_signal(signal.SIGTERM)
    _out, err = job.communicate(timeout=30)
    assert job.returncode == 143, err
    with pytest.raises(ProcessLookupError):
        os.kill(hook, 0)  # the hook was stopped with rdsssl
    assert len(rows_of(Path(renew_env["RDSSSL_CA_DIR"]))) == 1  # nothing renewed
    again = run_script("renew-client-certs", renew_env)  # the lock is free again
    assert again.returncode == 0, again.stderr
