"""Benchmark 2 (issue 5, SPEC section 7): the wait overhead and the polling rate.

For restarts of 5 s, 30 s and 180 s (real time; state-only emulator), `rdsssl instance
enable-client-ca ID --ca-dir ca --yes` runs as its own process: one ModifyDBInstanceSSL, then
the waiter polls until the instance is Running, LastModifyStatus=success and the CA reads back.

- ready: the moment the emulator completes the transition (its backend applies the new
  configuration and the status turns Running in the same locked step; see
  rdsssl/emulator/state.py `_advance`), recorded inside the emulator.
- returned: the moment the rdsssl process has exited, on the benchmark's side.
- API calls: the Describe* requests the emulator logged between the Modify call and the
  return (one poll = DescribeDBInstanceAttribute + DescribeDBInstanceSSL), per minute of
  waiting (Modify to return).

Targets: returned within 2 s of ready; at most 1 API call per 3 s of waiting (20 per minute).
The full run takes about 4 minutes; `--quick` runs only the 5 s restart.

Run: `python -m benchmarks.bench_wait [--quick]`.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from benchmarks._common import Row, fmt_seconds, machine_description, print_table, run
from benchmarks.bench_restarts import point_cli_at, rdsssl_command
from rdsssl.emulator.server import Emulator

LENGTHS = (5.0, 30.0, 180.0)
READY_TARGET = 2.0  # seconds after ready
CALLS_MIN = 20.0  # one per 3 s


@dataclass(frozen=True)
class Wait:
    """One timed change."""

    restart: float
    modify_at: float  # epoch seconds, from the emulator's request log
    ready_at: float  # epoch seconds, inside the emulator
    returned_at: float  # epoch seconds, on our side
    describe_calls: int

    @property
    def overhead(self) -> float:
        return self.returned_at - self.ready_at

    @property
    def waited(self) -> float:
        return self.returned_at - self.modify_at

    @property
    def calls_per_minute(self) -> float:
        return self.describe_calls / self.waited * 60


def record_ready(emu: Emulator, iid: str, marks: list[float]) -> None:
    """Note the time of every transition: the backend's apply runs inside it."""
    backend = emu.instance(iid).backend  # the live object (snapshots share it)
    original = backend.apply

    def apply(*args: Any, **kwargs: Any) -> None:
        marks.append(time.time())
        original(*args, **kwargs)

    backend.apply = apply  # type: ignore[method-assign]


def one_wait(restart: float, root: Path) -> Wait:
    with Emulator(instances=1, backend="none", restart_seconds=restart) as emu:
        point_cli_at(emu, root)
        iid = emu.instance_ids[0]
        marks: list[float] = []
        record_ready(emu, iid, marks)
        args = [*rdsssl_command(), "-q", "instance", "enable-client-ca", iid]
        proc = subprocess.run([*args, "--ca-dir", "ca", "--yes"], cwd=root, capture_output=True)
        returned = time.time()
        if proc.returncode != 0:
            sys.exit(f"benchmark: rdsssl failed ({proc.returncode}): {proc.stderr.decode()}")
        log = emu.requests
    (modify,) = [r for r in log if r.action == "ModifyDBInstanceSSL"]
    modify_at = datetime.strptime(modify.time, "%Y-%m-%dT%H:%M:%S.%f%z").timestamp()
    describes = [
        r for r in log[log.index(modify) + 1 :] if r.action.startswith("Describe")
    ]  # fmt: skip
    if len(marks) != 1:
        sys.exit(f"benchmark: expected one transition, saw {len(marks)}")
    return Wait(restart, modify_at, marks[0], returned, len(describes))


def rows(waits: list[Wait]) -> list[Row]:
    out: list[Row] = []
    for w in waits:
        name = f"{w.restart:g} s restart"
        out.append(
            Row(f"{name}: ready -> returned", f"ready at +{w.ready_at - w.modify_at:.2f} s",
                f"returned at +{w.waited:.2f} s", f"+{fmt_seconds(w.overhead)}",
                f"<= {READY_TARGET:g} s", w.overhead <= READY_TARGET)
        )  # fmt: skip
        out.append(
            Row(f"{name}: API calls while waiting", f"{w.describe_calls} in {w.waited:.1f} s",
                f"{w.calls_per_minute:.1f}/min", f"1 per {w.waited / w.describe_calls:.2f} s",
                f"<= {CALLS_MIN:g}/min", w.calls_per_minute <= CALLS_MIN)
        )  # fmt: skip
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="only the 5 s restart")
    args = parser.parse_args(argv)
    lengths = LENGTHS[:1] if args.quick else LENGTHS
    print("\n".join(machine_description()))
    print(f"- emulator backend: none; restarts of {', '.join(f'{x:g}' for x in lengths)} s\n")
    waits: list[Wait] = []
    with tempfile.TemporaryDirectory(prefix="bench-wait-") as tmp:
        root = Path(tmp)
        run([*rdsssl_command(), "ca", "init", "--ca-dir", "ca", "--no-passphrase"], cwd=root)
        for length in lengths:
            waits.append(one_wait(length, root))
            print(f"{length:g} s restart done", file=sys.stderr)
    print_table(rows(waits), baseline="emulator", ours="rdsssl")
    return 0


if __name__ == "__main__":
    sys.exit(main())
