"""The server CA bundle clients put in `sslrootcert` while a server CA changes.

A client trusts the server through one file. Rotating the server CA without breaking a
`verify-full` client therefore goes: (1) give every client a bundle holding the old AND the new
server CA, (2) only then serve a certificate of the new CA (`set-server-cert` with the new
store), (3) later drop the old CA from the bundle. The bundle holds, from each server CA store
given: its current certificate and the previous ones (`ca renew` keeps them) that are still
valid; several stores (old CA, new CA) are simply listed one after the other. Certificates are
de-duplicated by fingerprint, expired ones left out (a client ignores them anyway).

Written atomically (readers see the old file or the new one); a target that exists and is not
a regular file (a directory, a device, a FIFO) is refused.
"""

from __future__ import annotations

import stat
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from cryptography import x509

from rdsssl.errors import InputError
from rdsssl.pki import crypto
from rdsssl.store.castore import CaStore
from rdsssl.store.fsutil import atomic_write

__all__ = ["BundleEntry", "BundleResult", "write_bundle"]


@dataclass(frozen=True)
class BundleEntry:
    """One CA certificate in the bundle (secret-free)."""

    store: str
    subject: str
    not_after: datetime
    fingerprint: str
    current: bool

    def to_json(self) -> dict[str, object]:
        return {
            "ca_dir": self.store,
            "subject": self.subject,
            "not_after": self.not_after.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "fingerprint": self.fingerprint,
            "current": self.current,
        }


@dataclass(frozen=True)
class BundleResult:
    """What was written, and what was left out (expired)."""

    out: Path
    entries: tuple[BundleEntry, ...]
    expired: tuple[str, ...]  # fingerprints left out


def _check_target(out: Path) -> None:
    try:
        st = out.lstat()
    except FileNotFoundError:
        return
    except OSError as exc:
        raise InputError(f"cannot use {out}: {exc.strerror}") from None
    if not stat.S_ISREG(st.st_mode):
        raise InputError(f"{out} exists and is not a regular file; choose another --out")


def write_bundle(ca_dirs: list[Path], out: Path, *, now: datetime) -> BundleResult:
    """Collect the still-valid certificates of every store in `ca_dirs` into `out`."""
    if not ca_dirs:
        raise InputError("give at least one server CA store (--ca-dir DIR)")
    _check_target(out)
    chosen: list[x509.Certificate] = []
    entries: list[BundleEntry] = []
    expired: list[str] = []
    seen: set[str] = set()
    for directory in ca_dirs:
        with CaStore.open(directory) as store:
            current_fp = crypto.fingerprint(store.ca_cert)
            certs = store.ca_certificates()
        for cert in certs:
            fp = crypto.fingerprint(cert)
            if fp in seen:
                continue
            seen.add(fp)
            if cert.not_valid_after_utc <= now:
                expired.append(fp)
                continue
            chosen.append(cert)
            info = crypto.inspect_cert(cert)
            entries.append(
                BundleEntry(str(directory), info.subject, info.not_after, fp, fp == current_fp)
            )
    if not chosen:
        raise InputError("every CA certificate of the stores given has expired: nothing to trust")
    atomic_write(out, b"".join(crypto.cert_pem(c) for c in chosen), mode=0o644)
    return BundleResult(out, tuple(entries), tuple(expired))
