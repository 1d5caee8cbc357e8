"""The crash-point seam: armed points act, unarmed ones do nothing, the environment variable
kills a worker at the N-th reach, and every documented point is one the code really reaches."""

from __future__ import annotations

import ast
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from rdsssl.ops import crashpoints

ROOT = Path(__file__).resolve().parents[2]


def test_an_armed_point_runs_its_action_each_time_and_only_there() -> None:
    seen: list[str] = []
    with crashpoints.at("versions.link", lambda: seen.append("link")):
        crashpoints.reached("versions.link")
        crashpoints.reached("versions.publish")  # another point: not armed
        crashpoints.reached("versions.link")
    crashpoints.reached("versions.link")  # disarmed when the block ends
    assert seen == ["link", "link"]


def test_an_action_that_raises_stops_the_run_there_and_the_point_is_disarmed() -> None:
    def die() -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt), crashpoints.at("renew.signed", die):
        crashpoints.reached("renew.signed")
    crashpoints.reached("renew.signed")  # nothing armed any more: returns


def test_nested_blocks_restore_the_outer_action() -> None:
    seen: list[str] = []
    with crashpoints.at("renew.key-staged", lambda: seen.append("outer")):
        with crashpoints.at("renew.key-staged", lambda: seen.append("inner")):
            crashpoints.reached("renew.key-staged")
        crashpoints.reached("renew.key-staged")
    assert seen == ["inner", "outer"]


def test_an_unknown_point_is_refused() -> None:
    armed = crashpoints.at("renew.typo", lambda: None)
    with pytest.raises(ValueError, match=r"unknown crash point 'renew\.typo'"), armed:
        pass


WORKER = """
from rdsssl.ops import crashpoints
for i in range(3):
    print("before", i, flush=True)
    crashpoints.reached("versions.link")
print("finished", flush=True)
"""


def _worker(value: str | None) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)}
    if value is not None:
        env[crashpoints.ENV] = value
    return subprocess.run(
        [sys.executable, "-c", WORKER], capture_output=True, text=True, env=env, cwd=ROOT
    )


def test_the_environment_variable_sigkills_the_worker_at_the_nth_reach() -> None:
    second = _worker("versions.link:2")
    assert second.returncode == -signal.SIGKILL, second.stderr
    assert second.stdout.split("\n")[:-1] == ["before 0", "before 1"]
    first = _worker("versions.link")
    assert first.returncode == -signal.SIGKILL, first.stderr
    assert first.stdout == "before 0\n"


def test_without_the_variable_or_at_another_point_the_worker_runs_through() -> None:
    for value in (None, "", "versions.publish"):
        done = _worker(value)
        assert done.returncode == 0, done.stderr
        assert done.stdout.endswith("finished\n")


def test_an_unknown_point_in_the_environment_fails_the_worker() -> None:
    typo = _worker("versions.lnk")
    assert typo.returncode == 1
    assert "unknown crash point 'versions.lnk'" in typo.stderr


def _reached_in_code() -> set[str]:
    names: set[str] = set()
    for path in (ROOT / "rdsssl").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "reached"
                and isinstance(node.func.value, ast.Name)
                and node.func.value.id == "crashpoints"
            ):
                arg = node.args[0]
                assert isinstance(arg, ast.Constant) and isinstance(arg.value, str), path
                names.add(arg.value)
    return names


def test_every_point_is_reached_in_the_code_and_listed_in_the_architecture_page() -> None:
    assert _reached_in_code() == crashpoints.POINTS
    doc = (ROOT / "docs" / "ARCHITECTURE.md").read_text()
    seams = doc[doc.index("## Seams for tests") :]
    for name in crashpoints.POINTS:
        assert f"`{name}`" in seams, name
