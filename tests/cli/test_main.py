"""The root group and `main()`: exit codes, the JSON error document, verbosity, lazy loading,
the lock, and the promise that local commands never import the cloud SDK."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from rdsssl.cli import App
from rdsssl.store.lock import FileLock
from tests.cli.helpers import invoke

RDSSSL = Path(sys.executable).parent / "rdsssl"
CLOUD_MODULES = ("alibabacloud", "Tea", "darabonba", "psycopg")


def test_usage_error_exits_2_with_clicks_hint() -> None:
    result = invoke("cert", "sign", "--ca-dir", "x")  # `cert issue` takes --user or --users-file
    assert result.exit_code == 2
    assert "Missing option '--csr'" in result.stderr
    assert "Try 'rdsssl cert sign --help' for help." in result.stderr
    assert result.stdout == ""


def test_usage_error_with_json_prints_one_error_document() -> None:
    result = invoke("--json", "cert", "frobnicate")
    assert result.exit_code == 2
    doc = result.json()
    assert doc["ok"] is False
    assert doc["error"]["exit_code"] == 2 and doc["error"]["type"] == "UsageError"
    assert "frobnicate" in doc["error"]["message"]


def test_rdsssl_error_with_json(tmp_path: Path) -> None:
    missing = tmp_path / "missing"
    result = invoke("cert", "list", "--ca-dir", missing, "--json")
    assert result.exit_code == 3
    assert result.body() == {
        "error": {
            "type": "StoreError",
            "message": f"not a CA store: {missing} does not exist; run rdsssl ca init "
            f"--ca-dir {missing}",
            "exit_code": 3,
        },
    }
    assert result.stderr.startswith("rdsssl: error: not a CA store")


def test_unexpected_error_is_short_and_vv_shows_the_traceback(
    ca_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def boom(*args: object, **kwargs: object) -> None:
        raise RuntimeError("kaboom")

    monkeypatch.setattr("rdsssl.cli.ca.open_store", boom)
    short = invoke("ca", "show", "--ca-dir", ca_dir)
    assert short.exit_code == 1
    assert short.stderr.strip() == (
        "rdsssl: error: unexpected RuntimeError: kaboom (run again with -vv for the traceback)"
    )
    loud = invoke("-vv", "ca", "show", "--ca-dir", ca_dir)
    assert loud.exit_code == 1
    assert "Traceback (most recent call last)" in loud.stderr


def test_keyboard_interrupt_exits_130(ca_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr("rdsssl.cli.ca.open_store", interrupted)
    result = invoke("--json", "ca", "show", "--ca-dir", ca_dir)
    assert result.exit_code == 130
    assert result.json()["error"]["exit_code"] == 130


def test_quiet_prints_nothing_on_success(ca_dir: Path, tmp_path: Path) -> None:
    result = invoke(
        "-q", "cert", "issue", "--ca-dir", ca_dir, "--user", "alice", "--out", tmp_path / "a"
    )
    assert result.exit_code == 0
    assert (result.stdout, result.stderr) == ("", "")


def test_global_options_and_their_environment_twins(ca_dir: Path) -> None:
    app = App(interactive=False)
    result = invoke(
        "--region",
        "cn-shanghai",
        "ca",
        "show",
        "--ca-dir",
        ca_dir,
        app=app,
        env={"RDSSSL_ENDPOINT": "http://127.0.0.1:9", "ALIBABA_CLOUD_PROFILE": "p"},
    )
    assert result.exit_code == 0
    assert (app.region, app.endpoint, app.profile) == ("cn-shanghai", "http://127.0.0.1:9", "p")


def test_ca_dir_from_the_environment(ca_dir: Path) -> None:
    result = invoke("--json", "cert", "list", env={"RDSSSL_CA_DIR": str(ca_dir)})
    assert result.exit_code == 0 and result.json()["certificates"] == []


# --- the lock ---------------------------------------------------------------------------------


def test_a_held_lock_exits_7_naming_the_holder(ca_dir: Path, tmp_path: Path) -> None:
    holder = FileLock(ca_dir / ".lock", command="rdsssl crl build (the other run)")
    with holder:
        result = invoke(
            "--json",
            "cert",
            "issue",
            "--ca-dir",
            ca_dir,
            "--user",
            "alice",
            "--out",
            tmp_path / "a",
            "--wait-lock",
            "0.2",
        )
    assert result.exit_code == 7
    message = result.json()["error"]["message"]
    assert result.json()["error"]["type"] == "LockHeld"
    assert "rdsssl crl build (the other run)" in message
    assert f"pid {os.getpid()}" in message and "after waiting 0.2s" in message
    listed = invoke("--json", "cert", "list", "--ca-dir", ca_dir).json()["certificates"]
    assert listed == []  # nothing was issued


def test_wait_lock_waits_for_the_holder(ca_dir: Path, tmp_path: Path) -> None:
    holder = FileLock(ca_dir / ".lock", command="slow run")
    holder.acquire()
    releaser = threading.Timer(0.3, holder.release)
    releaser.start()
    try:
        result = invoke(
            "cert",
            "issue",
            "--ca-dir",
            ca_dir,
            "--user",
            "alice",
            "--out",
            tmp_path / "a",
            "--wait-lock",
            "30",
        )
    finally:
        releaser.join()
    assert result.exit_code == 0, result.stderr


def test_reading_commands_do_not_take_the_lock(ca_dir: Path) -> None:
    with FileLock(ca_dir / ".lock", command="someone"):
        assert invoke("cert", "list", "--ca-dir", ca_dir).exit_code == 0
        assert invoke("ca", "show", "--ca-dir", ca_dir).exit_code == 0


# --- processes: console script, python -m, import hygiene --------------------------------------


def test_console_script_and_python_m(tmp_path: Path) -> None:
    version = subprocess.run(
        [sys.executable, "-m", "rdsssl", "--version"], capture_output=True, text=True
    )
    assert version.returncode == 0 and "rdsssl, version" in version.stdout
    missing = subprocess.run(
        [str(RDSSSL), "ca", "show", "--ca-dir", str(tmp_path / "none")],
        capture_output=True,
        text=True,
    )
    assert missing.returncode == 3
    assert missing.stderr.startswith("rdsssl: error: not a CA store")
    assert missing.stdout == ""


_PROBE = """
import json, sys
from rdsssl.cli import run
codes = [run(args) for args in json.loads(sys.argv[1])]
loaded = sorted(m for m in sys.modules if m.split(".")[0].startswith({cloud!r}))
cli_modules = sorted(m for m in sys.modules if m.startswith("rdsssl.cli."))
print(json.dumps({{"codes": codes, "loaded": loaded, "cli": cli_modules}}), file=sys.stderr)
"""


def probe(*commands: list[str], cwd: Path) -> dict[str, list[object]]:
    code = _PROBE.format(cloud=CLOUD_MODULES)
    done = subprocess.run(
        [sys.executable, "-c", code, json.dumps(commands)],
        cwd=cwd,
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin"},
    )
    result: dict[str, list[object]] = json.loads(done.stderr.strip().splitlines()[-1])
    return result


def test_local_commands_do_not_import_the_cloud_sdk(tmp_path: Path) -> None:
    found = probe(
        ["ca", "init", "--ca-dir", "ca", "--no-passphrase"],
        ["cert", "issue", "--ca-dir", "ca", "--user", "alice"],
        ["cert", "list", "--ca-dir", "ca"],
        ["cert", "revoke", "--ca-dir", "ca", "--user", "alice"],
        ["cert", "renew", "--ca-dir", "ca", "--before", "400d", "--out-root", "renewed"],
        ["crl", "build", "--ca-dir", "ca", "--out", "crl.pem"],
        ["crl", "show", "crl.pem"],
        ["ca", "show", "--ca-dir", "ca"],
        cwd=tmp_path,
    )
    assert found["codes"] == [0] * 8
    assert found["loaded"] == []


def test_help_lists_commands_without_importing_them(tmp_path: Path) -> None:
    found = probe(["--help"], cwd=tmp_path)
    assert found["codes"] == [0]
    # no command module: only the app object, its JSON envelope, logging setup and the lazy group
    assert found["cli"] == [
        "rdsssl.cli.app",
        "rdsssl.cli.jsondoc",
        "rdsssl.cli.lazy",
        "rdsssl.cli.logs",
    ]
    listing = invoke("--help").stdout
    for name in ("ca", "cert", "crl"):
        assert f"  {name} " in listing


def test_crl_help_lists_refresh_without_importing_the_cloud_side(tmp_path: Path) -> None:
    """One lazy mechanism for the root group and `crl`: `crl refresh` is listed with its
    help, built only when it runs."""
    found = probe(["crl", "--help"], cwd=tmp_path)
    assert found["codes"] == [0] and found["loaded"] == []
    assert "rdsssl.cli.crl_refresh" not in found["cli"] and "rdsssl.cli.crl" in found["cli"]
    lines = invoke("crl", "--help").stdout.splitlines()
    for name, help_text in [("build", "Sign a CRL"), ("refresh", "Upload a fresh CRL where")]:
        assert any(line.split()[:1] == [name] and help_text in line for line in lines)
    assert invoke("crl", "refresh", "--help").exit_code == 0
