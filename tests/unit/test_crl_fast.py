"""The hand-written CRL DER (rdsssl.pki.crl_der via crypto.build_crl) against cryptography's
builder.

`build_crl` used to hand everything to `x509.CertificateRevocationListBuilder`; it now writes the
DER itself for speed. The builder stays here as the oracle: for the same input
both must give the same TBSCertList byte for byte (and the same whole CRL where the signature is
deterministic: RSA PKCS#1 v1.5 and Ed25519), and every field must read back the same. The openssl
CLI, which nobody here wrote, must verify the signature too.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterable
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed448
from cryptography.x509.oid import CRLEntryExtensionOID
from hypothesis import given, settings
from hypothesis import strategies as st

from rdsssl.errors import CryptoError
from rdsssl.models import KeyType, RevocationReason
from rdsssl.pki import crl_der, crypto

from .conftest import NOW, Pki, make_pki

REPO = Path(__file__).resolve().parents[2]
REASONS = list(RevocationReason)
DETERMINISTIC = (KeyType.ED25519, KeyType.RSA_2048, KeyType.RSA_3072, KeyType.RSA_4096)
EDGE_SERIALS = [
    1,
    0x7F,  # largest one-byte INTEGER
    0x80,  # high bit set: needs a leading 0x00
    0xFF,
    0x100,
    2**63,
    2**64 - 1,  # 8 bytes, high bit set: 9 bytes encoded
    2**64,
    2**151,  # 20 encoded bytes because of the leading 0x00
    2**152 + 12345,
    2**159 - 1,  # the largest serial RFC 5280 allows (20 bytes, top bit clear)
]


# --- the oracle: build_crl as it was, through cryptography's builder --------------------------


def builder_crl(
    ca_cert: x509.Certificate,
    ca_key: crypto.PrivateKey,
    revocations: Iterable[crypto.Revocation],
    *,
    number: int,
    now: datetime,
    days: int = crypto.DEFAULT_CRL_DAYS,
    expired_grace: timedelta = crypto.DEFAULT_CRL_EXPIRED_GRACE,
) -> x509.CertificateRevocationList:
    """The previous implementation of `crypto.build_crl`, kept verbatim in behaviour."""
    now = now.astimezone(timezone.utc).replace(microsecond=0)
    cutoff = now - expired_grace
    kept = {r.serial: r for r in revocations if r.not_after is None or r.not_after >= cutoff}
    entries = []
    for serial in sorted(kept):
        rev = kept[serial]
        extensions: list[x509.Extension[x509.ExtensionType]] = []
        if rev.reason is not RevocationReason.UNSPECIFIED:
            reason = x509.CRLReason(crypto.reason_to_x509(rev.reason))
            extensions.append(x509.Extension(CRLEntryExtensionOID.CRL_REASON, False, reason))
        date = rev.revoked_at.astimezone(timezone.utc).replace(tzinfo=None, microsecond=0)
        entries.append(x509.RevokedCertificateBuilder(serial, date, extensions).build())
    try:
        ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        aki = x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)
    except x509.ExtensionNotFound:
        aki = x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key())
    builder = (
        x509.CertificateRevocationListBuilder(revoked_certificates=entries)
        .issuer_name(ca_cert.subject)
        .last_update(now - crypto.CLOCK_SKEW)
        .next_update(now + timedelta(days=days))
        .add_extension(x509.CRLNumber(number), critical=False)
        .add_extension(aki, critical=False)
    )
    return builder.sign(ca_key, crypto.hash_for(ca_key))


def _fields(crl: x509.CertificateRevocationList) -> dict[str, object]:
    """Everything a reader of the CRL can see, except the signature value."""
    return {
        "issuer": crl.issuer,
        "last_update": crl.last_update_utc,
        "next_update": crl.next_update_utc,
        "algorithm": crl.signature_algorithm_oid,
        "hash": None if crl.signature_hash_algorithm is None else crl.signature_hash_algorithm.name,
        "extensions": [(e.oid, e.critical, e.value) for e in crl.extensions],
        "entries": [
            (
                r.serial_number,
                r.revocation_date_utc,
                [(e.oid, e.critical, e.value) for e in r.extensions],
            )
            for r in crl
        ],
    }


def assert_same_as_builder(
    pki: Pki,
    revocations: list[crypto.Revocation],
    *,
    number: int = 1,
    now: datetime = NOW,
    days: int = crypto.DEFAULT_CRL_DAYS,
    expired_grace: timedelta = crypto.DEFAULT_CRL_EXPIRED_GRACE,
) -> x509.CertificateRevocationList:
    """build_crl's CRL equals the builder's field by field and TBS byte by byte, and verifies."""
    kw = {"number": number, "now": now, "days": days, "expired_grace": expired_grace}
    fast = crypto.build_crl(pki.cert, pki.key, revocations, **kw)  # type: ignore[arg-type]
    slow = builder_crl(pki.cert, pki.key, revocations, **kw)  # type: ignore[arg-type]
    assert _fields(fast) == _fields(slow)
    assert fast.tbs_certlist_bytes == slow.tbs_certlist_bytes
    assert fast.is_signature_valid(pki.key.public_key())
    assert crypto.crl_signed_by(fast, pki.cert)
    return fast


def _revocations(
    serials: Iterable[int], when: datetime = NOW - timedelta(days=1)
) -> list[crypto.Revocation]:
    return [
        crypto.Revocation(serial=s, revoked_at=when + timedelta(seconds=i), reason=REASONS[i % 8])
        for i, s in enumerate(serials)
    ]


@pytest.fixture(scope="module")
def openssl() -> str:
    path = shutil.which("openssl")
    assert path, "the openssl CLI is required (apt-get install openssl)"
    return path


# --- equality with the builder ------------------------------------------------------------------


def test_every_key_type_matches_the_builder_and_openssl_verifies_it(
    key_type: KeyType, openssl: str, tmp_path: Path
) -> None:
    pki = make_pki(key_type)
    revocations = _revocations([5, 0x80, 2**64, *range(100, 120)])
    crl = assert_same_as_builder(pki, revocations, number=42, days=7)
    assert len(crl) == 23 and crl.next_update_utc == NOW + timedelta(days=7)
    assert crl.tbs_certlist_bytes[4:7] == b"\x02\x01\x01"  # version v2, first in TBSCertList
    if key_type in DETERMINISTIC:  # same signature too: the whole CRL is the builder's
        slow = builder_crl(pki.cert, pki.key, revocations, number=42, now=NOW, days=7)
        assert crypto.crl_pem(crl) == crypto.crl_pem(slow)

    (tmp_path / "ca.crt").write_bytes(crypto.cert_pem(pki.cert))
    (tmp_path / "crl.pem").write_bytes(crypto.crl_pem(crl))
    result = subprocess.run(
        [openssl, "crl", "-in", "crl.pem", "-CAfile", "ca.crt", "-noout"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "verify OK" in result.stdout + result.stderr


def test_edge_serials_encode_as_the_builder_does() -> None:
    pki = make_pki(KeyType.ED25519)
    crl = assert_same_as_builder(pki, _revocations(EDGE_SERIALS))
    assert [r.serial_number for r in crl] == EDGE_SERIALS
    der = crl.tbs_certlist_bytes
    assert b"\x02\x02\x00\x80" in der  # 0x80 needs a leading zero byte
    assert b"\x02\x09\x00" + b"\xff" * 8 in der  # so does 2**64-1
    assert b"\x02\x14\x7f" + b"\xff" * 19 in der  # 2**159-1 fits 20 bytes as is


@pytest.mark.parametrize("serial", [0, -1, 2**159, 2**160])
def test_out_of_range_serials_are_refused(serial: int, pki: Pki) -> None:
    with pytest.raises(CryptoError, match="out of range for a CRL entry"):
        crypto.build_crl(pki.cert, pki.key, _revocations([serial]), number=1, now=NOW)


def test_empty_crl_has_no_revoked_certificates_field() -> None:
    pki = make_pki(KeyType.RSA_2048)
    crl = assert_same_as_builder(pki, [], number=0)
    assert len(crl) == 0
    assert crypto.crl_pem(crl) == crypto.crl_pem(
        builder_crl(pki.cert, pki.key, [], number=0, now=NOW)
    )


def test_ten_thousand_entries_match_the_builder() -> None:
    pki = make_pki(KeyType.ED25519)
    serials = [crypto.new_serial() for _ in range(10_000)]
    crl = assert_same_as_builder(pki, _revocations(serials), number=77)
    assert [r.serial_number for r in crl] == sorted(serials)
    assert len(crl.public_bytes(serialization.Encoding.DER)) > 128 * 1024  # long lengths


def test_dates_from_2050_are_generalized_time_and_other_zones_convert() -> None:
    pki = make_pki(KeyType.ED25519, days=40 * 365)
    beijing = timezone(timedelta(hours=8))
    revocations = [
        crypto.Revocation(1, datetime(2049, 12, 31, 23, 59, 59, tzinfo=timezone.utc), REASONS[1]),
        crypto.Revocation(2, datetime(2050, 1, 1, 8, 0, 1, 999_999, tzinfo=beijing), REASONS[2]),
        crypto.Revocation(3, datetime(2050, 1, 1, 7, 59, 58, tzinfo=beijing), REASONS[0]),
        crypto.Revocation(4, datetime(1950, 1, 1, 0, 0, 0, tzinfo=timezone.utc), REASONS[3]),
    ]
    now = datetime(2049, 6, 1, tzinfo=beijing)  # nextUpdate in 2050
    crl = assert_same_as_builder(pki, revocations, now=now, days=365)
    der = crl.tbs_certlist_bytes
    assert b"\x17\x0d491231235959Z" in der and b"\x17\x0d500101000000Z" in der
    assert b"\x18\x0f20500101000001Z" in der  # serial 2: 2050 in UTC, fraction dropped
    assert b"\x17\x0d491231235958Z" in der  # serial 3: 2050 in Beijing is still 2049 in UTC
    assert b"\x18\x0f20500531160000Z" in der  # nextUpdate
    assert crl.next_update_utc == datetime(2050, 5, 31, 16, tzinfo=timezone.utc)


def test_dropping_expired_entries_matches_the_builder(pki: Pki) -> None:
    # expired: never, in a day, 29, 30 (the edge: kept), 31 and 400 days ago
    ages = [None, -1, 29, 30, 31, 400]
    revocations = [
        crypto.Revocation(
            r.serial, r.revoked_at, r.reason, None if a is None else NOW - timedelta(a)
        )
        for r, a in zip(_revocations(range(1, 7)), ages, strict=True)
    ]
    crl = assert_same_as_builder(pki, revocations, expired_grace=timedelta(days=30))
    assert [r.serial_number for r in crl] == [1, 2, 3, 4]


# --- the DER helpers themselves -----------------------------------------------------------------


def test_der_primitives() -> None:
    assert [crl_der.length(n).hex() for n in (0, 127, 128, 255, 256, 70_000)] == [
        "00", "7f", "8180", "81ff", "820100", "83011170",
    ]  # fmt: skip
    assert crl_der.integer(0).hex() == "020100"
    assert crl_der.integer(0x80).hex() == "02020080"
    assert crl_der.integer(0x7FFF).hex() == "02027fff"
    assert crl_der.oid("2.5.29.21").hex() == "0603551d15"
    assert crl_der.oid("1.2.840.113549.1.1.11").hex() == "06092a864886f70d01010b"
    assert crl_der.oid("1.2.840.10045.4.3.2").hex() == "06082a8648ce3d040302"
    when = datetime(2025, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
    assert crl_der.time(when) == b"\x17\x0d250102030405Z"
    assert crl_der.time(when.replace(year=2050)) == b"\x18\x0f20500102030405Z"
    assert crl_der.entry_extensions([]) == b""


def test_long_entries_take_the_general_path_and_still_parse() -> None:
    """An entry over 127 bytes (never written by build_crl today) needs long-form lengths."""
    pki = make_pki(KeyType.ED25519)
    when = datetime(2025, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
    issuer = x509.CertificateIssuer([x509.DNSName("ca-" + "x" * 120 + ".example")])
    values: list[x509.ExtensionType] = [x509.CRLReason(x509.ReasonFlags.superseded), issuer]
    entry = crl_der.revoked(2**100, when, crl_der.entry_extensions(values))
    assert entry[:2] == b"\x30\x81"  # long form
    der = crl_der.certificate_list(
        pki.key,
        issuer=pki.cert.subject,
        last_update=when,
        next_update=when + timedelta(days=1),
        entries=[entry],
        extensions=[x509.CRLNumber(1)],
    )
    revoked = x509.load_der_x509_crl(der)[0]
    expected = x509.RevokedCertificateBuilder(
        2**100,
        when.replace(tzinfo=None),
        [x509.Extension(v.oid, False, v) for v in values],
    ).build()
    assert revoked.serial_number == expected.serial_number
    assert revoked.revocation_date_utc == expected.revocation_date_utc
    assert list(revoked.extensions) == list(expected.extensions)


def test_an_unsupported_key_is_a_crypto_error() -> None:
    key = ed448.Ed448PrivateKey.generate()
    with pytest.raises(CryptoError, match="cannot sign a CRL with"):
        crl_der.certificate_list(
            key,  # type: ignore[arg-type]
            issuer=x509.Name([]),
            last_update=NOW,
            next_update=NOW,
            entries=[],
            extensions=[],
        )


# --- property: any set of serials, reasons and dates ----------------------------------------------

_ZONES = st.sampled_from(
    [timezone.utc, timezone(timedelta(hours=8)), timezone(timedelta(hours=-5))]
)


@settings(max_examples=60, deadline=None)
@given(
    entries=st.dictionaries(
        st.integers(min_value=1, max_value=2**159 - 1),
        st.tuples(
            st.datetimes(
                min_value=datetime(1951, 1, 1), max_value=datetime(9998, 1, 1), timezones=_ZONES
            ),
            st.sampled_from(REASONS),
        ),
        max_size=40,
    ),
    number=st.integers(min_value=0, max_value=2**159 - 1),
    days=st.integers(min_value=1, max_value=40_000),
)
def test_any_serial_set_matches_the_builder(
    entries: dict[int, tuple[datetime, RevocationReason]], number: int, days: int
) -> None:
    pki = make_pki(KeyType.ED25519, days=40_000)  # cached key; deterministic signature
    revocations = [crypto.Revocation(s, when, reason) for s, (when, reason) in entries.items()]
    fast = assert_same_as_builder(pki, revocations, number=number, days=days)
    slow = builder_crl(pki.cert, pki.key, revocations, number=number, now=NOW, days=days)
    assert crypto.crl_pem(fast) == crypto.crl_pem(slow)


# --- the benchmark still runs (never timed here) -------------------------------------------------


def test_benchmark_quick_smoke_run() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks.bench_crypto", "--quick"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "| operation " in result.stdout and "| ratio " in result.stdout
    for key_type in ("ec-p256", "rsa-2048"):
        assert f"issue 4 certs, {key_type} (crypto)" in result.stdout
        for shape in ("sequential", "random"):
            assert f"CRL 500 {shape} entries, {key_type} (build_crl)" in result.stdout
            # the benchmark compares like with like: openssl's CRL lists exactly our entries
            same = f"{key_type} CRL, {shape}: 500 entries, same serials/dates/reasons as openssl's"
            assert f"{same}: yes" in result.stdout
