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
`psycopg*` module for the local commands (target: 0), and none of the modules only other
commands need (`UNWANTED`: renewal, deploy hooks, rotation, importlib.metadata; target: 0).
The table also shows the import time of each local command under the profiler (the sum of
every module's own time) and how many modules it loaded.

Bytecode is cached as in an installed package (one untimed round first), even where the
calling environment sets PYTHONDONTWRITEBYTECODE. `--baseline DIR` also runs each local command
from another checkout (e.g. `git archive` of an older commit: its `rdsssl` package first on
sys.path), interleaved with this one: a before/after table of start-up and imports.

Run: `python -m benchmarks.bench_startup [--quick] [--repeat N] [--baseline DIR]`.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
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
# What a local command (cert issue/list, ca show, crl build) must not import: other commands'
# machinery (tests/cli/test_import_chains.py asserts the same).
UNWANTED = (
    "rdsssl.ops.rotation",
    "rdsssl.ops.hooks",
    "rdsssl.ops.renew_run",
    "rdsssl.ops.cert_renewal",
    "rdsssl.cli.renew",
    "rdsssl.cli.ca_renew",
    "importlib.metadata",
)
LOCAL = ("cert issue", "cert list", "ca show", "crl build")
FLOOR = "python -c pass (floor)"


def cpu_seconds(args: list[str], *, cwd: Path) -> float:
    """User + system CPU time of one command (its own, by wait4): on a shared machine far
    steadier than wall time, which waits for the other tenants' processes too."""
    proc = subprocess.Popen(args, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    assert proc.stderr is not None
    stderr = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.stderr.close()
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        sys.exit(f"benchmark: {' '.join(args)} failed: {stderr.decode(errors='replace')[-2000:]}")
    return usage.ru_utime + usage.ru_stime


@dataclass(frozen=True)
class Imports:
    """What one command imported, from `python -X importtime`."""

    heavy: list[str]  # SDK / psycopg modules, unique, in import order
    heavy_seconds: float  # the sum of their own times (children excluded)
    unwanted: list[str]
    modules: int
    seconds: float  # the sum of every module's own time: the whole import cost


def imported(args: list[str], cwd: Path) -> Imports:
    """Run ``args`` once under the import profiler and sum up what it imported."""
    env = {**os.environ, "PYTHONPROFILEIMPORTTIME": "1"}
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        sys.exit(f"benchmark: {' '.join(args)} failed: {done.stderr[-2000:]}")
    heavy: list[str] = []
    unwanted: list[str] = []
    heavy_us = total_us = modules = 0
    for line in done.stderr.splitlines():  # "import time: self [us] | cumulative | name"
        fields = line.removeprefix("import time:").split("|")
        if not line.startswith("import time:") or len(fields) != 3 or "cumulative" in line:
            continue
        name = fields[2].strip()
        modules += 1
        total_us += int(fields[0])
        if name.split(".")[0].startswith(HEAVY):
            heavy.append(name)
            heavy_us += int(fields[0])
        if name.startswith(UNWANTED):
            unwanted.append(name)
    return Imports(list(dict.fromkeys(heavy)), heavy_us / 1e6, unwanted, modules, total_us / 1e6)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="5 runs per command")
    parser.add_argument("--repeat", type=int, help="runs per command, median (default 15)")
    parser.add_argument(
        "--baseline", type=Path, help="also run the local commands from this checkout (before)"
    )
    args = parser.parse_args(argv)
    repeat = args.repeat or (5 if args.quick else 15)
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)  # children cache bytecode, as installed
    rdsssl = rdsssl_command()
    before: list[str] = []
    if args.baseline is not None:
        boot = f"import sys; sys.path.insert(0, {str(args.baseline.resolve())!r}); "
        before = [sys.executable, "-c", boot + "from rdsssl.cli import main; main()"]
    print("\n".join(machine_description()))
    print(f"- rdsssl: {' '.join(rdsssl)}" + (f"; before: {args.baseline}" if before else ""))
    print(f"- {repeat} runs per command, interleaved; medians\n")
    with (
        tempfile.TemporaryDirectory(prefix="bench-startup-") as tmp,
        Emulator(instances=1, backend="none") as emu,
    ):
        root = Path(tmp)
        point_cli_at(emu, root)
        iid = emu.instance_ids[0]
        run([*rdsssl, "ca", "init", "--ca-dir", "ca", "--no-passphrase"], cwd=root)
        counter = iter(range(10**6))

        def local(cmd: list[str]) -> dict[str, Callable[[], list[str]]]:
            def issue() -> list[str]:
                n = next(counter)
                return [
                    *cmd,
                    "cert",
                    "issue",
                    "--ca-dir",
                    "ca",
                    "--user",
                    f"u{n}",
                    "--out",
                    f"o{n}",
                ]

            return {
                "cert issue": issue,
                "cert list": lambda: [*cmd, "cert", "list", "--ca-dir", "ca"],
                "ca show": lambda: [*cmd, "ca", "show", "--ca-dir", "ca"],
                "crl build": lambda: [*cmd, "crl", "build", "--ca-dir", "ca", "--out", "crl.pem"],
            }

        commands: dict[str, Callable[[], list[str]]] = {
            FLOOR: lambda: [sys.executable, "-c", "pass"],
            **local(rdsssl),
            "instance show": lambda: [*rdsssl, "instance", "show", iid],
        }
        if before:
            commands.update({f"{name} (before)": make for name, make in local(before).items()})
        for make in commands.values():  # warm-up: bytecode and page cache
            time_command(make(), cwd=root)
        times: dict[str, list[float]] = {name: [] for name in commands}
        cpu: dict[str, list[float]] = {name: [] for name in commands}
        for _ in range(repeat):
            for name, make in commands.items():
                times[name].append(time_command(make(), cwd=root))
                if name in LOCAL or name.endswith("(before)") or name.startswith("python"):
                    cpu[name].append(cpu_seconds(make(), cwd=root))
        found = {name: imported(make(), root) for name, make in commands.items()}
    cloud = median(times["instance show"])
    rows: list[Row] = []
    for name in (FLOOR, *LOCAL):
        ours = median(times[name])
        rows.append(Row(f"start-up: {name}", fmt_seconds(cloud), fmt_seconds(ours),
                        fmt_ratio(cloud, ours)))  # fmt: skip
    sdk = found["instance show"]
    for name in LOCAL:
        mine = found[name]
        rows.append(
            Row(f"import time (-X importtime): {name}", fmt_seconds(sdk.seconds),
                fmt_seconds(mine.seconds), fmt_ratio(sdk.seconds, mine.seconds))
        )  # fmt: skip
        rows.append(Row(f"modules imported: {name}", str(sdk.modules), str(mine.modules), ""))
    for name in LOCAL:
        heavy = found[name].heavy
        rows.append(
            Row(f"SDK/psycopg modules imported: {name}", str(len(sdk.heavy)), str(len(heavy)),
                "", "0", not heavy)
        )  # fmt: skip
    for name in LOCAL:
        unwanted = found[name].unwanted
        rows.append(
            Row(f"renewal/hook/rotation/metadata modules: {name}", "", str(len(unwanted)), "",
                "0", not unwanted)
        )  # fmt: skip
    print_table(rows, baseline="instance show (SDK)", ours="local command")
    print(f"\ninstance show imported {len(sdk.heavy)} SDK/psycopg modules "
          f"(their own import time under -X importtime: {fmt_seconds(sdk.heavy_seconds)}); "
          f"first: {', '.join(sdk.heavy[:5])}")  # fmt: skip
    for name in LOCAL:
        if found[name].unwanted:
            print(f"{name} imported: {', '.join(found[name].unwanted)}")
    if before:
        print()
        print_table(before_after(times, cpu, found), baseline="before", ours="after")
    print(f"\nCPU time (user + sys, median): python -c pass {fmt_seconds(median(cpu[FLOOR]))}")
    return 0


def before_after(
    times: dict[str, list[float]], cpu: dict[str, list[float]], found: dict[str, Imports]
) -> list[Row]:
    """Rows comparing each local command with its run from the baseline tree."""
    rows: list[Row] = []
    for name in LOCAL:
        old, new = median(times[f"{name} (before)"]), median(times[name])
        rows.append(Row(f"start-up (wall): {name}", fmt_seconds(old), fmt_seconds(new),
                        fmt_ratio(old, new)))  # fmt: skip
        old, new = median(cpu[f"{name} (before)"]), median(cpu[name])
        rows.append(Row(f"start-up (CPU user+sys): {name}", fmt_seconds(old), fmt_seconds(new),
                        fmt_ratio(old, new)))  # fmt: skip
    for name in LOCAL:
        old_imports, new_imports = found[f"{name} (before)"], found[name]
        rows.append(
            Row(f"import time (-X importtime): {name}", fmt_seconds(old_imports.seconds),
                fmt_seconds(new_imports.seconds), fmt_ratio(old_imports.seconds,
                                                             new_imports.seconds))
        )  # fmt: skip
        rows.append(Row(f"modules imported: {name}", str(old_imports.modules),
                        str(new_imports.modules), ""))  # fmt: skip
        rows.append(
            Row(f"renewal/hook/rotation/metadata modules: {name}", str(len(old_imports.unwanted)),
                str(len(new_imports.unwanted)), "", "0", not new_imports.unwanted)
        )  # fmt: skip
    return rows


if __name__ == "__main__":
    sys.exit(main())
