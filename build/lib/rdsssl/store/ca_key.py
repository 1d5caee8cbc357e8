"""The CA key file (ca.key): reading how it is protected without decrypting it, unlocking it
(a wrong or missing passphrase is a StoreError naming the file), and re-encrypting it for
``ca passphrase``. The SHA-256 of the bytes that were unlocked identifies the file, so a
re-encryption never replaces a ca.key another run changed in between.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from pathlib import Path

from cryptography import x509

from rdsssl.errors import CryptoError, StoreError
from rdsssl.pki import crypto
from rdsssl.store.files import replace_key_file
from rdsssl.store.records import KeyRewrap, utc_seconds

__all__ = ["digest", "read", "rewrap", "unlock"]


def read(path: Path) -> bytes:
    """The bytes of ``path``; StoreError naming it when it cannot be read."""
    try:
        return path.read_bytes()
    except OSError as exc:
        raise StoreError(f"cannot read {path}: {exc.strerror}") from None


def digest(data: bytes) -> bytes:
    """What identifies the ca.key bytes that were unlocked."""
    return hashlib.sha256(data).digest()


def unlock(
    path: Path, passphrase: bytes | None, ca_cert: x509.Certificate
) -> tuple[crypto.PrivateKey, bytes]:
    """The decrypted key of ``path`` (checked against ``ca_cert``) and the digest of its bytes."""
    data = read(path)
    source = str(path)
    encrypted = crypto.key_protection(data, source=source).encrypted
    if encrypted and passphrase is None:
        raise StoreError(
            f"{path} is encrypted: set RDSSSL_CA_PASSPHRASE, pass "
            "--passphrase-file FILE, or run on a terminal to be asked"
        )
    try:
        key = crypto.load_private_key(data, source=source, passphrase=passphrase)
    except CryptoError:
        if encrypted:
            raise StoreError(f"wrong passphrase for {path}") from None
        raise
    crypto.check_key_matches(ca_cert, key, source=source)
    return key, digest(data)


def rewrap(
    path: Path,
    key: crypto.PrivateKey,
    ca_cert: x509.Certificate,
    *,
    unlocked_digest: bytes,
    passphrase: bytes | None,
    now: datetime,
    keep_old: bool,
) -> tuple[KeyRewrap, bytes]:
    """Replace ``path`` by ``key`` encrypted for ``passphrase`` (``crypto.ca_key_pem``) and
    return what changed with the digest of the new bytes; the caller holds the store lock.

    ca.key is replaced by ``replace_key_file``: the new file is verified (it decrypts with
    ``passphrase`` to the key of ``ca_cert``) before it is renamed into place, and the old one
    is kept as ``ca.key.bak-<time>`` until then, or for good with ``keep_old``. StoreError,
    nothing changed, when ca.key is no longer the file that was unlocked."""
    source = str(path)
    current = read(path)
    if digest(current) != unlocked_digest:
        raise StoreError(f"{path} changed since it was unlocked (another run?); run again")
    before = crypto.key_protection(current, source=source)
    data = crypto.ca_key_pem(key, passphrase)

    def verify(written: bytes) -> None:
        loaded = crypto.load_private_key(written, source=source, passphrase=passphrase)
        crypto.check_key_matches(ca_cert, loaded, source=source)

    kept = replace_key_file(
        path,
        data,
        stamp=utc_seconds(now).strftime("%Y%m%dT%H%M%SZ"),
        verify=verify,
        keep_old=keep_old,
    )
    after = crypto.key_protection(data, source=source)
    return KeyRewrap(path=path, before=before, after=after, kept_old=kept), digest(data)
