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

import enum
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import TypeVar

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.x509.oid import CRLEntryExtensionOID, ExtensionOID

from rdsssl.errors import CryptoError
from rdsssl.pki import crypto

__all__ = [
    "DEFAULT_RESTART_MARGIN",
    "Code",
    "Coverage",
    "Finding",
    "Verdict",
    "evaluate",
    "evaluate_pem",
]

# RDS restarts the instance (about 3 minutes) to apply a CA or CRL; an hour leaves room for a
# slow restart and for a cron run that only finishes later.
DEFAULT_RESTART_MARGIN = timedelta(hours=1)

# OpenSSL's CRL_SCORE_* bits that can differ between candidates of one CA (the issuer name and
# key identifier bits are the same for all of them): higher wins.
_NOCRITICAL = 0x100
_SCOPE = 0x080
_TIME = 0x040

_HANDLED_CRITICAL = frozenset(
    {
        ExtensionOID.ISSUING_DISTRIBUTION_POINT,
        ExtensionOID.AUTHORITY_KEY_IDENTIFIER,
        ExtensionOID.DELTA_CRL_INDICATOR,
    }
)
_OID_NAMES = {
    value: name
    for table in (ExtensionOID, CRLEntryExtensionOID)
    for name, value in vars(table).items()
    if isinstance(value, x509.ObjectIdentifier)
}
_SECOND = timedelta(seconds=1)
_E = TypeVar("_E", bound=x509.ExtensionType)
_BUILD = "build a fresh CRL with `rdsssl crl build`"


class Code(str, enum.Enum):
    """Why a CRL set is refused; stable machine codes (JSON output, tests, callers' logic)."""

    NO_CRL = "no-crl"  # (evaluate_pem) no CRL text at all
    NOT_A_CRL = "not-a-crl"  # (evaluate_pem) a block that is not an X509 CRL
    UNPARSABLE = "unparsable"  # damaged PEM or DER, or an extension that cannot be decoded
    FOREIGN_CRL = "foreign-crl"  # its issuer is no CA of the bundle
    BAD_SIGNATURE = "bad-signature"  # names a bundle CA, which did not sign it
    UNHANDLED_CRITICAL_EXTENSION = "unhandled-critical-extension"
    CA_CANNOT_SIGN_CRL = "ca-cannot-sign-crl"  # a bundle CA's keyUsage lacks cRLSign
    MISSING_CA = "missing-ca"  # a bundle CA without a usable CRL issued by it
    NOT_YET_VALID = "not-yet-valid"  # the CRL in use for a CA at `now` starts later
    EXPIRED = "expired"  # ... has expired (nextUpdate <= now)
    EXPIRES_IN_MARGIN = "expires-in-margin"  # valid now, not at some instant of the margin
    LISTS_CA = "lists-ca"  # the CRL that checks a bundle CA lists that CA's serial


@dataclass(frozen=True)
class Finding:
    """One reason to refuse. `ca`: RFC 4514 subject of the CA concerned; `crl`: SHA-256 (hex) of
    the CRL concerned; `at`: the first failing instant, for the codes that depend on time
    (NOT_YET_VALID, EXPIRED, EXPIRES_IN_MARGIN, LISTS_CA); `detail`: a short fragment."""

    code: Code
    ca: str | None
    crl: str | None
    at: datetime | None
    detail: str

    def message(self) -> str:
        """One sentence: what is wrong, what it does to users, what to do."""
        return _MESSAGES[self.code](self)


@dataclass(frozen=True)
class Coverage:
    """For one CA of the bundle, the CRL OpenSSL would use at `now` (None fields: there is none)."""

    ca_subject: str
    ca_fingerprint: str
    crl_fingerprint: str | None
    last_update: datetime | None
    next_update: datetime | None
    listed: frozenset[int]


@dataclass(frozen=True)
class Verdict:
    """The findings (empty: PostgreSQL accepts the set), the coverage in bundle order, and the
    union of the serials listed by every CRL signed by a bundle CA."""

    findings: tuple[Finding, ...]
    coverage: tuple[Coverage, ...]
    listed: frozenset[int]

    @property
    def ok(self) -> bool:
        return not self.findings

    @property
    def codes(self) -> frozenset[Code]:
        return frozenset(f.code for f in self.findings)

    @property
    def next_update(self) -> datetime | None:
        """The earliest nextUpdate over the CRLs in use at `now`."""
        dates = [c.next_update for c in self.coverage if c.next_update is not None]
        return min(dates, default=None)

    def raise_if_refused(self, what: str) -> None:
        """CryptoError naming `what` and every finding's message, unless the set is ok."""
        if self.findings:
            raise CryptoError(f"{what}: " + "; ".join(f.message() for f in self.findings))


# --- entry points -----------------------------------------------------------------------------


def evaluate(
    cas: Sequence[x509.Certificate],
    crls: Sequence[x509.CertificateRevocationList],
    *,
    now: datetime,
    restart_margin: timedelta = DEFAULT_RESTART_MARGIN,
) -> Verdict:
    """Judge `crls` (in file order) for the bundle `cas` at `now` and over the restart margin."""
    now = _utc(now)
    if restart_margin < timedelta(0):
        raise ValueError(f"restart_margin must not be negative (got {restart_margin})")
    findings: list[Finding] = []
    facts: list[_Facts] = []
    for index, crl in enumerate(crls):
        try:
            facts.append(_read(crl, index))
        except ValueError as exc:  # an extension or entry cryptography cannot decode
            findings.append(
                Finding(Code.UNPARSABLE, None, crypto.fingerprint(crl), None, f"the CRL: {exc}")
            )
    signed = _Signatures()
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
    cas = crypto.load_certificates(_bytes(ca_pem), source="the CA bundle")
    data = _bytes(crl_pem or b"")
    if not data.strip():
        return _refused(cas, Finding(Code.NO_CRL, None, None, None, f"{source} is empty"))
    try:
        blocks = crypto.parse_pem_bundle(data, source=source)
    except CryptoError as exc:
        return _refused(cas, Finding(Code.UNPARSABLE, None, None, None, str(exc)))
    foreign = [
        Finding(Code.NOT_A_CRL, None, None, None, f"{source}: block {b.index} is {b.describe()}")
        for b in blocks
        if b.kind is not crypto.BlockKind.CRL
    ]
    crls = [x509.load_der_x509_crl(b.der) for b in blocks if b.kind is crypto.BlockKind.CRL]
    verdict = evaluate(cas, crls, now=now, restart_margin=restart_margin)
    return Verdict((*foreign, *verdict.findings), verdict.coverage, verdict.listed)


def _bytes(text: str | bytes) -> bytes:
    return text.encode() if isinstance(text, str) else text


def _utc(now: datetime) -> datetime:
    """`now` in UTC, whole seconds: X.509 times are whole seconds, so this changes no answer."""
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("rdsssl.pki.crl_policy needs a timezone-aware `now`")
    return now.astimezone(timezone.utc).replace(microsecond=0)


def _refused(cas: Sequence[x509.Certificate], finding: Finding) -> Verdict:
    return Verdict((finding,), tuple(_coverage(ca, None) for ca in cas), frozenset())


# --- what the policy reads from a CRL, once ---------------------------------------------------


@dataclass(frozen=True)
class _Facts:
    crl: x509.CertificateRevocationList
    index: int  # position in the file: the last tie-break
    fingerprint: str
    issuer: x509.Name
    last_update: datetime
    next_update: datetime | None
    critical: tuple[str, ...]  # unhandled critical extensions (names), empty when none
    aki: x509.AuthorityKeyIdentifier | None
    idp: x509.IssuingDistributionPoint | None
    serials: frozenset[int]

    def valid_at(self, t: datetime) -> bool:
        """OpenSSL's check_crl_time: lastUpdate <= t and (no nextUpdate or t < nextUpdate)."""
        return self.last_update <= t and (self.next_update is None or t < self.next_update)

    def ignored(self) -> bool:
        """get_crl_score gives 0 to indirect and reason-limited CRLs (no extended support)."""
        return self.idp is not None and (
            self.idp.indirect_crl or self.idp.only_some_reasons is not None
        )

    def covers(self, ca_certificate: bool) -> bool:
        """crl_crldp_check for a certificate without CRL distribution points."""
        idp = self.idp
        if idp is None:
            return True
        if idp.only_contains_attribute_certs or idp.full_name or idp.relative_name:
            return False
        return not (idp.only_contains_user_certs if ca_certificate else idp.only_contains_ca_certs)

    def revokes(self, serial: int) -> bool:
        """cert_crl: listed, and not with reason removeFromCRL (which only un-lists it)."""
        if serial not in self.serials:
            return False
        entry = self.crl.get_revoked_certificate_by_serial_number(serial)
        if entry is None:
            return False
        try:
            reason = entry.extensions.get_extension_for_class(x509.CRLReason).value.reason
        except x509.ExtensionNotFound:
            return True
        return reason is not x509.ReasonFlags.remove_from_crl


def _read(crl: x509.CertificateRevocationList, index: int) -> _Facts:
    critical = [e.oid for e in crl.extensions if e.critical and e.oid not in _HANDLED_CRITICAL]
    serials = set()
    for entry in crl:
        serials.add(entry.serial_number)
        critical += [
            e.oid
            for e in entry.extensions
            if e.critical and e.oid != CRLEntryExtensionOID.CERTIFICATE_ISSUER
        ]
    return _Facts(
        crl=crl,
        index=index,
        fingerprint=crypto.fingerprint(crl),
        issuer=crl.issuer,
        last_update=crl.last_update_utc,
        next_update=crl.next_update_utc,
        critical=tuple(dict.fromkeys(_oid_name(oid) for oid in critical)),
        aki=_extension(crl, x509.AuthorityKeyIdentifier),
        idp=_extension(crl, x509.IssuingDistributionPoint),
        serials=frozenset(serials),
    )


def _extension(of: x509.Certificate | x509.CertificateRevocationList, kind: type[_E]) -> _E | None:
    try:
        return of.extensions.get_extension_for_class(kind).value
    except x509.ExtensionNotFound:
        return None


def _oid_name(oid: x509.ObjectIdentifier) -> str:
    name = _OID_NAMES.get(oid)
    return f"{name} ({oid.dotted_string})" if name else oid.dotted_string


class _Signatures:
    """`crypto.crl_signed_by`, remembered per (CRL, CA): a signature check costs milliseconds on
    a large CRL and the policy asks the same question at every instant."""

    def __init__(self) -> None:
        self._known: dict[tuple[int, x509.Certificate], bool] = {}

    def __call__(self, facts: _Facts, ca: x509.Certificate) -> bool:
        key = (facts.index, ca)
        if key not in self._known:
            self._known[key] = crypto.crl_signed_by(facts.crl, ca)
        return self._known[key]


# --- the rules --------------------------------------------------------------------------------


def _structural(
    cas: Sequence[x509.Certificate], facts: Iterable[_Facts], signed: _Signatures
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


def _instants(facts: Iterable[_Facts], now: datetime, end: datetime) -> list[datetime]:
    """now, the end of the margin, and just before and at each boundary in between."""
    end = end.replace(microsecond=0)  # validity only changes on whole seconds
    points = {now, end}
    for crl in facts:
        for bound in (crl.last_update, crl.next_update):
            if bound is not None and now <= bound <= end:
                points.update((max(now, bound - _SECOND), bound))
    return sorted(points)


def _candidates(ca: x509.Certificate, facts: Iterable[_Facts]) -> list[_Facts]:
    """The CRLs OpenSSL may use for certificates issued by `ca` (get_crl_score > 0)."""
    return [
        crl
        for crl in facts
        if crl.issuer == ca.subject and not crl.ignored() and _akid_fits(crl.aki, ca)
    ]


def _akid_fits(aki: x509.AuthorityKeyIdentifier | None, ca: x509.Certificate) -> bool:
    """OpenSSL's X509_check_akid: each part present on both sides must agree."""
    if aki is None:
        return True
    ski = _extension(ca, x509.SubjectKeyIdentifier)
    if aki.key_identifier is not None and ski is not None and aki.key_identifier != ski.digest:
        return False
    serial = aki.authority_cert_serial_number
    if serial is not None and serial != ca.serial_number:
        return False
    names = [n.value for n in aki.authority_cert_issuer or () if isinstance(n, x509.DirectoryName)]
    return not names or names[0] == ca.issuer


def _pick(candidates: Iterable[_Facts], ca_certificate: bool, t: datetime) -> _Facts | None:
    """get_crl_sk: best score, then the latest lastUpdate, then the earlier in the file."""
    best: _Facts | None = None
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
    facts: Sequence[_Facts],
    instants: Sequence[datetime],
    signed: _Signatures,
    margin: timedelta,
) -> list[Finding]:
    """What refuses the users of `ca`: per CA first, then per instant (check_crl, cert_crl)."""
    subject = ca.subject.rfc4514_string()
    candidates = _candidates(ca, facts)
    found: list[Finding] = []
    usage = _extension(ca, x509.KeyUsage)
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
    crl: _Facts,
    ca_certificate: bool,
    checked: Sequence[x509.Certificate],
    t: datetime,
    now: datetime,
    signed: _Signatures,
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
            detail = f"serial {crypto.serial_hex(cert.serial_number)} in the CRL of {subject}"
            listed = cert.subject.rfc4514_string()
            found.append(Finding(Code.LISTS_CA, listed, crl.fingerprint, t, detail))
    return found


def _time_finding(
    subject: str, crl: _Facts, t: datetime, now: datetime, margin: timedelta
) -> Finding:
    early = crl.last_update > t
    detail = (
        f"lastUpdate {_fmt(crl.last_update)}" if early else f"nextUpdate {_fmt(crl.next_update)}"
    )
    if t > now:
        code = Code.EXPIRES_IN_MARGIN
        detail += f", within the {_span(margin)} restart margin"
    else:
        code = Code.NOT_YET_VALID if early else Code.EXPIRED
    return Finding(code, subject, crl.fingerprint, t, detail)


def _why_missing(ca: x509.Certificate, facts: Iterable[_Facts]) -> str:
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


def _coverage(ca: x509.Certificate, crl: _Facts | None) -> Coverage:
    subject, fingerprint = ca.subject.rfc4514_string(), crypto.fingerprint(ca)
    if crl is None:
        return Coverage(subject, fingerprint, None, None, None, frozenset())
    return Coverage(
        subject, fingerprint, crl.fingerprint, crl.last_update, crl.next_update, crl.serials
    )


# --- messages ---------------------------------------------------------------------------------


def _fmt(when: datetime | None) -> str:
    return "none" if when is None else f"{when:%Y-%m-%dT%H:%M:%SZ}"


def _span(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _crl(finding: Finding) -> str:
    return f"CRL {finding.crl[:16]}" if finding.crl else "a CRL"


_MESSAGES: dict[Code, Callable[[Finding], str]] = {
    Code.NO_CRL: lambda f: (
        f"no CRL ({f.detail}): PostgreSQL cannot refuse a revoked certificate without one; {_BUILD}"
    ),
    Code.NOT_A_CRL: lambda f: (
        f"{f.detail}, not an X509 CRL: PostgreSQL would trust a certificate placed in the CRL "
        f"file; keep only X509 CRL blocks ({_BUILD})"
    ),
    Code.UNPARSABLE: lambda f: (
        f"damaged CRL ({f.detail}): PostgreSQL cannot load it, so a restart would fail; {_BUILD}"
    ),
    Code.FOREIGN_CRL: lambda f: (
        f"{_crl(f)} is issued by no CA of the bundle ({f.detail}): PostgreSQL ignores it, so it "
        f"protects none of these CAs' users (it was made for another bundle); remove it "
        f"({_BUILD})"
    ),
    Code.BAD_SIGNATURE: lambda f: (
        f"{_crl(f)} names CA {f.ca} as issuer but that CA did not sign it ({f.detail}): "
        f"PostgreSQL refuses every certificate of the CA once it picks this CRL; {_BUILD}"
    ),
    Code.UNHANDLED_CRITICAL_EXTENSION: lambda f: (
        f"{_crl(f)} of {f.ca or 'a foreign issuer'} has a critical extension OpenSSL does not "
        f"handle ({f.detail}): PostgreSQL refuses every certificate checked against it; "
        f"{_BUILD}"
    ),
    Code.CA_CANNOT_SIGN_CRL: lambda f: (
        f"CA {f.ca} has a {f.detail} without cRLSign: with a CRL enabled PostgreSQL refuses "
        "every certificate of this CA whatever the CRL; switch to a CA that may sign CRLs "
        "(rdsssl ca init makes one)"
    ),
    Code.MISSING_CA: lambda f: (
        f"no usable CRL for CA {f.ca} ({f.detail}): PostgreSQL refuses its certificates as "
        f"'unknown ca'; add a CRL issued by that CA ({_BUILD})"
    ),
    Code.NOT_YET_VALID: lambda f: (
        f"the CRL of CA {f.ca} is not valid yet ({f.detail}): PostgreSQL refuses every "
        f"certificate of this CA until then; {_BUILD}"
    ),
    Code.EXPIRED: lambda f: (
        f"the CRL of CA {f.ca} has expired ({f.detail}): PostgreSQL refuses every certificate "
        f"of this CA as 'certificate expired'; {_BUILD}"
    ),
    Code.EXPIRES_IN_MARGIN: lambda f: (
        f"CA {f.ca} has no valid CRL from {_fmt(f.at)} ({f.detail}): its users would be "
        f"locked out soon after the instance restarts; {_BUILD}"
    ),
    Code.LISTS_CA: lambda f: (
        f"CA {f.ca} is listed as revoked ({f.detail}): PostgreSQL refuses every certificate "
        "of that CA; rebuild the issuer's CRL without that serial, or stop using the CA"
    ),
}
