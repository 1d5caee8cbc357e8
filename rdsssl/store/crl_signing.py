"""Signing the store's CRL: the next CRL number, every revocation, THE CRL policy
(``rdsssl.pki.crl_policy``) checked before anything is recorded, and the CRL file written so
that it always carries a recorded number. ``CaStore.build_crl`` runs ``sign_to`` under the
store lock; the inventory keeps what identifies each CRL (``CrlRecord``), not the CRL itself.
"""

from __future__ import annotations

import contextlib
import logging
from datetime import datetime, timedelta
from pathlib import Path

from cryptography import x509

from rdsssl.errors import InputError
from rdsssl.pki import crl_policy, crypto
from rdsssl.store.db import Inventory
from rdsssl.store.fsutil import StagedFile
from rdsssl.store.records import BuiltCrl, CrlRecord

log = logging.getLogger(__name__)

__all__ = ["next_crl_number", "revocations", "sign", "sign_to", "stage_crl_file"]


def stage_crl_file(out: Path) -> StagedFile:
    """``out`` staged for writing; InputError naming its directory when that cannot be done."""
    try:
        return StagedFile(out, mode=0o644)
    except OSError as exc:
        raise InputError(
            f"cannot write the CRL to {out}: {out.parent}: {exc.strerror}; create the "
            "directory or choose another file"
        ) from None


def sign_to(
    inv: Inventory,
    ca_cert: x509.Certificate,
    ca_key: crypto.PrivateKey,
    *,
    now: datetime,
    days: int,
    restart_margin: timedelta,
    out: Path | None,
) -> BuiltCrl:
    """``sign``, writing the CRL to ``out`` if given. ``out`` is staged first (a temp file in
    its directory: a directory that is missing or not writable is an InputError before
    anything is signed), filled before the COMMIT (a failed write rolls the number back) and
    renamed into place after it; the caller holds the store lock, so two runs never leave an
    older CRL in place."""
    with contextlib.ExitStack() as stack:
        staged = None if out is None else stack.enter_context(stage_crl_file(out))
        built = sign(
            inv, ca_cert, ca_key, now=now, days=days, restart_margin=restart_margin, staged=staged
        )
        if staged is not None:
            staged.commit()
    return built


def next_crl_number(inv: Inventory) -> int:
    """The number the next CRL will carry."""
    return int(inv.get_meta("crl_number") or "1")


def revocations(inv: Inventory) -> list[crypto.Revocation]:
    """Every revoked certificate, as a CRL needs it (four columns, not whole rows)."""
    return [
        crypto.Revocation(serial, revoked_at, reason, not_after)
        for serial, revoked_at, reason, not_after in inv.revocations()
    ]


def sign(
    inv: Inventory,
    ca_cert: x509.Certificate,
    ca_key: crypto.PrivateKey,
    *,
    now: datetime,
    days: int,
    restart_margin: timedelta,
    staged: StagedFile | None,
) -> BuiltCrl:
    """Sign, check and record the next CRL in one transaction, advancing the CRL number, and
    fill ``staged`` before the COMMIT (a failed write rolls the number back); the caller holds
    the store lock and commits ``staged`` after this returns."""
    with inv.transaction():
        number = next_crl_number(inv)
        crl = crypto.build_crl(ca_cert, ca_key, revocations(inv), number=number, now=now, days=days)
        verdict = crl_policy.evaluate([ca_cert], [crl], now=now, restart_margin=restart_margin)
        verdict.raise_if_refused("refusing to sign this CRL")
        pem = crypto.crl_pem(crl)
        built = BuiltCrl(
            crl=crl,
            pem=pem,
            number=number,
            entries=len(crl),
            last_update=crl.last_update_utc,
            next_update=crl.next_update_utc,
            fingerprint=crypto.fingerprint(crl),
        )
        inv.add_crl(
            CrlRecord(
                number,
                built.last_update,
                built.next_update,
                built.entries,
                built.fingerprint,
                len(pem),
            )
        )
        inv.set_meta("crl_number", str(number + 1))
        log.info(
            "signed CRL number %d: %d entr%s, next update %s",
            number,
            built.entries,
            "y" if built.entries == 1 else "ies",
            f"{built.next_update:%Y-%m-%dT%H:%M:%SZ}",
        )
        if staged is not None:
            staged.write(pem)
    return built
