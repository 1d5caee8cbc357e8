"""The local CA store: one directory that cron jobs can trust.

Layout of ``DIR`` (0700, owned by the user running rdsssl)::

    ca.crt            the CA certificate (0644)
    ca.key            the CA private key, PKCS#8 PEM, encrypted unless --no-passphrase (0600):
                      PBES2, PBKDF2-HMAC-SHA256 at crypto.KDF_ROUNDS, AES-256-CBC
    inventory.sqlite  every certificate issued, signed or adopted, keyed by serial; CRL numbers;
                      after a ``ca renew``, every certificate the CA has had (``ca_certs``)
    .lock             flock'ed by every mutation; records who holds it

Crash safety follows from three rules: a new store is built in a private temp directory and
renamed into place in one step; every inventory change is one sqlite transaction; and a
certificate is recorded in the inventory *before* it is written anywhere else, so every
certificate that can exist can be revoked. Files leave through ``fsutil.atomic_write`` (or its
two-step form ``StagedFile``).

``ca renew`` (``CaStore.renew_ca``) replaces ca.crt by the same CA with a new serial and
validity (``crypto.renew_ca``: same subject, key and SubjectKeyIdentifier, so everything signed
under the previous certificate still chains). The history lives in the inventory, not in files,
so that one transaction decides it: (1) the current certificate is recorded (a no-op when it
is already), committed; (2) the new ca.crt is staged (a fsynced temp file); (3) in one
transaction the new certificate is recorded and the temp file renamed over ca.crt, then the
COMMIT. A kill before the rename leaves the old ca.crt, recorded; one between the rename and
the COMMIT leaves the new ca.crt unrecorded, which ``open`` accepts because it is self-signed
by the recorded CA's key under the recorded subject and SubjectKeyIdentifier (the next renewal
records it in step 1). Either way the store opens, with the old or the new CA current, and
every certificate ever recorded as the CA's is the same CA.
"""

from __future__ import annotations

import contextlib
import dataclasses
import sqlite3
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from types import TracebackType

from cryptography import x509

from rdsssl.errors import CryptoError, StoreError
from rdsssl.models import CertStatus, KeyType, RevocationReason
from rdsssl.pki import crl_policy, crypto
from rdsssl.store import ca_key, ca_renewal, consistency, crl_signing, revocation
from rdsssl.store.db import Inventory
from rdsssl.store.files import (
    CA_CERT,
    CA_KEY,
    INVENTORY,
    check_key_file,
    check_store_dir,
    create_store_dir,
)
from rdsssl.store.lock import LOCK_NAME, FileLock, current_command
from rdsssl.store.openssl_import import index_records, parse_crlnumber, parse_index_txt
from rdsssl.store.records import (
    BuiltCrl,
    CaRenewal,
    CaSummary,
    CaVersion,
    CertRecord,
    IssuedCert,
    KeyRewrap,
    RevokeResult,
    SignedCert,
    format_time,
    utc_seconds,
)

__all__ = ["CaStore"]


_SERIAL_ATTEMPTS = 5  # a 159-bit collision is ~impossible; the loop only keeps the code honest


class CaStore:
    """An opened CA store. Create one with ``init``, ``import_ca`` or ``open``; ``close`` it."""

    def __init__(
        self, path: Path, *, inventory: Inventory, ca_cert: x509.Certificate, wait_lock: float
    ) -> None:
        self.path = path
        self._inv = inventory
        self._ca_cert = ca_cert
        self._ca_fp = crypto.fingerprint(ca_cert)
        self._key: crypto.PrivateKey | None = None
        self._key_digest = b""  # SHA-256 of the ca.key bytes that were unlocked
        self._lock = FileLock(
            path / LOCK_NAME, command=current_command(), wait=wait_lock, label=f"CA store {path}"
        )

    # -- lifecycle --------------------------------------------------------------------------

    @classmethod
    def init(
        cls,
        path: Path,
        *,
        cn: str,
        key_type: KeyType,
        days: int,
        passphrase: bytes | None,
        now: datetime,
    ) -> CaStore:
        """Create a store with a new self-signed CA (``ca init``)."""
        key = crypto.generate_key(key_type)
        cert = crypto.make_ca(key, cn=cn, now=now, days=days)
        return cls._create(
            path, cert=cert, key=key, passphrase=passphrase, rows=[], crl_number=1, now=now
        )

    @classmethod
    def import_ca(
        cls,
        path: Path,
        *,
        cert_pem: bytes,
        key_pem: bytes,
        key_passphrase: bytes | None,
        passphrase: bytes | None,
        index_txt: bytes | None,
        crlnumber: bytes | None,
        now: datetime,
        cert_source: str = "CA certificate",
        key_source: str = "CA key",
        index_source: str = "index.txt",
        crlnumber_source: str = "crlnumber",
    ) -> CaStore:
        """Adopt a CA made by hand (``ca import``), keeping an ``openssl ca`` history if given."""
        certs = crypto.load_ca_certificates(
            cert_pem, source=cert_source, now=now, what="a CA certificate file"
        )
        if len(certs) != 1:
            raise CryptoError(f"{cert_source}: holds {len(certs)} certificates; import one CA")
        cert = certs[0]
        crypto.check_ca_key(cert, source=cert_source)
        key = crypto.load_private_key(key_pem, source=key_source, passphrase=key_passphrase)
        crypto.check_key_matches(cert, key, source=key_source)
        entries = parse_index_txt(index_txt, source=index_source) if index_txt else []
        rows = index_records(entries, issuer_fingerprint=crypto.fingerprint(cert), now=now)
        number = parse_crlnumber(crlnumber, source=crlnumber_source) if crlnumber else 1
        return cls._create(
            path, cert=cert, key=key, passphrase=passphrase, rows=rows, crl_number=number, now=now
        )

    @classmethod
    def _create(
        cls,
        path: Path,
        *,
        cert: x509.Certificate,
        key: crypto.PrivateKey,
        passphrase: bytes | None,
        rows: list[CertRecord],
        crl_number: int,
        now: datetime,
    ) -> CaStore:
        meta = {
            "crl_number": str(crl_number),
            "ca_fingerprint": crypto.fingerprint(cert),
            "created_at": format_time(now),
        }
        create_store_dir(
            path,
            key_pem=crypto.ca_key_pem(key, passphrase),
            cert_pem=crypto.cert_pem(cert),
            meta=meta,
            rows=rows,
        )
        return cls.open(path)

    @classmethod
    def open(cls, path: Path, *, wait_lock: float = 0) -> CaStore:
        """Open an existing store after checking ownership and permissions."""
        check_store_dir(path, marker=CA_CERT)
        check_key_file(path / CA_KEY)
        source = str(path / CA_CERT)
        cert = ca_renewal.read_ca_cert(path / CA_CERT)
        inv = Inventory.open(path / INVENTORY)
        try:
            consistency.check_current_ca(inv, cert, source)
        except BaseException:
            inv.close()
            raise
        return cls(path, inventory=inv, ca_cert=cert, wait_lock=wait_lock)

    def close(self) -> None:
        """Release the inventory and any lock still held."""
        self._lock.release()
        self._inv.close()

    def __enter__(self) -> CaStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- the CA -----------------------------------------------------------------------------

    @property
    def ca_cert(self) -> x509.Certificate:
        """The CA certificate."""
        return self._ca_cert

    @property
    def key_path(self) -> Path:
        """Where the CA key lives (for messages)."""
        return self.path / CA_KEY

    def key_protection(self) -> crypto.KeyProtection:
        """How ca.key is protected (scheme, KDF, rounds, cipher, ``weak``), read from the file
        without decrypting it: no passphrase needed."""
        return crypto.key_protection(ca_key.read(self.key_path), source=str(self.key_path))

    @property
    def key_encrypted(self) -> bool:
        """True when ca.key needs a passphrase (read without decrypting)."""
        return self.key_protection().encrypted

    @property
    def unlocked(self) -> bool:
        """True once ``unlock`` has loaded the CA key."""
        return self._key is not None

    def unlock(self, passphrase: bytes | None) -> None:
        """Load and decrypt ca.key; StoreError for a wrong or missing passphrase.

        Once per store: the key derivation is slow on purpose (``crypto.KDF_ROUNDS``), so a
        store already unlocked returns at once, whatever ``passphrase`` is.
        """
        if self._key is None:
            self._key, self._key_digest = ca_key.unlock(self.key_path, passphrase, self._ca_cert)

    def change_passphrase(
        self, passphrase: bytes | None, *, now: datetime, keep_old: bool = False
    ) -> KeyRewrap:
        """Re-encrypt the unlocked CA key for ``passphrase`` (None: unencrypted) with the
        parameters of ``crypto.ca_key_pem``, also when the passphrase is unchanged (to
        strengthen an older file), under the store lock (``ca_key.rewrap``)."""
        key = self._ca_key()
        with self.locked():
            rewrapped, self._key_digest = ca_key.rewrap(
                self.key_path,
                key,
                self._ca_cert,
                unlocked_digest=self._key_digest,
                passphrase=passphrase,
                now=now,
                keep_old=keep_old,
            )
        return rewrapped

    def renew_ca(self, *, days: int, now: datetime, force: bool = False) -> CaRenewal:
        """Replace the CA certificate by the same CA valid for ``days`` from ``now``
        (``crypto.renew_ca``: same subject, key and SubjectKeyIdentifier; a new serial), under
        the store lock, keeping every earlier certificate in the inventory (the module docstring
        says how a kill at any point leaves the old or the new CA current).

        Refused (InputError, nothing changed) unless ``force``: a renewal ending before the
        current CA does (surprising, and it would cut certificates issued from then on short),
        and one that strands valid certificates (their authority key identifier names the
        current CA's serial, so they would not chain to the renewed CA). StoreError when ca.crt
        changed since the store was opened (another run renewed it).
        """
        key = self._ca_key()
        with self.locked():
            self._check_ca_file_unchanged()
            old = self._ca_cert
            new = crypto.renew_ca(old, key, now=now, days=days)
            stranded = ca_renewal.stranded(self._inv, old, new, now)
            if not force:
                ca_renewal.refuse_shorter(old, new, now)
                ca_renewal.refuse_stranded(stranded)
            with self._inv.transaction():
                self._inv.record_ca(old, now=now)
            with ca_renewal.stage_ca_file(self.path / CA_CERT) as staged:
                staged.write(crypto.cert_pem(new))
                with self._inv.transaction():
                    self._inv.record_ca(new, now=now)
                    staged.commit()
            self._ca_cert, self._ca_fp = new, crypto.fingerprint(new)
        return CaRenewal(
            previous=crypto.inspect_cert(old),
            current=crypto.inspect_cert(new),
            stranded=tuple(stranded),
            history=tuple(self.ca_history()),
        )

    def _check_ca_file_unchanged(self) -> None:
        source = self.path / CA_CERT
        if crypto.fingerprint(ca_renewal.read_ca_cert(source)) != self._ca_fp:
            raise StoreError(f"{source} changed since it was read (another run?); run again")

    def ca_history(self) -> list[CaVersion]:
        """Every certificate of the CA, oldest first, the current one (ca.crt) marked."""
        return ca_renewal.history(self._inv, self._ca_cert)

    def _ca_key(self) -> crypto.PrivateKey:
        if self._key is None:
            raise StoreError(f"the CA key of {self.path} is not loaded; unlock the store first")
        return self._key

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the store lock (re-entrant) around several mutations, e.g. a renewal run."""
        self._lock.acquire()
        try:
            yield
        finally:
            self._lock.release()

    # -- issuing ----------------------------------------------------------------------------

    def _sign_and_record(
        self, sign: Callable[[int], crypto.Issued], *, origin: str, now: datetime
    ) -> tuple[crypto.Issued, CertRecord]:
        """Sign with a fresh serial and INSERT the row in one transaction, under the lock."""
        with self.locked():
            for _ in range(_SERIAL_ATTEMPTS):
                issued = sign(crypto.new_serial())
                record = CertRecord.for_cert(
                    issued.cert, issuer_fingerprint=self._ca_fp, origin=origin, now=now
                )
                try:
                    with self._inv.transaction():
                        self._inv.insert(record)
                except sqlite3.IntegrityError:
                    continue
                return issued, record
        raise StoreError(f"could not find a free serial in {self._inv.path}")  # pragma: no cover

    def issue(
        self,
        *,
        user: str,
        key_type: KeyType,
        days: int,
        now: datetime,
        allow_tls13_only: bool = False,
    ) -> IssuedCert:
        """A new key and client certificate for ``user``, recorded before anyone sees it. A key
        type that fails over TLS 1.2 is refused before any key is made, unless
        ``allow_tls13_only`` (`crypto.tls12_key_problem`)."""
        crypto.validate_role_name(user)
        problem = None if allow_tls13_only else crypto.tls12_key_problem(key_type)
        if problem:
            raise CryptoError(f"{user}: {problem}")
        key = crypto.generate_key(key_type)  # slow for RSA: outside the lock

        def sign(serial: int) -> crypto.Issued:
            return crypto.issue_client_cert(
                self._ca_cert,
                self._ca_key(),
                key.public_key(),
                user=user,
                now=now,
                days=days,
                serial=serial,
                allow_tls13_only=allow_tls13_only,
            )

        issued, record = self._sign_and_record(sign, origin="issued", now=now)
        return IssuedCert(record=record, cert=issued.cert, key=key, truncated=issued.truncated)

    def sign_csr(
        self,
        csr_pem: bytes,
        *,
        source: str,
        user: str | None,
        days: int,
        now: datetime,
        allow_tls13_only: bool = False,
    ) -> SignedCert:
        """Sign an external CSR (its signature verified); the certificate is recorded first."""
        csr = crypto.load_csr(csr_pem, source=source)

        def sign(serial: int) -> crypto.Issued:
            return crypto.sign_csr(
                self._ca_cert,
                self._ca_key(),
                csr,
                user=user,
                now=now,
                days=days,
                serial=serial,
                source=source,
                allow_tls13_only=allow_tls13_only,
            )

        issued, record = self._sign_and_record(sign, origin="signed", now=now)
        return SignedCert(record=record, cert=issued.cert, truncated=issued.truncated)

    # -- revocation -------------------------------------------------------------------------

    def revoke(
        self,
        *,
        serial: int | None = None,
        cert_pem: bytes | None = None,
        cert_source: str = "certificate",
        user: str | None = None,
        reason: RevocationReason = RevocationReason.UNSPECIFIED,
        now: datetime,
    ) -> RevokeResult:
        """Mark one certificate revoked, selected by serial, by the certificate itself, or by
        a user name that matches exactly one valid certificate. Already revoked: no change."""
        with self.locked(), self._inv.transaction():
            record = revocation.select(
                self._inv,
                [self._ca_cert, *(c for c, _ in self._inv.ca_certs())],
                serial=serial,
                cert_pem=cert_pem,
                cert_source=cert_source,
                user=user,
                now=now,
            )
            if record.status is CertStatus.REVOKED:
                return RevokeResult(record=record, changed=False)
            revoked = dataclasses.replace(
                record, status=CertStatus.REVOKED, revoked_at=utc_seconds(now), reason=reason
            )
            self._inv.replace(revoked)
        return RevokeResult(record=revoked, changed=True)

    # -- reading ----------------------------------------------------------------------------

    def certificates(self, *, user: str | None = None) -> list[CertRecord]:
        """Every inventory row (or one user's), oldest first."""
        return self._inv.all(cn=user)

    def get(self, serial: int) -> CertRecord | None:
        """One row by serial."""
        return self._inv.get(serial)

    def revocations(self) -> list[crypto.Revocation]:
        """Every revoked certificate, as a CRL needs it (four columns, not whole rows)."""
        return crl_signing.revocations(self._inv)

    def live_revocations(self, *, now: datetime) -> frozenset[int]:
        """The serials a CRL built at `now` lists (`crypto.Revocation.listed`): what an
        instance's CRL must list for this store's revocations to be live."""
        return frozenset(r.serial for r in self.revocations() if r.listed(now))

    def next_crl_number(self) -> int:
        """The number the next CRL will carry."""
        return crl_signing.next_crl_number(self._inv)

    def summary(self, *, now: datetime) -> CaSummary:
        """Everything ``ca show`` prints."""
        states = [r.state(now) for r in self._inv.all()]
        return CaSummary(
            path=self.path,
            info=crypto.inspect_cert(self._ca_cert),
            key_protection=self.key_protection(),
            valid=states.count("valid"),
            revoked=states.count("revoked"),
            expired=states.count("expired"),
            next_crl_number=self.next_crl_number(),
            last_crl=self._inv.last_crl(),
            history=tuple(self.ca_history()),
        )

    # -- CRLs -------------------------------------------------------------------------------

    def build_crl(
        self,
        *,
        now: datetime,
        days: int = crypto.DEFAULT_CRL_DAYS,
        out: Path | None = None,
        restart_margin: timedelta = crl_policy.DEFAULT_RESTART_MARGIN,
    ) -> BuiltCrl:
        """Sign a CRL of every revoked certificate with the next CRL number, advancing the
        number in the same transaction that records the CRL. The CRL must pass the one CRL
        policy (`rdsssl.pki.crl_policy`) for this CA before anything is recorded: a CRL that would
        lock users out (expiring within `restart_margin`, listing the CA, ...) is refused with
        its number unused and nothing written.

        ``out`` is staged first (a temp file in its directory: a directory that is missing or
        not writable is an InputError before anything is signed), filled before the COMMIT
        (a failed write rolls the number back) and renamed into place after it, all under the
        lock: a CRL file always carries a recorded number, and two runs never leave an older
        CRL in place."""
        with self.locked(), contextlib.ExitStack() as stack:
            staged = None if out is None else stack.enter_context(crl_signing.stage_crl_file(out))
            built = crl_signing.sign(
                self._inv,
                self._ca_cert,
                self._ca_key(),
                now=now,
                days=days,
                restart_margin=restart_margin,
                staged=staged,
            )
            if staged is not None:
                staged.commit()
        return built

    # -- consistency ------------------------------------------------------------------------

    def problems(self) -> list[str]:
        """Every inconsistency found (empty when the store is sound): sqlite's integrity check,
        each recorded certificate against its row, and the CRL number against built CRLs."""
        return consistency.problems(self._inv, self._ca_cert)
