"""Benchmark 1: restarts and Modify calls for a full configuration.

A full client-certificate configuration is: the client CA, a CRL, and ACL verify-ca.

- rdsssl: `rdsssl apply -f rdsssl.toml --yes --force` (CA + CRL + ACL in ONE
  ModifyDBInstanceSSL call), then the same command again (the re-run: nothing differs).
- manual: the console procedure's three changes, each waited for before the next, done with
  rdsssl's single-purpose commands on a second instance: `instance enable-client-ca`,
  `instance upload-crl` (a CRL from `crl build`), `instance set-acl --acl verify-ca`.

Every command is a real `rdsssl` process talking to the emulator through the SDK; restarts and
ACL locks are counted by the emulator, Modify calls from its request log. Wall time uses the
production proportions scaled down 60x: restart 3 s (~3 min), ACL lock 1 s (~1 min); `--quick`
uses 1 s and 0.3 s. `--force` skips the lockout guard's probe (state-only instances have no
database to probe; with `--backend pg` they do, but the guard is not what is measured).

Run: `python -m benchmarks.bench_restarts [--quick] [--backend none|pg]`.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from benchmarks._common import Row, fmt_ratio, fmt_seconds, machine_description, print_table, run
from rdsssl.emulator.server import Emulator

MODIFY = "ModifyDBInstanceSSL"


def rdsssl_command() -> list[str]:
    """The console script of this environment (as cron runs it), else `python -m rdsssl`."""
    script = Path(sys.executable).parent / "rdsssl"
    return [str(script)] if script.exists() else [sys.executable, "-m", "rdsssl"]


@dataclass(frozen=True)
class Cost:
    """What one way of configuring an instance cost it."""

    modify_calls: int
    restarts: int
    acl_locks: int
    describe_calls: int
    seconds: float


def measure(emu: Emulator, iid: str, commands: list[list[str]], cwd: Path) -> Cost:
    """Run `rdsssl` commands one after the other; count what the emulator saw for `iid`."""
    seen = len(emu.requests)
    restarts, locks = emu.restarts(iid), emu.reloads(iid)
    start = time.perf_counter()
    for args in commands:
        run([*rdsssl_command(), *args], cwd=cwd)
    seconds = time.perf_counter() - start
    mine = [r for r in emu.requests[seen:] if r.instance_id == iid and r.outcome == "ok"]
    return Cost(
        modify_calls=sum(r.action == MODIFY for r in mine),
        restarts=emu.restarts(iid) - restarts,
        acl_locks=emu.reloads(iid) - locks,
        describe_calls=sum(r.action.startswith("Describe") for r in mine),
        seconds=seconds,
    )


def point_cli_at(emu: Emulator, root: Path) -> None:
    """The environment every `rdsssl` child process inherits (cron would set the same)."""
    os.environ.update(
        RDSSSL_ENDPOINT=emu.endpoint,
        ALIBABA_CLOUD_ACCESS_KEY_ID=emu.access_key_id,
        ALIBABA_CLOUD_ACCESS_KEY_SECRET=emu.access_key_secret,
        ALIBABA_CLOUD_REGION_ID=emu.region,
        RDSSSL_AUDIT_LOG=str(root / "audit.jsonl"),
    )


def rows(apply: Cost, rerun: Cost, manual: Cost, restart: float, lock: float) -> list[Row]:
    scale = f"(restart {restart:g} s, ACL lock {lock:g} s)"
    return [
        Row(f"{MODIFY} calls", str(manual.modify_calls), str(apply.modify_calls),
            fmt_ratio(manual.modify_calls, apply.modify_calls), "1",
            apply.modify_calls == 1),
        Row("restarts", str(manual.restarts), str(apply.restarts),
            fmt_ratio(manual.restarts, apply.restarts), "1 (manual: 2)", apply.restarts == 1),
        Row("ACL locks", str(manual.acl_locks), str(apply.acl_locks), "",
            "0 (manual: 1)", apply.acl_locks == 0),
        Row(f"wall time {scale}", fmt_seconds(manual.seconds), fmt_seconds(apply.seconds),
            fmt_ratio(manual.seconds, apply.seconds)),
        Row("Describe calls", str(manual.describe_calls), str(apply.describe_calls), ""),
        Row(f"re-run: {MODIFY} calls", "n/a", str(rerun.modify_calls), "", "0",
            rerun.modify_calls == 0),
        Row("re-run: restarts + ACL locks", "n/a", str(rerun.restarts + rerun.acl_locks), "",
            "0", rerun.restarts + rerun.acl_locks == 0),
        Row("re-run: wall time", "n/a", fmt_seconds(rerun.seconds), ""),
    ]  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="restart 1 s, ACL lock 0.3 s")
    parser.add_argument("--backend", choices=["none", "pg"], default="none")
    args = parser.parse_args(argv)
    restart, lock = (1.0, 0.3) if args.quick else (3.0, 1.0)
    print("\n".join(machine_description()))
    print(f"- emulator backend: {args.backend}; restart {restart:g} s, ACL lock {lock:g} s\n")
    with (
        tempfile.TemporaryDirectory(prefix="bench-restarts-") as tmp,
        Emulator(
            instances=2, backend=args.backend, restart_seconds=restart, acl_lock_seconds=lock
        ) as emu,
    ):
        root = Path(tmp)
        point_cli_at(emu, root)
        tool_id, manual_id = emu.instance_ids
        run([*rdsssl_command(), "ca", "init", "--ca-dir", "ca", "--no-passphrase"], cwd=root)
        (root / "rdsssl.toml").write_text(
            f'[defaults]\nca_dir = "ca"\ncrl = true\nacl = "verify-ca"\n\n'
            f'[[instances]]\nid = "{tool_id}"\n'
        )
        apply_args = ["apply", "-f", "rdsssl.toml", "--yes", "--force"]
        apply = measure(emu, tool_id, [apply_args], root)
        rerun = measure(emu, tool_id, [apply_args], root)
        run([*rdsssl_command(), "crl", "build", "--ca-dir", "ca", "--out", "crl.pem"], cwd=root)
        manual = measure(
            emu,
            manual_id,
            [
                ["instance", "enable-client-ca", manual_id, "--ca-dir", "ca", "--yes"],
                ["instance", "upload-crl", manual_id, "--crl", "crl.pem", "--yes"],
                ["instance", "set-acl", manual_id, "--acl", "verify-ca", "--yes", "--force"],
            ],
            root,
        )
    print_table(rows(apply, rerun, manual, restart, lock), baseline="manual", ours="rdsssl apply")
    return 0


if __name__ == "__main__":
    sys.exit(main())
