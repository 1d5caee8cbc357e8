"""`crls.build_crl` through cryptography's builder: every CRL it signs is checked against what
the input says it must hold, independently of how it was built.

Each CRL must parse, verify with the CA key, name the CA, carry the CRL number and the CA's key
identifier, and list exactly the serials that are still relevant, sorted, with their revocation
dates in whole UTC seconds and their reason codes (none for unspecified). Its TBSCertList must
have the RFC 5280 shape (v2; no revokedCertificates field when empty). The openssl CLI, which
nobody here wrote, must verify it and re-encode it to the same bytes.
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
from cryptography.x509.oid import CRLEntryExtensionOID, NameOID, SignatureAlgorithmOID
from hypothesis import given, settings
from hypothesis import strategies as st

from rdsssl.errors import CryptoError
from rdsssl.models import KeyType, RevocationReason
from rdsssl.pki import export, serials, validity
from rdsssl.pki.crls import Revocation, build_crl, reason_to_x509
from rdsssl.pki.pem import crl_signed_by

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
_SIGNATURES = {
    KeyType.EC_P256: SignatureAlgorithmOID.ECDSA_WITH_SHA256,
    KeyType.EC_P384: SignatureAlgorithmOID.ECDSA_WITH_SHA256,
    KeyType.RSA_2048: SignatureAlgorithmOID.RSA_WITH_SHA256,
    KeyType.RSA_3072: SignatureAlgorithmOID.RSA_WITH_SHA256,
    KeyType.RSA_4096: SignatureAlgorithmOID.RSA_WITH_SHA256,
    KeyType.ED25519: SignatureAlgorithmOID.ED25519,
}


# --- the expectation, from the input alone -------------------------------------------------------


Entry = tuple[int, datetime, list[x509.ReasonFlags]]


def expected_entries(
    revocations: Iterable[Revocation], *, now: datetime, expired_grace: timedelta
) -> list[Entry]:
    """What the CRL must list: entries not expired past the grace, by serial, whole UTC seconds,
    a reason only when it is not unspecified."""
    cutoff = now.astimezone(timezone.utc).replace(microsecond=0) - expired_grace
    kept = [r for r in revocations if r.not_after is None or r.not_after >= cutoff]
    return sorted(
        (
            r.serial,
            r.revoked_at.astimezone(timezone.utc).replace(microsecond=0),
            [] if r.reason is RevocationReason.UNSPECIFIED else [reason_to_x509(r.reason)],
        )
        for r in kept
    )


def listed_entries(crl: x509.CertificateRevocationList) -> list[Entry]:
    """What the CRL lists; every entry extension must be a non-critical reason code."""
    listed = []
    for entry in crl:
        reasons = []
        for ext in entry.extensions:
            assert ext.oid == CRLEntryExtensionOID.CRL_REASON and not ext.critical
            assert isinstance(ext.value, x509.CRLReason)
            reasons.append(ext.value.reason)
        listed.append((entry.serial_number, entry.revocation_date_utc, reasons))
    return listed


def tbs_tags(crl: x509.CertificateRevocationList) -> list[int]:
    """The tags of the TBSCertList's top-level fields (a DER walk written for the test)."""
    der = crl.tbs_certlist_bytes
    pos, tags = _header(der, 0)[0], []
    while pos < len(der):
        tags.append(der[pos])
        pos = _header(der, pos)[1]
    return tags


def _header(der: bytes, pos: int) -> tuple[int, int]:
    """(start of the value, end of the element) of the DER element at `pos`."""
    size, start = der[pos + 1], pos + 2
    if size & 0x80:
        count = size & 0x7F
        size, start = int.from_bytes(der[start : start + count], "big"), start + count
    return start, start + size


def assert_crl(
    pki: Pki,
    revocations: list[Revocation],
    *,
    number: int = 1,
    now: datetime = NOW,
    days: int = validity.DEFAULT_CRL_DAYS,
    expired_grace: timedelta = validity.DEFAULT_CRL_EXPIRED_GRACE,
) -> x509.CertificateRevocationList:
    """build_crl's CRL holds exactly what the input says, signed by the CA, in v2 shape."""
    crl = build_crl(
        pki.cert,
        pki.key,
        revocations,
        number=number,
        now=now,
        days=days,
        expired_grace=expired_grace,
    )
    utc_now = now.astimezone(timezone.utc).replace(microsecond=0)
    assert crl.issuer == pki.cert.subject
    assert crl.last_update_utc == utc_now - validity.CLOCK_SKEW
    assert crl.next_update_utc == utc_now + timedelta(days=days)
    assert [(e.oid, e.critical) for e in crl.extensions] == [
        (x509.CRLNumber.oid, False),
        (x509.AuthorityKeyIdentifier.oid, False),
    ]
    assert crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number == number
    ski = pki.cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    aki = crl.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    assert aki.key_identifier == ski.digest
    assert listed_entries(crl) == expected_entries(
        revocations, now=now, expired_grace=expired_grace
    )
    assert crl.is_signature_valid(pki.key.public_key())
    assert crl_signed_by(crl, pki.cert)
    fields = [0x02, 0x30, 0x30, *_time_tags(crl), 0xA0]  # version, algorithm, issuer, times, ...
    if len(crl):
        fields.insert(-1, 0x30)  # revokedCertificates, present only when there are entries
    assert tbs_tags(crl) == fields
    assert crl.tbs_certlist_bytes[_header(crl.tbs_certlist_bytes, 0)[0] :][:3] == b"\x02\x01\x01"
    return crl


def _time_tags(crl: x509.CertificateRevocationList) -> list[int]:
    """UTCTime (0x17) before 2050, GeneralizedTime (0x18) from 2050 on (RFC 5280 §4.1.2.5)."""
    times = [crl.last_update_utc, crl.next_update_utc]
    return [0x17 if t is not None and t.year < 2050 else 0x18 for t in times]


def _revocations(
    serial_list: Iterable[int], when: datetime = NOW - timedelta(days=1)
) -> list[Revocation]:
    return [
        Revocation(serial=s, revoked_at=when + timedelta(seconds=i), reason=REASONS[i % 8])
        for i, s in enumerate(serial_list)
    ]


@pytest.fixture(scope="module")
def openssl() -> str:
    path = shutil.which("openssl")
    assert path, "the openssl CLI is required (apt-get install openssl)"
    return path


# --- what every CRL holds -------------------------------------------------------------------------


def test_every_key_type_signs_a_crl_openssl_verifies_and_reencodes_the_same(
    key_type: KeyType, openssl: str, tmp_path: Path
) -> None:
    pki = make_pki(key_type)
    revocations = _revocations([5, 0x80, 2**64, *range(100, 120)])
    crl = assert_crl(pki, revocations, number=42, days=7)
    assert len(crl) == 23 and crl.next_update_utc == NOW + timedelta(days=7)
    assert crl.signature_algorithm_oid == _SIGNATURES[key_type]
    if key_type in DETERMINISTIC:  # same input, same signature: the whole CRL is reproducible
        again = build_crl(pki.cert, pki.key, revocations, number=42, now=NOW, days=7)
        assert export.crl_pem(crl) == export.crl_pem(again)

    (tmp_path / "ca.crt").write_bytes(export.cert_pem(pki.cert))
    (tmp_path / "crl.pem").write_bytes(export.crl_pem(crl))
    result = subprocess.run(
        [
            openssl,
            "crl",
            "-in",
            "crl.pem",
            "-CAfile",
            "ca.crt",
            "-outform",
            "DER",
            "-out",
            "crl.der",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "verify OK" in result.stdout + result.stderr
    assert (tmp_path / "crl.der").read_bytes() == crl.public_bytes(serialization.Encoding.DER)


def test_edge_serials_are_listed_and_encoded_minimally() -> None:
    pki = make_pki(KeyType.ED25519)
    crl = assert_crl(pki, _revocations(EDGE_SERIALS))
    assert [r.serial_number for r in crl] == EDGE_SERIALS
    der = crl.tbs_certlist_bytes
    assert b"\x02\x02\x00\x80" in der  # 0x80 needs a leading zero byte
    assert b"\x02\x09\x00" + b"\xff" * 8 in der  # so does 2**64-1
    assert b"\x02\x14\x7f" + b"\xff" * 19 in der  # 2**159-1 fits 20 bytes as is


@pytest.mark.parametrize("serial", [0, -1, 2**159, 2**160])
def test_out_of_range_serials_are_refused(serial: int, pki: Pki) -> None:
    with pytest.raises(CryptoError, match="out of range for a CRL entry"):
        build_crl(pki.cert, pki.key, _revocations([serial]), number=1, now=NOW)


def test_empty_crl_has_no_revoked_certificates_field() -> None:
    pki = make_pki(KeyType.RSA_2048)
    crl = assert_crl(pki, [], number=0)
    assert len(crl) == 0
    assert tbs_tags(crl) == [0x02, 0x30, 0x30, 0x17, 0x17, 0xA0]
    again = build_crl(pki.cert, pki.key, [], number=0, now=NOW)
    assert export.crl_pem(crl) == export.crl_pem(again)  # RSA PKCS#1 v1.5: deterministic


@pytest.mark.parametrize("reason", REASONS, ids=[r.value for r in REASONS])
def test_each_reason_is_its_own_code_and_unspecified_is_omitted(
    reason: RevocationReason, pki: Pki
) -> None:
    crl = assert_crl(pki, [Revocation(7, NOW - timedelta(hours=1), reason)])
    extensions = list(crl[0].extensions)
    if reason is RevocationReason.UNSPECIFIED:
        assert extensions == []
    else:
        assert [e.value for e in extensions] == [x509.CRLReason(reason_to_x509(reason))]


def test_ten_thousand_entries_are_all_listed_sorted_with_their_reasons() -> None:
    pki = make_pki(KeyType.ED25519)
    serial_list = [serials.new_serial() for _ in range(10_000)]
    revocations = _revocations(serial_list)
    crl = assert_crl(pki, revocations, number=77)
    assert [r.serial_number for r in crl] == sorted(serial_list)
    assert len(crl.public_bytes(serialization.Encoding.DER)) > 128 * 1024  # long lengths
    by_serial = {r.serial: r for r in revocations}
    assert all(crl.get_revoked_certificate_by_serial_number(s) is not None for s in by_serial)
    assert crl.get_revoked_certificate_by_serial_number(1) is None


def test_dates_from_2050_are_generalized_time_and_other_zones_convert() -> None:
    pki = make_pki(KeyType.ED25519, days=40 * 365)
    beijing = timezone(timedelta(hours=8))
    revocations = [
        Revocation(1, datetime(2049, 12, 31, 23, 59, 59, tzinfo=timezone.utc), REASONS[1]),
        Revocation(2, datetime(2050, 1, 1, 8, 0, 1, 999_999, tzinfo=beijing), REASONS[2]),
        Revocation(3, datetime(2050, 1, 1, 7, 59, 58, tzinfo=beijing), REASONS[0]),
        Revocation(4, datetime(1950, 1, 1, 0, 0, 0, tzinfo=timezone.utc), REASONS[3]),
        Revocation(5, datetime(2025, 1, 2, 3, 4, 5, 999_999, tzinfo=timezone.utc), REASONS[4]),
    ]
    now = datetime(2049, 6, 1, tzinfo=beijing)  # nextUpdate in 2050
    crl = assert_crl(pki, revocations, now=now, days=365)
    der = crl.tbs_certlist_bytes
    assert b"\x17\x0d491231235959Z" in der and b"\x17\x0d500101000000Z" in der
    assert b"\x18\x0f20500101000001Z" in der  # serial 2: 2050 in UTC, fraction dropped
    assert b"\x17\x0d491231235958Z" in der  # serial 3: 2050 in Beijing is still 2049 in UTC
    assert b"\x17\x0d250102030405Z" in der  # serial 5: already UTC, fraction dropped too
    assert b"\x18\x0f20500531160000Z" in der  # nextUpdate
    assert crl.next_update_utc == datetime(2050, 5, 31, 16, tzinfo=timezone.utc)
    assert tbs_tags(crl)[3:5] == [0x17, 0x18]


def test_dropping_expired_entries(pki: Pki) -> None:
    # expired: never, in a day, 29, 30 (the edge: kept), 31 and 400 days ago
    ages = [None, -1, 29, 30, 31, 400]
    revocations = [
        Revocation(r.serial, r.revoked_at, r.reason, None if a is None else NOW - timedelta(a))
        for r, a in zip(_revocations(range(1, 7)), ages, strict=True)
    ]
    crl = assert_crl(pki, revocations, expired_grace=timedelta(days=30))
    assert [r.serial_number for r in crl] == [1, 2, 3, 4]
    assert [r.listed(NOW, timedelta(days=30)) for r in revocations] == [True] * 4 + [False] * 2


# --- refusals -------------------------------------------------------------------------------------


def test_the_cas_own_serial_and_a_serial_twice_are_refused(pki: Pki) -> None:
    own = pki.cert.serial_number
    with pytest.raises(CryptoError, match="it is the CA's own serial") as err:
        build_crl(pki.cert, pki.key, _revocations([5, own]), number=1, now=NOW)
    assert serials.serial_hex(own) in str(err.value)
    with pytest.raises(CryptoError, match="listed twice"):
        build_crl(pki.cert, pki.key, _revocations([5, 6, 5]), number=1, now=NOW)


def test_dates_before_1950_are_refused_not_a_crash(pki: Pki) -> None:
    old = Revocation(9, datetime(1949, 12, 31, 23, 59, 59, tzinfo=timezone.utc), REASONS[1])
    with pytest.raises(CryptoError, match="before 1950"):
        build_crl(pki.cert, pki.key, [old], number=1, now=NOW)
    with pytest.raises(ValueError, match="timezone-aware"):
        naive = Revocation(9, datetime(2024, 1, 1), REASONS[1])
        build_crl(pki.cert, pki.key, [naive], number=1, now=NOW)


def test_an_unsupported_key_is_a_crypto_error() -> None:
    key = ed448.Ed448PrivateKey.generate()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ed448-ca")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(serials.new_serial())
        .not_valid_before(NOW - timedelta(days=1))
        .not_valid_after(NOW + timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, None)
    )
    with pytest.raises(CryptoError, match="cannot sign a CRL with a Ed448PrivateKey"):
        build_crl(cert, key, [], number=1, now=NOW)  # type: ignore[arg-type]


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
def test_any_serial_set_is_listed_exactly(
    entries: dict[int, tuple[datetime, RevocationReason]], number: int, days: int
) -> None:
    pki = make_pki(KeyType.ED25519, days=40_000)  # cached key; deterministic signature
    revocations = [Revocation(s, when, reason) for s, (when, reason) in entries.items()]
    crl = assert_crl(pki, revocations, number=number, days=days)
    again = build_crl(pki.cert, pki.key, revocations[::-1], number=number, now=NOW, days=days)
    assert export.crl_pem(crl) == export.crl_pem(again)  # input order does not matter


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
