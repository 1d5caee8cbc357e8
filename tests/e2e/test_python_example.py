"""The README's Python example, run as is against the emulator (so it cannot rot), and the
promise that `import rdsssl` stays light."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import rdsssl
from tests.e2e.conftest import Cloud

DOC = Path(__file__).resolve().parents[2] / "README.md"
HEAVY = ("alibabacloud", "Tea", "darabonba", "psycopg")


def _python_blocks(markdown: str) -> list[str]:
    """The python code blocks of the README's "Python API" section."""
    section = markdown.split("\n## Python API\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"^```python\n(.*?)^```", section, flags=re.DOTALL | re.MULTILINE)


def test_the_readme_example_runs_against_the_emulator(fresh: Cloud, tmp_path: Path) -> None:
    (code,) = _python_blocks(DOC.read_text())
    script = tmp_path / "example.py"
    script.write_text(code)
    env = {**os.environ, **fresh.env, "RDSSSL_INSTANCE": fresh.iid}
    env.pop("RDSSSL_CA_PASSPHRASE", None)
    done = subprocess.run(
        [sys.executable, str(script)], env=env, cwd=tmp_path, capture_output=True, text=True,
        timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "restart: 3 changes" in done.stdout
    assert "probe: ok" in done.stdout
    assert [r.outcome for r in fresh.calls("ModifyDBInstanceSSL")] == ["ok"]  # one call
    assert (fresh.emu.restarts(fresh.iid), fresh.emu.instance(fresh.iid).ssl.acl) == (1, "cert")


def test_import_rdsssl_loads_neither_the_sdk_nor_psycopg() -> None:
    check = (
        "import sys, rdsssl\n"
        f"heavy = {HEAVY!r}\n"
        "assert not [m for m in sys.modules if m.startswith(heavy)], 'loaded at import'\n"
        "for name in rdsssl.__all__:\n"
        "    getattr(rdsssl, name)\n"
        "print(sorted({m.split('.')[0] for m in sys.modules if m.startswith(heavy)}))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", check], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"  # even with every public name resolved


def test_all_names_resolve_to_the_library_objects() -> None:
    from rdsssl.ops.apply import apply
    from rdsssl.ops.probe import probe

    assert set(rdsssl.__all__) >= {"CaStore", "DesiredSsl", "plan", "apply", "probe", "ExitCode"}
    assert (rdsssl.apply, rdsssl.probe) == (apply, probe)
    assert rdsssl.LockoutGuard("x").exit_code == rdsssl.ExitCode.VERIFICATION_FAILED
