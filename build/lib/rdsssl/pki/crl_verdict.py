"""What the CRL policy answers (`rdsssl.pki.crl_policy.evaluate`): a Verdict, its Findings, each
with a stable Code, and the one sentence per code that says what is wrong, what it does to users
and what to do.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from rdsssl.errors import CryptoError

__all__ = ["Code", "Coverage", "Finding", "Verdict", "instant_text", "span_text"]

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


# --- messages ---------------------------------------------------------------------------------


def instant_text(when: datetime | None) -> str:
    return "none" if when is None else f"{when:%Y-%m-%dT%H:%M:%SZ}"


def span_text(delta: timedelta) -> str:
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
        f"CA {f.ca} has no valid CRL from {instant_text(f.at)} ({f.detail}): its users would be "
        f"locked out soon after the instance restarts; {_BUILD}"
    ),
    Code.LISTS_CA: lambda f: (
        f"CA {f.ca} is listed as revoked ({f.detail}): PostgreSQL refuses every certificate "
        "of that CA; rebuild the issuer's CRL without that serial, or stop using the CA"
    ),
}
