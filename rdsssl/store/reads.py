"""The read side of a CA store (`StoreReads`, mixed into `rdsssl.store.castore.CaStore`): rows,
users, listings and revocations, each a thin call on the inventory (`rdsssl.store.db`); none
needs the store lock or the CA key.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime

from rdsssl.pki import crypto
from rdsssl.store import crl_signing
from rdsssl.store.db import Inventory
from rdsssl.store.records import CertLine, CertRecord, CertRow, ListingSize

__all__ = ["StoreReads"]


class StoreReads:
    """What a CA store answers from its inventory (needs `_inv`)."""

    _inv: Inventory

    def certificates(self, *, user: str | None = None) -> list[CertRecord]:
        """Every inventory row (or one user's), oldest first."""
        return self._inv.all(cn=user)

    def users(self, *, user: str | None = None) -> list[str]:
        """Every CN with a certificate in the store (or just ``user`` if it has one), sorted;
        read from an index, not by loading the rows."""
        return self._inv.cns(cn=user)

    def newest_unrevoked(self, *, user: str | None = None) -> dict[str, CertRecord]:
        """Each user's newest certificate that is not revoked (``renewal_plan.newest`` of
        ``certificates``), chosen by sqlite: a renewal plan of a large store loads one row
        per user instead of every row."""
        return self._inv.newest_unrevoked(cn=user)

    def listing(
        self, *, now: datetime, user: str | None = None, state: str | None = None
    ) -> Iterator[CertRow]:
        """The rows ``cert list`` prints (every row, or one user's, or those in one state at
        ``now``), oldest first, streamed: memory does not grow with the store
        (``Inventory.rows``). Iterate it before the store is closed."""
        return self._inv.rows(now=now, cn=user, state=state)

    def listing_lines(
        self, *, now: datetime, user: str | None = None, state: str | None = None
    ) -> Iterator[CertLine]:
        """``listing`` with only the columns the ``cert list`` table prints."""
        return self._inv.lines(now=now, cn=user, state=state)

    def listing_size(
        self, *, now: datetime, user: str | None = None, state: str | None = None
    ) -> ListingSize:
        """How many rows ``listing`` would give and its longest serial and CN."""
        return self._inv.listing_size(now=now, cn=user, state=state)

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
