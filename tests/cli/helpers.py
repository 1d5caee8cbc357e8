"""Helpers for the CLI tests: run `rdsssl` in-process through `rdsssl.cli.run` (the same door
`main()` uses, so exit codes and error output are the real ones), and snapshot a CA store to
prove that a refused command left it byte-identical."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sqlite3
import stat
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from rdsssl.cli import App, run
from rdsssl.cli.jsondoc import ENVELOPE_KEYS
from tests.cli.json_contract import check_document

# Variables that would leak the developer's environment into a test.
_CLEAN_ENV: dict[str, str | None] = {
    "RDSSSL_CA_PASSPHRASE": None,
    "RDSSSL_CA_DIR": None,
    "RDSSSL_ENDPOINT": None,
    "RDSSSL_NEW_CA_PASSPHRASE": None,
    "RDSSSL_PROMETHEUS_FILE": None,  # would make every cron command write a textfile
    "RDSSSL_VENV": None,  # set by scripts/test; a deploy hook would see it among RDSSSL_*
    "ALIBABA_CLOUD_REGION_ID": None,
    "ALIBABA_CLOUD_PROFILE": None,
}


@dataclass(frozen=True)
class Result:
    """What one invocation produced."""

    exit_code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        """stdout parsed as exactly one JSON document, checked against the JSON contract
        (docs/json-output.md): every test that reads a document checks its envelope."""
        doc = json.loads(self.stdout)
        check_document(doc, self.exit_code)
        return doc

    def body(self) -> dict[str, Any]:
        """The document without its envelope: what the command itself reported."""
        doc = self.json()
        return {k: v for k, v in doc.items() if k not in ENVELOPE_KEYS}


Invoke = Callable[..., Result]


def invoke(
    *args: str | os.PathLike[str],
    input: str | None = None,
    env: dict[str, str] | None = None,
    interactive: bool = False,
    clock: Callable[[], datetime] | None = None,
    cwd: Path | None = None,
    app: App | None = None,
) -> Result:
    """Run `rdsssl ARGS` in-process; stdin is not a terminal unless `interactive`."""
    runner = CliRunner()
    if app is None:
        app = App(interactive=interactive, clock=clock or (lambda: datetime.now(timezone.utc)))
    old_cwd = Path.cwd()
    with runner.isolation(input=input, env={**_CLEAN_ENV, **(env or {})}) as streams:
        if cwd is not None:
            os.chdir(cwd)
        try:
            code = run([str(a) for a in args], app=app)
        finally:
            os.chdir(old_cwd)
        out, err = streams[0].getvalue(), streams[1].getvalue()
    return Result(code, out.decode(), err.decode())


def snapshot(directory: Path) -> dict[str, tuple[str, int]]:
    """Every file under `directory`: SHA-256 of its bytes and its mode."""
    found: dict[str, tuple[str, int]] = {}
    for path in sorted(directory.rglob("*")):
        st = path.lstat()
        digest = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "dir"
        found[str(path.relative_to(directory))] = (digest, stat.S_IMODE(st.st_mode))
    found["."] = ("dir", stat.S_IMODE(directory.stat().st_mode))
    return found


def mode(path: Path) -> int:
    """Permission bits of a path."""
    return stat.S_IMODE(path.stat().st_mode)


def issue(ca_dir: Path, user: str, out: Path, *extra: str) -> dict[str, Any]:
    """`cert issue --json` that must succeed; returns the certificate's JSON."""
    result = invoke(
        "--json", "cert", "issue", "--ca-dir", ca_dir, "--user", user, "--out", out, *extra
    )
    assert result.exit_code == 0, result.stderr
    cert: dict[str, Any] = result.json()["certificate"]
    return cert


def rewrite_cn(ca_dir: Path, serial: str, cn: str) -> None:
    """Give the inventory row `serial` the CN `cn`, as a store made before rdsssl refused such
    names could hold it (no command can record one any more)."""
    with contextlib.closing(sqlite3.connect(ca_dir / "inventory.sqlite")) as db, db:
        changed = db.execute("UPDATE certs SET cn = ? WHERE serial = ?", (cn, serial)).rowcount
    assert changed == 1, f"no row {serial} in {ca_dir}"
