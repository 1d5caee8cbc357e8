"""Server certificates issued by a server CA store (`CAType=custom`): recorded, then kept.

A server CA is a normal CA store (`rdsssl ca init --ca-dir server-ca`). Its server
certificates are recorded in their own table, ``server_certs``, not in ``certs``: they are not
database users, so `cert list`, renewal of users and the client CRL never see them. The table
is created by the first server certificate, in the transaction that records it (like
``ca_certs``), so a store that never issued one keeps the exact schema older rdsssl versions
read, and those versions still open a store that did (they ignore the table).

The certificate is recorded *before* its key and file exist anywhere (the store's rule); then
both are kept in ``DIR/server-history/`` (0700): ``<serial>.crt`` (0644) and ``<serial>.key``
(0600, unencrypted, as ModifyDBInstanceSSL takes it). The key is never logged, printed, put in
JSON or handed to hooks; it leaves the store only in the one ModifyDBInstanceSSL call.
"""

from __future__ import annotations

import os
import sqlite3
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from rdsssl.errors import StoreError
from rdsssl.pki import crypto
from rdsssl.pki.server_certs import issue_server_cert
from rdsssl.store.db import Inventory
from rdsssl.store.fsutil import atomic_write
from rdsssl.store.records import format_time, parse_time

__all__ = ["HISTORY_DIR", "ServerCertRecord", "ServerIssue", "issue", "records"]

HISTORY_DIR = "server-history"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS server_certs (
    serial       TEXT PRIMARY KEY CHECK (serial <> '' AND serial NOT GLOB '*[^0-9a-f]*'),
    instance_id  TEXT NOT NULL,
    names        TEXT NOT NULL,       -- the connection strings it names, space-separated
    not_before   TEXT NOT NULL,
    not_after    TEXT NOT NULL,
    fingerprint  TEXT NOT NULL,
    key_type     TEXT NOT NULL,
    created_at   TEXT NOT NULL,
    cert_der     BLOB NOT NULL,
    seq          INTEGER NOT NULL UNIQUE
)
"""


@dataclass(frozen=True)
class ServerCertRecord:
    """One recorded server certificate (no key: that stays in its file)."""

    serial: int
    instance_id: str
    names: tuple[str, ...]
    not_before: datetime
    not_after: datetime
    fingerprint: str
    key_type: str
    created_at: datetime

    @property
    def serial_hex(self) -> str:
        return format(self.serial, "x")

    def to_json(self) -> dict[str, object]:
        """Secret-free."""
        return {
            "serial": self.serial_hex,
            "instance": self.instance_id,
            "names": list(self.names),
            "not_before": format_time(self.not_before),
            "not_after": format_time(self.not_after),
            "fingerprint": self.fingerprint,
            "key_type": self.key_type,
        }


@dataclass(frozen=True)
class ServerIssue:
    """A new server certificate and its key (PEM text; the key is a secret, `repr=False`)."""

    record: ServerCertRecord
    cert_pem: str
    key_pem: str = field(repr=False)
    key_path: Path
    truncated: bool


def _has_table(inv: Inventory) -> bool:
    row = inv.connection.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'server_certs'"
    ).fetchone()
    return row is not None


def records(inv: Inventory, *, instance_id: str | None = None) -> list[ServerCertRecord]:
    """Every server certificate recorded (or those of one instance), oldest first."""
    if not _has_table(inv):
        return []
    sql = (
        "SELECT serial, instance_id, names, not_before, not_after, fingerprint, key_type,"
        " created_at FROM server_certs"
    )
    args: tuple[str, ...] = ()
    if instance_id is not None:
        sql, args = sql + " WHERE instance_id = ?", (instance_id,)
    try:
        rows = inv.connection.execute(sql + " ORDER BY seq", args).fetchall()
    except sqlite3.DatabaseError as exc:
        raise StoreError(f"{inv.path}: the server certificates cannot be read ({exc})") from None
    return [
        ServerCertRecord(
            int(r[0], 16),
            r[1],
            tuple(r[2].split()),
            parse_time(r[3]),
            parse_time(r[4]),
            r[5],
            r[6],
            parse_time(r[7]),
        )
        for r in rows
    ]


def _history_dir(store: Path) -> Path:
    path = store / HISTORY_DIR
    try:
        path.mkdir(mode=0o700, exist_ok=True)
    except OSError as exc:
        raise StoreError(f"cannot create {path}: {exc.strerror}") from None
    return path


def issue(
    inv: Inventory,
    store: Path,
    ca_cert: x509.Certificate,
    ca_key: crypto.PrivateKey,
    key: crypto.PrivateKey,
    *,
    instance_id: str,
    names: list[str],
    key_type: str,
    days: int,
    now: datetime,
) -> ServerIssue:
    """Sign a server certificate for `key` naming `names`, record it, then keep it and its key
    in the store's history (the caller holds the store lock)."""
    issued = issue_server_cert(ca_cert, ca_key, key.public_key(), names=names, now=now, days=days)
    cert = issued.cert
    serial = format(cert.serial_number, "x")
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    named = [str(n.value) for n in san]
    fp = crypto.fingerprint(cert)
    with inv.transaction():
        inv.connection.execute(_SCHEMA)
        inv.connection.execute(
            "INSERT INTO server_certs (serial, instance_id, names, not_before, not_after,"
            " fingerprint, key_type, created_at, cert_der, seq) VALUES (?, ?, ?, ?, ?, ?, ?, ?,"
            " ?, (SELECT coalesce(max(seq), 0) + 1 FROM server_certs))",
            (
                serial,
                instance_id,
                " ".join(named),
                format_time(cert.not_valid_before_utc),
                format_time(cert.not_valid_after_utc),
                fp,
                key_type,
                format_time(now),
                cert.public_bytes(Encoding.DER),
            ),
        )
    history = _history_dir(store)
    cert_pem = crypto.cert_pem(cert)
    key_pem = crypto.key_pem(key)
    key_path = history / f"{serial}.key"
    atomic_write(key_path, key_pem, mode=0o600)
    os.chmod(key_path, 0o600)
    atomic_write(history / f"{serial}.crt", cert_pem, mode=0o644)
    record = records(inv, instance_id=instance_id)[-1]
    return ServerIssue(
        record, cert_pem.decode(), key_pem.decode(), key_path, truncated=issued.truncated
    )
