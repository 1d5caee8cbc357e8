"""rdsssl.pki.crl_policy on crafted CA bundles and CRL files: one example per rule, and the edges.

The CAs and CRLs come from cryptography's builders (tests/crl_pki.py), dated around a fixed
NOW; tests/integration/test_crl_policy_openssl.py checks the same rules against openssl.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import CRLEntryExtensionOID, ExtensionOID

from rdsssl.errors import CryptoError
from rdsssl.pki import inspection
from rdsssl.pki.crl_policy import DEFAULT_RESTART_MARGIN, evaluate, evaluate_pem
from rdsssl.pki.crl_verdict import Code, Finding, Verdict
from tests.crl_pki import NOW, Ca, key, make_ca, pem

ROOT = make_ca("unit-root-1", serial=0x1001)
ROOT_2 = make_ca("unit-root-2", serial=0x1002)
INTERMEDIATE = ROOT.child("unit-int-1", serial=0x2001)
OUTSIDER = make_ca("unit-outsider", serial=0x3001)
TWIN = make_ca("unit-root-1", serial=0x1009, key_label="unit-root-1-twin")  # same name, new key
NO_CRL_SIGN = make_ca("unit-no-crl-sign", serial=0x4001, crl_sign=False)
SECOND = timedelta(seconds=1)
HOUR = timedelta(hours=1)


def found(verdict: Verdict) -> list[tuple[Code, str | None]]:
    return [(f.code, f.ca) for f in verdict.findings]


def idp(
    *,
    users: bool = False,
    cas: bool = False,
    indirect: bool = False,
    reasons: frozenset[x509.ReasonFlags] | None = None,
    url: str | None = None,
) -> x509.IssuingDistributionPoint:
    return x509.IssuingDistributionPoint(
        full_name=[x509.UniformResourceIdentifier(url)] if url else None,
        relative_name=None,
        only_contains_user_certs=users,
        only_contains_ca_certs=cas,
        only_some_reasons=reasons,
        indirect_crl=indirect,
        only_contains_attribute_certs=False,
    )


# --- a good set -------------------------------------------------------------------------------


def test_a_current_crl_per_ca_is_ok_with_its_coverage() -> None:
    crl = ROOT.crl(serials=[0x77, 0x78])
    verdict = evaluate([ROOT.cert], [crl], now=NOW)
    assert verdict.ok
    assert verdict.codes == frozenset()
    (coverage,) = verdict.coverage
    assert coverage.ca_subject == ROOT.subject
    assert coverage.ca_fingerprint == inspection.fingerprint(ROOT.cert)
    assert coverage.crl_fingerprint == inspection.fingerprint(crl)
    assert (coverage.last_update, coverage.next_update) == (NOW - HOUR, NOW + timedelta(days=1))
    assert coverage.listed == {0x77, 0x78} == verdict.listed
    assert verdict.next_update == NOW + timedelta(days=1)
    verdict.raise_if_refused("the CRL")  # ok: nothing raised


def test_two_roots_and_a_chain_each_covered_are_ok_in_any_order() -> None:
    cas = [ROOT_2.cert, INTERMEDIATE.cert, ROOT.cert]
    crls = [INTERMEDIATE.crl(next=NOW + HOUR * 5), ROOT.crl(), ROOT_2.crl(next=NOW + HOUR * 3)]
    verdict = evaluate(cas, crls, now=NOW)
    assert verdict.ok, verdict.findings
    assert [c.ca_subject for c in verdict.coverage] == [c.subject.rfc4514_string() for c in cas]
    assert verdict.next_update == NOW + HOUR * 3


@pytest.mark.parametrize("expired_first", [True, False])
def test_an_expired_crl_next_to_a_valid_one_is_harmless(expired_first: bool) -> None:
    expired = ROOT.crl(last=NOW - HOUR * 30, next=NOW - HOUR * 6, serials=[0x77])
    valid = ROOT.crl(serials=[0x78])
    crls = [expired, valid] if expired_first else [valid, expired]
    verdict = evaluate([ROOT.cert], crls, now=NOW)
    assert verdict.ok
    assert verdict.coverage[0].crl_fingerprint == inspection.fingerprint(valid)
    assert verdict.listed == {0x77, 0x78}  # every CRL signed by a bundle CA counts


def test_now_is_truncated_to_the_second_like_x509_times() -> None:
    crl = ROOT.crl(next=NOW + SECOND)
    assert evaluate(
        [ROOT.cert], [crl], now=NOW + timedelta(microseconds=999_999), restart_margin=timedelta(0)
    ).ok
    other_zone = (NOW + HOUR).astimezone(timezone(timedelta(hours=8)))
    assert found(evaluate([ROOT.cert], [crl], now=other_zone)) == [(Code.EXPIRED, ROOT.subject)]


def test_now_must_be_aware_and_the_margin_not_negative() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        evaluate([ROOT.cert], [ROOT.crl()], now=NOW.replace(tzinfo=None))
    with pytest.raises(ValueError, match="restart_margin"):
        evaluate([ROOT.cert], [ROOT.crl()], now=NOW, restart_margin=-SECOND)


# --- missing CRLs -----------------------------------------------------------------------------


def test_an_empty_set_is_missing_ca_for_every_ca() -> None:
    verdict = evaluate([ROOT.cert, ROOT_2.cert], [], now=NOW)
    assert found(verdict) == [(Code.MISSING_CA, ROOT.subject), (Code.MISSING_CA, ROOT_2.subject)]
    assert [c.crl_fingerprint for c in verdict.coverage] == [None, None]
    assert verdict.next_update is None
    assert verdict.listed == frozenset()


def test_a_bundle_of_two_roots_needs_both_crls() -> None:
    verdict = evaluate([ROOT.cert, ROOT_2.cert], [ROOT.crl()], now=NOW)
    assert found(verdict) == [(Code.MISSING_CA, ROOT_2.subject)]
    assert verdict.findings[0].detail == "no CRL names it as issuer"
    assert verdict.coverage[1].crl_fingerprint is None


@pytest.mark.parametrize(
    ("covered", "missing"), [(ROOT, INTERMEDIATE), (INTERMEDIATE, ROOT)], ids=["root", "int"]
)
def test_a_chain_needs_the_crl_of_the_root_and_of_the_intermediate(
    covered: Ca, missing: Ca
) -> None:
    verdict = evaluate([ROOT.cert, INTERMEDIATE.cert], [covered.crl()], now=NOW)
    assert found(verdict) == [(Code.MISSING_CA, missing.subject)]


@pytest.mark.parametrize(
    ("serial", "issuer", "usable"),
    [
        (ROOT.serial, ROOT.cert.issuer, True),
        (ROOT_2.serial, ROOT.cert.issuer, False),
        (ROOT.serial, ROOT_2.cert.subject, False),
    ],
    ids=["matching", "other-serial", "other-issuer"],
)
def test_a_key_identifier_by_issuer_and_serial_must_fit_the_ca(
    serial: int, issuer: x509.Name, usable: bool
) -> None:
    aki = x509.AuthorityKeyIdentifier(None, [x509.DirectoryName(issuer)], serial)
    verdict = evaluate([ROOT.cert], [ROOT.crl(aki=False, extensions=[(aki, False)])], now=NOW)
    assert found(verdict) == ([] if usable else [(Code.MISSING_CA, ROOT.subject)])


def test_a_crl_whose_key_identifier_names_another_key_does_not_count() -> None:
    stray = TWIN.crl()  # issuer name of ROOT, AKI and signature of the twin's key
    verdict = evaluate([ROOT.cert], [stray], now=NOW)
    assert (Code.MISSING_CA, ROOT.subject) in found(verdict)
    missing = next(f for f in verdict.findings if f.code is Code.MISSING_CA)
    assert "authority key identifier" in missing.detail


# --- structural refusals ----------------------------------------------------------------------


def test_a_foreign_crl_is_refused_although_the_bundle_is_covered() -> None:
    good, foreign = ROOT.crl(), OUTSIDER.crl(serials=[0x99])
    verdict = evaluate([ROOT.cert], [good, foreign], now=NOW)
    assert found(verdict) == [(Code.FOREIGN_CRL, None)]
    assert verdict.findings[0].crl == inspection.fingerprint(foreign)
    assert verdict.findings[0].detail == f"issuer {OUTSIDER.subject}"
    assert verdict.listed == frozenset()  # 0x99 is not listed by a CRL of a bundle CA
    assert verdict.coverage[0].crl_fingerprint == inspection.fingerprint(good)


@pytest.mark.parametrize("aki", [True, False])
def test_a_forged_crl_is_a_bad_signature_whatever_its_key_identifier(aki: bool) -> None:
    forged = ROOT.crl(signer=key("forger"), aki=aki, serials=[0x66])
    verdict = evaluate([ROOT.cert], [ROOT.crl(), forged], now=NOW)
    assert found(verdict) == [(Code.BAD_SIGNATURE, ROOT.subject)]
    assert verdict.findings[0].crl == inspection.fingerprint(forged)
    assert 0x66 not in verdict.listed


def test_same_named_cas_without_key_identifiers_refuse_the_one_whose_crl_is_not_picked() -> None:
    # ROOT and TWIN share a name; with no AKI OpenSSL picks the newest CRL of that name for
    # both, and the signature check then fails for ROOT.
    mine, theirs = ROOT.crl(aki=False), TWIN.crl(aki=False, last=NOW - HOUR / 2)
    verdict = evaluate([ROOT.cert, TWIN.cert], [mine, theirs], now=NOW)
    assert found(verdict) == [(Code.BAD_SIGNATURE, ROOT.subject)]
    assert verdict.findings[0].crl == inspection.fingerprint(theirs)
    with_aki = evaluate([ROOT.cert, TWIN.cert], [ROOT.crl(), TWIN.crl()], now=NOW)
    assert with_aki.ok, with_aki.findings


def test_a_critical_crl_number_is_unhandled_even_next_to_a_good_crl() -> None:
    critical = ROOT.crl(critical_number=True)
    verdict = evaluate([ROOT.cert], [ROOT.crl(last=NOW - HOUR * 2), critical], now=NOW)
    assert found(verdict) == [(Code.UNHANDLED_CRITICAL_EXTENSION, ROOT.subject)]
    assert verdict.findings[0].detail == "critical CRL_NUMBER (2.5.29.20)"
    assert verdict.findings[0].crl == inspection.fingerprint(critical)


def test_a_crl_without_unhandled_extensions_is_picked_first_even_expired() -> None:
    plain = ROOT.crl(next=NOW - SECOND)
    verdict = evaluate([ROOT.cert], [plain, ROOT.crl(critical_number=True)], now=NOW)
    assert verdict.codes == {Code.EXPIRED, Code.UNHANDLED_CRITICAL_EXTENSION}
    assert verdict.coverage[0].crl_fingerprint == inspection.fingerprint(plain)


def test_a_critical_entry_extension_is_unhandled_except_certificate_issuer() -> None:
    reason = x509.CRLReason(x509.ReasonFlags.key_compromise)
    bad = ROOT.crl(serials=[0x77], entry_extensions=[(reason, True)])
    issuer = x509.CertificateIssuer([x509.DirectoryName(ROOT.cert.subject)])
    fine = ROOT.crl(serials=[0x77], entry_extensions=[(issuer, True)])
    assert found(evaluate([ROOT.cert], [bad], now=NOW)) == [
        (Code.UNHANDLED_CRITICAL_EXTENSION, ROOT.subject)
    ]
    assert evaluate([ROOT.cert], [fine], now=NOW).ok


def test_handled_critical_extensions_are_fine() -> None:
    aki = x509.AuthorityKeyIdentifier.from_issuer_public_key(ROOT.key.public_key())
    crl = ROOT.crl(aki=False, extensions=[(aki, True), (x509.DeltaCRLIndicator(0), True)])
    assert evaluate([ROOT.cert], [crl], now=NOW).ok


def test_a_foreign_crl_with_a_critical_extension_names_no_ca() -> None:
    verdict = evaluate([ROOT.cert], [ROOT.crl(), OUTSIDER.crl(critical_number=True)], now=NOW)
    assert found(verdict) == [(Code.FOREIGN_CRL, None), (Code.UNHANDLED_CRITICAL_EXTENSION, None)]
    assert "a foreign issuer" in verdict.findings[1].message()


def test_a_ca_without_crl_sign_refuses_its_users_whatever_the_crl() -> None:
    verdict = evaluate([ROOT.cert, NO_CRL_SIGN.cert], [ROOT.crl(), NO_CRL_SIGN.crl()], now=NOW)
    assert found(verdict) == [(Code.CA_CANNOT_SIGN_CRL, NO_CRL_SIGN.subject)]
    bare = evaluate([NO_CRL_SIGN.cert], [], now=NOW)
    assert found(bare) == [
        (Code.CA_CANNOT_SIGN_CRL, NO_CRL_SIGN.subject),
        (Code.MISSING_CA, NO_CRL_SIGN.subject),
    ]


# --- time -------------------------------------------------------------------------------------


def test_a_crl_is_valid_from_its_last_update_included() -> None:
    margin = timedelta(0)
    assert evaluate([ROOT.cert], [ROOT.crl(last=NOW)], now=NOW, restart_margin=margin).ok
    verdict = evaluate([ROOT.cert], [ROOT.crl(last=NOW + SECOND)], now=NOW, restart_margin=margin)
    assert found(verdict) == [(Code.NOT_YET_VALID, ROOT.subject)]
    (finding,) = verdict.findings
    assert finding.at == NOW
    assert finding.detail == "lastUpdate 2030-01-01T12:00:01Z"


def test_a_crl_is_expired_at_its_next_update() -> None:
    margin = timedelta(0)
    assert evaluate([ROOT.cert], [ROOT.crl(next=NOW + SECOND)], now=NOW, restart_margin=margin).ok
    verdict = evaluate([ROOT.cert], [ROOT.crl(next=NOW)], now=NOW, restart_margin=margin)
    assert found(verdict) == [(Code.EXPIRED, ROOT.subject)]
    assert verdict.findings[0].detail == "nextUpdate 2030-01-01T12:00:00Z"
    assert verdict.next_update == NOW


@pytest.mark.parametrize(
    ("offset", "first_failure"),
    [(-SECOND, -SECOND), (timedelta(0), timedelta(0)), (SECOND, None)],
    ids=["second-before", "exactly", "second-after"],
)
def test_expires_in_margin_at_the_edge_of_the_margin(
    offset: timedelta, first_failure: timedelta | None
) -> None:
    end = NOW + DEFAULT_RESTART_MARGIN
    verdict = evaluate([ROOT.cert], [ROOT.crl(next=end + offset)], now=NOW)
    if first_failure is None:
        assert verdict.ok, verdict.findings
        return
    assert found(verdict) == [(Code.EXPIRES_IN_MARGIN, ROOT.subject)]
    assert verdict.findings[0].at == end + first_failure
    assert verdict.findings[0].detail.endswith("within the 1h restart margin")


def test_a_gap_between_two_crls_inside_the_margin_is_caught() -> None:
    # valid now and again at the end of the margin, but not from 12:20 to 12:30
    first = ROOT.crl(next=NOW + timedelta(minutes=20))
    second = ROOT.crl(last=NOW + timedelta(minutes=30), next=NOW + timedelta(days=2))
    verdict = evaluate([ROOT.cert], [first, second], now=NOW)
    assert found(verdict) == [(Code.EXPIRES_IN_MARGIN, ROOT.subject)]
    (finding,) = verdict.findings
    assert finding.at == NOW + timedelta(minutes=20)
    assert finding.crl == inspection.fingerprint(second)  # the one OpenSSL picks then: the newest
    assert finding.detail.startswith("lastUpdate 2030-01-01T12:30:00Z")
    touching = ROOT.crl(last=NOW + timedelta(minutes=20), next=NOW + timedelta(days=2))
    assert evaluate([ROOT.cert], [first, touching], now=NOW).ok


def test_an_expired_crl_is_reported_once_not_again_as_expiring() -> None:
    verdict = evaluate([ROOT.cert], [ROOT.crl(next=NOW - SECOND)], now=NOW)
    assert found(verdict) == [(Code.EXPIRED, ROOT.subject)]


def test_the_root_crl_expiring_refuses_through_the_intermediate_too() -> None:
    crls = [ROOT.crl(next=NOW + timedelta(minutes=5)), INTERMEDIATE.crl()]
    verdict = evaluate([ROOT.cert, INTERMEDIATE.cert], crls, now=NOW)
    assert found(verdict) == [(Code.EXPIRES_IN_MARGIN, ROOT.subject)]
    assert evaluate([ROOT.cert, INTERMEDIATE.cert], crls, now=NOW, restart_margin=HOUR / 60).ok


# --- a CA listed as revoked -------------------------------------------------------------------


def test_a_root_listing_its_own_serial_refuses_its_users() -> None:
    crl = ROOT.crl(serials=[ROOT.serial])
    verdict = evaluate([ROOT.cert], [crl], now=NOW)
    assert found(verdict) == [(Code.LISTS_CA, ROOT.subject)]
    (finding,) = verdict.findings
    assert (finding.crl, finding.at) == (inspection.fingerprint(crl), NOW)
    assert finding.detail == f"serial 1001 in the CRL of {ROOT.subject}"


def test_a_root_listing_its_intermediate_refuses_the_intermediate_only() -> None:
    crls = [ROOT.crl(serials=[INTERMEDIATE.serial]), INTERMEDIATE.crl()]
    verdict = evaluate([ROOT.cert, INTERMEDIATE.cert], crls, now=NOW)
    assert found(verdict) == [(Code.LISTS_CA, INTERMEDIATE.subject)]
    assert ROOT.subject in verdict.findings[0].detail


def test_an_intermediate_listing_itself_is_not_checked_against_its_own_crl() -> None:
    crls = [ROOT.crl(), INTERMEDIATE.crl(serials=[INTERMEDIATE.serial])]
    assert evaluate([ROOT.cert, INTERMEDIATE.cert], crls, now=NOW).ok


def test_a_remove_from_crl_entry_does_not_revoke() -> None:
    reason = x509.CRLReason(x509.ReasonFlags.remove_from_crl)
    crl = ROOT.crl(serials=[ROOT.serial], entry_extensions=[(reason, False)])
    verdict = evaluate([ROOT.cert], [crl], now=NOW)
    assert verdict.ok
    assert verdict.listed == {ROOT.serial}


def test_a_successor_listing_the_ca_inside_the_margin_is_caught() -> None:
    crls = [
        ROOT.crl(next=NOW + timedelta(minutes=10)),
        ROOT.crl(last=NOW + timedelta(minutes=5), serials=[ROOT.serial]),
    ]
    verdict = evaluate([ROOT.cert], crls, now=NOW)
    assert found(verdict) == [(Code.LISTS_CA, ROOT.subject)]
    assert verdict.findings[0].at == NOW + timedelta(minutes=5)


@pytest.mark.parametrize("listing_first", [True, False])
def test_twin_crls_go_to_the_earlier_in_the_file(listing_first: bool) -> None:
    listing = ROOT.crl(serials=[ROOT.serial], number=2)
    clean = ROOT.crl(number=3)  # the same lastUpdate: a tie
    crls = [listing, clean] if listing_first else [clean, listing]
    verdict = evaluate([ROOT.cert], crls, now=NOW)
    assert verdict.codes == ({Code.LISTS_CA} if listing_first else frozenset())
    assert verdict.coverage[0].crl_fingerprint == inspection.fingerprint(crls[0])


def test_the_newest_crl_wins_among_valid_ones() -> None:
    older = ROOT.crl(last=NOW - HOUR * 2)
    newer = ROOT.crl(serials=[ROOT.serial])
    for crls in ([older, newer], [newer, older]):
        verdict = evaluate([ROOT.cert], crls, now=NOW)
        assert found(verdict) == [(Code.LISTS_CA, ROOT.subject)]
        assert verdict.coverage[0].crl_fingerprint == inspection.fingerprint(newer)


# --- partial CRLs (issuingDistributionPoint) --------------------------------------------------


UNUSABLE = "1 CRL(s) name it as issuer but OpenSSL cannot use them"


@pytest.mark.parametrize(
    ("partial", "detail"),
    [
        (idp(users=True), "its CRLs do not cover CA certificates"),
        (idp(cas=True), "its CRLs do not cover client certificates"),
        (idp(url="http://crl.invalid/r.crl"), "its CRLs do not cover client certificates"),
        (idp(indirect=True), UNUSABLE),
        (idp(reasons=frozenset({x509.ReasonFlags.key_compromise})), UNUSABLE),
    ],
    ids=["only-users", "only-cas", "distribution-point", "indirect", "some-reasons"],
)
def test_a_partial_crl_alone_does_not_cover_the_ca(
    partial: x509.IssuingDistributionPoint, detail: str
) -> None:
    crl = ROOT.crl(extensions=[(partial, True)])
    verdict = evaluate([ROOT.cert], [crl], now=NOW)
    assert found(verdict) == [(Code.MISSING_CA, ROOT.subject)]
    assert verdict.findings[0].detail.startswith(detail)


def test_a_users_only_crl_next_to_a_full_one_is_fine() -> None:
    partial = ROOT.crl(extensions=[(idp(users=True), True)])
    assert evaluate([ROOT.cert], [partial, ROOT.crl(last=NOW - HOUR * 2)], now=NOW).ok


# --- evaluate_pem -----------------------------------------------------------------------------


@pytest.mark.parametrize("text", [None, "", " \n\t", b"", b"\n"])
def test_no_crl_text_is_no_crl(text: str | bytes | None) -> None:
    verdict = evaluate_pem(pem(ROOT.cert, ROOT_2.cert).decode(), text, now=NOW, source="crl.pem")
    assert found(verdict) == [(Code.NO_CRL, None)]
    assert verdict.findings[0].detail == "crl.pem is empty"
    assert [c.ca_subject for c in verdict.coverage] == [ROOT.subject, ROOT_2.subject]
    assert all(c.crl_fingerprint is None for c in verdict.coverage)


def test_pem_text_is_judged_like_the_objects() -> None:
    crls = [ROOT.crl(serials=[0x77]), INTERMEDIATE.crl(next=NOW + HOUR / 2)]
    from_objects = evaluate([ROOT.cert, INTERMEDIATE.cert], crls, now=NOW)
    ca_text = pem(ROOT.cert, INTERMEDIATE.cert)
    for crl_text in (pem(*crls), pem(*crls).decode()):
        assert evaluate_pem(ca_text, crl_text, now=NOW) == from_objects
    assert found(from_objects) == [(Code.EXPIRES_IN_MARGIN, INTERMEDIATE.subject)]


def test_a_certificate_in_the_crl_text_is_not_a_crl() -> None:
    verdict = evaluate_pem(pem(ROOT.cert), pem(ROOT.crl(), OUTSIDER.cert), now=NOW)
    assert found(verdict) == [(Code.NOT_A_CRL, None)]
    assert verdict.findings[0].detail == "the CRL: block 2 is a certificate"
    assert verdict.coverage[0].crl_fingerprint is not None  # the CRL itself was judged


def test_a_private_key_in_the_crl_text_is_named_never_shown() -> None:
    key_pem = ROOT.key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    verdict = evaluate_pem(pem(ROOT.cert), pem(ROOT.crl()) + key_pem, now=NOW)
    assert found(verdict) == [(Code.NOT_A_CRL, None)]
    message = verdict.findings[0].message()
    assert "block 2 is a private key" in message
    body = b"".join(key_pem.splitlines()[1:-1]).decode()
    assert body[:40] not in message


@pytest.mark.parametrize(
    ("text", "detail"),
    [
        ("garbage, no PEM here", "not PEM"),
        ("-----BEGIN X509 CRL-----\n!!!!\n-----END X509 CRL-----\n", "bad base64"),
        ("-----BEGIN X509 CRL-----\nMIIB\n", "has no '-----END X509 CRL-----' line"),
        ("-----BEGIN X509 CRL-----\nMAA=\n-----END X509 CRL-----\n", "is not a valid crl"),
    ],
    ids=["garbage", "base64", "truncated", "bad-der"],
)
def test_damaged_crl_text_is_unparsable_never_an_exception(text: str, detail: str) -> None:
    verdict = evaluate_pem(pem(ROOT.cert), text, now=NOW, source="upload.pem")
    assert found(verdict) == [(Code.UNPARSABLE, None)]
    assert verdict.findings[0].detail.startswith("upload.pem: ")
    assert detail in verdict.findings[0].detail


def test_an_undecodable_extension_is_unparsable() -> None:
    garbage = x509.UnrecognizedExtension(ExtensionOID.AUTHORITY_KEY_IDENTIFIER, b"\x01\x02")
    crl = ROOT.crl(aki=False, extensions=[(garbage, False)])
    verdict = evaluate([ROOT.cert], [crl], now=NOW)
    assert found(verdict) == [(Code.UNPARSABLE, None), (Code.MISSING_CA, ROOT.subject)]
    assert verdict.findings[0].crl == inspection.fingerprint(crl)
    assert found(evaluate_pem(pem(ROOT.cert), pem(crl), now=NOW)) == [(Code.UNPARSABLE, None)]


def test_an_undecodable_entry_extension_is_unparsable() -> None:
    garbage = x509.UnrecognizedExtension(CRLEntryExtensionOID.CRL_REASON, b"\xff")
    crl = ROOT.crl(serials=[0x77], entry_extensions=[(garbage, False)])
    verdict = evaluate_pem(pem(ROOT.cert), pem(crl), now=NOW)
    assert found(verdict) == [(Code.UNPARSABLE, None), (Code.MISSING_CA, ROOT.subject)]


def test_a_bad_ca_bundle_raises() -> None:
    with pytest.raises(CryptoError, match="the CA bundle"):
        evaluate_pem("not a bundle", pem(ROOT.crl()), now=NOW)


# --- verdicts and messages --------------------------------------------------------------------


def test_raise_if_refused_joins_every_message() -> None:
    verdict = evaluate([ROOT.cert, ROOT_2.cert], [ROOT.crl(next=NOW)], now=NOW)
    assert verdict.codes == {Code.EXPIRED, Code.MISSING_CA}
    with pytest.raises(CryptoError) as caught:
        verdict.raise_if_refused("the CRL for rds-1")
    first, second = (f.message() for f in verdict.findings)
    assert str(caught.value) == f"the CRL for rds-1: {first}; {second}"


MESSAGE_CASES = [
    Finding(Code.NO_CRL, None, None, None, "crl.pem is empty"),
    Finding(Code.NOT_A_CRL, None, None, None, "crl.pem: block 2 is a certificate"),
    Finding(Code.UNPARSABLE, None, None, None, "crl.pem: block 1 (X509 CRL): bad base64"),
    Finding(Code.FOREIGN_CRL, None, "ab" * 32, None, "issuer CN=other"),
    Finding(Code.BAD_SIGNATURE, "CN=root", "ab" * 32, None, "issuer CN=root"),
    Finding(Code.UNHANDLED_CRITICAL_EXTENSION, "CN=root", "ab" * 32, None, "critical X"),
    Finding(Code.CA_CANNOT_SIGN_CRL, "CN=root", None, None, "keyUsage"),
    Finding(Code.MISSING_CA, "CN=root", None, None, "no CRL names it as issuer"),
    Finding(Code.NOT_YET_VALID, "CN=root", "ab" * 32, NOW, "lastUpdate 2030-01-02T00:00:00Z"),
    Finding(Code.EXPIRED, "CN=root", "ab" * 32, NOW, "nextUpdate 2030-01-01T00:00:00Z"),
    Finding(Code.EXPIRES_IN_MARGIN, "CN=root", "ab" * 32, NOW + HOUR, "nextUpdate 2030-01-01"),
    Finding(Code.LISTS_CA, "CN=int", "ab" * 32, NOW, "serial 2001 in the CRL of CN=root"),
]


def test_every_code_has_a_message_case() -> None:
    assert {f.code for f in MESSAGE_CASES} == set(Code)


@pytest.mark.parametrize("finding", MESSAGE_CASES, ids=lambda f: f.code.value)
def test_each_message_says_what_is_wrong_its_consequence_and_what_to_do(finding: Finding) -> None:
    message = finding.message()
    assert finding.detail in message
    if finding.ca:
        assert finding.ca in message
    assert "PostgreSQL" in message or "locked out" in message  # the consequence for users
    assert "rdsssl " in message or "stop using" in message  # what to do
    assert message.count(": ") >= 1 and "\n" not in message


def test_the_at_of_a_margin_finding_is_in_its_message() -> None:
    finding = Finding(
        Code.EXPIRES_IN_MARGIN, "CN=r", None, datetime(2030, 1, 1, 13, tzinfo=timezone.utc), "x"
    )
    assert "from 2030-01-01T13:00:00Z" in finding.message()
