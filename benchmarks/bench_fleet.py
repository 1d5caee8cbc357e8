"""Benchmark 3: a fleet of 100 instances configured concurrently vs one.

Target: 100 instances configured concurrently in <= 1.5x the time of one alone.

Against the emulator with state-only instances (no PostgreSQL) and the production proportions
scaled down 60x (restart 3 s for ~3 min, ACL lock 1 s for ~1 min; `--quick`: 1 s, 20
instances). A full configuration is the client CA, a CRL and ACL verify-ca: one
ModifyDBInstanceSSL call and one restart per instance.

- library: `rdsssl.ops.fleet.run` over `rdsssl.ops.apply.apply`, all workers sharing ONE SDK
  adapter behind one `RateLimiter` (the way `rdsssl crl refresh` / `rdsssl check` run a fleet),
  vs the same apply on one instance alone. Interleaved, median of 3 (`--quick`: 1).
- CLI: `rdsssl crl refresh ID... --concurrency N --rate R --yes` as a real process, after the
  CRLs were made to look near expiry, vs the same command for one instance.
- one at a time: estimated as N x the time of one (measuring it would take N restarts).

Reported: wall times, ratios, API calls / Modify calls / restarts per instance, and what the
default request budget (10 requests/s) would make of the same number of calls.

The emulator runs in its own process (`rdsssl emulator serve --backend none`), read through its
control routes: in the benchmark's process it would share the GIL with the 100 client threads,
and the service's CPU time would be billed to the client (RDS runs elsewhere).

Run: `python -m benchmarks.bench_fleet [--quick]`. Timings are printed, never asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from benchmarks._common import Row, fmt_ratio, fmt_seconds, machine_description, median, run
from benchmarks._common import print_table as _print_table
from rdsssl.models import AclMode, KeyType
from rdsssl.ops import fleet
from rdsssl.ops.apply import ApplyOptions, apply
from rdsssl.ops.plan import DesiredSsl
from rdsssl.pki import crypto
from rdsssl.rds.api import AliyunRdsApi
from rdsssl.rds.protocol import RdsApi
from rdsssl.rds.settings import ApiSettings
from rdsssl.store.castore import CaStore

MODIFY = "ModifyDBInstanceSSL"
TARGET = 1.5


@dataclass(frozen=True)
class Config:
    instances: int
    restart: float
    acl_lock: float
    repeats: int
    concurrency: int
    rate: float


@dataclass(frozen=True)
class Run:
    """One timed configuration of some instances."""

    seconds: float
    calls: int
    modifies: int
    restarts: int
    failures: int
    last_modify: float = 0.0  # seconds from the start to the last Modify call sent
    cpu_per_call: float = 0.0  # this process's CPU seconds per API call (library runs)


def rdsssl_command() -> list[str]:
    """The console script of this environment (as cron runs it), else `python -m rdsssl`."""
    script = Path(sys.executable).parent / "rdsssl"
    return [str(script)] if script.exists() else [sys.executable, "-m", "rdsssl"]


class RemoteEmulator:
    """`rdsssl emulator serve` in a child process, observed through its control routes."""

    def __init__(self, env: dict[str, str]) -> None:
        self.endpoint = env["RDSSSL_ENDPOINT"]
        self.region = env["ALIBABA_CLOUD_REGION_ID"]
        self.access_key_id = env["ALIBABA_CLOUD_ACCESS_KEY_ID"]
        self.access_key_secret = env["ALIBABA_CLOUD_ACCESS_KEY_SECRET"]
        self.instance_ids = env["RDSSSL_EMULATOR_INSTANCES"].strip("'").split()

    def _control(self, path: str, *, post: bool = False) -> dict[str, Any]:
        request = urllib.request.Request(
            f"{self.endpoint}/_emulator/{path}", data=b"{}" if post else None, method=None
        )
        with urllib.request.urlopen(request, timeout=60) as response:
            data: dict[str, Any] = json.load(response)
            return data

    def requests(self) -> list[dict[str, str]]:
        """The request log (action, instance_id, ...)."""
        return list(self._control("requests")["requests"])

    def restarts(self, ids: list[str]) -> int:
        """Restarts performed so far for `ids`."""
        wanted = set(ids)
        found = self._control("instances")["instances"]
        return sum(int(i["restarts"]) for i in found if i["DBInstanceId"] in wanted)

    def reset(self) -> None:
        """SSL blocks back to initial, counters and request log cleared."""
        self._control("reset", post=True)


@contextmanager
def remote_emulator(cfg: Config, root: Path) -> Iterator[RemoteEmulator]:
    """Start the emulator process; stop it (SIGTERM, its own pid) whatever happens."""
    env_file = root / "emu.env"
    args = [*rdsssl_command(), "emulator", "serve", "--backend", "none",
            "--instances", str(cfg.instances + 1), "--restart-seconds", str(cfg.restart),
            "--acl-lock-seconds", str(cfg.acl_lock), "--env-file", str(env_file)]  # fmt: skip
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while not env_file.exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                err = proc.stderr.read().decode() if proc.stderr else ""
                sys.exit(f"benchmark: the emulator did not start: {err.strip()}")
            time.sleep(0.1)
        env = {}
        for line in env_file.read_text().splitlines():
            key, _, value = line.removeprefix("export ").partition("=")
            env[key] = value
        yield RemoteEmulator(env)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def make_store(root: Path) -> tuple[Path, str]:
    """A CA store and its certificate PEM."""
    now = datetime.now(timezone.utc)
    path = root / "ca"
    with CaStore.init(
        path, cn="bench-ca", key_type=KeyType.EC_P256, days=3650, passphrase=None, now=now
    ) as store:
        return path, crypto.cert_pem(store.ca_cert).decode()


def short_crl(ca_dir: Path, days: int) -> str:
    """A CRL that expires in `days` (10: inside crl refresh's 30-day threshold)."""
    with CaStore.open(ca_dir) as store:
        store.unlock(None)
        return store.build_crl(now=datetime.now(timezone.utc), days=days).pem.decode()


def adapter(emu: RemoteEmulator, rate: float) -> RdsApi:
    """One SDK adapter for every worker, behind one rate limiter (what the CLI builds)."""
    os.environ.update(
        ALIBABA_CLOUD_ACCESS_KEY_ID=emu.access_key_id,
        ALIBABA_CLOUD_ACCESS_KEY_SECRET=emu.access_key_secret,
    )
    api = AliyunRdsApi(ApiSettings(region=emu.region, endpoint=emu.endpoint))
    return fleet.limited(api, fleet.RateLimiter(rate))


def observed(
    emu: RemoteEmulator, ids: list[str], seen: int, restarts: int, started: float
) -> tuple[int, int, int, float]:
    """(API calls, Modify calls, restarts, last Modify after `started` (epoch s)) for `ids`
    since the log had `seen` entries."""
    wanted = set(ids)
    mine = [r for r in emu.requests()[seen:] if r["instance_id"] in wanted]
    sent = [
        datetime.fromisoformat(r["time"].replace("Z", "+00:00")).timestamp() - started
        for r in mine
        if r["action"] == MODIFY
    ]
    return len(mine), len(sent), emu.restarts(ids) - restarts, max(sent, default=0.0)


def configure(
    emu: RemoteEmulator, api: RdsApi, ids: list[str], desired: DesiredSsl, concurrency: int
) -> Run:
    """Full configuration of `ids` through fleet.run; what the emulator saw for them."""
    seen, restarts = len(emu.requests()), emu.restarts(ids)
    epoch, start, cpu = time.time(), time.perf_counter(), time.process_time()
    outcomes = fleet.run(
        list(ids),
        lambda iid: apply(api, str(iid), desired, ApplyOptions(force=True)),
        concurrency=concurrency,
    )
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    calls, modifies, restarted, last = observed(emu, ids, seen, restarts, epoch)
    failed = sum(not o.ok for o in outcomes)
    return Run(seconds, calls, modifies, restarted, failed, last, cpu / max(calls, 1))


def cli_refresh(emu: RemoteEmulator, ids: list[str], ca_dir: Path, cfg: Config, cwd: Path) -> Run:
    """`rdsssl crl refresh IDS...` as a process, as cron would run it."""
    args = [*rdsssl_command(), "-q", "crl", "refresh", *ids, "--ca-dir", str(ca_dir), "--yes",
            "--concurrency", str(cfg.concurrency), "--rate", str(cfg.rate)]  # fmt: skip
    seen, restarts = len(emu.requests()), emu.restarts(ids)
    epoch, start = time.time(), time.perf_counter()
    run(args, cwd=cwd)
    seconds = time.perf_counter() - start
    calls, modifies, restarted, last = observed(emu, ids, seen, restarts, epoch)
    return Run(seconds, calls, modifies, restarted, 0, last)


def per(n: int, total: int) -> str:
    return f"{total / n:.1f}"


def bench(cfg: Config) -> list[Row]:
    with tempfile.TemporaryDirectory(prefix="rdsssl-bench-fleet-") as tmp:
        root = Path(tmp)
        ca_dir, ca_pem = make_store(root)
        print(f"starting the emulator with {cfg.instances + 1} state-only instances ...",
              file=sys.stderr)  # fmt: skip
        with remote_emulator(cfg, root) as emu:
            os.environ.update(
                RDSSSL_ENDPOINT=emu.endpoint,
                ALIBABA_CLOUD_REGION_ID=emu.region,
                RDSSSL_AUDIT_LOG=str(root / "audit.jsonl"),
            )
            api = adapter(emu, cfg.rate)
            alone, *many = emu.instance_ids
            desired = DesiredSsl(
                client_ca_pem=ca_pem, crl=short_crl(ca_dir, 10), acl=AclMode.VERIFY_CA
            )
            ones: list[Run] = []
            fleets: list[Run] = []
            for n in range(cfg.repeats):
                emu.reset()
                ones.append(configure(emu, api, [alone], desired, 1))
                fleets.append(configure(emu, api, many, desired, cfg.concurrency))
                print(f"  repeat {n + 1}: one {ones[-1].seconds:.2f} s, fleet "
                      f"{fleets[-1].seconds:.2f} s", file=sys.stderr)  # fmt: skip
            cli_one = cli_refresh(emu, [alone], ca_dir, cfg, root)
            cli_fleet = cli_refresh(emu, many, ca_dir, cfg, root)
    return rows(cfg, ones, fleets, cli_one, cli_fleet)


def rows(
    cfg: Config, ones: list[Run], fleets: list[Run], cli_one: Run, cli_fleet: Run
) -> list[Row]:
    n = cfg.instances
    one_s = median([r.seconds for r in ones])
    fleet_s = median([r.seconds for r in fleets])
    last = fleets[-1]
    target = f"<= {TARGET}x"

    def ratio(a: float, b: float) -> str:
        return f"{b / a:.2f}x"

    return [
        Row(f"full configuration, library fleet.run ({n} vs 1)", fmt_seconds(one_s),
            fmt_seconds(fleet_s), ratio(one_s, fleet_s), target, fleet_s / one_s <= TARGET),
        Row(f"crl refresh CLI process ({n} vs 1)", fmt_seconds(cli_one.seconds),
            fmt_seconds(cli_fleet.seconds), ratio(cli_one.seconds, cli_fleet.seconds), target,
            cli_fleet.seconds / cli_one.seconds <= TARGET),
        Row(f"{n} one at a time (estimated: {n} x one) vs concurrent",
            fmt_seconds(n * one_s), fmt_seconds(fleet_s), fmt_ratio(n * one_s, fleet_s)),
        Row("API calls per instance (library)", per(1, ones[-1].calls), per(n, last.calls), ""),
        Row("API calls per instance (CLI refresh)", per(1, cli_one.calls),
            per(n, cli_fleet.calls), ""),
        Row("Modify calls / restarts per instance", f"{ones[-1].modifies} / {ones[-1].restarts}",
            f"{per(n, last.modifies)} / {per(n, last.restarts)}", "", "1 / 1",
            last.modifies == n and last.restarts == n),
        Row("failed instances", str(ones[-1].failures), str(last.failures), "", "0",
            last.failures == 0 and cli_fleet.modifies == n),
        Row("last Modify call sent after (library)", fmt_seconds(ones[-1].last_modify),
            fmt_seconds(last.last_modify), ""),
        Row("last Modify call sent after (CLI, process start included)",
            fmt_seconds(cli_one.last_modify), fmt_seconds(cli_fleet.last_modify), ""),
        Row("client CPU per API call (library)", fmt_seconds(ones[-1].cpu_per_call),
            fmt_seconds(last.cpu_per_call), ""),
        Row(f"fleet time at the default --rate 10 (>= {last.calls} calls / 10 per s)", "",
            fmt_seconds(last.calls / fleet.DEFAULT_RATE), ""),
    ]  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.bench_fleet", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--quick", action="store_true", help="20 instances, 1 s restarts")
    parser.add_argument(
        "--restart-seconds",
        type=float,
        default=3.0,
        help="emulated restart (default 3 s = production's ~3 min scaled down 60x; the fixed "
        "cost of sending 100 calls weighs less against a longer one)",
    )
    args = parser.parse_args(argv)
    cfg = (
        Config(instances=20, restart=1.0, acl_lock=0.3, repeats=1, concurrency=20, rate=500)
        if args.quick
        else Config(instances=100, restart=args.restart_seconds, acl_lock=1.0, repeats=3,
                    concurrency=100, rate=1000)
    )  # fmt: skip
    result = bench(cfg)
    print()
    print("\n".join(machine_description()))
    print(f"- emulator: state-only instances, restart {cfg.restart:g} s, ACL lock "
          f"{cfg.acl_lock:g} s; concurrency {cfg.concurrency}, rate limit {cfg.rate:g} "
          "requests/s; median of "
          f"{cfg.repeats} interleaved run(s) (library rows)")  # fmt: skip
    print()
    _print_table(result, baseline="one instance", ours=f"{cfg.instances} instances")
    return 0


if __name__ == "__main__":
    sys.exit(main())
