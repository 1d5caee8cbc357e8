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

``ca renew`` keeps every certificate the CA has had in the inventory; the
``rdsssl.store.ca_renewal`` docstring says why a kill at any point leaves a store that opens.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from types import TracebackType

from cryptography import x509

from rdsssl.errors import StoreError
from rdsssl.models import KeyType, RevocationReason
from rdsssl.pki import crl_policy, crypto
from rdsssl.store import (
    ca_key,
    ca_renewal,
    consistency,
    crl_signing,
    issuing,
    revocation,
    server_issuing,
)
from rdsssl.store.ca_import import CaSeed, ImportSources, read_import
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
from rdsssl.store.reads import StoreReads
from rdsssl.store.records import (
    BuiltCrl,
    CaRenewal,
    CaSummary,
    CaVersion,
    IssuedCert,
    KeyRewrap,
    RevokeResult,
    SignedCert,
    format_time,
)

__all__ = ["CaStore"]


class CaStore(StoreReads):
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
        return cls._create(path, CaSeed(cert, key, rows=[], crl_number=1), passphrase, now)

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
        sources: ImportSources | None = None,
    ) -> CaStore:
        """Adopt a CA made by hand (``ca import``), keeping an ``openssl ca`` history if given
        (``ca_import.read_import`` checks everything before the store is created)."""
        seed = read_import(
            cert_pem=cert_pem,
            key_pem=key_pem,
            key_passphrase=key_passphrase,
            index_txt=index_txt,
            crlnumber=crlnumber,
            now=now,
            sources=sources or ImportSources(),
        )
        return cls._create(path, seed, passphrase, now)

    @classmethod
    def _create(cls, path: Path, seed: CaSeed, passphrase: bytes | None, now: datetime) -> CaStore:
        meta = {
            "crl_number": str(seed.crl_number),
            "ca_fingerprint": crypto.fingerprint(seed.cert),
            "created_at": format_time(now),
        }
        key_pem = crypto.ca_key_pem(seed.key, passphrase)
        cert_pem = crypto.cert_pem(seed.cert)
        create_store_dir(path, key_pem=key_pem, cert_pem=cert_pem, meta=meta, rows=seed.rows)
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
            new, stranded = ca_renewal.renew(
                self._inv, self.path / CA_CERT, old, key, days=days, now=now, force=force
            )
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

    def ca_certificates(self) -> list[x509.Certificate]:
        """Every certificate of the CA (``ca_history``'s), oldest first, ca.crt last if never
        recorded: what a trust bundle of this CA holds."""
        certs = [c for c, _ in self._inv.ca_certs()]
        if self._ca_fp not in {crypto.fingerprint(c) for c in certs}:
            certs.append(self._ca_cert)
        return certs

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

    def issue(
        self,
        *,
        user: str,
        key_type: KeyType,
        days: int,
        now: datetime,
        allow_tls13_only: bool = False,
    ) -> IssuedCert:
        """A new key and client certificate for ``user``, recorded before anyone sees it: a
        batch of one (``issue_many``)."""
        request = issuing.IssueRequest(user=user, key_type=key_type, days=days)
        (issued,) = self.issue_many([request], now=now, allow_tls13_only=allow_tls13_only)
        return issued

    def issue_many(
        self,
        requests: Sequence[issuing.IssueRequest],
        *,
        now: datetime,
        allow_tls13_only: bool = False,
    ) -> list[IssuedCert]:
        """A new key and client certificate for each request, in order, all recorded in ONE
        inventory transaction before anyone sees them (`issuing.sign_and_record`): all or
        nothing. Every request is checked (`issuing.check_request`: the role name, a key type
        that fails over TLS 1.2 unless ``allow_tls13_only``) before any key is made; the keys
        are made outside the lock (slow for RSA)."""
        for request in requests:
            issuing.check_request(request, allow_tls13_only=allow_tls13_only)
        keyed = [(request, crypto.generate_key(request.key_type)) for request in requests]
        with self.locked():
            return issuing.issue_many(
                self._issuer(), keyed, now=now, allow_tls13_only=allow_tls13_only
            )

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
        with self.locked():
            return issuing.sign_csr(
                self._issuer(),
                csr,
                source=source,
                user=user,
                days=days,
                now=now,
                allow_tls13_only=allow_tls13_only,
            )

    def issue_server_cert(
        self, *, instance_id: str, names: list[str], key_type: KeyType, days: int, now: datetime
    ) -> server_issuing.ServerIssue:
        """A new key and server certificate naming `names` (`rdsssl.store.server_issuing`)."""
        key = crypto.generate_key(key_type)  # outside the lock: slow for RSA
        with self.locked():
            return server_issuing.issue(
                self._inv, self.path, self._ca_cert, self._ca_key(), key,
                instance_id=instance_id, names=names, key_type=key_type.value, days=days, now=now,
            )  # fmt: skip

    def server_certs(
        self, *, instance_id: str | None = None
    ) -> list[server_issuing.ServerCertRecord]:
        """The server certificates this CA issued (`rdsssl.store.server_issuing`)."""
        return server_issuing.records(self._inv, instance_id=instance_id)

    def _issuer(self) -> issuing.Issuer:
        return issuing.Issuer(self._inv, self._ca_cert, self._ca_key())

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
        a user name that matches exactly one valid certificate. Already revoked: no change. A
        batch of one (``revoke_many``)."""
        selection = revocation.Selection(
            serial=serial, cert_pem=cert_pem, cert_source=cert_source, user=user
        )
        (result,) = self.revoke_many([selection], reason=reason, now=now)
        return result

    def revoke_many(
        self,
        selections: Sequence[revocation.Selection],
        *,
        reason: RevocationReason = RevocationReason.UNSPECIFIED,
        now: datetime,
    ) -> list[RevokeResult]:
        """Mark every selected certificate revoked in ONE inventory transaction, all or nothing
        (`revocation.revoke_many`: a batch with any selection refused changes nothing and names
        each). Needs no CA key: revoking only records; a CRL (``build_crl``) signs."""
        with self.locked():
            return revocation.revoke_many(
                self._inv,
                [self._ca_cert, *(c for c, _ in self._inv.ca_certs())],
                selections,
                reason=reason,
                now=now,
            )

    def summary(self, *, now: datetime) -> CaSummary:
        """Everything ``ca show`` prints; the certificates are counted by sqlite, not loaded."""
        counts = self._inv.state_counts(now=now)
        return CaSummary(
            path=self.path,
            info=crypto.inspect_cert(self._ca_cert),
            key_protection=self.key_protection(),
            valid=counts["valid"],
            revoked=counts["revoked"],
            expired=counts["expired"],
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
        """Sign a CRL of every revoked certificate with the next CRL number, checked by the
        one CRL policy (`rdsssl.pki.crl_policy`) before anything is recorded, and write it to
        ``out`` if given, under the store lock (``crl_signing.sign_to``: a CRL that would lock
        users out is refused with its number unused and nothing written; a CRL file always
        carries a recorded number)."""
        with self.locked():
            return crl_signing.sign_to(
                self._inv,
                self._ca_cert,
                self._ca_key(),
                now=now,
                days=days,
                restart_margin=restart_margin,
                out=out,
            )

    # -- consistency ------------------------------------------------------------------------

    def problems(self) -> list[str]:
        """Every inconsistency found (empty when the store is sound): sqlite's integrity check,
        each recorded certificate against its row, and the CRL number against built CRLs."""
        return consistency.problems(self._inv, self._ca_cert)
