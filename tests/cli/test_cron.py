"""`rdsssl cron`: the env file parser, the jobs' command lines, the systemd units (printed,
installed, verified by systemd-analyze) and the findings printed from a JSON document. The jobs
run for real (locks, env files, the emulator) in tests/integration/test_cron_scripts.py."""

from __future__ import annotations

import configparser
import json
import os
import subprocess
import sys
from importlib import resources
from pathlib import Path

import pytest

from rdsssl.cli.cron import executable, findings_rows
from rdsssl.errors import ConfigError
from rdsssl.ops import cron_jobs, systemd_units
from tests.cli.helpers import invoke

RDSSSL = Path(sys.executable).parent / "rdsssl"


# --- the env file ----------------------------------------------------------------------------


def test_the_env_file_takes_quotes_export_and_comments() -> None:
    text = (
        "# the cron configuration\n"
        "\n"
        "RDSSSL_CA_DIR=/srv/ca\n"
        "export RDSSSL_TAGS='env=prod team=db'\n"
        'RDSSSL_DEPLOY_HOOK="systemctl reload myapp"  # after each user\n'
        "RDSSSL_CRL_NOW=\n"
    )
    assert cron_jobs.parse_env(text, source="f") == {
        "RDSSSL_CA_DIR": "/srv/ca",
        "RDSSSL_TAGS": "env=prod team=db",
        "RDSSSL_DEPLOY_HOOK": "systemctl reload myapp",
        "RDSSSL_CRL_NOW": "",
    }


@pytest.mark.parametrize(
    "line,message",
    [
        ("touch /tmp/x-s3cret", "line 2 is not a VAR=value assignment"),
        ("RDSSSL_CA_PASSPHRASE=two s3cret words", "line 2: the value of RDSSSL_CA_PASSPHRASE"),
        ("RDSSSL_CA_PASSPHRASE='s3cret", "line 2: unbalanced quotes in RDSSSL_CA_PASSPHRASE"),
        ("1X=s3cret", "line 2 is not a VAR=value assignment"),
    ],
)
def test_a_line_that_is_not_an_assignment_is_refused_without_its_text(
    line: str, message: str
) -> None:
    with pytest.raises(ConfigError) as err:
        cron_jobs.parse_env(f"A=1\n{line}\n", source="RDSSSL_ENV_FILE=/etc/x")
    assert message in str(err.value) and "s3cret" not in str(err.value)


def test_an_env_file_that_is_executed_nowhere_is_still_refused_when_others_can_write(
    tmp_path: Path,
) -> None:
    env_file = tmp_path / "cron.env"
    env_file.write_text("RDSSSL_CA_DIR=/srv/ca\n")
    env_file.chmod(0o620)
    with pytest.raises(ConfigError, match="writable by group or others \\(mode 620\\)"):
        cron_jobs.read_env_file(env_file)
    env_file.chmod(0o600)
    assert cron_jobs.read_env_file(env_file) == {"RDSSSL_CA_DIR": "/srv/ca"}


# --- the jobs' command lines -------------------------------------------------------------------


def test_secrets_reach_the_child_through_its_environment_never_its_argv() -> None:
    env = {
        "RDSSSL_CA_DIR": "/srv/ca",
        "RDSSSL_OUT_ROOT": "/srv/out",
        "RDSSSL_CA_PASSPHRASE": "pass-s3cret",
        "ALIBABA_CLOUD_ACCESS_KEY_SECRET": "key-s3cret",
        "RDSSSL_INSTANCES": "pgm-a pgm-b",
        "RDSSSL_PASSPHRASE_FILE": "/etc/rdsssl/ca.pass",
        "RDSSSL_PRE_HOOK": "systemctl stop myapp",
    }
    for job in cron_jobs.JOBS.values():
        argv = job.argv(env)
        assert not [a for a in argv if "s3cret" in a], (job.name, argv)
    renew = cron_jobs.JOBS["renew"].argv(env)
    assert renew[:2] == ["cert", "renew"] and "--pre-hook" in renew
    assert renew[renew.index("--passphrase-file") + 1] == "/etc/rdsssl/ca.pass"
    check = cron_jobs.JOBS["check"].argv(env)
    assert check[0] == "check" and check[-3:] == ["--", "pgm-a", "pgm-b"]


def test_the_renew_job_renews_server_certificates_after_the_client_ones() -> None:
    env = {
        "RDSSSL_CA_DIR": "/srv/ca",
        "RDSSSL_OUT_ROOT": "/srv/out",
        "RDSSSL_SERVER_INSTANCES": "pgm-a pgm-b",
        "RDSSSL_SERVER_CA_DIR": "/srv/server-ca",
        "RDSSSL_SERVER_RENEW_BEFORE": "45d",
    }
    commands = cron_jobs.JOBS["renew"].commands(env)
    assert [c[:3] for c in commands] == [
        ["cert", "renew", "--ca-dir"],
        ["instance", "renew-server-cert", "pgm-a"],
        ["instance", "renew-server-cert", "pgm-b"],
    ]
    for command in commands[1:]:
        assert {"--if-due", "--yes"} <= set(command)
        assert command[command.index("--server-ca-dir") + 1] == "/srv/server-ca"
        assert command[command.index("--before") + 1] == "45d"
    only_servers = cron_jobs.JOBS["renew"].commands({"RDSSSL_SERVER_INSTANCES": "pgm-a"})
    assert [c[:2] for c in only_servers] == [["instance", "renew-server-cert"]]
    with pytest.raises(ConfigError, match="RDSSSL_SERVER_INSTANCES"):
        cron_jobs.JOBS["renew"].commands({})


@pytest.mark.parametrize(
    ("codes", "worst"), [([0, 0], 0), ([0, 10], 10), ([10, 1], 1), ([3, 6, 10], 6), ([], 0)]
)
def test_a_job_of_several_commands_exits_with_the_worst(codes: list[int], worst: int) -> None:
    assert cron_jobs.worst(codes) == worst


def test_lock_dir_defaults_follow_the_state_dir() -> None:
    assert cron_jobs.lock_dir({"HOME": "/h"}) == Path("/h/.local/state/rdsssl/locks")
    assert cron_jobs.lock_dir({"HOME": "/h", "XDG_STATE_HOME": "/x"}) == Path("/x/rdsssl/locks")
    assert cron_jobs.lock_dir({"HOME": "/h", "RDSSSL_STATE_DIR": "/s"}) == Path("/s/locks")
    assert cron_jobs.lock_dir({"RDSSSL_LOCK_DIR": "/l", "RDSSSL_STATE_DIR": "/s"}) == Path("/l")
    with pytest.raises(ConfigError, match="HOME is not set"):
        cron_jobs.lock_dir({})


def test_json_on_a_cron_job_is_a_usage_error() -> None:
    result = invoke("--json", "cron", "check")
    assert result.exit_code == 2 and "RDSSSL_JSON_LOG" in result.json()["error"]["message"]


# --- findings printed from the JSON document ---------------------------------------------------


def test_findings_rows_list_failures_and_findings_that_are_not_ok() -> None:
    document = {
        "ok": True,
        "instances": [
            {"instance": "pgm-a", "ok": True, "status": "ok", "findings": [{"severity": "ok"}]},
            {
                "instance": "pgm-b",
                "ok": True,
                "status": "critical",
                "findings": [
                    {"severity": "warning", "msg": "the CRL expires in 9 days"},
                    {"severity": "ok", "msg": "fine"},
                    {"severity": "critical", "msg": "the CA expired"},
                ],
            },
            {"instance": "pgm-c", "ok": False, "error": {"message": "Throttling"}},
        ],
        "stores": [{"instance": "/srv/ca", "ok": True, "status": "ok", "findings": []}],
    }
    assert findings_rows(json.dumps(document)) == [
        ("pgm-b", "critical", "warning: the CRL expires in 9 days"),
        ("", "", "critical: the CA expired"),
        ("pgm-c", "error", "Throttling"),
    ]
    assert findings_rows("not json") == []


# --- systemd units -----------------------------------------------------------------------------


def test_the_units_are_package_data() -> None:
    packaged = sorted(p.name for p in (resources.files("rdsssl") / "systemd").iterdir())
    assert packaged == sorted(systemd_units.UNIT_NAMES)
    assert len(packaged) == 6


def _parse(text: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None, strict=True)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(text)
    return parser


def test_install_print_prints_hardened_units_with_this_executable_and_writes_nothing(
    tmp_path: Path,
) -> None:
    result = invoke(
        "--json", "cron", "install", "--print", "--dir", tmp_path, "--read-write", "/srv/my ca"
    )
    assert result.exit_code == 0, result.stderr
    assert list(tmp_path.iterdir()) == []  # --print writes nothing
    units = {Path(u["path"]).name: _parse(u["text"]) for u in result.json()["units"]}
    assert sorted(units) == sorted(systemd_units.UNIT_NAMES)
    for job in ("renew", "refresh-crl", "check"):
        service = units[f"rdsssl-{job}.service"]["Service"]
        assert service["ExecStart"] == f"{executable()[0]} cron {job}"
        assert Path(executable()[0]).samefile(RDSSSL)
        assert service["Type"] == "oneshot" and service["EnvironmentFile"] == "/etc/rdsssl/cron.env"
        assert service["ProtectSystem"] == "strict" and service["PrivateTmp"] == "yes"
        assert service["NoNewPrivileges"] == "yes" and service["ReadWritePaths"] == '"/srv/my ca"'
        assert service["SuccessExitStatus"] == "7"
        timer = units[f"rdsssl-{job}.timer"]
        assert timer["Timer"]["Persistent"] == "true" and timer["Timer"]["RandomizedDelaySec"]
        assert timer["Timer"]["OnCalendar"] and timer["Install"]["WantedBy"] == "timers.target"

    human = invoke("cron", "install", "--print", "--dir", tmp_path)
    assert f"# ==> {tmp_path}/rdsssl-check.timer <==" in human.stdout
    assert "ReadWritePaths=-/srv/rdsssl -/srv/client-certs" in human.stdout
    assert list(tmp_path.iterdir()) == []


def test_installed_units_pass_systemd_analyze_verify(tmp_path: Path) -> None:
    env_file = tmp_path / "cron.env"
    env_file.write_text("RDSSSL_CA_DIR=/srv/ca\n")
    result = invoke(
        "cron", "install", "--dir", tmp_path, "--env-file", env_file, "--read-write", tmp_path
    )
    assert result.exit_code == 0, result.stderr
    paths = sorted(str(tmp_path / n) for n in systemd_units.UNIT_NAMES)
    verify = subprocess.run(
        ["systemd-analyze", "verify", *paths], capture_output=True, text=True, check=False
    )
    # an unknown key or a bad value is only a warning (exit 0): no output at all is the test
    assert verify.returncode == 0 and verify.stderr == "" and verify.stdout == "", verify.stderr

    (tmp_path / "rdsssl-check.service").write_text(
        (tmp_path / "rdsssl-check.service").read_text().replace("=strict", "=stric")
    )
    broken = subprocess.run(
        ["systemd-analyze", "verify", *paths], capture_output=True, text=True, check=False
    )
    assert "stric" in broken.stderr  # the check above can see a mistake


def test_install_never_overwrites_a_foreign_unit_and_updates_its_own(tmp_path: Path) -> None:
    foreign = tmp_path / "rdsssl-check.timer"
    foreign.write_text("[Timer]\nOnCalendar=daily\n")
    refused = invoke("cron", "install", "--dir", tmp_path)
    assert refused.exit_code == 3 and "was not written by rdsssl" in refused.stderr
    assert foreign.read_text() == "[Timer]\nOnCalendar=daily\n"
    assert [p.name for p in tmp_path.iterdir()] == ["rdsssl-check.timer"]  # nothing written

    foreign.unlink()
    first = invoke("--json", "cron", "install", "--dir", tmp_path)
    assert {u["action"] for u in first.json()["units"]} == {"created"}
    assert oct(os.stat(tmp_path / "rdsssl-renew.service").st_mode & 0o777) == "0o644"
    again = invoke("--json", "cron", "install", "--dir", tmp_path, "--read-write", "/srv/x")
    actions = {Path(u["path"]).name: u["action"] for u in again.json()["units"]}
    assert actions["rdsssl-renew.service"] == "updated" and actions["rdsssl-renew.timer"] == (
        "unchanged"
    )
    assert "ReadWritePaths=/srv/x" in (tmp_path / "rdsssl-renew.service").read_text()


# --- shell completion --------------------------------------------------------------------------


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_completion_scripts_are_printed_and_complete_lazy_commands(shell: str) -> None:
    env = {**os.environ, "_RDSSSL_COMPLETE": f"{shell}_source"}
    script = subprocess.run([RDSSSL], env=env, capture_output=True, text=True, check=False)
    assert script.returncode == 0 and "_RDSSSL_COMPLETE" in script.stdout, script.stderr
    words = {
        **os.environ,
        "_RDSSSL_COMPLETE": "bash_complete",
        "COMP_WORDS": "rdsssl cr",
        "COMP_CWORD": "1",
    }
    done = subprocess.run([RDSSSL], env=words, capture_output=True, text=True, check=False)
    assert done.stdout.split() == ["plain,crl", "plain,cron"], done.stderr
