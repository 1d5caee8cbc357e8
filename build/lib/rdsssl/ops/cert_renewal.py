"""Renewing client certificates for cron (``cert renew``): new keys, certificates signed
through the store's CSR path, and finishing what a killed run started. What is due is
`rdsssl.ops.renewal_plan`'s; how the files go live, `rdsssl.ops.client_versions`'.

Crash recovery: the new key is written to ``.pending/client.key`` BEFORE its certificate exists,
then the store signs a CSR for it (recording the certificate first, as always). Client keys never
enter the inventory. So ``finish_interrupted`` completes any killed run without a second
certificate: a ``.pending`` whose key matches a recorded, unrevoked certificate is finished and
published; one whose key matches none (killed before signing) is discarded; a version of the
newest certificate that ``current`` does not select yet is published. A deploy hook that failed
or never ran (killed) runs again on the next run.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from cryptography.x509.oid import NameOID

from rdsssl.errors import CryptoError
from rdsssl.models import CertStatus, KeyType
from rdsssl.ops import client_versions as versions
from rdsssl.ops.client_versions import PENDING, check_user_dir, read_meta, user_dirs, write_meta
from rdsssl.ops.renewal_plan import RenewalPlan, check_key_types, key_type_of, newest
from rdsssl.pki import crypto
from rdsssl.store.castore import CaStore
from rdsssl.store.files import client_file_names, user_dir, write_client_files
from rdsssl.store.fsutil import fsync_dir
from rdsssl.store.records import CertRecord, IssuedCert

__all__ = ["Renewal", "finish_interrupted", "renew_due"]


@dataclass(frozen=True)
class Renewal:
    """A new certificate put in place (``resumed``: finishing a run that was interrupted).
    ``files`` are the stable names in ``out_dir``; ``version_dir`` holds the bytes."""

    user: str
    old: CertRecord | None
    new: CertRecord
    truncated: bool
    out_dir: Path
    version_dir: Path
    files: tuple[Path, ...]
    resumed: bool = False
    old_serial: str | None = None


# --- renewing -----------------------------------------------------------------------------------


def renew_due(
    store: CaStore,
    plan: RenewalPlan,
    *,
    now: datetime,
    out_root: Path,
    days: int,
    key_type: KeyType | None = None,
    fmt: str = "pem",
    p12_passphrase: bytes | None = None,
    hook: bool = False,
    allow_tls13_only: bool = False,
) -> list[Renewal]:
    """Renew every certificate of ``plan.due`` into ``out_root/<user>/``, holding the store
    lock for the whole run. The store must be unlocked. ``hook``: mark each new version as
    waiting for its deploy hook. Run ``finish_interrupted`` first (it clears ``.pending``).
    A bad name, an unsafe directory or a key type that fails over TLS 1.2 (unless
    ``allow_tls13_only``) among them is refused before anything is issued."""
    for old in plan.due:
        crypto.validate_role_name(old.cn)
    if not allow_tls13_only:
        check_key_types(plan.due, key_type)
    targets = {old.cn: check_user_dir(user_dir(out_root, old.cn)) for old in plan.due}
    done: list[Renewal] = []
    with store.locked():
        for old in plan.due:
            out_dir = targets[old.cn]
            chosen = key_type or key_type_of(old)
            key = crypto.generate_key(chosen)  # slow for RSA: before anything is written
            versions.stage(out_dir, key, user=old.cn, old_serial=old.serial_hex, hook=hook)
            signed = store.sign_csr(
                _csr(key, old.cn),
                source=f"renewal of {old.cn}",
                user=old.cn,
                days=days,
                now=now,
                allow_tls13_only=allow_tls13_only,
            )
            issued = IssuedCert(signed.record, signed.cert, key, signed.truncated)
            renewal = _complete(store, out_dir, issued, fmt=fmt, p12=p12_passphrase)
            done.append(replace(renewal, old=old))
    return done


def _csr(key: crypto.PrivateKey, user: str) -> bytes:
    """A CSR for ``key``: the store signs it like any CSR, and the key never leaves disk."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, user)])
    csr = x509.CertificateSigningRequestBuilder().subject_name(name)
    return csr.sign(key, crypto.hash_for(key)).public_bytes(Encoding.PEM)


def _complete(
    store: CaStore, out_dir: Path, issued: IssuedCert, *, fmt: str, p12: bytes | None
) -> Renewal:
    """Write the remaining files into ``.pending``, rename it to its serial, publish it."""
    pending = out_dir / PENDING
    write_client_files(pending, issued, store.ca_cert, fmt=fmt, overwrite=True, p12_passphrase=p12)
    meta = {**(read_meta(pending) or {}), "user": issued.record.cn}
    write_meta(pending, {**meta, "serial": issued.record.serial_hex})
    version = versions.free_name(out_dir, issued.record.serial_hex)
    os.rename(pending, out_dir / version)
    fsync_dir(out_dir)
    versions.publish(out_dir, version)
    return _result(store, issued.record, out_dir / version, client_file_names(fmt), meta)


def _result(
    store: CaStore,
    record: CertRecord,
    version_dir: Path,
    names: tuple[str, ...],
    meta: dict[str, Any],
    *,
    resumed: bool = False,
) -> Renewal:
    out_dir = version_dir.parent
    return Renewal(
        user=record.cn,
        old=None,
        new=record,
        truncated=record.not_after >= store.ca_cert.not_valid_after_utc,
        out_dir=out_dir,
        version_dir=version_dir,
        files=tuple(out_dir / n for n in names),
        resumed=resumed,
        old_serial=meta.get("old_serial"),
    )


# --- finishing what a killed run started --------------------------------------------------------


def finish_interrupted(
    store: CaStore,
    *,
    out_root: Path,
    user: str | None = None,
    fmt: str = "pem",
    p12_passphrase: bytes | None = None,
    dry_run: bool = False,
) -> list[Renewal]:
    """Complete renewals a killed run left half done (see the module docstring); under
    ``dry_run`` only report them. Needs the store lock, not the CA key."""
    done: list[Renewal] = []
    rows = store.certificates(user=user)
    latest = newest(rows)
    with store.locked() if not dry_run else contextlib.nullcontext():
        for cn, out_dir in user_dirs(store, out_root, user=user).items():
            if not out_dir.is_dir():
                continue
            mine = [r for r in rows if r.cn == cn]
            found = _finish_pending(store, out_dir, mine, fmt, p12_passphrase, dry_run)
            if found is None and cn in latest:
                found = _finish_unpublished(store, out_dir, latest[cn], fmt, dry_run)
            if found is not None:
                done.append(found)
    return done


def _finish_pending(
    store: CaStore,
    out_dir: Path,
    rows: list[CertRecord],
    fmt: str,
    p12: bytes | None,
    dry_run: bool,
) -> Renewal | None:
    """``.pending`` of a killed run: finish it if its key was certified, else discard it."""
    pending = out_dir / PENDING
    if not pending.is_dir():
        return None
    key = _load_key(pending / "client.key")
    record = _record_for_key(rows, key) if key is not None else None
    if key is None or record is None or record.status is CertStatus.REVOKED:
        if not dry_run:  # never signed (or revoked since): nothing can use this key
            shutil.rmtree(pending)
            fsync_dir(out_dir)
        return None
    if dry_run:
        version = out_dir / record.serial_hex
        meta = read_meta(pending) or {}
        return _result(store, record, version, client_file_names(fmt), meta, resumed=True)
    assert record.cert_der is not None
    cert = x509.load_der_x509_certificate(record.cert_der)
    truncated = record.not_after >= store.ca_cert.not_valid_after_utc
    renewal = _complete(store, out_dir, IssuedCert(record, cert, key, truncated), fmt=fmt, p12=p12)
    return replace(renewal, resumed=True)


def _load_key(path: Path) -> crypto.PrivateKey | None:
    try:
        return crypto.load_private_key(path.read_bytes(), source=str(path), passphrase=None)
    except (OSError, CryptoError):
        return None


def _spki(key: Any) -> bytes:
    data: bytes = key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    return data


def _record_for_key(rows: list[CertRecord], key: crypto.PrivateKey) -> CertRecord | None:
    """The recorded certificate for ``key`` (compared by public key), newest first."""
    wanted = _spki(key.public_key())
    for row in reversed(rows):
        if row.cert_der is not None:
            cert = x509.load_der_x509_certificate(row.cert_der)
            if _spki(cert.public_key()) == wanted:
                return row
    return None


def _finish_unpublished(
    store: CaStore, out_dir: Path, newest: CertRecord, fmt: str, dry_run: bool
) -> Renewal | None:
    """The newest certificate's version exists but is not (fully) live: publish it."""
    serial = newest.serial_hex
    made = [
        d
        for d in versions.versions(out_dir)
        if (read_meta(d) or {}).get("serial") == serial
        and all((d / n).is_file() for n in versions.BASE_NAMES)
    ]
    if not made:
        return None
    version = made[-1]
    linked = all(versions.is_linked(out_dir, n) for n in versions.BASE_NAMES)
    if versions.current(out_dir) == version.name and linked:
        return None
    if not dry_run:
        versions.publish(out_dir, version.name)
    names = tuple(n for n in client_file_names(fmt) if (version / n).is_file())
    return _result(store, newest, version, names, read_meta(version) or {}, resumed=True)
