"""Listing and counting the inventory without loading it (`ListingQueries`, mixed into
`rdsssl.store.db.Inventory`): a store of 100,000 certificates is ~90 MB of rows, so listings
are read a page at a time and counts come from indexes, with the state of a row (valid,
revoked, expired at a time) computed by sqlite. See docs/ARCHITECTURE.md.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from rdsssl.store.records import CertLine, CertRow, ListingSize, format_time

__all__ = ["STATE_INDEX", "ListingQueries"]

STATE_INDEX = "CREATE INDEX IF NOT EXISTS certs_by_state ON certs (status, not_after)"

# A row's state at a time (bound as :now, in format_time's form). Stored timestamps have whole
# seconds in that form, which sorts as time does, so `not_after <= :now` is CertRecord.state's
# `not_after <= now` also for a `now` with microseconds.
_STATE = (
    "CASE WHEN status = 'revoked' THEN 'revoked'"
    " WHEN not_after <= :now THEN 'expired' ELSE 'valid' END"
)
_ROW_COLUMNS = (
    f"serial, cn, {_STATE}, not_before, not_after, revoked_at, reason, fingerprint,"
    " issuer_fingerprint, key_type, origin"
)
_LINE_COLUMNS = f"serial, cn, {_STATE}, not_after, fingerprint"
_COUNT_BY_INDEX = (
    "SELECT (SELECT count(*) FROM certs WHERE status = 'valid' AND not_after > :now),"
    " (SELECT count(*) FROM certs WHERE status = 'revoked'),"
    " (SELECT count(*) FROM certs WHERE status = 'valid' AND not_after <= :now)"
)
_LISTING_PAGE = 2000  # rows per statement of a listing (see Inventory.rows)


def _where(cn: str | None, state: str | None) -> str:
    """The WHERE clause selecting a listing's rows (parameters :cn, :state, :now)."""
    terms = ["cn = :cn"] if cn is not None else []
    if state is not None:
        terms.append(f"{_STATE} = :state")
    return " AND ".join(terms) or "1"


class ListingQueries:
    """The read-only listing queries of the inventory (needs `_conn`)."""

    _conn: sqlite3.Connection

    def _paged(self, columns: str, where: str, args: dict[str, Any]) -> Iterator[tuple[Any, ...]]:
        """``SELECT columns, seq`` of the rows ``where`` selects, in the order they were added,
        a page at a time (keyset on ``seq``), each page its own statement: memory does not grow
        with the store, and the read lock is not held while the caller writes a page out (a
        listing piped into a pager must not block ``cert issue`` for as long as it is open).
        A row added meanwhile comes at the end; no row is repeated or skipped."""
        sql = (
            f"SELECT {columns}, seq FROM certs WHERE seq > :after AND ({where})"
            f" ORDER BY seq LIMIT {_LISTING_PAGE}"
        )
        args = {**args, "after": 0}
        while True:
            page = self._conn.execute(sql, args).fetchall()
            yield from page
            if len(page) < _LISTING_PAGE:
                return
            args["after"] = page[-1][-1]

    def rows(
        self, *, now: datetime, cn: str | None = None, state: str | None = None
    ) -> Iterator[CertRow]:
        """Every row (or one CN's, or those in one state at ``now``) in the order they were
        added, as listings show them: stored text, nothing parsed, streamed (``_paged``)."""
        args = {"now": format_time(now), "cn": cn, "state": state}
        shared: dict[str, str] = {}  # one string object per repeated value (issuer, key type)
        for r in self._paged(_ROW_COLUMNS, _where(cn, state), args):
            yield CertRow(
                r[0],
                r[1],
                r[2],
                r[3],
                r[4],
                r[5],
                r[6],
                r[7],
                shared.setdefault(r[8], r[8]),
                shared.setdefault(r[9], r[9]),
                shared.setdefault(r[10], r[10]),
            )

    def lines(
        self, *, now: datetime, cn: str | None = None, state: str | None = None
    ) -> Iterator[CertLine]:
        """``rows`` with only the five columns the ``cert list`` table prints."""
        args = {"now": format_time(now), "cn": cn, "state": state}
        for r in self._paged(_LINE_COLUMNS, _where(cn, state), args):
            yield r[:5]  # without seq

    def listing_size(
        self, *, now: datetime, cn: str | None = None, state: str | None = None
    ) -> ListingSize:
        """How many rows ``rows`` would give and the longest serial and CN among them, read
        without building a row (unfiltered or by CN: from the indexes alone)."""
        where = _where(cn, state)
        args = {"now": format_time(now), "cn": cn, "state": state}
        if state is None:  # each aggregate from its own covering index
            sql = (
                f"SELECT (SELECT count(*) FROM certs WHERE {where}),"
                f" (SELECT max(length(serial)) FROM certs WHERE {where}),"
                f" (SELECT max(length(cn)) FROM certs WHERE {where})"
            )
        else:
            sql = f"SELECT count(*), max(length(serial)), max(length(cn)) FROM certs WHERE {where}"
        count, serial_width, cn_width = self._conn.execute(sql, args).fetchone()
        return ListingSize(int(count), int(serial_width or 0), int(cn_width or 0))

    def state_counts(self, *, now: datetime) -> dict[str, int]:
        """How many rows are valid, revoked and expired at ``now``: three range counts on
        ``certs_by_state``, or one scan of the table in a store that does not have it yet."""
        args = {"now": format_time(now)}
        if self._has_state_index():
            row = self._conn.execute(_COUNT_BY_INDEX, args).fetchone()
            return {"valid": row[0], "revoked": row[1], "expired": row[2]}
        counts = dict.fromkeys(("valid", "revoked", "expired"), 0)
        rows = self._conn.execute(
            f"SELECT {_STATE} AS state, count(*) FROM certs GROUP BY state", args
        )
        counts.update((str(state), int(n)) for state, n in rows.fetchall())
        return counts

    def _has_state_index(self) -> bool:
        row = self._conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'index' AND name = 'certs_by_state'"
        ).fetchone()
        return row is not None
