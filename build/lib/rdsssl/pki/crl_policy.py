"""One rule for "does PostgreSQL accept this CRL set with this CA bundle, now and soon?" (pure).

PostgreSQL loads `ssl_crl_file` with X509_V_FLAG_CRL_CHECK | X509_V_FLAG_CRL_CHECK_ALL, which is
exactly `openssl verify -crl_check_all`: every certificate of a client's chain, the self-signed
root included, is checked against a CRL issued by its issuer. The rules mirror OpenSSL 3.0's
x509_vfy.c (get_crl_sk, get_crl_score, check_crl, cert_crl); one line each, with why:

- Only `X509 CRL` blocks (NOT_A_CRL): OpenSSL loads certificates from that file too, as trust
  anchors.
- Every CRL names a CA of the bundle (FOREIGN_CRL): OpenSSL ignores it, but it means the file was
  made for another bundle, so it cannot be what the caller meant to upload.
- Every CRL that names a bundle CA is signed by it (BAD_SIGNATURE): OpenSSL picks a CRL by name
  and time before it checks the signature, so a forged or damaged one refuses that CA's users.
- No unhandled critical extension (UNHANDLED_CRITICAL_EXTENSION): OpenSSL's EXFLAG_CRITICAL rule
  (anything but issuing distribution point, authority key identifier and delta CRL indicator;
  on entries anything but certificate issuer; so a critical CRL number counts) refuses it.
- Bundle CAs may sign CRLs (CA_CANNOT_SIGN_CRL): check_crl refuses every CRL of a CA whose
  keyUsage lacks cRLSign, so its users are refused whatever the file holds.
- Every CA of the bundle has a usable CRL of its own (MISSING_CA): else "unknown ca" for its
  users. A candidate names the CA as issuer and its authority key identifier fits the CA
  (X509_check_akid), so same-named CAs (a rotation keeping the name) are told apart.
- At an instant t OpenSSL uses one candidate per CA: best score first (no unhandled critical
  extension, then covers the certificate, then lastUpdate <= t < nextUpdate, X509_cmp_time being
  "<="), then the latest lastUpdate, then the earlier in the file; so an expired CRL next to a
  valid one is harmless, and only the picked one counts.
- The picked CRL is valid (NOT_YET_VALID, EXPIRED): else every user of the CA is refused.
- ... at every instant of (now, now + restart_margin] too (EXPIRES_IN_MARGIN): a CA or CRL change
  restarts the instance, so a CRL that lapses meanwhile locks users out right after the change.
  Validity only changes at lastUpdate / nextUpdate, so checking now, the end of the margin and
  each boundary inside it (just before and at it, to the second) covers every instant.
- The CRL that checks a bundle CA does not list that CA's serial (LISTS_CA): the CA would be
  revoked, and with it every user (a root checks itself with its own CRL).

Scope, which OpenSSL scores too: a CRL whose issuingDistributionPoint is indirect or limited to
some reasons is ignored (no extended CRL support); one limited to user certificates does not
cover CA certificates, and the reverse; one naming a distribution point covers only certificates
with a matching CRL distribution point, which rdsssl's certificates do not carry. A delta CRL
counts as a full one, as in OpenSSL without X509_V_FLAG_USE_DELTAS. Certificates' own CRL
distribution points are not read.

Deliberately stricter than OpenSSL, because the file would hold something broken: the three
structural refusals (foreign, forged, unhandled critical) stand even when a better CRL of the same
CA hides the culprit from OpenSSL; a distribution-point CRL is taken to cover no client
certificate; CA_CANNOT_SIGN_CRL stands for delta CRLs, which check_crl lets through.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm

from rdsssl.errors import CryptoError
from rdsssl.pki.ca import key_identifier_fits
from rdsssl.pki.crl_facts import CrlFacts, Signatures, extension, read
from rdsssl.pki.crl_verdict import Code, Coverage, Finding, Verdict, instant_text, span_text
from rdsssl.pki.inspection import fingerprint
from rdsssl.pki.pem import BlockKind, load_certificates, parse_pem_bundle
from rdsssl.pki.serials import serial_hex
from rdsssl.pki.validity import utc

__all__ = ["DEFAULT_RESTART_MARGIN", "evaluate", "evaluate_pem"]

# RDS restarts the instance (about 3 minutes) to apply a CA or CRL; an hour leaves room for a
# slow restart and for a cron run that only finishes later.
DEFAULT_RESTART_MARGIN = timedelta(hours=1)

# OpenSSL's CRL_SCORE_* bits that can differ between candidates of one CA (the issuer name and
# key identifier bits are the same for all of them): higher wins.
_NOCRITICAL = 0x100
_SCOPE = 0x080
_TIME = 0x040
_SECOND = timedelta(seconds=1)


# --- entry points -----------------------------------------------------------------------------


def evaluate(
    cas: Sequence[x509.Certificate],
    crls: Sequence[x509.CertificateRevocationList],
    *,
    now: datetime,
    restart_margin: timedelta = DEFAULT_RESTART_MARGIN,
) -> Verdict:
    """Judge `crls` (in file order) for the bundle `cas` at `now` and over the restart margin."""
    now = utc(now)
    if restart_margin < timedelta(0):
        raise ValueError(f"restart_margin must not be negative (got {restart_margin})")
    findings: list[Finding] = []
    facts: list[CrlFacts] = []
    for index, crl in enumerate(crls):
        try:
            facts.append(read(crl, index))
        except ValueError as exc:  # an extension or entry cryptography cannot decode
            findings.append(
                Finding(Code.UNPARSABLE, None, fingerprint(crl), None, f"the CRL: {exc}")
            )
    signed = Signatures()
    findings += _structural(cas, facts, signed)
    instants = _instants(facts, now, now + restart_margin)
    seen = {(f.code, f.ca) for f in findings}
    for ca in cas:
        for finding in _ca_findings(ca, cas, facts, instants, signed, restart_margin):
            if (finding.code, finding.ca) not in seen:
                seen.add((finding.code, finding.ca))
                findings.append(finding)
    listed = frozenset().union(
        *(f.serials for f in facts if any(signed(f, ca) for ca in cas if f.issuer == ca.subject))
    )
    return Verdict(
        tuple(findings),
        tuple(_coverage(ca, _pick(_candidates(ca, facts), False, now)) for ca in cas),
        listed,
    )


def evaluate_pem(
    ca_pem: str | bytes,
    crl_pem: str | bytes | None,
    *,
    now: datetime,
    restart_margin: timedelta = DEFAULT_RESTART_MARGIN,
    source: str = "the CRL",
) -> Verdict:
    """`evaluate` from PEM text. The CRL side never raises: no text gives NO_CRL, a block that is
    not a CRL NOT_A_CRL, damaged text UNPARSABLE. A bad CA bundle raises CryptoError."""
    cas = load_certificates(_bytes(ca_pem), source="the CA bundle")
    data = _bytes(crl_pem or b"")
    if not data.strip():
        return _refused(cas, Finding(Code.NO_CRL, None, None, None, f"{source} is empty"))
    try:
        blocks = parse_pem_bundle(data, source=source)
    except CryptoError as exc:
        return _refused(cas, Finding(Code.UNPARSABLE, None, None, None, str(exc)))
    foreign = [
        Finding(Code.NOT_A_CRL, None, None, None, f"{source}: block {b.index} is {b.describe()}")
        for b in blocks
        if b.kind is not BlockKind.CRL
    ]
    crls = [x509.load_der_x509_crl(b.der) for b in blocks if b.kind is BlockKind.CRL]
    verdict = evaluate(cas, crls, now=now, restart_margin=restart_margin)
    return Verdict((*foreign, *verdict.findings), verdict.coverage, verdict.listed)


def _bytes(text: str | bytes) -> bytes:
    return text.encode() if isinstance(text, str) else text


def _refused(cas: Sequence[x509.Certificate], finding: Finding) -> Verdict:
    return Verdict((finding,), tuple(_coverage(ca, None) for ca in cas), frozenset())


# --- the rules --------------------------------------------------------------------------------


def _structural(
    cas: Sequence[x509.Certificate], facts: Iterable[CrlFacts], signed: Signatures
) -> list[Finding]:
    """Refusals whatever the time, one per CRL: foreign, forged, unhandled critical extension."""
    found: list[Finding] = []
    for crl in facts:
        named = [ca for ca in cas if ca.subject == crl.issuer]
        issuer = crl.issuer.rfc4514_string()
        if not named:
            found.append(Finding(Code.FOREIGN_CRL, None, crl.fingerprint, None, f"issuer {issuer}"))
        elif not any(signed(crl, ca) for ca in named):
            detail = f"issuer {issuer}"
            found.append(Finding(Code.BAD_SIGNATURE, issuer, crl.fingerprint, None, detail))
        if crl.critical:
            detail = "critical " + ", ".join(crl.critical)
            ca = issuer if named else None
            found.append(
                Finding(Code.UNHANDLED_CRITICAL_EXTENSION, ca, crl.fingerprint, None, detail)
            )
    return found


def _instants(facts: Iterable[CrlFacts], now: datetime, end: datetime) -> list[datetime]:
    """now, the end of the margin, and just before and at each boundary in between."""
    end = end.replace(microsecond=0)  # validity only changes on whole seconds
    points = {now, end}
    for crl in facts:
        for bound in (crl.last_update, crl.next_update):
            if bound is not None and now <= bound <= end:
                points.update((max(now, bound - _SECOND), bound))
    return sorted(points)


def _candidates(ca: x509.Certificate, facts: Iterable[CrlFacts]) -> list[CrlFacts]:
    """The CRLs OpenSSL may use for certificates issued by `ca` (get_crl_score > 0)."""
    return [
        crl
        for crl in facts
        if crl.issuer == ca.subject
        and not crl.ignored()
        and (crl.aki is None or key_identifier_fits(crl.aki, ca))
    ]


def _pick(candidates: Iterable[CrlFacts], ca_certificate: bool, t: datetime) -> CrlFacts | None:
    """get_crl_sk: best score, then the latest lastUpdate, then the earlier in the file."""
    best: CrlFacts | None = None
    best_score = -1
    for crl in candidates:
        score = (
            (0 if crl.critical else _NOCRITICAL)
            | (_SCOPE if crl.covers(ca_certificate) else 0)
            | (_TIME if crl.valid_at(t) else 0)
        )
        if score < best_score:
            continue
        if score == best_score and best is not None and crl.last_update <= best.last_update:
            continue
        best, best_score = crl, score
    return best


def _ca_findings(
    ca: x509.Certificate,
    cas: Sequence[x509.Certificate],
    facts: Sequence[CrlFacts],
    instants: Sequence[datetime],
    signed: Signatures,
    margin: timedelta,
) -> list[Finding]:
    """What refuses the users of `ca`: per CA first, then per instant (check_crl, cert_crl)."""
    subject = ca.subject.rfc4514_string()
    candidates = _candidates(ca, facts)
    found: list[Finding] = []
    usage = extension(ca, x509.KeyUsage)
    if usage is not None and not usage.crl_sign:
        found.append(Finding(Code.CA_CANNOT_SIGN_CRL, subject, None, None, "keyUsage"))
    if not candidates:
        found.append(Finding(Code.MISSING_CA, subject, None, None, _why_missing(ca, facts)))
    if found:  # its users are refused whatever the CRLs' times: nothing more worth saying
        return found
    children = [c for c in cas if _issued_by(c, ca)]  # itself too, when self-signed
    kinds = [(False, ())] if not children else [(False, ()), (True, tuple(children))]
    for t in instants:
        for ca_certificate, checked in kinds:
            crl = _pick(candidates, ca_certificate, t)
            if crl is not None:  # always: there are candidates
                found += _problems(ca, crl, ca_certificate, checked, t, instants[0], signed, margin)
    if any(f.code in (Code.NOT_YET_VALID, Code.EXPIRED) for f in found):
        found = [f for f in found if f.code is not Code.EXPIRES_IN_MARGIN]
    return found


def _problems(
    ca: x509.Certificate,
    crl: CrlFacts,
    ca_certificate: bool,
    checked: Sequence[x509.Certificate],
    t: datetime,
    now: datetime,
    signed: Signatures,
    margin: timedelta,
) -> list[Finding]:
    """Why the CRL picked at `t` refuses certificates issued by `ca` (check_crl, cert_crl)."""
    subject = ca.subject.rfc4514_string()
    found: list[Finding] = []
    if not crl.covers(ca_certificate):  # a delta CRL escapes check_crl, not check_cert's loop
        kind = "CA" if ca_certificate else "client"
        detail = f"its CRLs do not cover {kind} certificates (issuingDistributionPoint)"
        found.append(Finding(Code.MISSING_CA, subject, None, None, detail))
    if not crl.valid_at(t):
        found.append(_time_finding(subject, crl, t, now, margin))
    if not signed(crl, ca):
        detail = "signed by another key than the CA's"
        found.append(Finding(Code.BAD_SIGNATURE, subject, crl.fingerprint, None, detail))
    for cert in checked:
        if crl.revokes(cert.serial_number):
            detail = f"serial {serial_hex(cert.serial_number)} in the CRL of {subject}"
            listed = cert.subject.rfc4514_string()
            found.append(Finding(Code.LISTS_CA, listed, crl.fingerprint, t, detail))
    return found


def _time_finding(
    subject: str, crl: CrlFacts, t: datetime, now: datetime, margin: timedelta
) -> Finding:
    early = crl.last_update > t
    detail = (
        f"lastUpdate {instant_text(crl.last_update)}"
        if early
        else f"nextUpdate {instant_text(crl.next_update)}"
    )
    if t > now:
        code = Code.EXPIRES_IN_MARGIN
        detail += f", within the {span_text(margin)} restart margin"
    else:
        code = Code.NOT_YET_VALID if early else Code.EXPIRED
    return Finding(code, subject, crl.fingerprint, t, detail)


def _why_missing(ca: x509.Certificate, facts: Iterable[CrlFacts]) -> str:
    named = sum(crl.issuer == ca.subject for crl in facts)
    if not named:
        return "no CRL names it as issuer"
    return (
        f"{named} CRL(s) name it as issuer but OpenSSL cannot use them (an authority key "
        "identifier of another CA, or an indirect or reason-limited CRL)"
    )


def _issued_by(cert: x509.Certificate, ca: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm):
        return False
    return True


def _coverage(ca: x509.Certificate, crl: CrlFacts | None) -> Coverage:
    subject, ca_fingerprint = ca.subject.rfc4514_string(), fingerprint(ca)
    if crl is None:
        return Coverage(subject, ca_fingerprint, None, None, None, frozenset())
    return Coverage(
        subject, ca_fingerprint, crl.fingerprint, crl.last_update, crl.next_update, crl.serials
    )
