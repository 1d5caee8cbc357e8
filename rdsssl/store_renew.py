"""Certificate renewal over the CA store's public API (``cert renew``; issue 5 extends it).

A user is due when their newest unrevoked certificate expires within the window (or already
has): renewing issues a new key and certificate, records it, and rewrites ``OUT_ROOT/<user>/``.
The old certificate is left valid (clients switch over at their own pace; revoke it with
``cert revoke --serial`` once they have). A certificate that already ends with the CA cannot be
extended by re-issuing, so it is reported as blocked instead of being re-issued on every run.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from rdsssl.models import CertStatus, KeyType
from rdsssl.store import CaStore, CertRecord, IssuedCert, user_dir, write_client_files

__all__ = ["Renewal", "RenewalPlan", "plan_renewal", "renew", "renew_due"]


@dataclass(frozen=True)
class RenewalPlan:
    """``due``: to re-issue now. ``blocked``: inside the window but already ending with the CA."""

    due: list[CertRecord]
    blocked: list[CertRecord]


@dataclass(frozen=True)
class Renewal:
    """One renewal: the certificate that was due, its replacement, and the files written."""

    old: CertRecord
    new: IssuedCert
    files: tuple[Path, ...]


def plan_renewal(
    store: CaStore, *, before: timedelta, now: datetime, user: str | None = None
) -> RenewalPlan:
    """Which users need a new certificate: newest unrevoked one per user, inside ``before``."""
    newest: dict[str, CertRecord] = {}
    for row in store.certificates(user=user):
        if row.status is CertStatus.REVOKED:
            continue
        if row.cn not in newest or row.not_after >= newest[row.cn].not_after:  # later wins ties
            newest[row.cn] = row
    in_window = sorted(
        (r for r in newest.values() if r.not_after - now <= before), key=lambda r: r.cn
    )
    ca_end = store.ca_cert.not_valid_after_utc
    return RenewalPlan(
        due=[r for r in in_window if r.not_after < ca_end],
        blocked=[r for r in in_window if r.not_after >= ca_end],
    )


def renew(
    store: CaStore,
    record: CertRecord,
    *,
    now: datetime,
    days: int,
    key_type: KeyType | None = None,
) -> IssuedCert:
    """A new key and certificate for the user of ``record`` (same key type when known)."""
    if key_type is None:
        known = {k.value: k for k in KeyType}
        key_type = known.get(record.key_type, KeyType.EC_P256)
    return store.issue(user=record.cn, key_type=key_type, days=days, now=now)


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
) -> list[Renewal]:
    """Renew every certificate of ``plan.due`` and rewrite ``out_root/<user>/`` (each file
    atomically), holding the store lock for the whole run. The store must be unlocked."""
    targets = {old.cn: user_dir(out_root, old.cn) for old in plan.due}  # refuse before issuing
    done: list[Renewal] = []
    with store.locked():
        for old in plan.due:
            new = renew(store, old, now=now, days=days, key_type=key_type)
            files = write_client_files(
                targets[old.cn],
                new,
                store.ca_cert,
                fmt=fmt,
                overwrite=True,
                p12_passphrase=p12_passphrase,
            )
            done.append(Renewal(old=old, new=new, files=tuple(files)))
    return done
