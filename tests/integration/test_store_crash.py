"""Store safety with real processes: SIGKILL at random moments, and concurrent issuers.

(a) A worker issues, writes client files, revokes and builds CRLs in a loop and is killed with
SIGKILL at random moments; after every kill the store opens, sqlite's integrity check passes,
every row matches its certificate, the CRL number never went backwards, every client
certificate on disk is in the inventory (so it can be revoked), and issuing continues.
(b) Two workers issuing at once never produce the same serial and never lose a row.
(c) A worker renewing the CA (`ca renew`) and issuing in a loop, killed at random moments:
the store opens with the old or the new CA current, its history is the same CA throughout and
holds every renewal that returned, and renewing and issuing continue.
"""

from __future__ import annotations

import random
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest
from cryptography import x509

from rdsssl.models import KeyType
from rdsssl.pki import crypto
from rdsssl.store.castore import CaStore

WORKER = """
import sys, pathlib, datetime
from rdsssl.store.castore import CaStore
from rdsssl.store.files import write_client_files
from rdsssl.models import KeyType
path, out = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
count, busy = int(sys.argv[3]), sys.argv[4] == "busy"
store = CaStore.open(path, wait_lock=120)
store.unlock(None)
print("ready", flush=True)
i = 0
while count == 0 or i < count:
    now = datetime.datetime.now(datetime.timezone.utc)
    user = f"u{i % 7}"
    issued = store.issue(user=user, key_type=KeyType.EC_P256, days=30, now=now)
    print(format(issued.record.serial, "x"), flush=True)
    if busy:
        write_client_files(out / user, issued, store.ca_cert, overwrite=True)
        if i % 3 == 2:
            store.revoke(serial=issued.record.serial, now=now)
        if i % 5 == 4:
            store.build_crl(now=now, days=30, out=out / "crl.pem")
    i += 1
"""


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


@pytest.fixture
def store_path(tmp_path: Path) -> Path:
    path = tmp_path / "ca"
    CaStore.init(
        path, cn="root-ca1", key_type=KeyType.EC_P256, days=365, passphrase=None, now=utcnow()
    ).close()
    return path


def start_worker(store_path: Path, out: Path, count: int, busy: bool) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            WORKER,
            str(store_path),
            str(out),
            str(count),
            "busy" if busy else "plain",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    first = proc.stdout.readline()
    assert first == "ready\n", proc.stderr.read() if proc.stderr else first
    return proc


def check_consistent(store_path: Path, out: Path, last_crl_number: int) -> int:
    """Assert everything the module docstring promises; return the next CRL number."""
    with CaStore.open(store_path) as store:
        assert store.problems() == []
        known = {r.serial for r in store.certificates()}
        next_number = store.next_crl_number()
        assert next_number >= last_crl_number
        for crt in out.glob("u*/client.crt"):
            cert = x509.load_pem_x509_certificate(crt.read_bytes())  # whole, never torn
            assert cert.serial_number in known
        crl_file = out / "crl.pem"
        if crl_file.exists():
            (crl,) = crypto.load_crls(crl_file.read_bytes(), source=str(crl_file))
            number = crypto.inspect_crl(crl).number
            assert number is not None and number < next_number
            assert set(crypto.inspect_crl(crl).revoked_serials) <= known
        before = len(known)
        store.unlock(None)
        store.issue(user="after-crash", key_type=KeyType.EC_P256, days=30, now=utcnow())
        assert len(store.certificates()) == before + 1
    return next_number


def test_sigkill_at_random_moments_leaves_a_consistent_store(
    store_path: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    rng = random.Random(20250115)
    crl_number = 1
    issued_by_workers = 0
    for _ in range(6):
        proc = start_worker(store_path, out, count=0, busy=True)
        time.sleep(rng.uniform(0.05, 0.6))
        proc.kill()
        stdout, stderr = proc.communicate()
        assert proc.returncode == -9, stderr  # killed by us, not dead of an error
        issued_by_workers += len(stdout.split())
        crl_number = check_consistent(store_path, out, crl_number)
    with CaStore.open(store_path) as store:
        rows = store.certificates()
    # every serial a worker reported was committed first (it prints after the INSERT)
    assert len([r for r in rows if r.cn != "after-crash"]) >= issued_by_workers
    assert len({r.serial for r in rows}) == len(rows)


def test_two_concurrent_issuers_never_collide_or_lose_a_row(
    store_path: Path, tmp_path: Path
) -> None:
    workers = [start_worker(store_path, tmp_path, count=30, busy=False) for _ in range(2)]
    reported: list[str] = []
    for proc in workers:
        stdout, stderr = proc.communicate(timeout=120)
        assert proc.returncode == 0, stderr
        reported += stdout.split()
    assert len(reported) == 60 and len(set(reported)) == 60
    with CaStore.open(store_path) as store:
        rows = store.certificates()
        assert store.problems() == []
    assert len(rows) == 60
    assert {format(r.serial, "x") for r in rows} == set(reported)


RENEW_WORKER = """
import sys, pathlib, datetime
from rdsssl.store.castore import CaStore
from rdsssl.models import KeyType
store = CaStore.open(pathlib.Path(sys.argv[1]), wait_lock=120)
store.unlock(None)
print("ready", flush=True)
i = 0
while True:
    now = datetime.datetime.now(datetime.timezone.utc)
    done = store.renew_ca(days=3650 + i % 50, now=now, force=True)
    print(format(done.current.serial, "x"), flush=True)
    store.issue(user=f"u{i % 3}", key_type=KeyType.EC_P256, days=30, now=now)
    i += 1
"""


def test_sigkill_during_ca_renewals_leaves_the_old_or_the_new_ca_current(
    store_path: Path,
) -> None:
    rng = random.Random(20261204)
    with CaStore.open(store_path) as store:
        original = store.ca_cert
    identity = crypto.ca_identity(original)
    known = [f"{original.serial_number:x}"]  # the history as last seen
    for _ in range(6):
        proc = subprocess.Popen(
            [sys.executable, "-c", RENEW_WORKER, str(store_path)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
        time.sleep(rng.uniform(0.05, 0.5))
        proc.kill()
        stdout, stderr = proc.communicate()
        assert proc.returncode == -9, stderr
        returned = stdout.split()  # renewals that committed before the kill
        with CaStore.open(store_path) as store:  # opens: ca.crt whole and accepted
            assert store.problems() == []
            history = store.ca_history()
            serials = [v.info.serial_hex for v in history]
            current = store.ca_cert
            assert [v.current for v in history].count(True) == 1
            assert history[-1].current and history[-1].info.serial == current.serial_number
            assert {crypto.ca_identity(c) for c in _history_certs(store)} == {identity}
            assert serials[: len(known)] == known  # nothing lost, nothing reordered
            assert serials[len(known) : len(known) + len(returned)] == returned
            assert len(serials) - len(known) - len(returned) <= 1  # the one the kill cut short
            for row in store.certificates():
                assert row.cert_der is not None
                x509.load_der_x509_certificate(row.cert_der).verify_directly_issued_by(current)
            known = serials
    assert len(known) > 3  # the kills did land between renewals, not all before the first
    with CaStore.open(store_path) as store:
        store.unlock(None)
        done = store.renew_ca(days=4000, now=utcnow())
        assert done.history[-1].current and all(v.recorded_at for v in done.history)
        store.issue(user="after-crash", key_type=KeyType.EC_P256, days=30, now=utcnow())
        assert store.problems() == []


def _history_certs(store: CaStore) -> list[x509.Certificate]:
    return [store.ca_cert, *(c for c, _ in store._inv.ca_certs())]


BATCH_WORKER = """
import sys, pathlib, datetime
from rdsssl.models import KeyType
from rdsssl.ops.client_issue import BatchOptions, ClientSpec, issue_many
path, out, size = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2]), int(sys.argv[3])
print("ready", flush=True)
batch = 0
while True:
    now = datetime.datetime.now(datetime.timezone.utc)
    clients = tuple(ClientSpec(f"b{batch}u{i}", 30, KeyType.EC_P256) for i in range(size))
    options = BatchOptions(ca_dir=path, clients=clients, now=now, out_root=out)
    issue_many(options, unlock=lambda store: store.unlock(None), warn=print)
    print(batch, flush=True)
    batch += 1
"""


def test_sigkill_during_batches_leaves_each_batch_recorded_whole_or_not_at_all(
    store_path: Path, tmp_path: Path
) -> None:
    """`cert issue --users-file` as a library call, killed at random moments: every batch is in
    the inventory with all its users or none, every client file on disk is whole and recorded,
    and each batch that returned has every user's files."""
    size = 10
    out = tmp_path / "out"
    rng = random.Random(20261205)
    completed = 0
    for round_ in range(5):
        round_out = out / f"round{round_}"
        proc = subprocess.Popen(
            [sys.executable, "-c", BATCH_WORKER, str(store_path), str(round_out), str(size)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
        time.sleep(rng.uniform(0.3, 2.0))
        proc.kill()
        stdout, stderr = proc.communicate()
        assert proc.returncode == -9, stderr
        returned = [int(b) for b in stdout.split()]
        completed += len(returned)
        with CaStore.open(store_path) as store:
            assert store.problems() == []
            rows = store.certificates()
        per_batch: dict[str, int] = {}
        for row in rows:
            prefix = row.cn.split("u")[0]
            per_batch[prefix] = per_batch.get(prefix, 0) + 1
        # batches restart from b0 each round: a count is a whole number of batches
        assert all(count % size == 0 for count in per_batch.values()), per_batch
        known = {r.serial for r in rows}
        for crt in out.glob("round*/*/client.crt"):
            cert = x509.load_pem_x509_certificate(crt.read_bytes())  # whole, never torn
            assert cert.serial_number in known
        for batch in returned:
            for i in range(size):
                assert (round_out / f"b{batch}u{i}" / "client.key").is_file()
    assert completed >= 1  # the kills did not all land before the first batch finished
    assert len(rows) >= completed * size
