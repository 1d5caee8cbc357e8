"""What a local command imports: each runs in a fresh interpreter (as cron starts it) and the
modules it loaded are checked. `cert issue`, `cert list`, `ca show` and `crl build` must not
pay for the renewal, deploy-hook and rotation machinery of other commands, nor for the cloud
SDK or psycopg; `cert renew` still gets what it needs when it runs (the lazy sub-commands)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

# Module name prefixes none of the local commands below may import.
UNWANTED = (
    "rdsssl.ops.rotation",  # rotation, rotation_state, rotation_file, ...
    "rdsssl.ops.hooks",
    "rdsssl.ops.renew_run",
    "rdsssl.ops.cert_renewal",
    "rdsssl.ops.renewal_plan",
    "rdsssl.ops.check",
    "rdsssl.cli.renew",
    "rdsssl.cli.needs_renewal",
    "rdsssl.cli.ca_renew",
    "rdsssl.cli.crl_refresh",
    "rdsssl.rds.api",
    "importlib.metadata",  # rdsssl.__version__ is read on first use (--version), not at start-up
    "alibabacloud",
    "Tea",
    "darabonba",
    "psycopg",
)

_RUN = """
import json, sys
from rdsssl.cli import run
code = run(json.loads(sys.argv[1]))
print(json.dumps({"code": code, "modules": sorted(sys.modules)}), file=sys.stderr)
"""


def imported(args: list[str], cwd: Path) -> tuple[int, list[str]]:
    """The exit code of one command run in a fresh interpreter, and every module it loaded."""
    done = subprocess.run(
        [sys.executable, "-c", _RUN, json.dumps(args)],
        cwd=cwd,
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", "RDSSSL_STATE_DIR": str(cwd / "state")},
        check=False,
    )
    found = json.loads(done.stderr.strip().splitlines()[-1])
    return int(found["code"]), list(found["modules"])


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cwd = tmp_path_factory.mktemp("imports")
    for args in (
        ["ca", "init", "--ca-dir", "ca", "--no-passphrase"],
        ["cert", "issue", "--ca-dir", "ca", "--user", "bob", "--out", "bob"],
    ):
        assert imported(args, cwd)[0] == 0
    return cwd


@pytest.mark.parametrize(
    "args",
    [
        ["cert", "issue", "--ca-dir", "ca", "--user", "alice", "--out", "alice"],
        ["cert", "list", "--ca-dir", "ca"],
        ["--json", "cert", "list", "--ca-dir", "ca"],
        ["ca", "show", "--ca-dir", "ca"],
        ["crl", "build", "--ca-dir", "ca", "--out", "crl.pem"],
        ["crl", "show", "crl.pem"],
        ["cert", "--help"],
        ["ca", "--help"],
    ],
    ids=" ".join,
)
def test_local_commands_import_only_what_they_run(workdir: Path, args: list[str]) -> None:
    if args[:2] == ["crl", "show"]:
        assert imported(["crl", "build", "--ca-dir", "ca", "--out", "crl.pem"], workdir)[0] == 0
    code, modules = imported(args, workdir)
    assert code == 0
    assert [m for m in modules if m.startswith(UNWANTED)] == []


def test_the_lazy_sub_commands_still_run(workdir: Path) -> None:
    renew = ["cert", "renew", "--ca-dir", "ca", "--before", "400d", "--days", "500"]
    code, modules = imported([*renew, "--out-root", "renewed", "--dry-run"], workdir)
    assert code == 0
    assert {"rdsssl.cli.renew", "rdsssl.ops.renew_run", "rdsssl.ops.hooks"} <= set(modules)
    code, modules = imported(["cert", "needs-renewal", "bob/client.crt"], workdir)
    assert code == 1  # 365 days left: not due
    assert "rdsssl.cli.needs_renewal" in modules
    code, modules = imported(["ca", "renew", "--help"], workdir)
    assert code == 0 and "rdsssl.cli.ca_renew" in modules
