"""Benchmark 4: rdsssl.pki (certs, crls) against the openssl CLI of the manual procedure.

Same key type on both sides, same CA (made with `openssl req -x509`, loaded by rdsssl):

- issuing client certificates: per certificate, the manual procedure runs
  `openssl req -new -newkey ... -nodes -keyout K -out CSR -subj /CN=userN` then
  `openssl x509 -req -in CSR -CA ca.crt -CAkey ca.key -CAcreateserial -days 365 -out CRT`.
  Those are timed on a sample and extrapolated per certificate (RSA key generation makes the
  full 1,000 take minutes); rdsssl does all N in-process (`generate_key` + `issue_client_cert`
  + PEM of key and certificate), and again through `CaStore.issue` (+ its sqlite row, fsynced).
- a CRL of 10,000 revocations: `openssl ca -gencrl` over an index.txt of 10,000 `R` lines vs
  `crls.build_crl` over the same serials, dates and reasons (interleaved, median of 5); the
  two CRLs are checked to list the same entries, and their PEM sizes are reported.

Run: `python -m benchmarks.bench_crypto [--quick]`. Timings are printed, never asserted.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

from cryptography import x509

from benchmarks._common import (
    Row,
    fmt_ratio,
    fmt_seconds,
    machine_description,
    median,
    print_table,
    require_tool,
    run,
    time_call,
    time_command,
)
from rdsssl.models import KeyType, RevocationReason
from rdsssl.pki import certs, crls, export, keys, serials
from rdsssl.pki.pem import load_certificates, load_crls, load_private_key

# key type -> (openssl -newkey arguments, the target for issuing: times faster than openssl)
KEY_TYPES: dict[KeyType, tuple[str, float]] = {
    KeyType.EC_P256: ("-newkey ec -pkeyopt ec_paramgen_curve:prime256v1", 20.0),
    KeyType.RSA_2048: ("-newkey rsa:2048", 3.0),
}
# The reasons `openssl ca` can keep in index.txt and rdsssl writes the same way: none (=
# unspecified: both omit the extension), and five codes. (openssl's index has no
# privilegeWithdrawn, and certificateHold needs a hold instruction rdsssl does not write.)
REASONS: list[tuple[str | None, RevocationReason]] = [
    (None, RevocationReason.UNSPECIFIED),
    ("keyCompromise", RevocationReason.KEY_COMPROMISE),
    ("CACompromise", RevocationReason.CA_COMPROMISE),
    ("affiliationChanged", RevocationReason.AFFILIATION_CHANGED),
    ("superseded", RevocationReason.SUPERSEDED),
    ("cessationOfOperation", RevocationReason.CESSATION_OF_OPERATION),
]
CA_CNF = """\
[ ca ]
default_ca = CA_default
[ CA_default ]
dir = .
database = ./index.txt
serial = ./serial
crlnumber = ./crlnumber
certificate = ./ca.crt
private_key = ./ca.key
default_md = sha256
default_crl_days = 180
crl_extensions = crl_ext
[ crl_ext ]
authorityKeyIdentifier = keyid:always
"""


@dataclass(frozen=True)
class Sizes:
    certs: int  # N certificates issued by rdsssl
    sample: int  # certificates issued by the openssl CLI, extrapolated to N
    crl_entries: int
    repeat: int  # CRL builds per side (median)


FULL = Sizes(certs=1000, sample=50, crl_entries=10_000, repeat=5)
QUICK = Sizes(certs=4, sample=1, crl_entries=500, repeat=1)


def _progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _utcnow() -> datetime:
    return datetime.now(timezone.utc).replace(microsecond=0)


def make_openssl_ca(openssl: str, root: Path, key_type: KeyType) -> Path:
    """The manual procedure's CA (`openssl req -new -x509 -days 3650 -nodes`), of `key_type`."""
    ca_dir = root / key_type.value
    ca_dir.mkdir()
    newkey, _ = KEY_TYPES[key_type]
    req = f"req -new -x509 -days 3650 -nodes {newkey} -keyout ca.key -out ca.crt -subj /CN=root-ca1"
    run([openssl, *req.split()], cwd=ca_dir)
    return ca_dir


def load_ca(ca_dir: Path) -> tuple[x509.Certificate, keys.PrivateKey]:
    cert = load_certificates((ca_dir / "ca.crt").read_bytes(), source="ca.crt")[0]
    key = load_private_key((ca_dir / "ca.key").read_bytes(), source="ca.key", passphrase=None)
    return cert, key


# --- issuing ------------------------------------------------------------------------------------


def openssl_seconds_per_cert(openssl: str, ca_dir: Path, key_type: KeyType, sample: int) -> float:
    """Mean wall time of the manual procedure's two commands per certificate (process starts
    included: that is what a script running them pays)."""
    out = ca_dir / "openssl-certs"
    out.mkdir()
    newkey, _ = KEY_TYPES[key_type]
    total = 0.0
    for i in range(sample):
        user = f"user{i}"
        req = f"req -new {newkey} -nodes -keyout {user}.key -out {user}.csr -subj /CN={user}"
        total += time_command([openssl, *req.split()], cwd=out)
        sign = (
            f"x509 -req -in {user}.csr -CA ../ca.crt -CAkey ../ca.key -CAcreateserial -days 365 "
            f"-out {user}.crt"
        )
        total += time_command([openssl, *sign.split()], cwd=out)
    return total / sample


def rdsssl_issue_seconds(ca_dir: Path, key_type: KeyType, n: int) -> float:
    """All N in-process: new key, signed certificate, both as PEM (what gets written)."""
    ca_cert, ca_key = load_ca(ca_dir)
    now = _utcnow()

    def issue_all() -> None:
        for i in range(n):
            key = keys.generate_key(key_type)
            issued = certs.issue_client_cert(
                ca_cert, ca_key, key.public_key(), user=f"user{i}", now=now
            )
            export.key_pem(key)
            export.cert_pem(issued.cert)

    return time_call(issue_all)


def store_issue_seconds(ca_dir: Path, key_type: KeyType, n: int) -> float | str:
    """All N through `CaStore.issue` (key, certificate, inventory row in an fsynced sqlite
    transaction). A string explains why the store could not be measured."""
    try:
        from rdsssl.store.castore import CaStore

        store = CaStore.import_ca(
            ca_dir / "store",
            cert_pem=(ca_dir / "ca.crt").read_bytes(),
            key_pem=(ca_dir / "ca.key").read_bytes(),
            key_passphrase=None,
            passphrase=None,
            index_txt=None,
            crlnumber=None,
            now=_utcnow(),
        )
        try:
            store.unlock(None)
            now = _utcnow()
            return time_call(
                lambda: [
                    store.issue(user=f"user{i}", key_type=key_type, days=365, now=now)
                    for i in range(n)
                ]
            )
        finally:
            store.close()
    except Exception as exc:  # the store is another helper's work in progress: report, go on
        return f"n/a ({type(exc).__name__}: {exc})"


def bench_issue(openssl: str, ca_dir: Path, key_type: KeyType, sizes: Sizes) -> list[Row]:
    _, target = KEY_TYPES[key_type]
    n = sizes.certs
    _progress(f"{key_type.value}: openssl CLI, {sizes.sample} certificates ...")
    per_cert = openssl_seconds_per_cert(openssl, ca_dir, key_type, sizes.sample)
    baseline = per_cert * n
    baseline_text = f"{fmt_seconds(baseline)} (extrapolated: {fmt_seconds(per_cert)}/cert x {n})"
    _progress(f"{key_type.value}: rdsssl in-process, {n} certificates ...")
    ours = rdsssl_issue_seconds(ca_dir, key_type, n)
    rows = [
        Row(
            f"issue {n:,} certs, {key_type.value} (crypto)",
            baseline_text,
            f"{fmt_seconds(ours)} ({fmt_seconds(ours / n)}/cert)",
            fmt_ratio(baseline, ours),
            f">= {target:g}x",
            baseline / ours >= target,
        )
    ]
    _progress(f"{key_type.value}: rdsssl CaStore.issue, {n} certificates ...")
    stored = store_issue_seconds(ca_dir, key_type, n)
    operation = f"issue {n:,} certs, {key_type.value} (CaStore.issue)"
    if isinstance(stored, str):
        rows.append(Row(operation, baseline_text, stored, "", f">= {target:g}x", None))
    else:
        rows.append(
            Row(
                operation,
                baseline_text,
                f"{fmt_seconds(stored)} ({fmt_seconds(stored / n)}/cert)",
                fmt_ratio(baseline, stored),
                f">= {target:g}x",
                baseline / stored >= target,
            )
        )
    return rows


# --- the CRL ------------------------------------------------------------------------------------


def _asn1(when: datetime) -> str:
    return f"{when:%y%m%d%H%M%S}Z"


def make_revocations(
    count: int, now: datetime, *, sequential: bool = False
) -> tuple[list[crls.Revocation], bytes]:
    """`count` revocations (distinct times, certificates not yet expired) and the same as an
    `openssl ca` index.txt. Serials are random 159-bit ones with mixed reasons (what rdsssl and
    `openssl x509 -CAcreateserial` make), or with `sequential` short ones without reasons (what
    `openssl ca` numbers from its serial file: its cheapest case)."""
    revocations = []
    lines = []
    not_after = now + timedelta(days=200)
    for i in range(count):
        serial = 0x1000 + i if sequential else serials.new_serial()
        revoked_at = now - timedelta(days=1, seconds=7 * i)
        word, reason = REASONS[0 if sequential else i % len(REASONS)]
        revocations.append(crls.Revocation(serial, revoked_at, reason, not_after))
        hex_serial = format(serial, "X")
        hex_serial = "0" * (len(hex_serial) % 2) + hex_serial  # openssl wants whole bytes
        when = _asn1(revoked_at) + (f",{word}" if word else "")
        lines.append(f"R\t{_asn1(not_after)}\t{when}\t{hex_serial}\tunknown\t/CN=user{i}\n")
    return revocations, "".join(lines).encode()


def _list(seconds: list[float]) -> str:
    return ", ".join(fmt_seconds(t) for t in seconds)


def _entries(crl: x509.CertificateRevocationList) -> set[tuple[int, datetime, str | None]]:
    found = set()
    for entry in crl:
        try:
            reason: str | None = entry.extensions.get_extension_for_class(
                x509.CRLReason
            ).value.reason.name
        except x509.ExtensionNotFound:
            reason = None
        found.add((entry.serial_number, entry.revocation_date_utc, reason))
    return found


def store_crl_seconds(
    ca_dir: Path, index_txt: bytes, repeat: int, now: datetime
) -> tuple[float, int] | str:
    """`CaStore.build_crl` end to end (sqlite read, sign, PEM, record the CRL, write the file)
    over a store that imported the same index.txt; (median seconds, entries) or why not."""
    try:
        from rdsssl.store.castore import CaStore

        store = CaStore.import_ca(
            ca_dir / "crl-store",
            cert_pem=(ca_dir / "ca.crt").read_bytes(),
            key_pem=(ca_dir / "ca.key").read_bytes(),
            key_passphrase=None,
            passphrase=None,
            index_txt=index_txt,
            crlnumber=b"1000\n",
            now=now,
        )
        try:
            store.unlock(None)
            out = ca_dir / "store-crl.pem"
            times = [
                time_call(lambda: store.build_crl(now=now, days=180, out=out))
                for _ in range(repeat)
            ]
            entries = len(load_crls(out.read_bytes(), source=str(out))[0])
            return median(times), entries
        finally:
            store.close()
    except Exception as exc:  # the store is another helper's work in progress: report, go on
        return f"n/a ({type(exc).__name__}: {exc})"


def write_openssl_ca_db(ca_dir: Path, index_txt: bytes) -> None:
    """What `openssl ca -gencrl` reads: its config, index.txt (+ .attr), serial and crlnumber."""
    (ca_dir / "index.txt").write_bytes(index_txt)
    (ca_dir / "index.txt.attr").write_text("unique_subject = no\n")
    (ca_dir / "serial").write_text("1000\n")
    (ca_dir / "crlnumber").write_text("1000\n")
    (ca_dir / "ca.cnf").write_text(CA_CNF)


def compare_crl(
    openssl: str, ca_dir: Path, key_type: KeyType, sizes: Sizes, notes: list[str], *, shape: str
) -> list[Row]:
    """`openssl ca -gencrl` vs `crls.build_crl` (and + PEM) over one index, interleaved."""
    count = sizes.crl_entries
    now = _utcnow()
    revocations, index_txt = make_revocations(count, now, sequential=shape == "sequential")
    write_openssl_ca_db(ca_dir, index_txt)
    ca_cert, ca_key = load_ca(ca_dir)
    _progress(f"{key_type.value}: CRL of {count:,} {shape} entries, {sizes.repeat} runs each ...")
    gencrl = [openssl, "ca", "-gencrl", "-config", "ca.cnf", "-out", "crl.pem"]
    openssl_times, build_times, pem_times = [], [], []
    for _ in range(sizes.repeat):  # interleaved: load on the machine hits both sides alike
        openssl_times.append(time_command(gencrl, cwd=ca_dir))
        start = time.perf_counter()
        crl = crls.build_crl(ca_cert, ca_key, revocations, number=4096, now=now)
        build_times.append(time.perf_counter() - start)
        pem = export.crl_pem(crl)
        pem_times.append(time.perf_counter() - start)
    theirs = load_crls((ca_dir / "crl.pem").read_bytes(), source="openssl crl.pem")[0]
    same = _entries(theirs) == _entries(crl)
    notes.append(
        f"{key_type.value} CRL, {shape}: {len(crl):,} entries, same serials/dates/reasons as "
        f"openssl's: {'yes' if same else 'NO'}; PEM {len(pem) / 1e6:.2f} MB (openssl's "
        f"{(ca_dir / 'crl.pem').stat().st_size / 1e6:.2f} MB); openssl runs "
        f"{_list(openssl_times)}; build_crl runs {_list(build_times)}"
    )
    baseline = median(openssl_times)
    build, with_pem = median(build_times), median(pem_times)
    what = f"CRL {count:,} {shape} entries, {key_type.value}"
    return [
        Row(
            f"{what} (build_crl)",
            fmt_seconds(baseline),
            fmt_seconds(build),
            fmt_ratio(baseline, build),
            ">= 1x",
            baseline >= build,
        ),
        Row(
            f"{what} (build_crl + PEM)",
            fmt_seconds(baseline),
            fmt_seconds(with_pem),
            fmt_ratio(baseline, with_pem),
        ),
    ]


def bench_crl(
    openssl: str, ca_dir: Path, key_type: KeyType, sizes: Sizes, notes: list[str]
) -> list[Row]:
    """Both index shapes, then the store end to end over the realistic one."""
    rows = compare_crl(openssl, ca_dir, key_type, sizes, notes, shape="sequential")
    rows += compare_crl(openssl, ca_dir, key_type, sizes, notes, shape="random")
    # the index.txt of the last comparison, imported into a store: same entries, same CA
    openssl_seconds = median(
        [
            time_command(
                [openssl, "ca", "-gencrl", "-config", "ca.cnf", "-out", "crl.pem"], cwd=ca_dir
            )
            for _ in range(sizes.repeat)
        ]
    )
    stored = store_crl_seconds(ca_dir, (ca_dir / "index.txt").read_bytes(), sizes.repeat, _utcnow())
    operation = f"CRL {sizes.crl_entries:,} random entries, {key_type.value} (CaStore.build_crl)"
    if isinstance(stored, str):
        rows.append(Row(operation, fmt_seconds(openssl_seconds), stored, ""))
    else:
        seconds, entries = stored
        ratio = fmt_ratio(openssl_seconds, seconds)
        rows.append(Row(operation, fmt_seconds(openssl_seconds), fmt_seconds(seconds), ratio))
        notes.append(f"{key_type.value} CaStore.build_crl (sqlite to file): {entries:,} entries")
    return rows


# --- main ---------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.bench_crypto", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke run")
    parser.add_argument("--certs", type=int, help="certificates issued by rdsssl (1000)")
    parser.add_argument("--sample", type=int, help="certificates issued by openssl (50)")
    parser.add_argument("--crl-entries", type=int, help="revocations in the CRL (10000)")
    parser.add_argument("--repeat", type=int, help="CRL builds per side, median (5)")
    parser.add_argument("--only", choices=["issue", "crl"], help="run one half only")
    args = parser.parse_args(argv)
    base = QUICK if args.quick else FULL
    sizes = Sizes(
        certs=args.certs or base.certs,
        sample=args.sample or base.sample,
        crl_entries=args.crl_entries or base.crl_entries,
        repeat=args.repeat or base.repeat,
    )
    openssl = require_tool("openssl")
    print("\n".join(machine_description()))
    print(f"- sizes: {sizes}\n")
    rows: list[Row] = []
    notes: list[str] = []
    with tempfile.TemporaryDirectory(prefix="rdsssl-bench-") as tmp:
        for key_type in KEY_TYPES:
            ca_dir = make_openssl_ca(openssl, Path(tmp), key_type)
            if args.only in (None, "issue"):
                rows += bench_issue(openssl, ca_dir, key_type, sizes)
            if args.only in (None, "crl"):
                rows += bench_crl(openssl, ca_dir, key_type, sizes, notes)
    print_table(rows)
    print()
    for note in notes:
        print(f"- {note}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
