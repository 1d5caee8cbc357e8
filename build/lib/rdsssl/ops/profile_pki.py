"""The throwaway PKI of a recording (`rdsssl.ops.profile_recorder`): two temporary CAs and, with
a probe user, a client certificate of each for it, made with `rdsssl.pki.crypto` in a temporary
directory (the user's CA store is never touched); and how read-backs are compared (by
certificate fingerprint, so line ends do not count)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from rdsssl.errors import RdsSslError
from rdsssl.pki import crypto
from rdsssl.store.fsutil import atomic_write

__all__ = ["CA_NAMES", "Leaf", "TemporaryPki", "carries_temporary_ca", "fingerprints_of"]

CA_NAMES = ("rdsssl profile recorder CA 1", "rdsssl profile recorder CA 2")


@dataclass(frozen=True)
class Leaf:
    """A probe user's certificate and key files."""

    cert: Path
    key: Path


@dataclass(frozen=True)
class TemporaryPki:
    """Two throwaway CAs (LF PEM text) and, with a probe user, a certificate of each for it."""

    ca_pems: tuple[str, str]
    leaves: tuple[Leaf, Leaf] | None
    root: Path

    @classmethod
    def make(cls, root: Path, user: str | None, *, now: datetime) -> TemporaryPki:
        pems: list[str] = []
        leaves: list[Leaf] = []
        for number, cn in enumerate(CA_NAMES, start=1):
            key = crypto.generate_key()
            ca = crypto.make_ca(key, cn=cn, now=now, days=7)
            pems.append(crypto.cert_pem(ca).decode("ascii"))
            if user is not None:
                leaf_key = crypto.generate_key()
                issued = crypto.issue_client_cert(
                    ca, key, leaf_key.public_key(), user=user, now=now, days=2
                )
                leaf = Leaf(root / f"client{number}.crt", root / f"client{number}.key")
                atomic_write(leaf.cert, crypto.cert_pem(issued.cert), mode=0o600)
                atomic_write(leaf.key, crypto.key_pem(leaf_key), mode=0o600)
                leaves.append(leaf)
        pair = (leaves[0], leaves[1]) if leaves else None
        return cls((pems[0], pems[1]), pair, root)

    def fingerprints(self) -> tuple[str, str]:
        first, second = (sorted(fingerprints_of(pem)) for pem in self.ca_pems)
        return first[0], second[0]


def fingerprints_of(pem: str | None) -> frozenset[str]:
    if not pem or not pem.strip():
        return frozenset()
    try:
        return crypto.pem_fingerprints(pem.encode("utf-8"), source="the read-back")
    except RdsSslError:
        return frozenset({"unparsable:" + pem.strip()[:32]})


def carries_temporary_ca(pem: str | None) -> bool:
    """Whether a client CA bundle holds one of the recorder's temporary CAs (an earlier
    recording that was not restored)."""
    if not pem:
        return False
    try:
        certs = crypto.load_certificates(pem.encode("utf-8"), source="the client CA")
    except RdsSslError:
        return False
    return any((crypto.cn_of(c.subject) or "") in CA_NAMES for c in certs)
