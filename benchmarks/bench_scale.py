"""Benchmark 6: local commands on a large store (10,000 and 100,000 certificates).

A store is made with `rdsssl ca init`, one real certificate is issued, and then N rows are
inserted straight into `inventory.sqlite` in one transaction (same schema, the seeded
certificate's DER in every row, so that a command that reads the DER pays for realistic
sizes). The rows look like a long-running deployment: N/5 users with five certificates each,
the older ones expired, every tenth one revoked, and about 1.5 % of the users inside the
default renewal window (30 days).

Each command then runs as its own process (the console script, as cron runs it), stdout to a
file, and is measured by `os.wait4`: wall time, CPU time (user + system: steadier than wall
time on a shared machine) and the peak RSS of that one process (`ru_maxrss`). Targets at
100,000 certificates: `cert list` <= 0.5 s and <= 60 MiB, `ca show` <= 0.15 s, and memory
independent of the store's size (compare the two sizes).

`--baseline DIR` also runs `python -m rdsssl` from another checkout (e.g. `git archive` of an
older commit), interleaved with this one on the same stores: the table shows before and after.

Run: `python -m benchmarks.bench_scale [--quick] [--repeat N] [--sizes 10000,100000]
[--baseline DIR]`.
"""

from __future__ import annotations

import argparse
import os
import random
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

from benchmarks._common import (
    Row,
    fmt_ratio,
    fmt_seconds,
    machine_description,
    median,
    print_table,
    run,
)
from benchmarks.bench_restarts import rdsssl_command

MIB = 1024 * 1024
USERS_PER_ROW = 5  # certificates per user: N rows are N / 5 users


@dataclass(frozen=True)
class Sample:
    """One run of one command."""

    seconds: float
    cpu: float  # user + system CPU seconds of the process: steadier than wall time when shared
    max_rss: int  # bytes
    stdout_bytes: int


def _time(value: datetime) -> str:
    return value.strftime("%Y-%m-%dT%H:%M:%SZ")


def fill_inventory(ca_dir: Path, count: int, *, now: datetime, seed: int = 1) -> None:
    """Insert ``count`` rows into the store's inventory in one transaction (see the module
    docstring for their shape). The store must hold exactly one issued certificate, whose
    DER and issuer fingerprint every row reuses."""
    rng = random.Random(seed)
    conn = sqlite3.connect(ca_dir / "inventory.sqlite", isolation_level=None)
    try:
        der, issuer, key_type = conn.execute(
            "SELECT cert_der, issuer_fingerprint, key_type FROM certs"
        ).fetchone()
        start = conn.execute("SELECT max(seq) FROM certs").fetchone()[0]
        users = max(1, count // USERS_PER_ROW)
        life = timedelta(days=365)

        def rows() -> object:
            for i in range(count):
                user, version = i % users, i // users
                age = 300 * (USERS_PER_ROW - 1 - version) + rng.uniform(0, 340)
                issued = now - timedelta(days=age)
                revoked = i % 10 == 9
                yield (
                    format(rng.getrandbits(159) | 1 << 158, "x"),
                    f"user{user:06d}",
                    _time(issued),
                    _time(issued + life),
                    "revoked" if revoked else "valid",
                    _time(issued + timedelta(days=1)) if revoked else None,
                    "superseded" if revoked else None,
                    rng.getrandbits(256).to_bytes(32, "big").hex(),
                    issuer,
                    key_type,
                    "issued",
                    _time(issued),
                    der,
                    start + 1 + i,
                )

        conn.execute("BEGIN")
        conn.executemany(
            "INSERT INTO certs (serial, cn, not_before, not_after, status, revoked_at, reason,"
            " fingerprint, issuer_fingerprint, key_type, origin, created_at, cert_der, seq)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            rows(),  # type: ignore[arg-type]
        )
        conn.execute("COMMIT")
    finally:
        conn.close()


def make_store(root: Path, count: int, rdsssl: Sequence[str]) -> Path:
    """A store of ``count`` + 1 certificates under ``root``."""
    root.mkdir(parents=True)
    run([*rdsssl, "ca", "init", "--ca-dir", "ca", "--no-passphrase"], cwd=root)
    run([*rdsssl, "cert", "issue", "--ca-dir", "ca", "--user", "seed", "--out", "seed"], cwd=root)
    fill_inventory(root / "ca", count, now=datetime.now(timezone.utc))
    (root / "out").mkdir(mode=0o700)
    return root / "ca"


def measure(args: Sequence[str], *, cwd: Path, env: dict[str, str]) -> Sample:
    """Run one command, stdout to a file; its wall time and its own peak RSS (wait4)."""
    with tempfile.TemporaryFile() as out:
        start = time.perf_counter()
        proc = subprocess.Popen(
            list(args), cwd=cwd, env=env, stdout=out, stderr=subprocess.PIPE, close_fds=True
        )
        assert proc.stderr is not None
        stderr = proc.stderr.read()  # small: a command's messages
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        proc.stderr.close()
        if proc.returncode not in (0, 1):  # renew --dry-run exits 1 when hooks fail: none here
            message = stderr.decode(errors="replace")[-2000:]
            sys.exit(f"benchmark: {' '.join(args)} failed ({proc.returncode}): {message}")
        size = out.seek(0, os.SEEK_END)
    cpu = usage.ru_utime + usage.ru_stime
    return Sample(seconds, cpu, usage.ru_maxrss * 1024, size)  # ru_maxrss: KiB on Linux


def commands(rdsssl: Sequence[str]) -> dict[str, list[str]]:
    """The commands measured, by name."""
    return {
        "cert list": [*rdsssl, "cert", "list", "--ca-dir", "ca"],
        "cert list --json": [*rdsssl, "--json", "cert", "list", "--ca-dir", "ca"],
        "cert list --status valid": [
            *rdsssl, "cert", "list", "--ca-dir", "ca", "--status", "valid"
        ],
        "ca show": [*rdsssl, "ca", "show", "--ca-dir", "ca"],
        "crl build": [*rdsssl, "crl", "build", "--ca-dir", "ca", "--out", "crl.pem"],
        "cert renew --dry-run": [
            *rdsssl, "cert", "renew", "--ca-dir", "ca", "--dry-run", "--out-root", "out"
        ],
    }  # fmt: skip


TARGETS: dict[str, tuple[float | None, int | None]] = {  # at 100,000: seconds, bytes
    "cert list": (0.5, 60 * MIB),
    "ca show": (0.15, None),
}


def summary(samples: list[Sample]) -> tuple[float, float, int]:
    """Median wall time, median CPU time and highest peak RSS of a command's runs."""
    return (
        median([s.seconds for s in samples]),
        median([s.cpu for s in samples]),
        max(s.max_rss for s in samples),
    )


def cell(seconds: float, cpu: float, rss: int) -> str:
    """One side of a row: wall time (CPU time) / peak RSS."""
    return f"{fmt_seconds(seconds)} ({fmt_seconds(cpu)}) / {rss / MIB:.0f} MiB"


def verdict(name: str, size: int, seconds: float, rss: int) -> tuple[str, bool | None]:
    """The target of a row and whether it is met (only at 100,000 certificates)."""
    target_s, target_rss = TARGETS.get(name, (None, None)) if size == 100_000 else (None, None)
    wanted = [f"<= {fmt_seconds(target_s)}"] if target_s else []
    wanted += [f"<= {target_rss // MIB} MiB"] if target_rss else []
    if not wanted:
        return "", None
    met = (target_s is None or seconds <= target_s) and (target_rss is None or rss <= target_rss)
    return ", ".join(wanted), met


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one run per command")
    parser.add_argument("--repeat", type=int, help="runs per command, median (default 3)")
    parser.add_argument("--sizes", default="10000,100000", help="store sizes, comma-separated")
    parser.add_argument(
        "--baseline",
        type=Path,
        help="also run `python -m rdsssl` from this checkout (e.g. an older commit's tree), "
        "interleaved with this one: the table shows before and after",
    )
    args = parser.parse_args(argv)
    repeat = args.repeat or (1 if args.quick else 3)
    sizes = [int(s) for s in args.sizes.split(",")]
    # Bytecode is cached as in an installed package (the first, untimed run of each command
    # writes it), even where the calling environment turns that off.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    sides = {"after": (rdsssl_command(), env)}
    if args.baseline is not None:
        before_env = {**env, "PYTHONPATH": str(args.baseline.resolve())}
        sides = {"before": ([sys.executable, "-m", "rdsssl"], before_env), **sides}
    print("\n".join(machine_description()))
    for side, (rdsssl, side_env) in sides.items():
        path = side_env.get("PYTHONPATH")
        print(f"- {side}: {' '.join(rdsssl)}" + (f" (PYTHONPATH={path})" if path else ""))
    print(f"- {repeat} runs per command and side, interleaved; median time, highest peak RSS\n")
    results: dict[tuple[str, str, int], list[Sample]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-scale-") as tmp:
        for size in sizes:
            root = Path(tmp) / str(size)
            make_store(root, size, rdsssl_command())  # the store is built by this checkout
            runs = [
                (side, name, command, side_env)
                for name in commands([])
                for side, (rdsssl, side_env) in sides.items()
                for command in [commands(rdsssl)[name]]
            ]
            for _, _, command, side_env in runs:  # warm-up: bytecode and page cache
                measure(command, cwd=root, env=side_env)
            for _ in range(repeat):
                for side, name, command, side_env in runs:
                    sample = measure(command, cwd=root, env=side_env)
                    results.setdefault((side, name, size), []).append(sample)
    rows: list[Row] = []
    for name in commands([]):
        for size in sizes:
            seconds, cpu, rss = summary(results[("after", name, size)])
            target, met = verdict(name, size, seconds, rss)
            now = cell(seconds, cpu, rss)
            before, ratio = "", ""
            if "before" in sides:
                old_seconds, old_cpu, old_rss = summary(results[("before", name, size)])
                before = cell(old_seconds, old_cpu, old_rss)
                ratio = fmt_ratio(old_seconds, seconds)
            rows.append(Row(f"{name} ({size:,} certs)", before, now, ratio, target, met))
    print_table(rows, baseline="before: wall (CPU) / peak RSS", ours="after: wall (CPU) / peak RSS")
    largest = max(sizes)
    sizes_out = ", ".join(
        f"{name} {results[('after', name, largest)][0].stdout_bytes / 1e6:.1f} MB"
        for name in commands([])
    )
    print(f"\nstdout at {largest:,} certificates: {sizes_out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
