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
import hashlib
import sqlite3
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from types import TracebackType

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.serialization import Encoding

from rdsssl.errors import CryptoError, InputError, NotFoundError, StoreError, UsageError
from rdsssl.models import CertStatus, KeyType, RevocationReason
from rdsssl.pki import crl_policy, crypto
from rdsssl.store.db import (
    BuiltCrl,
    CaRenewal,
    CaSummary,
    CaVersion,
    CertRecord,
    CrlRecord,
    Inventory,
    IssuedCert,
    KeyRewrap,
    RevokeResult,
    SignedCert,
    format_time,
    utc_seconds,
)
from rdsssl.store.files import (
    CA_CERT,
    CA_KEY,
    INVENTORY,
    check_client_dir,
    check_client_files_absent,
    check_key_file,
    check_store_dir,
    client_file_names,
    create_store_dir,
    loose_client_dir_warning,
    replace_key_file,
    user_dir,
    write_client_files,
)
from rdsssl.store.fsutil import StagedFile
from rdsssl.store.lock import LOCK_NAME, FileLock, current_command
from rdsssl.store.openssl_import import index_records, parse_crlnumber, parse_index_txt

__all__ = [
    "CA_CERT",
    "CA_KEY",
    "INVENTORY",
    "BuiltCrl",
    "CaRenewal",
    "CaStore",
    "CaSummary",
    "CaVersion",
    "CertRecord",
    "IssuedCert",
    "KeyRewrap",
    "RevokeResult",
    "SignedCert",
    "check_client_dir",
    "check_client_files_absent",
    "client_file_names",
    "loose_client_dir_warning",
    "user_dir",
    "write_client_files",
]


_SERIAL_ATTEMPTS = 5  # a 159-bit collision is ~impossible; the loop only keeps the code honest


def _verify_issued_by(cert: x509.Certificate, ca_cert: x509.Certificate, source: str) -> None:
    """CryptoError unless ``ca_cert`` signed ``cert`` (name chaining + signature)."""
    try:
        cert.verify_directly_issued_by(ca_cert)
    except (ValueError, TypeError, InvalidSignature):
        raise CryptoError(
            f"{source}: not issued by this CA ({crypto.name_of(ca_cert)}); the certificate's "
            f"issuer is {cert.issuer.rfc4514_string() or 'empty'}"
        ) from None


def _stage_crl_file(out: Path) -> StagedFile:
    """``out`` staged for writing; InputError naming its directory when that cannot be done."""
    try:
        return StagedFile(out, mode=0o644)
    except OSError as exc:
        raise InputError(
            f"cannot write the CRL to {out}: {out.parent}: {exc.strerror}; create the "
            "directory or choose another file"
        ) from None


def _check_current_ca(inv: Inventory, cert: x509.Certificate, source: str) -> None:
    """StoreError unless ``cert`` (ca.crt) is this store's CA: the certificate it was created
    with, one recorded by ``ca renew``, or a renewal whose record a kill prevented (see the
    module docstring): self-signed, with the identity of a recorded certificate."""
    fp = crypto.fingerprint(cert)
    if fp == inv.get_meta("ca_fingerprint"):
        return
    recorded = [c for c, _ in inv.ca_certs()]
    if fp in {crypto.fingerprint(c) for c in recorded}:
        return
    identity = crypto.ca_identity(cert)
    if any(crypto.ca_identity(c) == identity for c in recorded) and crypto.is_self_signed(cert):
        return
    raise StoreError(
        f"{source} is not the CA this store was created with, nor a renewal of it (its "
        "inventory records other fingerprints); restore the original ca.crt"
    )


def _stage_ca_file(path: Path) -> StagedFile:
    try:
        return StagedFile(path, mode=0o644)
    except OSError as exc:
        raise StoreError(f"cannot write {path}: {exc.strerror}") from None


def _refuse_shorter(old: x509.Certificate, new: x509.Certificate, now: datetime) -> None:
    """InputError when the renewal would end before the current CA."""
    old_end, new_end = old.not_valid_after_utc, new.not_valid_after_utc
    if new_end >= old_end:
        return
    needed = -(-(old_end - now) // timedelta(days=1))  # whole days, rounded up
    raise InputError(
        f"the renewed CA would end {format_time(new_end)}, before the current one "
        f"({format_time(old_end)}): a renewal does not shorten the CA's life; give at least "
        f"{needed} days (--days), or --force to shorten it on purpose"
    )


def _refuse_stranded(stranded: list[CertRecord]) -> None:
    """InputError naming the valid certificates that would not chain to the renewed CA."""
    if not stranded:
        return
    shown = ", ".join(f"{r.serial_hex} ({r.cn})" for r in stranded[:5])
    more = f" and {len(stranded) - 5} more" if len(stranded) > 5 else ""
    raise InputError(
        f"{len(stranded)} valid certificate(s) name the current CA certificate by its serial "
        f"(authority key identifier) and would be refused once the renewed CA is on an "
        f"instance: {shown}{more}. Revoke or re-issue them after the renewal; pass --force to "
        "renew anyway"
    )


# --- the store --------------------------------------------------------------------------------


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
        try:
            data = (path / CA_CERT).read_bytes()
        except OSError as exc:
            raise StoreError(f"cannot read {source}: {exc.strerror}") from None
        certs = crypto.load_certificates(data, source=source, what="the CA certificate file")
        if len(certs) != 1:
            raise StoreError(f"{source}: holds {len(certs)} certificates; expected one")
        inv = Inventory.open(path / INVENTORY)
        try:
            _check_current_ca(inv, certs[0], source)
        except BaseException:
            inv.close()
            raise
        return cls(path, inventory=inv, ca_cert=certs[0], wait_lock=wait_lock)

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

    def _read_key(self) -> bytes:
        try:
            return self.key_path.read_bytes()
        except OSError as exc:
            raise StoreError(f"cannot read {self.key_path}: {exc.strerror}") from None

    def key_protection(self) -> crypto.KeyProtection:
        """How ca.key is protected (scheme, KDF, rounds, cipher, ``weak``), read from the file
        without decrypting it: no passphrase needed."""
        return crypto.key_protection(self._read_key(), source=str(self.key_path))

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
        if self._key is not None:
            return
        data = self._read_key()
        source = str(self.key_path)
        encrypted = crypto.key_protection(data, source=source).encrypted
        if encrypted and passphrase is None:
            raise StoreError(
                f"{self.key_path} is encrypted: set RDSSSL_CA_PASSPHRASE, pass "
                "--passphrase-file FILE, or run on a terminal to be asked"
            )
        try:
            key = crypto.load_private_key(data, source=source, passphrase=passphrase)
        except CryptoError:
            if encrypted:
                raise StoreError(f"wrong passphrase for {self.key_path}") from None
            raise
        crypto.check_key_matches(self._ca_cert, key, source=source)
        self._key, self._key_digest = key, hashlib.sha256(data).digest()

    def change_passphrase(
        self, passphrase: bytes | None, *, now: datetime, keep_old: bool = False
    ) -> KeyRewrap:
        """Re-encrypt the unlocked CA key for ``passphrase`` (None: unencrypted) with the
        parameters of ``crypto.ca_key_pem``, also when the passphrase is unchanged (to
        strengthen an older file), under the store lock.

        ca.key is replaced by ``store_files.replace_key_file``: the new file is verified (it
        decrypts with ``passphrase`` to the key of ca.crt) before it is renamed into place, and
        the old one is kept as ``ca.key.bak-<time>`` until then, or for good with ``keep_old``.
        StoreError, nothing changed, when ca.key is no longer the file that was unlocked.
        """
        key = self._ca_key()
        source = str(self.key_path)
        with self.locked():
            current = self._read_key()
            if hashlib.sha256(current).digest() != self._key_digest:
                raise StoreError(
                    f"{self.key_path} changed since it was unlocked (another run?); run again"
                )
            before = crypto.key_protection(current, source=source)
            data = crypto.ca_key_pem(key, passphrase)

            def verify(written: bytes) -> None:
                loaded = crypto.load_private_key(written, source=source, passphrase=passphrase)
                crypto.check_key_matches(self._ca_cert, loaded, source=source)

            kept = replace_key_file(
                self.key_path,
                data,
                stamp=utc_seconds(now).strftime("%Y%m%dT%H%M%SZ"),
                verify=verify,
                keep_old=keep_old,
            )
            self._key_digest = hashlib.sha256(data).digest()
        return KeyRewrap(
            path=self.key_path,
            before=before,
            after=crypto.key_protection(data, source=source),
            kept_old=kept,
        )

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
            stranded = self._stranded(old, new, now)
            if not force:
                _refuse_shorter(old, new, now)
                _refuse_stranded(stranded)
            with self._inv.transaction():
                self._inv.record_ca(old, now=now)
            with _stage_ca_file(self.path / CA_CERT) as staged:
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
        try:
            data = source.read_bytes()
        except OSError as exc:
            raise StoreError(f"cannot read {source}: {exc.strerror}") from None
        certs = crypto.load_certificates(data, source=str(source), what="the CA certificate file")
        if len(certs) != 1 or crypto.fingerprint(certs[0]) != self._ca_fp:
            raise StoreError(f"{source} changed since it was read (another run?); run again")

    def _stranded(
        self, old: x509.Certificate, new: x509.Certificate, now: datetime
    ) -> list[CertRecord]:
        """Valid certificates that chain to ``old`` but would not to ``new``."""
        found = []
        for row in self._inv.all():
            if row.cert_der is None or row.state(now) != "valid":
                continue
            cert = x509.load_der_x509_certificate(row.cert_der)
            if crypto.akid_fits(cert, old) and not crypto.akid_fits(cert, new):
                found.append(row)
        return found

    def ca_history(self) -> list[CaVersion]:
        """Every certificate of the CA, oldest first, the current one (ca.crt) marked; a store
        never renewed has only its current one."""
        current = self._ca_fp
        versions = [
            CaVersion(crypto.inspect_cert(c), crypto.fingerprint(c) == current, at)
            for c, at in self._inv.ca_certs()
        ]
        if not any(v.current for v in versions):  # never renewed, or a renewal's record lost
            versions.append(CaVersion(crypto.inspect_cert(self._ca_cert), True, None))
        return versions

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

    def _record_for(
        self,
        cert: x509.Certificate,
        *,
        origin: str,
        now: datetime,
    ) -> CertRecord:
        info = crypto.inspect_cert(cert)
        return CertRecord(
            serial=info.serial,
            cn=info.cn or "",
            not_before=info.not_before,
            not_after=info.not_after,
            status=CertStatus.VALID,
            revoked_at=None,
            reason=None,
            fingerprint=info.fingerprint,
            issuer_fingerprint=self._ca_fp,
            key_type=info.key_type,
            origin=origin,
            created_at=utc_seconds(now),
            cert_der=cert.public_bytes(Encoding.DER),
        )

    def _sign_and_record(
        self, sign: Callable[[int], crypto.Issued], *, origin: str, now: datetime
    ) -> tuple[crypto.Issued, CertRecord]:
        """Sign with a fresh serial and INSERT the row in one transaction, under the lock."""
        with self.locked():
            for _ in range(_SERIAL_ATTEMPTS):
                issued = sign(crypto.new_serial())
                record = self._record_for(issued.cert, origin=origin, now=now)
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
        if sum(x is not None for x in (serial, cert_pem, user)) != 1:
            raise UsageError("select the certificate with exactly one of --serial, --cert, --user")
        with self.locked(), self._inv.transaction():
            if cert_pem is not None:
                record = self._adopt(cert_pem, cert_source, now)
            elif user is not None:
                record = self._only_valid_for(user, now)
            else:
                assert serial is not None
                for ca_cert in self._ca_certs():
                    if serial == ca_cert.serial_number:
                        self._refuse_ca(self._record_for(ca_cert, origin="ca", now=now))
                found = self._inv.get(serial)
                if found is None:
                    raise NotFoundError(
                        f"no certificate with serial {crypto.serial_hex(serial)} in "
                        f"{self._inv.path}; see rdsssl cert list"
                    )
                record = found
            self._refuse_ca(record)
            if record.status is CertStatus.REVOKED:
                return RevokeResult(record=record, changed=False)
            revoked = dataclasses.replace(
                record, status=CertStatus.REVOKED, revoked_at=utc_seconds(now), reason=reason
            )
            self._inv.replace(revoked)
        return RevokeResult(record=revoked, changed=True)

    def _ca_certs(self) -> list[x509.Certificate]:
        """The current CA certificate and every earlier one."""
        return [self._ca_cert, *(c for c, _ in self._inv.ca_certs())]

    def _refuse_ca(self, record: CertRecord) -> None:
        """A CA certificate is never revoked here: a CRL listing the store's own CA (or any CA
        of the chain) makes PostgreSQL refuse every certificate it issued."""
        is_ca_row = record.cert_der is not None and crypto.is_ca(
            x509.load_der_x509_certificate(record.cert_der)
        )
        own = {c.serial_number for c in self._ca_certs()}
        if record.serial in own or is_ca_row:
            raise InputError(
                f"serial {record.serial_hex} is a CA certificate ({record.cn or 'no CN'}); "
                "revoking it would make PostgreSQL refuse every certificate it issued. Revoke "
                "the client certificates themselves, or rotate the CA (rdsssl rotate ca)"
            )

    def _only_valid_for(self, user: str, now: datetime) -> CertRecord:
        rows = [r for r in self._inv.all(cn=user) if r.state(now) == "valid"]
        if not rows:
            raise NotFoundError(f"no valid certificate for user {user!r} in {self._inv.path}")
        if len(rows) > 1:
            listed = "; ".join(
                f"{r.serial_hex} (not after {format_time(r.not_after)})" for r in rows
            )
            raise InputError(
                f"user {user!r} has {len(rows)} valid certificates: {listed}; "
                "choose one with --serial HEX"
            )
        return rows[0]

    def _adopt(self, cert_pem: bytes, source: str, now: datetime) -> CertRecord:
        """The inventory row for a certificate file, adding it when it was issued outside
        rdsssl (by this CA, e.g. with ``openssl ca``) so that it can be revoked."""
        certs = crypto.load_certificates(cert_pem, source=source, what="a certificate file")
        if len(certs) != 1:
            raise CryptoError(f"{source}: holds {len(certs)} certificates; give exactly one")
        cert = certs[0]
        if crypto.is_ca(cert):
            raise InputError(
                f"{source} is a CA certificate ({crypto.name_of(cert)}), not a client "
                "certificate; revoking a CA would make PostgreSQL refuse every certificate it "
                "issued. Revoke the client certificates, or rotate the CA (rdsssl rotate ca)"
            )
        _verify_issued_by(cert, self._ca_cert, source)
        found = self._inv.get(cert.serial_number)
        fresh = self._record_for(cert, origin="external", now=now)
        if found is None:
            self._inv.insert(fresh)
            return fresh
        if found.fingerprint and found.fingerprint != fresh.fingerprint:
            raise StoreError(
                f"{source}: serial {found.serial_hex} is already in {self._inv.path} for a "
                "different certificate; refusing to guess which one to revoke"
            )
        if not found.fingerprint:  # a row from index.txt: now we know the certificate
            found = dataclasses.replace(
                fresh,
                status=found.status,
                revoked_at=found.revoked_at,
                reason=found.reason,
                origin=found.origin,
                created_at=found.created_at,
            )
            self._inv.replace(found)
        return found

    # -- reading ----------------------------------------------------------------------------

    def certificates(self, *, user: str | None = None) -> list[CertRecord]:
        """Every inventory row (or one user's), oldest first."""
        return self._inv.all(cn=user)

    def get(self, serial: int) -> CertRecord | None:
        """One row by serial."""
        return self._inv.get(serial)

    def revocations(self) -> list[crypto.Revocation]:
        """Every revoked certificate, as a CRL needs it (four columns, not whole rows)."""
        return [
            crypto.Revocation(serial, revoked_at, reason, not_after)
            for serial, revoked_at, reason, not_after in self._inv.revocations()
        ]

    def live_revocations(self, *, now: datetime) -> frozenset[int]:
        """The serials a CRL built at `now` lists (`crypto.Revocation.listed`): what an
        instance's CRL must list for this store's revocations to be live."""
        return frozenset(r.serial for r in self.revocations() if r.listed(now))

    def next_crl_number(self) -> int:
        """The number the next CRL will carry."""
        return int(self._inv.get_meta("crl_number") or "1")

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
            staged = None if out is None else stack.enter_context(_stage_crl_file(out))
            with self._inv.transaction():
                number = self.next_crl_number()
                revocations = self.revocations()
                crl = crypto.build_crl(
                    self._ca_cert, self._ca_key(), revocations, number=number, now=now, days=days
                )
                verdict = crl_policy.evaluate(
                    [self._ca_cert], [crl], now=now, restart_margin=restart_margin
                )
                verdict.raise_if_refused("refusing to sign this CRL")
                pem = crypto.crl_pem(crl)
                built = BuiltCrl(
                    crl=crl,
                    pem=pem,
                    number=number,
                    entries=len(crl),
                    last_update=crl.last_update_utc,
                    next_update=crl.next_update_utc,
                )
                self._inv.add_crl(
                    CrlRecord(
                        number,
                        built.last_update,
                        built.next_update,
                        built.entries,
                        crypto.fingerprint(crl),
                        len(pem),
                    )
                )
                self._inv.set_meta("crl_number", str(number + 1))
                if staged is not None:
                    staged.write(pem)
            if staged is not None:
                staged.commit()
        return built

    # -- consistency ------------------------------------------------------------------------

    def problems(self) -> list[str]:
        """Every inconsistency found (empty when the store is sound): sqlite's integrity check,
        each recorded certificate against its row, and the CRL number against built CRLs."""
        found = self._inv.integrity_problems()
        recorded = [c for c, _ in self._inv.ca_certs()]
        identity = crypto.ca_identity(self._ca_cert)
        for cert in recorded:
            if crypto.ca_identity(cert) != identity:
                found.append(
                    f"CA certificate {crypto.serial_hex(cert.serial_number)} in the inventory is "
                    "not the CA of ca.crt (another subject, key or key identifier)"
                )
        ours = {self._ca_fp, self._inv.get_meta("ca_fingerprint")}
        ours |= {crypto.fingerprint(c) for c in recorded}
        for row in self._inv.all():
            if row.issuer_fingerprint not in ours:
                found.append(f"serial {row.serial_hex}: issued by another CA")
            if row.cert_der is None:
                continue
            cert = x509.load_der_x509_certificate(row.cert_der)
            info = crypto.inspect_cert(cert)
            if (info.serial, info.cn or "", info.fingerprint, info.not_after) != (
                row.serial,
                row.cn,
                row.fingerprint,
                row.not_after,
            ):
                found.append(f"serial {row.serial_hex}: row does not match its certificate")
        last = self._inv.last_crl()
        if last is not None and self.next_crl_number() <= last.number:
            found.append(f"crl_number {self.next_crl_number()} is not above CRL {last.number}")
        return found
