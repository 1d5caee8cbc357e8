"""Waiting progress on a real terminal: the command runs under a pseudo-terminal and its output
is fed to a terminal emulator (pyte), so the test sees the screen a person sees. A fleet shows
one live line per instance at once; messages never land inside a progress line; at the end the
progress lines are gone and the cursor is back."""

from __future__ import annotations

import fcntl
import os
import struct
import subprocess
import sys
import termios
from collections.abc import Iterator
from pathlib import Path

import pyte
import pytest

from rdsssl.emulator.server import Emulator
from tests.cli.helpers import invoke

ROWS, COLS = 40, 160


@pytest.fixture(scope="module")
def emu() -> Iterator[Emulator]:
    with Emulator(instances=2, backend="none", restart_seconds=4.0) as emulator:
        yield emulator


def _run_in_pty(args: list[str], env: dict[str, str], cwd: Path) -> list[list[str]]:
    """Run `rdsssl ARGS` on a pseudo-terminal; the screen after every chunk of output."""
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", ROWS, COLS, 0, 0))
    proc = subprocess.Popen(
        [sys.executable, "-m", "rdsssl", *args],
        stdin=slave, stdout=slave, stderr=slave, cwd=cwd, close_fds=True,
        env={"PATH": os.environ["PATH"], "HOME": str(cwd), "TERM": "xterm-256color", **env},
    )  # fmt: skip
    os.close(slave)
    screen = pyte.Screen(COLS, ROWS)
    stream = pyte.ByteStream(screen)
    screens: list[list[str]] = []
    try:
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            stream.feed(chunk)
            screens.append([line.rstrip() for line in screen.display])
    finally:
        os.close(master)
        assert proc.wait(timeout=120) == 0
    assert not screen.cursor.hidden, "the cursor was not given back"
    return screens


def test_a_fleet_shows_one_live_line_per_instance(emu: Emulator, tmp_path: Path) -> None:
    ca = tmp_path / "ca"
    assert invoke("ca", "init", "--ca-dir", ca, "--no-passphrase").exit_code == 0
    config = tmp_path / "rdsssl.toml"
    entries = "".join(f'[[instances]]\nid = "{iid}"\n\n' for iid in emu.instance_ids)
    config.write_text(f'[defaults]\nca_dir = "{ca}"\n\n{entries}')
    env = {
        "RDSSSL_ENDPOINT": emu.endpoint,
        "ALIBABA_CLOUD_ACCESS_KEY_ID": emu.access_key_id,
        "ALIBABA_CLOUD_ACCESS_KEY_SECRET": emu.access_key_secret,
        "ALIBABA_CLOUD_REGION_ID": emu.region,
        "RDSSSL_AUDIT_LOG": str(tmp_path / "audit.jsonl"),
        "RDSSSL_SERVICE_PROFILE": str(emu.service_profile_file),
    }
    screens = _run_in_pty(["apply", "-f", str(config), "--yes"], env, tmp_path)

    a, b = emu.instance_ids

    def live(screen: list[str], iid: str) -> list[str]:
        return [line for line in screen if line.startswith(f"{iid}: ") and "elapsed" in line]

    both = [s for s in screens if len(live(s, a)) == 1 and len(live(s, b)) == 1]
    assert both, "never saw both instances' progress lines on the screen at once"
    final = screens[-1]
    assert not [line for line in final if "elapsed" in line], "progress left on the screen"
    text = [line for line in final if line]
    # every message starts its own line: an instance's lines begin with its id or the table
    for iid in (a, b):
        mine = [line for line in text if iid in line]
        assert mine and all(line.startswith(iid) or line.lstrip().startswith(iid) for line in mine)
    assert "summary: 2 instance(s), 2 changed" in text, text
