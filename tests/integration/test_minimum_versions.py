"""The dependency floors of pyproject.toml are real: `constraints/minimum.txt` pins each floor
exactly, and rdsssl installed with those pins into a fresh virtualenv passes the PKI, store,
RDS-adapter and CLI unit tests and a command-line smoke run (`ca init`, `cert issue`,
`crl build`). A floor that fails here must be raised, in both files.

The fresh virtualenv uses the interpreter running the suite (the oldest supported Python,
`requires-python`, is not exercised unless the suite itself runs on it). Packages come from the
configured index through pip's cache (~/.cache/pip), so a warm run costs about two minutes.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from packaging.markers import Marker
from packaging.version import Version

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib  # type: ignore[import-not-found,unused-ignore]

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
CONSTRAINTS = ROOT / "constraints" / "minimum.txt"
# the tests that exercise each dependency: cryptography (pki), click and rich (cli), tenacity
# and the SDK packages (rds adapter, waiters; real SDK requests to the emulator over HTTP),
# prometheus_client (checks), psycopg (probes against a real PostgreSQL with TLS)
SUBSET = [
    "tests/unit/test_crypto.py",
    "tests/unit/test_crypto_pem.py",
    "tests/unit/test_crypto_pkcs8.py",
    "tests/unit/test_crl_fast.py",
    "tests/unit/test_store.py",
    "tests/unit/test_api_errors.py",
    "tests/unit/test_waiters.py",
    "tests/unit/test_fleet.py",
    "tests/unit/test_checks.py",
    "tests/unit/test_cli_profile_region.py",
    "tests/cli/test_ca.py",
    "tests/cli/test_cert.py",
    "tests/cli/test_crl.py",
    "tests/cli/test_last_success.py",
    "tests/unit/test_probe_classify.py",
    "tests/integration/test_real_tls.py",
    "tests/emulator/test_api_adapter.py",
    "tests/e2e/test_region_rate.py",
]
_REQUIREMENT = re.compile(r"^\s*([A-Za-z0-9_.-]+)(\[[^\]]*\])?\s*>=\s*([0-9][^,;\s]*)\s*(;.*)?$")


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pins(*, here: bool = False) -> dict[str, str]:
    """constraints/minimum.txt as {normalized name: version}; with `here`, only the pins whose
    environment marker holds for this interpreter (tomli is for Python 3.10 only)."""
    found: dict[str, str] = {}
    for line in CONSTRAINTS.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        pin, _, marker = line.partition(";")
        name, sep, version = pin.partition("==")
        assert sep, f"{CONSTRAINTS}: {line!r} is not an exact pin (NAME==VERSION)"
        if not here or not marker.strip() or Marker(marker.strip()).evaluate():
            found[_normal(name.strip())] = version.strip()
    return found


def floors() -> dict[str, str]:
    """Every `NAME>=FLOOR` of the runtime dependencies and the `binary` extra."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    found: dict[str, str] = {}
    for requirement in [*project["dependencies"], *project["optional-dependencies"]["binary"]]:
        match = _REQUIREMENT.match(requirement)
        assert match, f"pyproject.toml: {requirement!r} has no floor (NAME>=VERSION)"
        name, extras, version = _normal(match.group(1)), match.group(2), match.group(3)
        found[name] = version
        if name == "psycopg" and extras == "[binary]":
            found["psycopg-binary"] = version  # the extra installs psycopg-binary==psycopg
    return found


def test_every_floor_is_pinned_and_every_pin_is_a_floor() -> None:
    pinned = {name: Version(v) for name, v in pins().items()}
    assert pinned == {name: Version(v) for name, v in floors().items()}  # 43.0 == 43.0.0


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A fresh virtualenv holding rdsssl[binary] at the floors, plus what the tests import
    (pytest, hypothesis, jsonschema)."""
    where = tmp_path_factory.mktemp("minimum") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(where)], check=True)
    pip = [str(where / "bin" / "python"), "-m", "pip", "--disable-pip-version-check"]
    install = [*pip, "install", "-q", "-c", str(CONSTRAINTS), f"{ROOT}[binary]"]
    done = subprocess.run(
        # jsonschema before 4.18 (no `referencing`): referencing needs a typing-extensions
        # newer than rich 10.0 allows, without saying so
        [*install, "pytest", "hypothesis", "jsonschema<4.18"],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    yield where


def test_the_floors_are_what_got_installed(venv: Path) -> None:
    listed = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "list", "--format", "json"],
        capture_output=True,
        text=True,
        check=True,
    )
    installed = {_normal(p["name"]): p["version"] for p in json.loads(listed.stdout)}
    wanted = pins(here=True)
    assert {name: installed.get(name) for name in wanted} == wanted


def test_the_tests_of_each_dependency_pass_at_the_floors(venv: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    result = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pytest", "-q", "-p", "no:cacheprovider", *SUBSET],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert re.search(r"\d+ passed", result.stdout), result.stdout[-2000:]


def test_the_command_line_works_at_the_floors(venv: Path, tmp_path: Path) -> None:
    """The installed `rdsssl` script (run outside the checkout, so the installed package is
    the one imported): a CA, a certificate, a CRL."""
    rdsssl = str(venv / "bin" / "rdsssl")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RDSSSL_", "PYTHON"))}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [rdsssl, *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, done.stderr
        return done

    where = run("--version")
    assert "rdsssl" in where.stdout
    run("ca", "init", "--ca-dir", "ca", "--cn", "floor-ca", "--no-passphrase")
    run("cert", "issue", "--ca-dir", "ca", "--user", "alice", "--out", "alice")
    run("crl", "build", "--ca-dir", "ca", "--out", "crl.pem")
    cert = x509.load_pem_x509_certificate((tmp_path / "alice" / "client.crt").read_bytes())
    crl = x509.load_pem_x509_crl((tmp_path / "crl.pem").read_bytes())
    assert cert.issuer == crl.issuer and crl.issuer.rfc4514_string() == "CN=floor-ca"
    imported = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import rdsssl; print(rdsssl.__file__)"],
        cwd=tmp_path, env=env, capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert str(venv) in imported.stdout  # the installed copy, not the checkout


TERMINAL = """
import io, sys
from rdsssl.cli.app import App
from rdsssl.cli.cloud import progress_reporter
from rdsssl.cli.fleet_opts import print_results
from rdsssl.rds.waiters import Progress

class Tty(io.StringIO):
    def isatty(self):
        return True

out, err = Tty(), Tty()
sys.stdout, sys.stderr = out, err
print_results(App(interactive=False), ["instance", "status"], [["pgm-floor1", "refreshed"]])
app = App(interactive=False)
progress_reporter(app, "pgm-floor1")(Progress("restart", "busy", 3.0, 2.0))
app.end_progress()
sys.stdout, sys.stderr = sys.__stdout__, sys.__stderr__
print(repr(out.getvalue()), repr(err.getvalue()))
"""


def test_the_terminal_output_works_at_the_floors(venv: Path, tmp_path: Path) -> None:
    """rich only draws on a terminal (the results table, the live progress lines), which only
    the pty test has: the two rdsssl functions that use it, with a stdout and stderr that say
    they are terminals; the cursor is given back when the progress ends."""
    done = subprocess.run(
        [str(venv / "bin" / "python"), "-c", TERMINAL],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "pgm-floor1" in done.stdout and "refreshed" in done.stdout  # the table
    assert "pgm-floor1: restart: busy - 3s elapsed, next check in 2s" in done.stdout
    assert "\\x1b[?25h" in done.stdout  # the cursor shown again
