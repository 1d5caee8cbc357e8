"""The certificate inventory of a CA store (one sqlite3 file, serial-first): ``Inventory``, typed
access to it. The rows it reads and writes are the value types of ``rdsssl.store.records``.

Why sqlite with a rollback journal (not WAL): a SIGKILL or power cut at any point leaves either the
old or the new state after the next open, reads never write to the directory (so a failed command
leaves the store byte-identical), and there are no -wal/-shm side files to copy or lose.
``synchronous=FULL`` makes each COMMIT durable before rdsssl writes any file that depends on it.

Serials are up to 159 bits, beyond sqlite's INTEGER, so they are stored as lowercase hex TEXT
(the format used everywhere in rdsssl). Timestamps are ISO 8601 UTC text, which sorts correctly.

The CA's own certificates (``ca_certs``): the first ``ca renew`` creates the table, in the
transaction that records the current CA certificate, so stores that were never renewed keep the
exact schema of version 1 and older rdsssl versions still read them. A renewed store is refused
by those versions anyway: its ``ca.crt`` no longer matches the ``ca_fingerprint`` meta value,
which keeps naming the certificate the store was created with.

Counting by state (``ca show``) reads the index ``certs_by_state`` (status, not_after) instead of
the rows, whose DER makes a store of 100,000 certificates ~90 MB. New stores have it; an older
store gets it in its next write transaction (an index changes nothing an older rdsssl reads),
and until then is counted in one scan of the table. Reads never create it: they do not write.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from rdsssl.errors import StoreError
from rdsssl.models import RevocationReason
from rdsssl.pki import crypto
from rdsssl.store.listing import STATE_INDEX, ListingQueries
from rdsssl.store.records import (
    CertRecord,
    CrlRecord,
    format_time,
    parse_time,
)

__all__ = ["SCHEMA_VERSION", "Inventory"]

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE certs (
    serial             TEXT PRIMARY KEY
                       CHECK (serial <> '' AND serial NOT GLOB '*[^0-9a-f]*'),
    cn                 TEXT NOT NULL,
    not_before         TEXT,               -- NULL for rows adopted from an openssl index.txt
    not_after          TEXT NOT NULL,
    status             TEXT NOT NULL CHECK (status IN ('valid', 'revoked')),
    revoked_at         TEXT,
    reason             TEXT,
    fingerprint        TEXT NOT NULL,      -- '' when the certificate itself was never seen
    issuer_fingerprint TEXT NOT NULL,
    key_type           TEXT NOT NULL,      -- '' when unknown
    origin             TEXT NOT NULL,      -- issued | signed | imported | external
    created_at         TEXT NOT NULL,
    cert_der           BLOB,
    seq                INTEGER NOT NULL UNIQUE,  -- insertion order (ties in time are common)
    CHECK ((status = 'revoked') = (revoked_at IS NOT NULL))
);
CREATE INDEX certs_by_cn ON certs (cn);
CREATE INDEX certs_by_state ON certs (status, not_after);
CREATE TABLE crls (
    number      INTEGER PRIMARY KEY,
    last_update TEXT NOT NULL,
    next_update TEXT,
    entries     INTEGER NOT NULL,
    fingerprint TEXT NOT NULL,
    size        INTEGER NOT NULL
);
"""

# Created with the schema since the state counts read it; added to older stores by their next
# write (see the module docstring).

# Created by the first `ca renew` (see the module docstring): every certificate the CA has had.
_CA_CERTS_SCHEMA = """
CREATE TABLE IF NOT EXISTS ca_certs (
    fingerprint TEXT PRIMARY KEY,
    serial      TEXT NOT NULL,
    not_before  TEXT NOT NULL,
    not_after   TEXT NOT NULL,
    recorded_at TEXT NOT NULL,
    cert_der    BLOB NOT NULL,
    seq         INTEGER NOT NULL UNIQUE  -- the order the certificates were recorded in
)
"""

_COLUMNS = (
    "serial, cn, not_before, not_after, status, revoked_at, reason, fingerprint,"
    " issuer_fingerprint, key_type, origin, created_at, cert_der"
)


# Statements `Inventory.open` runs to prove the file has this schema: each names every column the
# code reads, and each reads one row, so the first page of every table is read as well.
_TABLE_PROBES = (
    f"SELECT {_COLUMNS}, seq FROM certs LIMIT 1",
    "SELECT number, last_update, next_update, entries, fingerprint, size FROM crls LIMIT 1",
)


def _unusable(path: Path, exc: sqlite3.DatabaseError) -> StoreError:
    """The one message for an inventory sqlite cannot read as ours (exit 3, file named)."""
    return StoreError(
        f"{path} is not a usable inventory ({exc}): the file is damaged, truncated or not "
        "rdsssl's; restore it from a backup"
    )


class Inventory(ListingQueries):
    """Thin typed access to ``inventory.sqlite``; the caller holds the store lock for writes."""

    def __init__(self, conn: sqlite3.Connection, path: Path) -> None:
        self._conn = conn
        self.path = path
        self._state_index = False  # True once a transaction of ours has made sure it exists

    @classmethod
    def create(cls, path: Path, *, meta: dict[str, str]) -> Inventory:
        """Create a new inventory file, born 0600, with the schema and the given meta values."""
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        os.close(fd)
        inv = cls._connect(path)
        # One script, one transaction: a new store is built in a private temp directory anyway.
        inv._conn.executescript(f"BEGIN;\n{_SCHEMA}\nCOMMIT;")
        with inv.transaction():
            for key, value in {"schema_version": str(SCHEMA_VERSION), **meta}.items():
                inv.set_meta(key, value)
        return inv

    @classmethod
    def open(cls, path: Path) -> Inventory:
        """Open an existing inventory; StoreError naming the file when it is missing, truncated,
        not an sqlite database, or not an inventory of this schema.

        Every table is read here (one row each, through statements that name every column the
        code uses), so a damaged or foreign file is refused now with exit 3, instead of as an
        sqlite3 error half-way through a command.
        """
        if not path.is_file():
            raise StoreError(f"{path} is missing: the CA store is incomplete")
        inv = cls._connect(path)
        try:
            version = inv.get_meta("schema_version")
            if version == str(SCHEMA_VERSION):
                for probe in _TABLE_PROBES:
                    inv._conn.execute(probe).fetchall()
        except sqlite3.DatabaseError as exc:
            inv.close()
            raise _unusable(path, exc) from None
        if version != str(SCHEMA_VERSION):
            inv.close()
            raise StoreError(
                f"{path} has schema version {version!r}; this rdsssl reads {SCHEMA_VERSION}"
            )
        return inv

    @classmethod
    def _connect(cls, path: Path) -> Inventory:
        uri = f"file:{path.absolute()}?mode=rw"
        try:
            conn = sqlite3.connect(uri, uri=True, isolation_level=None, timeout=30.0)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open {path}: {exc}") from None
        try:
            conn.execute("PRAGMA synchronous = FULL")  # reads the header: a foreign file fails
        except sqlite3.DatabaseError as exc:
            conn.close()
            raise _unusable(path, exc) from None
        return cls(conn, path)

    @property
    def connection(self) -> sqlite3.Connection:
        """The sqlite connection, for the store modules that keep their own tables
        (``rdsssl.store.server_issuing``); writes go inside ``transaction()``."""
        return self._conn

    def close(self) -> None:
        """Close the connection (idempotent)."""
        self._conn.close()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """One atomic write: BEGIN IMMEDIATE ... COMMIT, rolled back on any exception. A store
        made before ``certs_by_state`` existed gets it here (rolled back with the rest)."""
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            if not self._state_index:
                self._conn.execute(STATE_INDEX)
            yield
        except BaseException:
            if self._conn.in_transaction:
                self._conn.execute("ROLLBACK")
            raise
        if self._conn.in_transaction:
            self._conn.execute("COMMIT")
        self._state_index = True

    # -- meta -------------------------------------------------------------------------------

    def get_meta(self, key: str) -> str | None:
        """A meta value, or None."""
        row = self._conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def set_meta(self, key: str, value: str) -> None:
        """Insert or replace a meta value (inside a transaction)."""
        self._conn.execute(
            "INSERT INTO meta (key, value) VALUES (?, ?)"
            " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (key, value),
        )

    # -- certs ------------------------------------------------------------------------------

    def insert(self, record: CertRecord) -> None:
        """Add a row; sqlite3.IntegrityError when the serial is already there."""
        self._conn.execute(
            f"INSERT INTO certs ({_COLUMNS}, seq) VALUES ({', '.join('?' * 13)},"
            " (SELECT coalesce(max(seq), 0) + 1 FROM certs))",
            record._to_row(),
        )

    def replace(self, record: CertRecord) -> None:
        """Overwrite the row with the same serial (keeping its place in insertion order)."""
        cols = [c.strip() for c in _COLUMNS.split(",")]
        values = record._to_row()
        assignments = ", ".join(f"{c} = ?" for c in cols[1:])
        cur = self._conn.execute(
            f"UPDATE certs SET {assignments} WHERE serial = ?", (*values[1:], values[0])
        )
        if cur.rowcount != 1:
            raise StoreError(f"{self.path}: serial {values[0]} vanished during an update")

    def get(self, serial: int) -> CertRecord | None:
        """The row for a serial, or None."""
        row = self._conn.execute(
            f"SELECT {_COLUMNS} FROM certs WHERE serial = ?", (format(serial, "x"),)
        ).fetchone()
        return None if row is None else CertRecord._from_row(row)

    def all(self, *, cn: str | None = None) -> list[CertRecord]:
        """Every row (or those of one CN), in the order they were added."""
        sql = f"SELECT {_COLUMNS} FROM certs"
        args: tuple[str, ...] = ()
        if cn is not None:
            sql += " WHERE cn = ?"
            args = (cn,)
        rows = self._conn.execute(sql + " ORDER BY seq", args)
        shared: dict[str, str] = {}  # one string object per repeated value (issuer, key type)
        return [CertRecord._from_row(r, shared) for r in rows]  # no second list of raw rows

    def newest_unrevoked(self, *, cn: str | None = None) -> dict[str, CertRecord]:
        """Each CN's newest row that is not revoked (or that of one CN), by CN: what a renewal
        plan starts from, chosen by sqlite instead of loading every row."""
        where = "status <> 'revoked'" + (" AND cn = ?" if cn is not None else "")
        rows = self._conn.execute(
            f"SELECT {_COLUMNS} FROM certs WHERE seq IN"
            f" (SELECT max(seq) FROM certs WHERE {where} GROUP BY cn) ORDER BY cn",
            () if cn is None else (cn,),
        )
        shared: dict[str, str] = {}
        return {r[1]: CertRecord._from_row(r, shared) for r in rows}

    def cns(self, *, cn: str | None = None) -> list[str]:
        """Every CN with a row (or just ``cn`` if it has one), sorted: read from ``certs_by_cn``
        alone."""
        if cn is None:
            return [r[0] for r in self._conn.execute("SELECT DISTINCT cn FROM certs ORDER BY cn")]
        found = self._conn.execute("SELECT 1 FROM certs WHERE cn = ? LIMIT 1", (cn,)).fetchone()
        return [] if found is None else [cn]

    def revocations(self) -> list[tuple[int, datetime, RevocationReason, datetime]]:
        """(serial, revoked_at, reason, not_after) of every revoked row: only the four columns
        a CRL needs, so a CRL of 10,000 entries does not load 10,000 certificates. Selected by
        status (the schema ties it to revoked_at) so that ``certs_by_state`` finds them without
        reading the other rows."""
        rows = self._conn.execute(
            "SELECT serial, revoked_at, reason, not_after FROM certs"
            " WHERE status = 'revoked' ORDER BY seq"
        )
        return [
            (
                int(serial, 16),
                parse_time(revoked_at),
                RevocationReason(reason) if reason else RevocationReason.UNSPECIFIED,
                parse_time(not_after),
            )
            for serial, revoked_at, reason, not_after in rows.fetchall()
        ]

    def count(self) -> int:
        """Number of rows."""
        return int(self._conn.execute("SELECT count(*) FROM certs").fetchone()[0])

    # -- CRLs -------------------------------------------------------------------------------

    def add_crl(self, crl: CrlRecord) -> None:
        """Record a built CRL (inside the transaction that also advances crl_number)."""
        self._conn.execute(
            "INSERT INTO crls (number, last_update, next_update, entries, fingerprint, size)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (
                crl.number,
                format_time(crl.last_update),
                None if crl.next_update is None else format_time(crl.next_update),
                crl.entries,
                crl.fingerprint,
                crl.size,
            ),
        )

    def last_crl(self) -> CrlRecord | None:
        """The CRL with the highest number, or None."""
        row = self._conn.execute(
            "SELECT number, last_update, next_update, entries, fingerprint, size"
            " FROM crls ORDER BY number DESC LIMIT 1"
        ).fetchone()
        if row is None:
            return None
        next_update = None if row[2] is None else parse_time(row[2])
        return CrlRecord(row[0], parse_time(row[1]), next_update, row[3], row[4], row[5])

    # -- the CA's certificates ---------------------------------------------------------------

    def _has_ca_certs(self) -> bool:
        row = self._conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'ca_certs'"
        ).fetchone()
        return row is not None

    def record_ca(self, cert: x509.Certificate, *, now: datetime) -> bool:
        """Add a CA certificate to ``ca_certs`` (creating the table), inside a transaction;
        False when it is there already."""
        self._conn.execute(_CA_CERTS_SCHEMA)
        fp = crypto.fingerprint(cert)
        if self._conn.execute("SELECT 1 FROM ca_certs WHERE fingerprint = ?", (fp,)).fetchone():
            return False
        self._conn.execute(
            "INSERT INTO ca_certs"
            " (fingerprint, serial, not_before, not_after, recorded_at, cert_der, seq)"
            " VALUES (?, ?, ?, ?, ?, ?, (SELECT coalesce(max(seq), 0) + 1 FROM ca_certs))",
            (
                fp,
                format(cert.serial_number, "x"),
                format_time(cert.not_valid_before_utc),
                format_time(cert.not_valid_after_utc),
                format_time(now),
                cert.public_bytes(Encoding.DER),
            ),
        )
        return True

    def ca_certs(self) -> list[tuple[x509.Certificate, datetime]]:
        """Every recorded CA certificate with when it was recorded, oldest first (empty for a
        store never renewed)."""
        if not self._has_ca_certs():
            return []
        try:
            rows = self._conn.execute(
                "SELECT cert_der, recorded_at FROM ca_certs ORDER BY seq"
            ).fetchall()
            return [(x509.load_der_x509_certificate(der), parse_time(at)) for der, at in rows]
        except (sqlite3.DatabaseError, ValueError) as exc:
            raise StoreError(
                f"{self.path}: the CA certificates recorded in it cannot be read ({exc}); "
                "restore the file from a backup"
            ) from None

    # -- checks -----------------------------------------------------------------------------

    def integrity_problems(self) -> list[str]:
        """sqlite's own integrity check; empty when the file is sound."""
        rows = self._conn.execute("PRAGMA integrity_check").fetchall()
        found = [str(r[0]) for r in rows]
        return [] if found == ["ok"] else found
