"""Fixtures for the pure crypto tests: a frozen clock and keys cached for the session.

Key generation is the only slow part (RSA-4096 takes a second or more on 2 cores), so each key
type is generated at most twice per session (CA key, leaf key) and shared; certificates are
cheap and made per test.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone

import pytest
from cryptography import x509

from rdsssl.models import KeyType
from rdsssl.pki import crypto

NOW = datetime(2025, 1, 15, 12, 0, 0, tzinfo=timezone.utc)
ALL_KEY_TYPES = list(KeyType)

_KEYS: dict[tuple[KeyType, str], crypto.PrivateKey] = {}


def cached_key(key_type: KeyType, role: str = "ca") -> crypto.PrivateKey:
    """One key per (type, role) for the whole session; role lets a CA and a leaf differ."""
    if (key_type, role) not in _KEYS:
        _KEYS[key_type, role] = crypto.generate_key(key_type)
    return _KEYS[key_type, role]


@dataclass(frozen=True)
class Pki:
    """A CA (certificate + key) made at `NOW`."""

    key: crypto.PrivateKey
    cert: x509.Certificate

    def issue(
        self,
        user: str = "alice",
        *,
        now: datetime = NOW,
        days: int = crypto.DEFAULT_LEAF_DAYS,
        serial: int | None = None,
        key_type: KeyType = KeyType.EC_P256,
    ) -> crypto.Issued:
        leaf = cached_key(key_type, "leaf")
        return crypto.issue_client_cert(
            self.cert,
            self.key,
            leaf.public_key(),
            user=user,
            now=now,
            days=days,
            serial=serial,
            allow_tls13_only=True,  # these tests look at certificates of every key type
        )


def make_pki(
    key_type: KeyType = KeyType.EC_P256, *, cn: str = "root-ca1", days: int = 3650, role: str = "ca"
) -> Pki:
    key = cached_key(key_type, role)
    return Pki(key=key, cert=crypto.make_ca(key, cn=cn, now=NOW, days=days))


@pytest.fixture(params=ALL_KEY_TYPES, ids=[k.value for k in ALL_KEY_TYPES])
def key_type(request: pytest.FixtureRequest) -> KeyType:
    return KeyType(request.param)


@pytest.fixture
def pki() -> Pki:
    """An EC P-256 CA valid for ten years from NOW."""
    return make_pki()
