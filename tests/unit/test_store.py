"""The CA store library: atomic writes, modes, the lock, the inventory, imports, renewal plans."""

from __future__ import annotations

import fcntl
import os
import sqlite3
import stat
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import NameOID

from rdsssl.errors import CryptoError, InputError, LockHeld, NotFoundError, StoreError
from rdsssl.models import CertStatus, KeyType, RevocationReason
from rdsssl.ops.audit import AuditLog
from rdsssl.ops.cert_renewal import renew_due
from rdsssl.ops.renewal_plan import plan_renewal
from rdsssl.pki import crypto
from rdsssl.store.castore import CaStore
from rdsssl.store.db import Inventory
from rdsssl.store.files import write_client_files
from rdsssl.store.fsutil import StagedFile, atomic_write, make_private_dirs
from rdsssl.store.issuing import IssueRequest
from rdsssl.store.lock import FileLock
from rdsssl.store.openssl_import import parse_crlnumber, parse_index_txt
from rdsssl.store.records import CertRecord
from rdsssl.store.revocation import Selection

NOW = datetime(2025, 1, 15, 12, 0, 0, tzinfo=timezone.utc)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[CaStore]:
    s = CaStore.init(
        tmp_path / "ca",
        cn="root-ca1",
        key_type=KeyType.EC_P256,
        days=3650,
        passphrase=None,
        now=NOW,
    )
    s.unlock(None)
    yield s
    s.close()


# --- fsutil -----------------------------------------------------------------------------------


def test_atomic_write_creates_with_the_final_mode_even_with_umask_0(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        atomic_write(tmp_path / "secret", b"key", mode=0o600)
        make_private_dirs(tmp_path / "private")
    finally:
        os.umask(old)
    assert (tmp_path / "secret").read_bytes() == b"key"
    assert mode(tmp_path / "secret") == 0o600
    assert mode(tmp_path / "private") == 0o700
    assert sorted(p.name for p in tmp_path.iterdir()) == ["private", "secret"]  # no temp left


def test_atomic_write_replaces_and_narrows_an_existing_file(tmp_path: Path) -> None:
    target = tmp_path / "client.key"
    target.write_bytes(b"old")
    target.chmod(0o644)
    atomic_write(target, b"new", mode=0o600)
    assert target.read_bytes() == b"new" and mode(target) == 0o600


def test_atomic_write_without_overwrite_keeps_the_existing_file(tmp_path: Path) -> None:
    target = tmp_path / "client.crt"
    target.write_bytes(b"mine")
    with pytest.raises(FileExistsError):
        atomic_write(target, b"theirs", overwrite=False)
    assert target.read_bytes() == b"mine"
    assert [p.name for p in tmp_path.iterdir()] == ["client.crt"]


def test_atomic_write_failure_leaves_the_old_file_and_no_temp(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "crl.pem"
    target.write_bytes(b"old crl")

    def failing_fsync(fd: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "fsync", failing_fsync)
    with pytest.raises(OSError):
        atomic_write(target, b"new crl")
    assert target.read_bytes() == b"old crl"
    assert [p.name for p in tmp_path.iterdir()] == ["crl.pem"]


@pytest.mark.parametrize("umask", [0o000, 0o022, 0o077, 0o277])
def test_make_private_dirs_makes_every_missing_level_0700_whatever_the_umask(
    tmp_path: Path, umask: int
) -> None:
    existing = tmp_path / "shared"
    existing.mkdir()
    existing.chmod(0o755)
    target = existing / "a" / "b" / "c"
    old = os.umask(umask)
    try:
        assert make_private_dirs(target) is True
        assert make_private_dirs(target) is False  # already there: nothing to do
    finally:
        os.umask(old)
    assert [mode(p) for p in (existing / "a", existing / "a" / "b", target)] == [0o700] * 3
    assert mode(existing) == 0o755  # a directory rdsssl did not create keeps its mode


def test_audit_log_directories_are_private(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "state" / "rdsssl" / "audit.jsonl")
    old = os.umask(0o022)
    try:
        log.record(instance="pgm-x", action="test", outcome="ok")
    finally:
        os.umask(old)
    assert mode(tmp_path / "state") == 0o700 and mode(tmp_path / "state" / "rdsssl") == 0o700
    assert mode(tmp_path / "state" / "rdsssl" / "audit.jsonl") == 0o600


def test_a_new_store_gets_private_parents(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        CaStore.init(
            tmp_path / "srv" / "ca", cn="c", key_type=KeyType.EC_P256, days=10,
            passphrase=None, now=NOW,
        ).close()  # fmt: skip
    finally:
        os.umask(old)
    assert mode(tmp_path / "srv") == 0o700 and mode(tmp_path / "srv" / "ca") == 0o700


# --- the lock ---------------------------------------------------------------------------------


def test_lock_contention_names_the_holder(tmp_path: Path) -> None:
    path = tmp_path / ".lock"
    holder = FileLock(path, command="rdsssl cert renew --ca-dir /srv/ca")
    with holder, pytest.raises(LockHeld) as info:
        FileLock(path, command="second", label="CA store X").acquire()
    message = str(info.value)
    assert message.startswith("CA store X is locked by pid ")
    assert f"pid {os.getpid()} on " in message
    assert "(rdsssl cert renew --ca-dir /srv/ca)" in message
    assert "--wait-lock" in message
    assert info.value.exit_code == 7
    assert path.read_bytes() == b""  # released: the record is cleared


def test_lock_held_by_another_process(tmp_path: Path) -> None:
    path = tmp_path / ".lock"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, pathlib; from rdsssl.store.lock import FileLock\n"
            f"l = FileLock(pathlib.Path({str(path)!r}), command='other-process')\n"
            "l.acquire(); print('held', flush=True); sys.stdin.read()",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        with pytest.raises(LockHeld, match=f"pid {holder.pid} .*other-process"):
            FileLock(path, command="me").acquire()
    finally:
        holder.communicate("")  # EOF: it exits, and the kernel drops its lock
    with FileLock(path, command="me"):
        pass


def test_lock_is_reentrant_for_one_owner(tmp_path: Path) -> None:
    lock = FileLock(tmp_path / ".lock", command="x")
    with lock, lock:
        assert lock.held
    assert not lock.held


def test_wait_lock_acquires_once_released(tmp_path: Path) -> None:
    path = tmp_path / ".lock"
    first = FileLock(path, command="first")
    first.acquire()
    timer = threading.Timer(0.2, first.release)
    timer.start()
    second = FileLock(path, command="second", wait=30)
    try:
        second.acquire()
        assert second.held
    finally:
        timer.join()
        second.release()


def test_a_symlink_at_the_lock_path_is_refused_and_its_target_left_alone(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious")
    path = tmp_path / ".lock"
    path.symlink_to(victim)
    with pytest.raises(StoreError, match="is a symbolic link") as info:
        FileLock(path, command="me").acquire()
    assert info.value.exit_code == 3 and f"rm {path}" in str(info.value)
    assert victim.read_bytes() == b"precious"
    dangling = tmp_path / "other.lock"
    dangling.symlink_to(tmp_path / "not-yet")
    with pytest.raises(StoreError, match="is a symbolic link"):
        FileLock(dangling, command="me").acquire()
    assert not (tmp_path / "not-yet").exists()  # O_CREAT did not follow the link


def test_a_lock_file_of_another_user_is_refused_and_never_truncated(tmp_path: Path) -> None:
    path = tmp_path / ".lock"
    path.write_bytes(b"someone else's bytes")
    os.chown(path, 65534, 65534)  # the tests run as root: make it nobody's
    with pytest.raises(StoreError, match="owned by uid 65534, not by you") as info:
        FileLock(path, command="me").acquire()
    assert info.value.exit_code == 3
    assert path.read_bytes() == b"someone else's bytes"


def test_a_hard_link_at_the_lock_path_is_refused_and_never_truncated(tmp_path: Path) -> None:
    mine = tmp_path / "notes.txt"
    mine.write_bytes(b"my notes")
    path = tmp_path / ".lock"
    os.link(mine, path)
    with pytest.raises(StoreError, match="has 2 hard links"):
        FileLock(path, command="me").acquire()
    assert mine.read_bytes() == b"my notes"


@pytest.mark.parametrize("kind", ["directory", "fifo"])
def test_a_lock_path_that_is_no_regular_file_is_refused(tmp_path: Path, kind: str) -> None:
    path = tmp_path / ".lock"
    if kind == "directory":
        path.mkdir()
    else:
        os.mkfifo(path)  # O_NONBLOCK: opening it must not hang
    with pytest.raises(StoreError, match="refusing the lock file"):
        FileLock(path, command="me").acquire()


def test_the_lock_descriptor_is_not_inherited(tmp_path: Path) -> None:
    with FileLock(tmp_path / ".lock", command="me") as lock:
        assert lock._fd is not None
        assert fcntl.fcntl(lock._fd, fcntl.F_GETFD) & fcntl.FD_CLOEXEC


def test_store_mutations_take_the_lock(store: CaStore) -> None:
    with (
        FileLock(store.path / ".lock", command="cron job"),
        pytest.raises(LockHeld, match="cron job"),
    ):
        store.issue(user="alice", key_type=KeyType.EC_P256, days=30, now=NOW)
    assert store.certificates() == []


# --- the store --------------------------------------------------------------------------------


def test_init_modes_and_layout(store: CaStore) -> None:
    assert mode(store.path) == 0o700
    assert mode(store.path / "ca.key") == 0o600
    assert mode(store.path / "inventory.sqlite") == 0o600
    assert mode(store.path / ".lock") == 0o600
    assert not store.key_encrypted
    assert store.next_crl_number() == 1


def test_encrypted_store_needs_the_passphrase(tmp_path: Path) -> None:
    path = tmp_path / "ca"
    CaStore.init(path, cn="c", key_type=KeyType.EC_P256, days=10, passphrase=b"pw", now=NOW).close()
    with CaStore.open(path) as s:
        assert s.key_encrypted
        with pytest.raises(StoreError, match="is encrypted"):
            s.unlock(None)
        with pytest.raises(StoreError, match=f"wrong passphrase for {path}/ca.key"):
            s.unlock(b"nope")
        with pytest.raises(StoreError, match="not loaded; unlock the store first"):
            s.issue(user="alice", key_type=KeyType.EC_P256, days=1, now=NOW)
        s.unlock(b"pw")
        s.issue(user="alice", key_type=KeyType.EC_P256, days=1, now=NOW)


# --- the CA key at rest -----------------------------------------------------------------------

FAST = 1000  # PBKDF2 rounds where the count is not what a test is about


@pytest.fixture
def enc_store(tmp_path: Path) -> Iterator[CaStore]:
    """A store whose key is encrypted with b"old pw" (the real rounds: this is what init does)."""
    path = tmp_path / "enc"
    CaStore.init(path, cn="c", key_type=KeyType.EC_P256, days=10, passphrase=b"old pw", now=NOW)
    with CaStore.open(path) as s:
        yield s


def _weaken(store: CaStore, passphrase: bytes) -> None:
    """Re-encrypt ca.key the way rdsssl did before (cryptography's BestAvailableEncryption)."""
    key = crypto.load_private_key(store.key_path.read_bytes(), source="k", passphrase=passphrase)
    atomic_write(store.key_path, crypto.key_pem(key, passphrase), mode=0o600)


def _opens_with(store: CaStore, passphrase: bytes | None) -> bool:
    with CaStore.open(store.path) as again:
        try:
            again.unlock(passphrase)
        except StoreError:
            return False
        return True


def test_init_encrypts_the_ca_key_strongly(enc_store: CaStore) -> None:
    protection = enc_store.key_protection()  # read without the passphrase
    assert protection == crypto.KeyProtection(
        "pbes2", "pbkdf2-hmac-sha256", crypto.KDF_ROUNDS, "aes-256-cbc"
    )
    assert not protection.weak and enc_store.key_encrypted and not enc_store.unlocked
    assert enc_store.summary(now=NOW).key_protection == protection
    assert mode(enc_store.key_path) == 0o600


def test_import_re_encrypts_an_adopted_key_strongly(tmp_path: Path) -> None:
    key = crypto.generate_key()
    cert = crypto.make_ca(key, cn="hand-made", now=NOW)
    store = CaStore.import_ca(
        tmp_path / "ca",
        cert_pem=crypto.cert_pem(cert),
        key_pem=crypto.key_pem(key, b"theirs"),  # weak, as openssl or older rdsssl wrote it
        key_passphrase=b"theirs",
        passphrase=b"ours",
        index_txt=None,
        crlnumber=None,
        now=NOW,
    )
    with store:
        assert not store.key_protection().weak
        store.unlock(b"ours")


def test_unlock_decrypts_once_per_store(
    enc_store: CaStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []
    real = crypto.load_private_key

    def counting(data: bytes, *, source: str, passphrase: bytes | None) -> crypto.PrivateKey:
        calls.append(source)
        return real(data, source=source, passphrase=passphrase)

    monkeypatch.setattr(crypto, "load_private_key", counting)
    enc_store.unlock(b"old pw")
    enc_store.unlock(b"old pw")
    enc_store.unlock(None)  # already unlocked: not even the missing passphrase matters
    assert enc_store.unlocked and calls == [str(enc_store.key_path)]


def test_change_passphrase_replaces_the_key_atomically(enc_store: CaStore) -> None:
    enc_store.unlock(b"old pw")
    done = enc_store.change_passphrase(b"new pw", now=NOW)
    assert done.before == done.after == enc_store.key_protection()
    assert done.kept_old is None
    assert mode(enc_store.key_path) == 0o600
    assert sorted(p.name for p in enc_store.path.iterdir()) == [
        ".lock", "ca.crt", "ca.key", "inventory.sqlite"
    ]  # fmt: skip
    assert _opens_with(enc_store, b"new pw") and not _opens_with(enc_store, b"old pw")
    issued = enc_store.issue(user="alice", key_type=KeyType.EC_P256, days=1, now=NOW)
    assert crypto.fingerprint(issued.cert)  # the unlocked key still signs


def test_change_passphrase_strengthens_a_weak_key_and_can_keep_the_old_one(
    enc_store: CaStore,
) -> None:
    _weaken(enc_store, b"old pw")
    with CaStore.open(enc_store.path) as store:
        assert store.key_protection().weak
        store.unlock(b"old pw")
        done = store.change_passphrase(b"old pw", now=NOW, keep_old=True)
    assert done.before.weak and not done.after.weak
    assert done.kept_old == enc_store.path / "ca.key.bak-20250115T120000Z"
    assert mode(done.kept_old) == 0o600
    old = crypto.key_protection(done.kept_old.read_bytes(), source="bak")
    assert old == done.before  # the backup is the previous file, untouched
    assert _opens_with(enc_store, b"old pw")


def test_change_passphrase_to_none_and_back(enc_store: CaStore) -> None:
    enc_store.unlock(b"old pw")
    assert not enc_store.change_passphrase(None, now=NOW).after.encrypted
    assert not enc_store.key_encrypted and _opens_with(enc_store, None)
    enc_store.change_passphrase(b"again", now=NOW + timedelta(seconds=1))
    assert not enc_store.key_protection().weak and _opens_with(enc_store, b"again")


def test_change_passphrase_keeps_the_old_key_when_the_new_one_fails_verification(
    enc_store: CaStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    enc_store.unlock(b"old pw")
    before = enc_store.key_path.read_bytes()
    stranger = crypto.generate_key()
    real = crypto.ca_key_pem

    def wrong_key(key: crypto.PrivateKey, passphrase: bytes | None) -> bytes:
        return real(stranger, passphrase, rounds=FAST)  # what a bug or bad RAM could produce

    monkeypatch.setattr(crypto, "ca_key_pem", wrong_key)
    with pytest.raises(CryptoError, match="does not match the certificate"):
        enc_store.change_passphrase(b"new pw", now=NOW)
    assert enc_store.key_path.read_bytes() == before
    assert sorted(p.name for p in enc_store.path.iterdir()) == [
        ".lock", "ca.crt", "ca.key", "inventory.sqlite"
    ]  # fmt: skip


def test_change_passphrase_survives_a_failed_rename(
    enc_store: CaStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    enc_store.unlock(b"old pw")
    before = enc_store.key_path.read_bytes()

    real = os.replace
    renamed: list[str] = []

    def failing_replace(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
        if Path(dst) == enc_store.key_path:  # writing ca.key.new works; putting it in place not
            raise OSError(5, "Input/output error")
        renamed.append(Path(dst).name)
        real(src, dst)

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(OSError):
        enc_store.change_passphrase(b"new pw", now=NOW)
    monkeypatch.undo()
    assert renamed == ["ca.key.new"]
    assert enc_store.key_path.read_bytes() == before
    assert not list(enc_store.path.glob("ca.key.*"))  # neither ca.key.new nor a backup left
    assert _opens_with(enc_store, b"old pw")


def test_change_passphrase_refuses_a_key_replaced_since_unlock(enc_store: CaStore) -> None:
    enc_store.unlock(b"old pw")
    with CaStore.open(enc_store.path) as other:  # another run changes it first
        other.unlock(b"old pw")
        other.change_passphrase(b"theirs", now=NOW)
    theirs = enc_store.key_path.read_bytes()
    with pytest.raises(StoreError, match="changed since it was unlocked"):
        enc_store.change_passphrase(b"mine", now=NOW)
    assert enc_store.key_path.read_bytes() == theirs


def test_change_passphrase_needs_the_store_unlocked(enc_store: CaStore) -> None:
    with pytest.raises(StoreError, match="unlock the store first"):
        enc_store.change_passphrase(b"new", now=NOW)


def test_issue_records_before_returning(store: CaStore, tmp_path: Path) -> None:
    issued = store.issue(user="alice", key_type=KeyType.ED25519, days=30, now=NOW)
    (row,) = store.certificates()
    assert row == issued.record
    assert row.serial == issued.cert.serial_number
    assert row.fingerprint == crypto.fingerprint(issued.cert)
    assert row.issuer_fingerprint == crypto.fingerprint(store.ca_cert)
    assert (row.cn, row.key_type, row.origin) == ("alice", "ed25519", "issued")
    assert row.state(NOW) == "valid" and row.state(NOW + timedelta(days=31)) == "expired"
    files = write_client_files(tmp_path / "out", issued, store.ca_cert)
    assert [p.name for p in files] == ["root.crt", "client.crt", "client.key"]
    with pytest.raises(InputError, match="already exists"):
        write_client_files(tmp_path / "out", issued, store.ca_cert)


def test_many_certificates_per_user_and_unique_serials(store: CaStore) -> None:
    serials = {
        store.issue(user="alice", key_type=KeyType.EC_P256, days=30, now=NOW).record.serial
        for _ in range(5)
    }
    assert len(serials) == 5
    assert all(s.bit_length() >= 64 for s in serials)
    assert [r.cn for r in store.certificates(user="alice")] == ["alice"] * 5


def test_revoke_is_idempotent_and_keeps_the_first_reason(store: CaStore) -> None:
    serial = store.issue(user="bob", key_type=KeyType.EC_P256, days=30, now=NOW).record.serial
    first = store.revoke(serial=serial, reason=RevocationReason.KEY_COMPROMISE, now=NOW)
    again = store.revoke(
        serial=serial, reason=RevocationReason.SUPERSEDED, now=NOW + timedelta(days=1)
    )
    assert first.changed and not again.changed
    assert again.record.reason is RevocationReason.KEY_COMPROMISE
    assert again.record.revoked_at == NOW
    assert again.record.status is CertStatus.REVOKED


def test_revoke_unknown_serial_changes_nothing(store: CaStore) -> None:
    store.issue(user="bob", key_type=KeyType.EC_P256, days=30, now=NOW)
    before = store.certificates()
    with pytest.raises(NotFoundError, match="no certificate with serial abc"):
        store.revoke(serial=0xABC, now=NOW)
    assert store.certificates() == before


# --- batches: issue_many / revoke_many (all or nothing) ----------------------------------------


def _inventory_bytes(store: CaStore) -> bytes:
    return (store.path / "inventory.sqlite").read_bytes()


def test_issue_many_records_every_certificate_in_order_with_its_own_options(
    store: CaStore,
) -> None:
    requests = [
        IssueRequest("alice", KeyType.EC_P256, 30),
        IssueRequest("bob", KeyType.ED25519, 90),
        IssueRequest("carol", KeyType.EC_P256, 7),
    ]
    issued = store.issue_many(requests, now=NOW)
    assert [i.record.cn for i in issued] == ["alice", "bob", "carol"]
    assert [i.record.key_type for i in issued] == ["ec-p256", "ed25519", "ec-p256"]
    assert [i.record.not_after - NOW for i in issued] == [
        timedelta(days=30),
        timedelta(days=90),
        timedelta(days=7),
    ]
    assert sorted(r.serial for r in store.certificates()) == sorted(
        i.cert.serial_number for i in issued
    )
    assert all(i.cert.public_key() == i.key.public_key() for i in issued)


def test_issue_many_refuses_a_bad_name_in_the_middle_before_any_key_is_made(
    store: CaStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = _inventory_bytes(store)
    made: list[KeyType] = []
    real = crypto.generate_key

    def counting(key_type: KeyType) -> crypto.PrivateKey:
        made.append(key_type)
        return real(key_type)

    monkeypatch.setattr(crypto, "generate_key", counting)
    requests = [
        IssueRequest("alice", KeyType.EC_P256, 30),
        IssueRequest("ev\x1bil", KeyType.EC_P256, 30),
        IssueRequest("bob", KeyType.EC_P256, 30),
    ]
    with pytest.raises(CryptoError, match="invalid database user name"):
        store.issue_many(requests, now=NOW)
    p384 = [IssueRequest("alice", KeyType.EC_P256, 30), IssueRequest("bob", KeyType.EC_P384, 30)]
    with pytest.raises(CryptoError, match=r"bob: an ec-p384 client key fails over TLS 1\.2"):
        store.issue_many(p384, now=NOW)
    assert made == [] and store.certificates() == []
    assert _inventory_bytes(store) == before


def test_issue_many_failing_half_way_through_the_transaction_records_nothing(
    store: CaStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A failure after two of four INSERTs (a kill would stop there too) rolls back all four."""
    real = Inventory.insert
    inserted: list[int] = []

    def failing_third(self: Inventory, record: CertRecord) -> None:
        if len(inserted) == 2:
            raise OSError(28, "No space left on device")
        inserted.append(record.serial)
        real(self, record)

    monkeypatch.setattr(Inventory, "insert", failing_third)
    requests = [IssueRequest(f"u{i}", KeyType.EC_P256, 30) for i in range(4)]
    with pytest.raises(OSError, match="No space left"):
        store.issue_many(requests, now=NOW)
    assert len(inserted) == 2 and store.certificates() == []
    monkeypatch.setattr(Inventory, "insert", real)
    assert len(store.issue_many(requests, now=NOW)) == 4  # and the store goes on


def test_issue_many_re_signs_a_row_whose_serial_collides_within_the_batch(
    store: CaStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    serials = iter([0x1234, 0x1234, 0x5678])
    monkeypatch.setattr(crypto, "new_serial", lambda: next(serials))
    a, b = store.issue_many(
        [IssueRequest("alice", KeyType.EC_P256, 30), IssueRequest("bob", KeyType.EC_P256, 30)],
        now=NOW,
    )
    assert (a.record.serial, b.record.serial) == (0x1234, 0x5678)
    assert b.cert.serial_number == 0x5678  # the certificate itself was signed again
    assert sorted(r.serial for r in store.certificates()) == [0x1234, 0x5678]


def test_revoke_many_refuses_the_whole_batch_naming_every_bad_entry(store: CaStore) -> None:
    alice, bob = store.issue_many(
        [IssueRequest("alice", KeyType.EC_P256, 30), IssueRequest("bob", KeyType.EC_P256, 30)],
        now=NOW,
    )
    before = _inventory_bytes(store)
    ca_serial = store.ca_cert.serial_number
    batch = [
        Selection(serial=alice.record.serial, label="f line 1"),
        Selection(serial=0xABC, label="f line 2"),
        Selection(serial=ca_serial, label="f line 3"),
        Selection(serial=alice.record.serial, label="f line 4"),
        Selection(serial=bob.record.serial, label="f line 5"),
    ]
    with pytest.raises(InputError) as refused:
        store.revoke_many(batch, now=NOW)
    message = str(refused.value)
    assert message.startswith("nothing revoked: 3 of 5 entries refused: ")
    assert "f line 2: no certificate with serial abc" in message
    assert "f line 3: serial " in message and "is a CA certificate" in message
    assert f"f line 4: serial {alice.record.serial_hex} is also on f line 1" in message
    assert "f line 1:" not in message and "f line 5:" not in message
    assert [r.status for r in store.certificates()] == [CertStatus.VALID, CertStatus.VALID]
    assert _inventory_bytes(store) == before


def test_revoke_many_names_unlabelled_selections_by_what_they_select(store: CaStore) -> None:
    with pytest.raises(InputError) as refused:
        store.revoke_many([Selection(serial=0xABC), Selection(user="nobody")], now=NOW)
    message = str(refused.value)
    assert "serial abc: no certificate with serial abc" in message
    assert "user 'nobody': no valid certificate for user 'nobody'" in message


def test_revoke_many_revokes_in_one_go_and_keeps_an_earlier_revocation(store: CaStore) -> None:
    alice, bob = store.issue_many(
        [IssueRequest("alice", KeyType.EC_P256, 30), IssueRequest("bob", KeyType.EC_P256, 30)],
        now=NOW,
    )
    store.revoke(serial=alice.record.serial, reason=RevocationReason.KEY_COMPROMISE, now=NOW)
    later = NOW + timedelta(hours=1)
    results = store.revoke_many(
        [Selection(serial=alice.record.serial), Selection(serial=bob.record.serial)],
        reason=RevocationReason.SUPERSEDED,
        now=later,
    )
    assert [r.changed for r in results] == [False, True]
    assert results[0].record.reason is RevocationReason.KEY_COMPROMISE
    assert results[0].record.revoked_at == NOW
    assert results[1].record.reason is RevocationReason.SUPERSEDED
    assert {r.serial: r.status for r in store.certificates()} == {
        alice.record.serial: CertStatus.REVOKED,
        bob.record.serial: CertStatus.REVOKED,
    }


def test_build_crl_advances_the_number_in_the_same_transaction(
    store: CaStore, tmp_path: Path
) -> None:
    serial = store.issue(user="bob", key_type=KeyType.EC_P256, days=30, now=NOW).record.serial
    store.revoke(serial=serial, now=NOW)
    out = tmp_path / "crl.pem"
    first = store.build_crl(now=NOW, days=7, out=out)
    second = store.build_crl(now=NOW, days=7)
    assert (first.number, second.number, store.next_crl_number()) == (1, 2, 3)
    assert out.read_bytes() == first.pem
    info = crypto.inspect_crl(first.crl)
    assert info.revoked_serials == (serial,)
    assert crypto.crl_signed_by(first.crl, store.ca_cert)
    assert store.problems() == []


def test_build_crl_whose_file_cannot_be_written_uses_no_number(
    store: CaStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "crl.pem"
    first = store.build_crl(now=NOW, days=7, out=out)
    with pytest.raises(InputError, match=f"cannot write the CRL to {tmp_path}/no/crl.pem"):
        store.build_crl(now=NOW, days=7, out=tmp_path / "no" / "crl.pem")

    def failing_fsync(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", failing_fsync)
    with pytest.raises(OSError, match="No space left"):
        store.build_crl(now=NOW, days=7, out=out)
    monkeypatch.undo()
    assert store.next_crl_number() == 2  # neither failure used up a number
    last = store._inv.last_crl()
    assert last is not None and last.number == 1
    assert out.read_bytes() == first.pem  # the previous CRL stays in place
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ca", "crl.pem"]  # no temp file left
    assert store.build_crl(now=NOW, days=7, out=out).number == 2


def test_staged_file_is_invisible_until_committed(tmp_path: Path) -> None:
    target = tmp_path / "crl.pem"
    target.write_bytes(b"old")
    with StagedFile(target, mode=0o640) as staged:
        staged.write(b"new")
        assert target.read_bytes() == b"old"
    assert target.read_bytes() == b"old"  # left without commit: discarded
    assert [p.name for p in tmp_path.iterdir()] == ["crl.pem"]
    with StagedFile(target, mode=0o640) as staged:
        staged.write(b"new")
        staged.commit()
    assert target.read_bytes() == b"new" and mode(target) == 0o640
    assert [p.name for p in tmp_path.iterdir()] == ["crl.pem"]
    with pytest.raises(FileNotFoundError):
        StagedFile(tmp_path / "missing" / "crl.pem")


def test_open_refuses_untrusted_directories(store: CaStore, tmp_path: Path) -> None:
    store.path.chmod(0o722)
    with pytest.raises(StoreError, match="writable by others"):
        CaStore.open(store.path)
    store.path.chmod(0o700)
    (store.path / "ca.key").chmod(0o640)
    with pytest.raises(StoreError, match="must be private"):
        CaStore.open(store.path)
    with pytest.raises(StoreError, match="not a CA store"):
        CaStore.open(tmp_path)


def test_open_refuses_a_swapped_ca_certificate(store: CaStore, tmp_path: Path) -> None:
    other = crypto.make_ca(crypto.generate_key(), cn="root-ca1", now=NOW)
    (store.path / "ca.crt").write_bytes(crypto.cert_pem(other))
    with pytest.raises(StoreError, match="is not the CA this store was created with"):
        CaStore.open(store.path)


def test_init_never_replaces_a_store(store: CaStore) -> None:
    with pytest.raises(StoreError, match="already exists and is not empty"):
        CaStore.init(store.path, cn="x", key_type=KeyType.EC_P256, days=1, passphrase=None, now=NOW)


def test_problems_detect_a_tampered_row(store: CaStore) -> None:
    serial = store.issue(user="bob", key_type=KeyType.EC_P256, days=30, now=NOW).record.serial
    conn = sqlite3.connect(store.path / "inventory.sqlite")
    with conn:
        conn.execute("UPDATE certs SET cn = 'mallory' WHERE serial = ?", (format(serial, "x"),))
    conn.close()
    assert store.problems() == [f"serial {serial:x}: row does not match its certificate"]


# --- ca renew (same key) ----------------------------------------------------------------------


def test_renew_ca_replaces_ca_crt_and_keeps_the_previous_certificate(store: CaStore) -> None:
    alice = store.issue(user="alice", key_type=KeyType.EC_P256, days=30, now=NOW)
    old = store.ca_cert
    later = NOW + timedelta(days=100)
    done = store.renew_ca(days=7300, now=later)
    new = store.ca_cert
    assert crypto.fingerprint(new) != crypto.fingerprint(old)
    assert (done.previous.serial, done.current.serial) == (old.serial_number, new.serial_number)
    assert new.not_valid_after_utc == later + timedelta(days=7300)
    assert (store.path / "ca.crt").read_bytes() == crypto.cert_pem(new)
    assert mode(store.path / "ca.crt") == 0o644
    # no temp file left, and no history file: the history is in the inventory
    assert sorted(p.name for p in store.path.iterdir()) == [
        ".lock",
        "ca.crt",
        "ca.key",
        "inventory.sqlite",
    ]
    assert [(v.info.fingerprint, v.current) for v in done.history] == [
        (crypto.fingerprint(old), False),
        (crypto.fingerprint(new), True),
    ]
    with CaStore.open(store.path) as again:  # the renewed ca.crt is accepted on open
        assert again.ca_cert == new
        assert [v.current for v in again.summary(now=later).history] == [False, True]
        assert again.problems() == []  # alice's row names the previous CA: still ours
        again.unlock(None)
        bob = again.issue(user="bob", key_type=KeyType.EC_P256, days=30, now=later)
        bob.cert.verify_directly_issued_by(new)
        assert bob.record.issuer_fingerprint == crypto.fingerprint(new)
        assert again.problems() == []
    alice.cert.verify_directly_issued_by(new)


def test_a_store_renewed_twice_keeps_every_certificate_in_order(store: CaStore) -> None:
    first = store.ca_cert
    store.renew_ca(days=4000, now=NOW + timedelta(days=1))
    second = store.ca_cert
    done = store.renew_ca(days=4000, now=NOW + timedelta(days=2))
    assert [v.info.serial for v in done.history] == [
        first.serial_number,
        second.serial_number,
        store.ca_cert.serial_number,
    ]
    assert [v.current for v in done.history] == [False, False, True]
    assert done.history[0].recorded_at == NOW + timedelta(days=1)


def test_crls_after_a_renewal_verify_against_every_certificate_of_the_ca(
    store: CaStore, tmp_path: Path
) -> None:
    bob = store.issue(user="bob", key_type=KeyType.EC_P256, days=30, now=NOW)
    store.revoke(serial=bob.record.serial, now=NOW)
    old = store.ca_cert
    store.renew_ca(days=4000, now=NOW + timedelta(hours=1))
    built = store.build_crl(now=NOW + timedelta(hours=2), out=tmp_path / "crl.pem")
    assert crypto.crl_signed_by(built.crl, old) and crypto.crl_signed_by(built.crl, store.ca_cert)
    assert bob.record.serial in crypto.inspect_crl(built.crl).revoked_serials


def test_an_expired_ca_can_still_be_renewed_and_then_issues_again(tmp_path: Path) -> None:
    with CaStore.init(
        tmp_path / "short", cn="root-ca1", key_type=KeyType.EC_P256, days=1, passphrase=None,
        now=NOW,
    ) as short:  # fmt: skip
        short.unlock(None)
        alice = short.issue(user="alice", key_type=KeyType.EC_P256, days=1, now=NOW)
        later = NOW + timedelta(days=10)
        with pytest.raises(CryptoError, match="expired on"):
            short.issue(user="bob", key_type=KeyType.EC_P256, days=30, now=later)
        short.renew_ca(days=365, now=later)
        bob = short.issue(user="bob", key_type=KeyType.EC_P256, days=30, now=later)
        assert not bob.truncated and bob.cert.not_valid_after_utc == later + timedelta(days=30)
        # a certificate issued under the expired certificate is still ours (and revocable)
        assert short.revoke(cert_pem=crypto.cert_pem(alice.cert), now=later).changed
        assert short.problems() == []


def test_the_previous_ca_certificate_cannot_be_revoked_either(store: CaStore) -> None:
    old = store.ca_cert
    store.renew_ca(days=4000, now=NOW)
    with pytest.raises(InputError, match="is a CA certificate"):
        store.revoke(serial=old.serial_number, now=NOW)
    assert store.revocations() == []


def test_renew_ca_refuses_to_shorten_the_ca_unless_forced(store: CaStore) -> None:
    before = snapshot_dir(store.path)
    with pytest.raises(InputError, match=r"give at least 3650 days \(--days\), or --force"):
        store.renew_ca(days=30, now=NOW)
    assert snapshot_dir(store.path) == before  # nothing written, not even the history table
    done = store.renew_ca(days=30, now=NOW, force=True)
    assert done.current.not_after == NOW + timedelta(days=30) < done.previous.not_after


def _pinned_leaf(store: CaStore, cn: str) -> x509.Certificate:
    """A client certificate whose AKI names the store's CA by serial, as `openssl ca` with
    authorityKeyIdentifier=keyid,issuer:always makes it."""
    ca = store.ca_cert
    ski = ca.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    aki = x509.AuthorityKeyIdentifier(ski.digest, [x509.DirectoryName(ca.issuer)], ca.serial_number)
    return (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
        .issuer_name(ca.subject)
        .public_key(crypto.generate_key().public_key())
        .serial_number(crypto.new_serial())
        .not_valid_before(NOW)
        .not_valid_after(NOW + timedelta(days=30))
        .add_extension(aki, critical=False)
        .sign(store._ca_key(), hashes.SHA256())
    )


def test_renew_ca_refuses_to_strand_certificates_naming_the_old_serial(store: CaStore) -> None:
    revoked = _pinned_leaf(store, "dave")
    store.revoke(cert_pem=crypto.cert_pem(revoked), now=NOW)  # adopted, revoked: no matter
    store.renew_ca(days=4000, now=NOW)
    valid = _pinned_leaf(store, "carol")  # pinned to the certificate just made current
    with store._inv.transaction():  # adopted as `cert revoke --cert` would, but left valid
        store._inv.insert(
            CertRecord.for_cert(
                valid,
                issuer_fingerprint=crypto.fingerprint(store.ca_cert),
                origin="external",
                now=NOW,
            )
        )
    ca = store.ca_cert
    pattern = rf"1 valid certificate\(s\) name the current CA .*: {valid.serial_number:x} \(carol\)"
    with pytest.raises(InputError, match=pattern):
        store.renew_ca(days=4000, now=NOW + timedelta(days=1))
    assert store.ca_cert == ca and len(store.ca_history()) == 2
    done = store.renew_ca(days=4000, now=NOW + timedelta(days=1), force=True)
    assert [r.serial for r in done.stranded] == [valid.serial_number]
    assert not crypto.akid_fits(valid, store.ca_cert)


def test_renew_ca_refuses_a_ca_crt_renewed_by_another_run(store: CaStore) -> None:
    with CaStore.open(store.path) as other:
        other.unlock(None)
        other.renew_ca(days=4000, now=NOW)
    with pytest.raises(StoreError, match="changed since it was read"):
        store.renew_ca(days=4000, now=NOW)


def test_open_accepts_a_renewal_whose_record_was_lost_and_the_next_renewal_records_it(
    store: CaStore,
) -> None:
    """The window between the rename of ca.crt and the COMMIT: ca.crt is a renewal the
    inventory does not know (made here by hand); it opens, and is history from then on."""
    first = store.ca_cert
    store.renew_ca(days=4000, now=NOW)
    recorded = store.ca_cert
    unrecorded = crypto.renew_ca(recorded, store._ca_key(), now=NOW, days=5000)
    (store.path / "ca.crt").write_bytes(crypto.cert_pem(unrecorded))
    with CaStore.open(store.path) as opened:
        assert opened.ca_cert == unrecorded and opened.problems() == []
        history = opened.ca_history()
        assert [(v.info.serial, v.current, v.recorded_at) for v in history] == [
            (first.serial_number, False, NOW),
            (recorded.serial_number, False, NOW),
            (unrecorded.serial_number, True, None),
        ]
        opened.unlock(None)
        done = opened.renew_ca(days=6000, now=NOW + timedelta(days=1))
    assert [v.info.serial for v in done.history][2] == unrecorded.serial_number
    assert all(v.recorded_at is not None for v in done.history)


def test_open_refuses_a_same_name_ca_of_another_key_even_after_a_renewal(store: CaStore) -> None:
    store.renew_ca(days=4000, now=NOW)
    other_key = crypto.generate_key()
    own_ca = crypto.make_ca(other_key, cn="root-ca1", now=NOW)
    impostor = crypto.renew_ca(own_ca, other_key, now=NOW, days=4000)
    (store.path / "ca.crt").write_bytes(crypto.cert_pem(impostor))
    with pytest.raises(StoreError, match="not the CA this store was created with, nor a renewal"):
        CaStore.open(store.path)


def test_problems_flag_a_recorded_ca_certificate_of_another_ca(store: CaStore) -> None:
    store.renew_ca(days=4000, now=NOW)
    foreign = crypto.make_ca(crypto.generate_key(), cn="root-ca1", now=NOW)
    conn = sqlite3.connect(store.path / "inventory.sqlite")
    with conn:
        conn.execute(
            "UPDATE ca_certs SET cert_der = ? WHERE seq = 1",
            (foreign.public_bytes(serialization.Encoding.DER),),
        )
    conn.close()
    assert store.problems() == [
        f"CA certificate {foreign.serial_number:x} in the inventory is not the CA of ca.crt "
        "(another subject, key or key identifier)"
    ]


def snapshot_dir(path: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(path.iterdir()) if p.is_file()}


def test_revoke_by_cert_rejects_another_ca(store: CaStore) -> None:
    other_key = crypto.generate_key()
    other = crypto.make_ca(other_key, cn="root-ca1", now=NOW)  # same name, other key
    leaf = crypto.issue_client_cert(
        other, other_key, crypto.generate_key().public_key(), user="eve", now=NOW
    ).cert
    with pytest.raises(CryptoError, match="not issued by this CA"):
        store.revoke(cert_pem=crypto.cert_pem(leaf), cert_source="eve.crt", now=NOW)
    assert store.certificates() == []


# --- openssl ca files -------------------------------------------------------------------------


def test_parse_index_txt_variants() -> None:
    data = (
        b"V\t271126200022Z\t\t1001\tunknown\t/CN=dave\n"
        b"R\t271126200021Z\t261126200022Z,keyCompromise\t1000\tunknown\t/CN=carol\n"
        b"R\t20551126200021Z\t261126200022Z,keyTime,20261126200022Z\t0A\tunknown\t/O=x/CN=eve\n"
        b"R\t271126200021Z\t261126200022Z\t0B\tunknown\t/CN=frank\n"
        b"E\t201126200021Z\t\t0C\tunknown\t/CN=old\n"
        b"\n"
    )
    entries = parse_index_txt(data, source="index.txt")
    assert [(e.serial, e.cn, e.revoked) for e in entries] == [
        (0x1001, "dave", False),
        (0x1000, "carol", True),
        (0x0A, "eve", True),
        (0x0B, "frank", True),
        (0x0C, "old", False),
    ]
    assert entries[1].reason is RevocationReason.KEY_COMPROMISE
    assert entries[2].reason is RevocationReason.KEY_COMPROMISE
    assert entries[2].not_after.year == 2055
    assert entries[3].reason is RevocationReason.UNSPECIFIED
    assert entries[1].revoked_at == datetime(2026, 11, 26, 20, 0, 22, tzinfo=timezone.utc)


@pytest.mark.parametrize(
    "line,problem",
    [
        ("V\t271126200022Z\t\t1001\tunknown", "not an openssl ca index line"),
        ("V\tsoon\t\t1001\tunknown\t/CN=a", "bad expiry"),
        ("R\t271126200022Z\t261126200022Z,bored\t1001\tunknown\t/CN=a", "unknown revocation"),
        ("V\t271126200022Z\t\t1001\tunknown\t/CN=a\x85b", "the CN .* of serial 1001 .*U\\+0085"),
        ("V\t271126200022Z\t\t1001\tunknown\t/CN=x/CN=..", "the CN '..' of serial 1001"),
    ],
)
def test_parse_index_txt_errors_name_the_line(line: str, problem: str) -> None:
    with pytest.raises(InputError, match=f"index.txt, line 1: {problem}"):
        parse_index_txt(line.encode() + b"\n", source="index.txt")


def test_parse_crlnumber() -> None:
    assert parse_crlnumber(b"1001\n", source="crlnumber") == 0x1001
    with pytest.raises(InputError, match="crlnumber: not an openssl crlnumber file"):
        parse_crlnumber(b"twelve", source="crlnumber")


# --- renewal ----------------------------------------------------------------------------------


def test_plan_renewal_takes_the_newest_per_user(store: CaStore, tmp_path: Path) -> None:
    store.issue(user="alice", key_type=KeyType.EC_P256, days=10, now=NOW)
    store.issue(user="bob", key_type=KeyType.EC_P256, days=10, now=NOW)
    store.issue(user="bob", key_type=KeyType.EC_P256, days=300, now=NOW)  # bob already renewed
    gone = store.issue(user="carol", key_type=KeyType.EC_P256, days=10, now=NOW)
    store.revoke(serial=gone.record.serial, now=NOW)  # revoked users are not renewed
    plan = plan_renewal(store, before=timedelta(days=30), now=NOW)
    assert [r.cn for r in plan.due] == ["alice"] and plan.blocked == []

    done = renew_due(store, plan, now=NOW, out_root=tmp_path / "out", days=90)
    assert [r.old.cn for r in done if r.old is not None] == ["alice"]
    assert (tmp_path / "out" / "alice" / "client.key").is_file()
    assert plan_renewal(store, before=timedelta(days=30), now=NOW).due == []


def test_plan_renewal_blocks_certificates_ending_with_the_ca(tmp_path: Path) -> None:
    with CaStore.init(
        tmp_path / "ca", cn="short", key_type=KeyType.EC_P256, days=20, passphrase=None, now=NOW
    ) as s:
        s.unlock(None)
        issued = s.issue(user="alice", key_type=KeyType.EC_P256, days=365, now=NOW)
        assert issued.truncated
        plan = plan_renewal(s, before=timedelta(days=30), now=NOW)
        assert plan.due == [] and [r.cn for r in plan.blocked] == ["alice"]
