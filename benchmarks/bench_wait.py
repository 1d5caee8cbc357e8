"""Benchmark 2 (waiters; targets in benchmarks/RESULTS.md): how soon a change is confirmed,
and whether it is ever confirmed before it is applied.

For restarts of 5, 20, 60 and 180 s (real time; state-only emulator), `rdsssl instance
enable-client-ca ID --ca-dir ca --yes` runs as its own process: one ModifyDBInstanceSSL, then
the SslApplied waiter polls until it has evidence (rdsssl/rds/waiters.py `ssl_applied`): the change
seen in progress, then Running + LastModifyStatus=success + the CA reads back (or, with no
progress seen, that state held for the settle period). Every restart runs under both emulator
profiles (rdsssl/emulator/profiles.py): `documented` (the change shows at once) and
`pessimistic` (a 3 s status lag during which the instance reads as before, then 2 s in which the
NEW values read back with Running/success although PostgreSQL still runs the old ones, then
the restart). Under pessimistic, a waiter that trusts the read-back returns before the change
is applied.

The rdsssl process gets a service profile (RDSSSL_SERVICE_PROFILE; rdsssl/rds/service_profile.py)
in the file format the emulator writes (`Emulator.service_profile`): the emulator's profile
with the NOMINAL restart length, as a profile recorded on an account would say. The waiter
polls sparsely (<= 8 s) until just before lag + early read-back + restart, then every ~1.8 s
(a third of the restart if that is shorter). Each emulator is given the trial's actual restart
length: real restarts vary, and the lag depends on where readiness falls between two dense
polls, so the trials of one length are spread evenly over one dense interval around the
nominal length (5 x 5 s: 4.3-5.7 s, 3 x 20 s: 19.4-20.6 s, 2 x 60 s: 59.6-60.5 s, 1 x 180 s;
stratified, so that their mean lag estimates the mean over readiness times). `--fixed` runs
every trial at the nominal length, i.e. exactly where the profile says.

- ready: the moment the emulator's backend applies the change (where PostgreSQL would
  restart with it; rdsssl/emulator/state.py `_advance`, its ticker runs every 50 ms),
  recorded inside the emulator. Under pessimistic the new values read back from 3 s after
  the Modify, a whole restart before ready, and for 2 s with Running/success: a return
  before ready is the bug the evidence rule prevents, and is counted as a failure. The
  SSL reads answered inside that 2 s window are counted too: only they test the rule (a
  sparse schedule may jump over the window).
- returned: the moment the rdsssl process has exited, on the benchmark's side (process
  teardown included). The lag row also gives the last Describe answered (the deciding
  poll) relative to ready, to tell the waiter's share from the process exit.
- API calls: the Describe* requests the emulator logged between the Modify call and the
  return, per minute of waiting (Modify to return); reads before the Modify (the CLI's preview
  and the apply's own read) are counted apart.

Targets: returned within 2 s of ready on every wait ("met?" by the worst trial); at most 20
API calls a minute on waits of 60 s and longer (by the worst trial); never before ready.
The full run takes about 15-20 minutes (mostly sleeping); `--quick` runs only the 5 s and
20 s restarts.

Run: `python -m benchmarks.bench_wait [--quick] [--fixed] [--profile documented|pessimistic|both]`.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from statistics import mean
from typing import Any

from benchmarks._common import Row, fmt_seconds, machine_description, print_table, run
from benchmarks.bench_restarts import point_cli_at, rdsssl_command
from rdsssl.emulator.requestlog import LoggedRequest
from rdsssl.emulator.server import Emulator
from rdsssl.rds.service_profile import ENV_SERVICE_PROFILE, ServiceProfile
from rdsssl.rds.waiters import DENSE

TRIALS = ((5.0, 5), (20.0, 3), (60.0, 2), (180.0, 1))  # (restart seconds, runs)
QUICK = 2  # --quick: the first two lengths
PROFILES = ("documented", "pessimistic")
LONG = 60.0  # waits at least this long: the call rate applies
READY_TARGET = 2.0  # seconds after ready
CALLS_MIN = 20.0  # one per 3 s
SSL_CALL = "DescribeDBInstanceSSL"
MODIFY = "ModifyDBInstanceSSL"
APPLY_GRACE = 30.0  # after an early return: how long to wait for the emulator's apply


@dataclass(frozen=True)
class Wait:
    """One timed change."""

    profile: str
    restart: float  # nominal (what the service profile says)
    duration: float  # the emulator's restart_seconds for this trial
    modify_at: float  # epoch seconds, from the emulator's request log
    ready_at: float  # epoch seconds, inside the emulator
    last_poll_at: float  # epoch seconds: the last Describe answered (the deciding poll)
    returned_at: float  # epoch seconds, on our side
    describe_calls: int  # after the Modify
    ssl_calls: int  # of which DescribeDBInstanceSSL
    reads_before: int  # Describe calls before the Modify
    readback_polls: int  # SSL reads answered in the early read-back (new values, not applied)
    exit_code: int

    @property
    def lag(self) -> float:
        return self.returned_at - self.ready_at

    @property
    def early(self) -> bool:
        return self.returned_at < self.ready_at

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


def spread(restart: float) -> float:
    """One dense interval of the waiter for this restart length (what the service profile
    makes of it: 1.8 s, or a third of a short restart)."""
    return ServiceProfile(restart_seconds=restart).dense_interval(restarts=True, cap=DENSE)


def durations(restart: float, trials: int, fixed: bool) -> list[float]:
    """`trials` restart durations spread evenly over one dense interval around `restart`
    (stratified, so that their mean lag estimates the mean over readiness times)."""
    if fixed:
        return [restart] * trials
    width = spread(restart)
    return [restart + ((i + 0.5) / trials - 0.5) * width for i in range(trials)]


def write_service_profile(emu: Emulator, restart: float, path: Path) -> Path:
    """The emulator's own service-profile document, with the nominal restart length."""
    doc = {**emu.service_profile(), "restart_seconds": restart}
    path.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    return path


def epoch(entry: LoggedRequest) -> float:
    return datetime.strptime(entry.time, "%Y-%m-%dT%H:%M:%S.%f%z").timestamp()


def one_wait(profile: str, restart: float, duration: float, root: Path) -> Wait:
    with Emulator(instances=1, backend="none", restart_seconds=duration, profile=profile) as emu:
        point_cli_at(emu, root)
        os.environ[ENV_SERVICE_PROFILE] = str(
            write_service_profile(emu, restart, root / f"service-profile-{profile}.json")
        )
        iid = emu.instance_ids[0]
        marks: list[float] = []
        record_ready(emu, iid, marks)
        args = [*rdsssl_command(), "-q", "instance", "enable-client-ca", iid]
        proc = subprocess.run([*args, "--ca-dir", "ca", "--yes"], cwd=root, capture_output=True)
        returned = time.time()
        log = emu.requests
        if proc.returncode != 0:
            print(f"rdsssl failed ({proc.returncode}): {proc.stderr.decode()}", file=sys.stderr)
        deadline = time.time() + duration + APPLY_GRACE
        while not marks and time.time() < deadline:  # returned before ready: see when it is
            time.sleep(0.05)
    modifies = [r for r in log if r.action == MODIFY]
    if len(modifies) != 1 or len(marks) != 1:
        sys.exit(f"benchmark: expected one Modify and one transition, saw {len(modifies)} and "
                 f"{len(marks)} ({profile}, {duration:.2f} s restart)")  # fmt: skip
    at = log.index(modifies[0])
    before = [r for r in log[:at] if r.action.startswith("Describe")]
    after = [r for r in log[at + 1 :] if r.action.startswith("Describe")]
    shows = epoch(modifies[0]) + emu.profile.status_lag_seconds
    window = (shows, shows + emu.profile.early_readback_seconds)
    return Wait(
        profile=profile,
        restart=restart,
        duration=duration,
        modify_at=epoch(modifies[0]),
        ready_at=marks[0],
        last_poll_at=epoch(after[-1]) if after else epoch(modifies[0]),
        returned_at=returned,
        describe_calls=len(after),
        ssl_calls=sum(r.action == SSL_CALL for r in after),
        reads_before=len(before),
        readback_polls=sum(
            r.action == SSL_CALL and window[0] <= epoch(r) < window[1] for r in after
        ),
        exit_code=proc.returncode,
    )


def name(runs: list[Wait]) -> str:
    first = runs[0]
    low, high = min(w.duration for w in runs), max(w.duration for w in runs)
    span = f" ({low:.1f}-{high:.1f} s)" if high > low else ""
    return f"{first.profile}: {first.restart:g} s restart{span} x{len(runs)}"


def rows(waits: list[Wait]) -> list[Row]:
    """Per profile and restart length: the lag after ready and the calls while waiting (each
    trial folded into mean and max); per profile: the returns before ready."""
    out: list[Row] = []
    for profile in dict.fromkeys(w.profile for w in waits):
        mine = [w for w in waits if w.profile == profile]
        for restart in dict.fromkeys(w.restart for w in mine):
            runs = [w for w in mine if w.restart == restart]
            out.extend(length_rows(runs))
        early = [w for w in mine if w.early]
        failed = [w for w in mine if w.exit_code != 0]
        worst = min(w.lag for w in mine)
        readback = sum(w.readback_polls for w in mine)
        out.append(
            Row(f"{profile}: returned before ready (all waits)",
                f"{len(mine)} waits; {readback} polls read the early read-back",
                f"{len(early)} early, {len(failed)} failed",
                f"earliest {'-' if worst < 0 else '+'}{fmt_seconds(abs(worst))} vs ready",
                "0", not early and not failed)
        )  # fmt: skip
    return out


def length_rows(runs: list[Wait]) -> list[Row]:
    title = name(runs)
    lags = [w.lag for w in runs]
    polls = [w.last_poll_at - w.ready_at for w in runs]
    rates = [w.calls_per_minute for w in runs]
    ready = mean(w.ready_at - w.modify_at for w in runs)
    returned = mean(w.waited for w in runs)
    calls, ssl = sum(w.describe_calls for w in runs), sum(w.ssl_calls for w in runs)
    waited = sum(w.waited for w in runs)
    before = mean(w.reads_before for w in runs)
    long = runs[0].restart >= LONG
    sign = "+" if min(lags) >= 0 else ""
    return [
        Row(f"{title}: ready -> returned", f"ready at +{ready:.2f} s (mean)",
            f"returned at +{returned:.2f} s (mean)",
            f"lag mean {sign}{mean(lags):.2f} s, max +{max(lags):.2f} s "
            f"(last poll max {max(polls):+.2f} s)",
            f"<= {READY_TARGET:g} s", max(lags) <= READY_TARGET and min(lags) >= 0),
        Row(f"{title}: API calls while waiting",
            f"{calls} ({ssl} SSL + {calls - ssl} attr) in {waited:.1f} s; "
            f"{before:g} reads before the Modify",
            f"mean {mean(rates):.1f}/min, max {max(rates):.1f}/min",
            f"1 per {waited / calls:.2f} s",
            f"<= {CALLS_MIN:g}/min" + ("" if long else " (long waits; n/a)"),
            max(rates) <= CALLS_MIN if long else None),
    ]  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="only the 5 s and 20 s restarts")
    parser.add_argument("--fixed", action="store_true", help="every trial at the nominal length")
    parser.add_argument(
        "--profile", choices=[*PROFILES, "both"], default="both", help="emulator profile(s)"
    )
    args = parser.parse_args(argv)
    trials = TRIALS[:QUICK] if args.quick else TRIALS
    profiles = PROFILES if args.profile == "both" else (args.profile,)
    print("\n".join(machine_description()))
    plan = ", ".join(f"{n} x {length:g} s" for length, n in trials)
    how = "each at the nominal length" if args.fixed else "spread over one dense interval"
    print(f"- emulator backend: none; profiles: {', '.join(profiles)}; restarts: {plan} ({how})\n")
    waits: list[Wait] = []
    with tempfile.TemporaryDirectory(prefix="bench-wait-") as tmp:
        root = Path(tmp)
        run([*rdsssl_command(), "ca", "init", "--ca-dir", "ca", "--no-passphrase"], cwd=root)
        for length, n in trials:
            for duration in durations(length, n, args.fixed):
                for profile in profiles:  # interleaved: load hits both alike
                    wait = one_wait(profile, length, duration, root)
                    waits.append(wait)
                    print(
                        f"{profile} {duration:.2f} s restart: ready +"
                        f"{wait.ready_at - wait.modify_at:.2f} s, last poll "
                        f"{wait.last_poll_at - wait.ready_at:+.2f} s, returned "
                        f"{wait.lag:+.2f} s; {wait.describe_calls} calls "
                        f"({wait.ssl_calls} SSL) in {wait.waited:.1f} s, "
                        f"{wait.reads_before} before the Modify, {wait.readback_polls} in the "
                        "early read-back" + (" EARLY" if wait.early else ""),
                        file=sys.stderr,
                    )
    table = sorted(waits, key=lambda w: PROFILES.index(w.profile))
    print_table(rows(table), baseline="emulator", ours="rdsssl")
    return 0


if __name__ == "__main__":
    sys.exit(main())
