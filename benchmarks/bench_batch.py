"""Benchmark 6: issuing certificates for many users at once, against the openssl CLI.

A runbook issuing N client certificates either loops over the manual procedure's two openssl
commands per user, or calls rdsssl. Both sides produce, per user, a private key and a
certificate signed by the same CA (made with `openssl req -x509`, imported with `rdsssl ca
import`):

- openssl: one `sh` script of N pairs,
  `openssl req -new -newkey <type> -nodes -keyout userN.key -out userN.csr -subj /CN=userN` +
  `openssl x509 -req -in userN.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 365 -out
  userN.crt` (the CA key is unencrypted, as in the manual procedure);
- rdsssl batch: ONE process, `rdsssl cert issue --users-file users.txt --out-root DIR`: the
  interpreter starts once, the CA key (encrypted, PBKDF2 at `crypto.KDF_ROUNDS`) is unlocked
  once, all N rows go into one fsynced sqlite transaction, and it writes root.crt, client.crt
  and client.key (0600, each atomic and fsynced) for every user: more than openssl writes;
- for reference, the status quo the batch form replaces: N `rdsssl cert issue --user userN`
  processes (a sample, extrapolated to N).

The sides are interleaved round by round (median of the rounds) so that load on the shared
machine hits them alike; every round's certificates are checked with `openssl verify` (not
timed). Target: the batch >= 5x faster than openssl for EC P-256; RSA-2048 is measured (its
key generation dominates on both sides).

Run: `python -m benchmarks.bench_batch [--quick] [--users N] [--rounds N]`. Timings are
printed, never asserted.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from benchmarks._common import (
    Row,
    fmt_ratio,
    fmt_seconds,
    machine_description,
    median,
    print_table,
    require_tool,
    run,
    time_command,
)
from benchmarks.bench_crypto import KEY_TYPES, make_openssl_ca
from benchmarks.bench_restarts import rdsssl_command
from rdsssl.models import KeyType

TARGETS: dict[KeyType, float | None] = {KeyType.EC_P256: 5.0, KeyType.RSA_2048: None}
PASSPHRASE = "benchmark passphrase"


@dataclass(frozen=True)
class Sizes:
    users: int  # certificates per round and side
    rounds: int  # interleaved rounds (median)
    single_sample: int  # `cert issue --user` processes per round, extrapolated to `users`


FULL = Sizes(users=100, rounds=3, single_sample=10)
QUICK = Sizes(users=5, rounds=1, single_sample=2)


def _progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def openssl_script(openssl: str, key_type: KeyType, users: list[str]) -> str:
    """The runbook's loop, unrolled: two openssl commands per user."""
    newkey, _ = KEY_TYPES[key_type]
    lines = ["set -e"]
    for user in users:
        lines.append(
            f"{openssl} req -new {newkey} -nodes -keyout {user}.key -out {user}.csr "
            f"-subj /CN={user} 2>/dev/null"
        )
        lines.append(
            f"{openssl} x509 -req -in {user}.csr -CA ../../ca.crt -CAkey ../../ca.key "
            f"-CAcreateserial -days 365 -out {user}.crt 2>/dev/null"
        )
    return "\n".join(lines) + "\n"


def verify(openssl: str, ca_cert: Path, certs: list[Path], cwd: Path) -> None:
    """Every certificate chains to the CA (exits the benchmark otherwise)."""
    run([openssl, "verify", "-CAfile", ca_cert, *certs], cwd=cwd)


@dataclass
class Samples:
    openssl: list[float]
    batch: list[float]
    single_per_user: list[float]


def bench_round(
    openssl: str, ca_dir: Path, store: Path, key_type: KeyType, sizes: Sizes, r: int
) -> tuple[float, float, float]:
    """One interleaved round: (openssl seconds, batch seconds, single seconds per user)."""
    root = ca_dir / f"round{r}"
    users = [f"r{r}user{i}" for i in range(sizes.users)]
    (root / "openssl").mkdir(parents=True)
    script = root / "openssl" / "issue.sh"
    script.write_text(openssl_script(openssl, key_type, users))
    _progress(f"{key_type.value} round {r}: openssl, {len(users)} users ...")
    openssl_s = time_command(["sh", script.name], cwd=root / "openssl")
    verify(openssl, ca_dir / "ca.crt", [Path(f"{u}.crt") for u in users], root / "openssl")

    users_file = root / "users.txt"
    users_file.write_text("".join(f"{u}\n" for u in users))
    batch_args = [
        *rdsssl_command(),
        "-q",
        "cert",
        "issue",
        "--ca-dir",
        store,
        "--users-file",
        users_file,
        "--out-root",
        root / "rdsssl",
        "--key-type",
        key_type.value,
    ]
    _progress(f"{key_type.value} round {r}: rdsssl batch, {len(users)} users ...")
    batch_s = time_command(batch_args, cwd=root)
    verify(
        openssl,
        ca_dir / "ca.crt",
        [root / "rdsssl" / u / "client.crt" for u in users],
        root,
    )
    if any(not (root / "rdsssl" / u / "client.key").is_file() for u in users):
        sys.exit("benchmark: the batch did not write every client.key")

    _progress(f"{key_type.value} round {r}: rdsssl, {sizes.single_sample} single processes ...")
    single_total = 0.0
    for i in range(sizes.single_sample):
        user = f"r{r}single{i}"
        single_args: list[str | Path] = [*rdsssl_command(), "-q", "cert", "issue"]
        single_args += ["--ca-dir", store, "--user", user, "--out", root / "single" / user]
        single_total += time_command([*single_args, "--key-type", key_type.value], cwd=root)
    return openssl_s, batch_s, single_total / sizes.single_sample


def bench_key_type(openssl: str, tmp: Path, key_type: KeyType, sizes: Sizes) -> list[Row]:
    ca_dir = make_openssl_ca(openssl, tmp, key_type)
    store = ca_dir / "store"
    cert, key = ca_dir / "ca.crt", ca_dir / "ca.key"
    run(
        [*rdsssl_command(), "-q", "ca", "import", "--ca-dir", store, "--cert", cert, "--key", key],
        cwd=ca_dir,
    )
    samples = Samples([], [], [])
    for r in range(sizes.rounds):
        openssl_s, batch_s, single_s = bench_round(openssl, ca_dir, store, key_type, sizes, r)
        samples.openssl.append(openssl_s)
        samples.batch.append(batch_s)
        samples.single_per_user.append(single_s)
    n = sizes.users
    base, ours = median(samples.openssl), median(samples.batch)
    single = median(samples.single_per_user) * n
    target = TARGETS[key_type]
    spread = ", ".join(f"{b / o:.3g}x" for b, o in zip(samples.openssl, samples.batch, strict=True))
    return [
        Row(
            f"{n} users, key + cert each, {key_type.value}: one `cert issue --users-file`",
            f"{fmt_seconds(base)} ({fmt_seconds(base / n)}/user)",
            f"{fmt_seconds(ours)} ({fmt_seconds(ours / n)}/user)",
            f"{fmt_ratio(base, ours)} (rounds: {spread})",
            "" if target is None else f">= {target:g}x",
            None if target is None else base / ours >= target,
        ),
        Row(
            f"{n} users, {key_type.value}: {n} x `cert issue --user` (before; extrapolated)",
            f"{fmt_seconds(base)}",
            f"{fmt_seconds(single)} ({fmt_seconds(single / n)}/user)",
            fmt_ratio(base, single),
        ),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.bench_batch", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke run")
    parser.add_argument("--users", type=int, help="users per round and side (100)")
    parser.add_argument("--rounds", type=int, help="interleaved rounds, median (3)")
    parser.add_argument("--single-sample", type=int, help="single processes per round (10)")
    parser.add_argument(
        "--key-type",
        choices=[k.value for k in TARGETS],
        action="append",
        help="only these key types (default: all)",
    )
    args = parser.parse_args(argv)
    base = QUICK if args.quick else FULL
    sizes = Sizes(
        users=args.users or base.users,
        rounds=args.rounds or base.rounds,
        single_sample=args.single_sample or base.single_sample,
    )
    openssl = require_tool("openssl")
    os.environ["RDSSSL_CA_PASSPHRASE"] = PASSPHRASE  # inherited by every rdsssl process
    print("\n".join(machine_description()))
    print(f"- sizes: {sizes}\n")
    rows: list[Row] = []
    chosen = [KeyType(k) for k in args.key_type] if args.key_type else list(TARGETS)
    with tempfile.TemporaryDirectory(prefix="rdsssl-bench-batch-") as tmp:
        for key_type in chosen:
            rows += bench_key_type(openssl, Path(tmp), key_type, sizes)
    print_table(rows, baseline="openssl (2 commands per user)", ours="rdsssl")
    return 0


if __name__ == "__main__":
    sys.exit(main())
