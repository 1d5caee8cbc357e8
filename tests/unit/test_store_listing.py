"""Listings and counts read by sqlite, not by loading every row: `CaStore.listing`,
`listing_lines`, `listing_size`, `users`, `newest_unrevoked` and the state counts of `ca show`
agree with what the loaded records say, page after page, and a listing does not hold the
inventory's read lock between pages."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from rdsssl.models import KeyType, RevocationReason
from rdsssl.ops.renewal_plan import newest
from rdsssl.store import listing as listing_queries
from rdsssl.store.castore import CaStore
from rdsssl.store.files import INVENTORY
from rdsssl.store.records import CertRecord, ListingSize

NOW = datetime(2025, 1, 15, 12, 0, 0, tzinfo=timezone.utc)
STATES = ("valid", "revoked", "expired")


@pytest.fixture
def store(tmp_path: Path) -> Iterator[CaStore]:
    """Ten certificates: alice x4 (one revoked), bob x3 (the first short-lived and revoked),
    carol-long-name x3 (the second short-lived): at NOW + 20 days 7 valid, 2 revoked, 1 expired."""
    s = CaStore.init(
        tmp_path / "ca",
        cn="root-ca1",
        key_type=KeyType.EC_P256,
        days=3650,
        passphrase=None,
        now=NOW,
    )
    s.unlock(None)
    for n, user in enumerate(["alice"] * 4 + ["bob"] * 3 + ["carol-long-name"] * 3):
        days = 10 if n in (4, 8) else 365
        s.issue(user=user, key_type=KeyType.EC_P256, days=days, now=NOW)
    alice = s.certificates(user="alice")
    s.revoke(serial=alice[1].serial, reason=RevocationReason.KEY_COMPROMISE, now=NOW)
    s.revoke(serial=s.certificates(user="bob")[0].serial, now=NOW)  # revoked wins over expired
    yield s
    s.close()


def expected(
    store: CaStore, now: datetime, user: str | None, state: str | None
) -> list[CertRecord]:
    return [r for r in store.certificates(user=user) if state is None or r.state(now) == state]


@pytest.mark.parametrize("user", [None, "alice", "bob", "nobody"])
@pytest.mark.parametrize("state", [None, *STATES])
def test_listing_pages_agree_with_the_records(
    store: CaStore, monkeypatch: pytest.MonkeyPatch, user: str | None, state: str | None
) -> None:
    monkeypatch.setattr(
        listing_queries, "_LISTING_PAGE", 3
    )  # ten rows: four pages, the last one short
    later = NOW + timedelta(days=20)
    want = expected(store, later, user, state)
    rows = list(store.listing(now=later, user=user, state=state))
    assert rows == [r.listed(later) for r in want]
    assert [r.to_json() for r in rows] == [r.to_json(later) for r in want]
    lines = list(store.listing_lines(now=later, user=user, state=state))
    assert lines == [(r.serial_hex, r.cn, r.state, r.not_after, r.fingerprint) for r in rows]
    assert store.listing_size(now=later, user=user, state=state) == ListingSize(
        len(want),
        max((len(r.serial_hex) for r in want), default=0),
        max((len(r.cn) for r in want), default=0),
    )


def test_a_page_boundary_on_the_last_row_ends_the_listing(
    store: CaStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(
        listing_queries, "_LISTING_PAGE", 5
    )  # ten rows: two full pages, then an empty one
    assert len(list(store.listing(now=NOW))) == 10


def test_expiry_is_at_not_after_to_the_second(store: CaStore) -> None:
    (short, *_) = [
        r
        for r in store.certificates(user="carol-long-name")
        if r.not_after < NOW + timedelta(days=11)
    ]
    at = short.not_after
    for now, state in [
        (at - timedelta(microseconds=1), "valid"),
        (at, "expired"),
        (at + timedelta(microseconds=500), "expired"),
    ]:
        assert short.state(now) == state
        (row,) = [
            r
            for r in store.listing(now=now, user="carol-long-name")
            if r.serial_hex == short.serial_hex
        ]
        assert row.state == state


def counts(store: CaStore, now: datetime) -> dict[str, int]:
    summary = store.summary(now=now)
    return {"valid": summary.valid, "revoked": summary.revoked, "expired": summary.expired}


def test_state_counts_agree_with_the_records_with_and_without_the_index(store: CaStore) -> None:
    for now in (NOW, NOW + timedelta(days=20), NOW + timedelta(days=400)):
        want = {s: sum(r.state(now) == s for r in store.certificates()) for s in STATES}
        assert counts(store, now) == want
        store._inv._conn.execute("DROP INDEX certs_by_state")  # a store made before the index
        assert not store._inv._has_state_index()
        assert counts(store, now) == want
        store._inv._conn.execute(listing_queries.STATE_INDEX)
    assert counts(store, NOW + timedelta(days=20)) == {"valid": 7, "revoked": 2, "expired": 1}


def index_names(path: Path) -> set[str]:
    with sqlite3.connect(path) as conn:
        rows = conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'").fetchall()
    return {r[0] for r in rows}


def test_an_older_store_gets_the_state_index_on_its_next_write_not_on_a_read(
    store: CaStore,
) -> None:
    path = store.path / INVENTORY
    store.close()
    with sqlite3.connect(path) as conn:
        conn.execute("DROP INDEX certs_by_state")
    before = path.read_bytes()
    with CaStore.open(store.path) as old:
        counts(old, NOW)
        list(old.listing(now=NOW))
    assert path.read_bytes() == before  # reads never write
    with CaStore.open(store.path) as old:
        old.unlock(None)
        # a write that fails: the index is rolled back with it
        with pytest.raises(ValueError, match="boom"), old._inv.transaction():
            raise ValueError("boom")
        assert "certs_by_state" not in index_names(path)
        old.issue(user="dave", key_type=KeyType.EC_P256, days=30, now=NOW)
    assert "certs_by_state" in index_names(path)


def test_a_listing_does_not_hold_the_read_lock_between_pages(
    store: CaStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(listing_queries, "_LISTING_PAGE", 4)
    listing = store.listing(now=NOW)
    first = [next(listing) for _ in range(5)]  # into the second page: as a paused pager would
    writer = sqlite3.connect(store.path / INVENTORY, timeout=0, isolation_level=None)
    try:
        writer.execute("BEGIN IMMEDIATE")
        writer.execute("UPDATE meta SET value = value WHERE key = 'crl_number'")
        writer.execute("COMMIT")  # needs every reader gone: sqlite3.OperationalError otherwise
    finally:
        writer.close()
    assert len(first + list(listing)) == 10


def test_rows_added_during_a_listing_come_at_its_end(
    store: CaStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(listing_queries, "_LISTING_PAGE", 4)
    listing = store.listing(now=NOW)
    first = [next(listing) for _ in range(4)]
    new = store.issue(user="erin", key_type=KeyType.EC_P256, days=30, now=NOW).record
    rest = list(listing)
    assert [r.serial_hex for r in first + rest] == [r.serial_hex for r in store.certificates()]
    assert rest[-1].serial_hex == new.serial_hex


@pytest.mark.parametrize("user", [None, "alice", "bob", "nobody"])
def test_users_and_newest_unrevoked_agree_with_the_records(
    store: CaStore, user: str | None
) -> None:
    # bob's newest certificate revoked too: his newest unrevoked one is then the middle one
    bob = store.certificates(user="bob")
    store.revoke(serial=bob[2].serial, now=NOW)
    rows = store.certificates(user=user)
    assert store.users(user=user) == sorted({r.cn for r in rows})
    assert store.newest_unrevoked(user=user) == newest(rows)
    if user in (None, "bob"):
        assert store.newest_unrevoked(user=user)["bob"].serial == bob[1].serial
