"""Benchmark 5: start-up time of local commands vs a cloud command.

Local commands (`cert issue`, `cert list`, `ca show`) must not import the cloud SDK; the cloud
command `instance show ID` does (and psycopg is never needed by either). Each command runs as
its own process, as cron runs it (the console script of this environment), N times,
interleaved so that load hits every command alike; the table shows medians, with
`python -c pass` as the floor every Python program pays. `instance show` talks to a
state-only emulator on 127.0.0.1, so its time is start-up, the SDK import and one local round
trip (DescribeDBInstanceAttribute + DescribeDBInstanceSSL + DescribeDBInstanceNetInfo...).

Then each command runs once more under `PYTHONPROFILEIMPORTTIME=1` (`python -X importtime`)
and the modules it imported are checked: no `alibabacloud*`, `Tea*`, `darabonba*` or
`psycopg*` module for the local commands (target: 0).

Run: `python -m benchmarks.bench_startup [--quick] [--repeat N]`.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from benchmarks._common import (
    Row,
    fmt_ratio,
    fmt_seconds,
    machine_description,
    median,
    print_table,
    run,
    time_command,
)
from benchmarks.bench_restarts import point_cli_at, rdsssl_command
from rdsssl.emulator.server import Emulator

HEAVY = ("alibabacloud", "Tea", "darabonba", "psycopg")


def imported_heavy(args: list[str], cwd: Path) -> tuple[list[str], float]:
    """The SDK / psycopg modules a command imports (unique, in import order), and the time
    spent importing them: the sum of their self times (children excluded), in seconds."""
    env = {**os.environ, "PYTHONPROFILEIMPORTTIME": "1"}
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        sys.exit(f"benchmark: {' '.join(args)} failed: {done.stderr[-2000:]}")
    found: list[str] = []
    self_us = 0
    for line in done.stderr.splitlines():  # "import time: self [us] | cumulative | name"
        fields = line.removeprefix("import time:").split("|")
        if not line.startswith("import time:") or len(fields) != 3 or "cumulative" in line:
            continue
        name = fields[2].strip()
        if name.split(".")[0].startswith(HEAVY):
            found.append(name)
            self_us += int(fields[0])
    return list(dict.fromkeys(found)), self_us / 1e6


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="5 runs per command")
    parser.add_argument("--repeat", type=int, help="runs per command, median (default 15)")
    args = parser.parse_args(argv)
    repeat = args.repeat or (5 if args.quick else 15)
    print("\n".join(machine_description()))
    print(f"- {repeat} runs per command, interleaved; medians\n")
    rdsssl = rdsssl_command()
    with (
        tempfile.TemporaryDirectory(prefix="bench-startup-") as tmp,
        Emulator(instances=1, backend="none") as emu,
    ):
        root = Path(tmp)
        point_cli_at(emu, root)
        iid = emu.instance_ids[0]
        run([*rdsssl, "ca", "init", "--ca-dir", "ca", "--no-passphrase"], cwd=root)
        counter = iter(range(10**6))

        def issue() -> list[str]:
            n = next(counter)
            return [*rdsssl, "cert", "issue", "--ca-dir", "ca", "--user", f"u{n}", "--out", f"o{n}"]

        commands: dict[str, Callable[[], list[str]]] = {
            "python -c pass (floor)": lambda: [sys.executable, "-c", "pass"],
            "cert issue": issue,
            "cert list": lambda: [*rdsssl, "cert", "list", "--ca-dir", "ca"],
            "ca show": lambda: [*rdsssl, "ca", "show", "--ca-dir", "ca"],
            "instance show": lambda: [*rdsssl, "instance", "show", iid],
        }
        times: dict[str, list[float]] = {name: [] for name in commands}
        for _ in range(repeat):
            for name, make in commands.items():
                times[name].append(time_command(make(), cwd=root))
        heavy = {name: imported_heavy(make(), root) for name, make in commands.items()}
    cloud = median(times["instance show"])
    rows: list[Row] = []
    for name in ("python -c pass (floor)", "cert issue", "cert list", "ca show"):
        ours = median(times[name])
        rows.append(Row(f"start-up: {name}", fmt_seconds(cloud), fmt_seconds(ours),
                        fmt_ratio(cloud, ours)))  # fmt: skip
    sdk_modules, sdk_seconds = heavy["instance show"]
    for name in ("cert issue", "cert list", "ca show"):
        found = heavy[name][0]
        rows.append(
            Row(f"SDK/psycopg modules imported: {name}", str(len(sdk_modules)), str(len(found)),
                "", "0", not found)
        )  # fmt: skip
    print_table(rows, baseline="instance show (SDK)", ours="local command")
    print(f"\ninstance show imported {len(sdk_modules)} SDK/psycopg modules "
          f"(their own import time under -X importtime: {fmt_seconds(sdk_seconds)}); first: "
          f"{', '.join(sdk_modules[:5])}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
