"""Every command of the command tree, run with --json, prints one document that keeps the
JSON contract (docs/json-output.md): `Result.json()` checks the envelope, the error object and
the per-instance entries against the schema shipped in the package. A command added to the
tree without a case here fails `test_every_command_has_a_case`."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import click
import pytest

from rdsssl.cli import cli
from tests.cli.helpers import Result, invoke
from tests.cli.json_contract import check_document
from tests.e2e.conftest import Cloud

Case = Callable[[Cloud, Path], Result]


def _leaf_commands() -> set[str]:
    found: set[str] = set()

    def walk(cmd: click.Command, path: list[str], ctx: click.Context) -> None:
        if isinstance(cmd, click.Group):
            for name in cmd.list_commands(ctx):
                sub = cmd.get_command(ctx, name)
                assert sub is not None
                walk(sub, [*path, name], click.Context(sub, parent=ctx, info_name=name))
        else:
            found.add(" ".join(path))

    walk(cli, [], click.Context(cli, info_name="rdsssl"))
    return found


def _store(cloud: Cloud, tmp: Path) -> tuple[Path, list[str]]:
    ca = cloud.new_ca(tmp / "ca")
    return ca, cloud.issue(ca, tmp / "alice")


def _toml(cloud: Cloud, tmp: Path, ca: Path) -> Path:
    path = tmp / "rdsssl.toml"
    path.write_text(f'[defaults]\nca_dir = "{ca}"\n\n[[instances]]\nid = "{cloud.iid}"\n')
    return path


def _enabled(cloud: Cloud, tmp: Path) -> tuple[Path, list[str]]:
    ca, alice = _store(cloud, tmp)
    done = cloud.cli("instance", "enable-client-ca", cloud.iid, "--ca-dir", ca, "--yes")
    assert done.exit_code == 0, done.stderr
    return ca, alice


def _csr(tmp: Path) -> Path:
    key, csr = tmp / "bob.key", tmp / "bob.csr"
    subprocess.run(
        ["openssl", "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
         "-nodes", "-keyout", key, "-out", csr, "-subj", "/CN=bob"],
        check=True, capture_output=True,
    )  # fmt: skip
    return csr


def _crl(cloud: Cloud, tmp: Path, ca: Path) -> Path:
    out = tmp / "crl.pem"
    assert cloud.cli("crl", "build", "--ca-dir", ca, "--out", out).exit_code == 0
    return out


def _server_ca(cloud: Cloud, tmp: Path) -> Path:
    done = invoke("ca", "init", "--ca-dir", tmp / "server-ca", "--cn", "db-server-ca",
                  "--no-passphrase")  # fmt: skip
    assert done.exit_code == 0, done.stderr
    return tmp / "server-ca"


def _ssl_off(cloud: Cloud) -> Cloud:
    done = cloud.cli("instance", "disable-ssl", cloud.iid, "--yes")
    assert done.exit_code == 0, done.stderr
    return cloud


def _disable(cloud: Cloud, tmp: Path) -> Result:
    _enabled(cloud, tmp)
    return cloud.cli("--json", "instance", "disable-client-ca", cloud.iid, "--dry-run")


def _set_acl(cloud: Cloud, tmp: Path) -> Result:
    _enabled(cloud, tmp)
    return cloud.cli("--json", "instance", "set-acl", cloud.iid, "--acl", "prefer", "--dry-run")


# what each case exits with when it is not 0: the document says so as well (`ok` false)
EXIT_CODES = {
    "cert needs-renewal": 1,
    "check": 10,
    "service-profile record": 2,
    "cron check": 2,
    "cron renew": 2,
    "cron refresh-crl": 2,
}

CASES: dict[str, Case] = {
    "ca init": lambda c, t: c.cli("--json", "ca", "init", "--ca-dir", t / "x", "--no-passphrase"),
    "ca import": lambda c, t: c.cli(
        "--json",
        "ca",
        "import",
        "--ca-dir",
        t / "imported",
        "--cert",
        _store(c, t)[0] / "ca.crt",
        "--key",
        t / "ca" / "ca.key",
        "--no-passphrase",
    ),
    "ca show": lambda c, t: c.cli("--json", "ca", "show", "--ca-dir", _store(c, t)[0]),
    "ca passphrase": lambda c, t: c.cli(
        "--json",
        "ca",
        "passphrase",
        "--ca-dir",
        _store(c, t)[0],
        env={"RDSSSL_NEW_CA_PASSPHRASE": "correct horse battery"},
    ),
    "ca renew": lambda c, t: c.cli("--json", "ca", "renew", "--ca-dir", _store(c, t)[0]),
    "cert issue": lambda c, t: c.cli(
        "--json", "cert", "issue", "--ca-dir", c.new_ca(t / "ca"), "--user", "u", "--out", t / "u"
    ),
    "cert sign": lambda c, t: c.cli(
        "--json",
        "cert",
        "sign",
        "--ca-dir",
        c.new_ca(t / "ca"),
        "--csr",
        _csr(t),
        "--out",
        t / "bob.crt",
    ),
    "cert list": lambda c, t: c.cli("--json", "cert", "list", "--ca-dir", _store(c, t)[0]),
    "cert revoke": lambda c, t: c.cli(
        "--json", "cert", "revoke", "--ca-dir", _store(c, t)[0], "--user", "alice"
    ),
    "cert renew": lambda c, t: c.cli(
        "--json",
        "cert",
        "renew",
        "--ca-dir",
        _store(c, t)[0],
        "--before",
        "400d",
        "--days",
        "800",
        "--out-root",
        t / "renewed",
    ),
    "cert needs-renewal": lambda c, t: c.cli("--json", "cert", "needs-renewal", _store(c, t)[1][1]),
    "crl build": lambda c, t: c.cli(
        "--json", "crl", "build", "--ca-dir", c.new_ca(t / "ca"), "--out", t / "crl.pem"
    ),
    "crl show": lambda c, t: c.cli("--json", "crl", "show", _crl(c, t, c.new_ca(t / "ca"))),
    "crl refresh": lambda c, t: c.cli(
        "--json", "crl", "refresh", c.iid, "--ca-dir", _enabled(c, t)[0], "--dry-run"
    ),
    "instance show": lambda c, t: c.cli("--json", "instance", "show", c.iid),
    "instance server-ca": lambda c, t: c.cli(
        "--json", "instance", "server-ca", c.iid, "--out", t / "server-ca.pem"
    ),
    "instance wait": lambda c, t: c.cli("--json", "instance", "wait", c.iid, "--timeout", "30"),
    "instance enable-client-ca": lambda c, t: c.cli(
        "--json", "instance", "enable-client-ca", c.iid, "--ca-dir", _store(c, t)[0], "--dry-run"
    ),
    "instance disable-client-ca": lambda c, t: _disable(c, t),
    "instance upload-crl": lambda c, t: c.cli(
        "--json",
        "instance",
        "upload-crl",
        c.iid,
        "--crl",
        _crl(c, t, _enabled(c, t)[0]),
        "--dry-run",
    ),
    "instance set-acl": lambda c, t: _set_acl(c, t),
    "probe": lambda c, t: c.cli(
        "--json",
        "probe",
        c.iid,
        "--user",
        "alice",
        "--password-env",
        "ALICE_PASSWORD",
        "--sslmode",
        "require",
    ),
    "plan": lambda c, t: c.cli("--json", "plan", "-f", _toml(c, t, _store(c, t)[0])),
    "apply": lambda c, t: c.cli("--json", "apply", "-f", _toml(c, t, _store(c, t)[0]), "--dry-run"),
    "check": lambda c, t: c.cli("--json", "check", c.iid, "--ca-dir", _enabled(c, t)[0]),
    "rotate ca": lambda c, t: c.cli(
        "--json",
        "rotate",
        "ca",
        c.iid,
        "--ca-dir",
        _enabled(c, t)[0],
        "--new-ca-dir",
        c.new_ca(t / "new"),
        "--out-root",
        t / "out",
        "--dry-run",
    ),
    "rotate status": lambda c, t: c.cli("--json", "rotate", "status", "--ca-dir", _store(c, t)[0]),
    "instance enable-ssl": lambda c, t: _ssl_off(c).cli(
        "--json", "instance", "enable-ssl", c.iid, "--yes"
    ),
    "instance disable-ssl": lambda c, t: c.cli("--json", "instance", "disable-ssl", c.iid, "--yes"),
    "instance set-server-cert": lambda c, t: c.cli(
        "--json", "instance", "set-server-cert", c.iid, "--server-ca-dir", _server_ca(c, t), "--yes"
    ),
    "instance renew-server-cert": lambda c, t: c.cli(
        "--json", "instance", "renew-server-cert", c.iid, "--yes"
    ),
    "server-ca bundle": lambda c, t: c.cli(
        "--json", "server-ca", "bundle", "--ca-dir", _server_ca(c, t), "--out", t / "root.crt"
    ),
    "cron install": lambda c, t: c.cli("--json", "cron", "install", "--print"),
    # the cron jobs keep their documents in RDSSSL_JSON_LOG (tests/integration/
    # test_cron_scripts.py checks that log); on stdout --json is refused with a document
    "cron check": lambda c, t: c.cli("--json", "cron", "check"),
    "cron renew": lambda c, t: c.cli("--json", "cron", "renew"),
    "cron refresh-crl": lambda c, t: c.cli("--json", "cron", "refresh-crl"),
    # The success document of a recording is checked in test_service_profile_record.py (a
    # recording takes minutes of restarts); here: its refusal without --throwaway.
    "service-profile record": lambda c, t: c.cli(
        "--json", "service-profile", "record", c.iid, "--out", t / "p.json"
    ),
}


def test_every_command_has_a_case() -> None:
    assert _leaf_commands() - {"emulator serve"} == set(CASES)


@pytest.mark.parametrize("command", sorted(CASES))
def test_the_document_keeps_the_contract(fresh: Cloud, tmp_path: Path, command: str) -> None:
    result = CASES[command](fresh, tmp_path)
    doc = result.json()  # checks the contract
    assert result.exit_code == EXIT_CODES.get(command, 0), result.stderr
    assert doc["command"] == f"rdsssl {command}", result.stderr
    assert result.stdout.count("\n") == len(json.dumps(doc, indent=2).splitlines())


@pytest.mark.parametrize("command", ["ca show", "instance show", "check"])
def test_json_lines_is_the_same_document_on_one_line(
    fresh: Cloud, tmp_path: Path, command: str
) -> None:
    args = CASES[command]  # the same invocation, --json-lines instead of --json
    with pytest.MonkeyPatch.context() as mp:
        original = fresh.cli
        mp.setattr(
            fresh, "cli",
            lambda *a, **k: original(*["--json-lines" if x == "--json" else x for x in a], **k),
        )  # fmt: skip
        result = args(fresh, tmp_path)
    assert result.stdout.count("\n") == 1 and result.stdout.startswith('{"schema_version":1,')
    check_document(json.loads(result.stdout), result.exit_code)


def test_emulator_serve_announces_itself_with_the_envelope() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "rdsssl", "--json", "emulator", "serve", "--backend", "none",
         "--port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        lines = []
        for line in proc.stdout:
            lines.append(line)
            if line == "}\n":
                break
        doc = json.loads("".join(lines))
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    check_document(doc, 0)
    assert doc["command"] == "rdsssl emulator serve" and doc["endpoint"].startswith("http://")


def test_a_usage_error_names_the_command_it_was_for() -> None:
    result = invoke("--json", "cert", "list", "--no-such-option")
    assert result.exit_code == 2 and result.json()["command"] == "rdsssl cert list"
