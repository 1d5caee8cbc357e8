"""What ``ca import`` adopts: one CA certificate that may sign, the key that matches it, and
optionally an ``openssl ca`` history (index.txt rows and the crlnumber file), all parsed and
checked before anything is written (``read_import``). ``CaStore.import_ca`` then creates the
store from the ``CaSeed`` it returns, as ``CaStore.init`` does from a new CA.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from cryptography import x509

from rdsssl.errors import CryptoError
from rdsssl.pki import crypto
from rdsssl.store.openssl_import import index_records, parse_crlnumber, parse_index_txt
from rdsssl.store.records import CertRecord

__all__ = ["CaSeed", "ImportSources", "read_import"]


@dataclass(frozen=True)
class ImportSources:
    """What to call each input in messages (file names, usually)."""

    cert: str = "CA certificate"
    key: str = "CA key"
    index: str = "index.txt"
    crlnumber: str = "crlnumber"


@dataclass(frozen=True)
class CaSeed:
    """What a new store starts from: a checked CA, its key, the inventory rows it adopts and
    the number of its first CRL (``ca init``: a new CA, no rows, CRL number 1)."""

    cert: x509.Certificate
    key: crypto.PrivateKey
    rows: list[CertRecord]
    crl_number: int


def read_import(
    *,
    cert_pem: bytes,
    key_pem: bytes,
    key_passphrase: bytes | None,
    index_txt: bytes | None,
    crlnumber: bytes | None,
    now: datetime,
    sources: ImportSources,
) -> CaSeed:
    """Parse and check everything ``ca import`` adopts; CryptoError/InputError otherwise."""
    certs = crypto.load_ca_certificates(
        cert_pem, source=sources.cert, now=now, what="a CA certificate file"
    )
    if len(certs) != 1:
        raise CryptoError(f"{sources.cert}: holds {len(certs)} certificates; import one CA")
    cert = certs[0]
    crypto.check_ca_key(cert, source=sources.cert)
    key = crypto.load_private_key(key_pem, source=sources.key, passphrase=key_passphrase)
    crypto.check_key_matches(cert, key, source=sources.key)
    entries = parse_index_txt(index_txt, source=sources.index) if index_txt else []
    rows = index_records(entries, issuer_fingerprint=crypto.fingerprint(cert), now=now)
    number = parse_crlnumber(crlnumber, source=sources.crlnumber) if crlnumber else 1
    return CaSeed(cert=cert, key=key, rows=rows, crl_number=number)
