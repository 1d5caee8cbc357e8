"""ACS3-HMAC-SHA256 verification, reproducing the SDK's signature (docs/aliyun-rds-ssl-api.md §6.1).

The SDK signs the *decoded* query re-encoded with `quote(v, safe='~')`, while it sends the
query encoded with `urlencode` (quote_plus), so the canonical query is rebuilt from the
parsed parameters, never taken from the wire. Headers come from the request as received,
by the names listed in SignedHeaders; the body hash is checked against x-acs-content-sha256.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from urllib.parse import parse_qs, quote

from rdsssl.emulator.errors import api_error

__all__ = [
    "ALGORITHM",
    "MAX_SKEW_SECONDS",
    "NonceCache",
    "SignedRequest",
    "string_to_sign",
    "verify",
]

ALGORITHM = "ACS3-HMAC-SHA256"
MAX_SKEW_SECONDS = 15 * 60
_AUTH = re.compile(
    r"(?P<alg>[A-Z0-9-]+) Credential=(?P<ak>[^,\s]+),\s*SignedHeaders=(?P<sh>[^,\s]+),"
    r"\s*Signature=(?P<sig>[0-9a-fA-F]+)"
)
_MUST_SIGN = ("host", "x-acs-date", "x-acs-signature-nonce", "x-acs-content-sha256")


@dataclass(frozen=True)
class SignedRequest:
    """What verification needs from an HTTP request, as received."""

    method: str
    path: str  # the request target before "?"
    query: str  # the raw query string after "?"
    headers: Mapping[str, Sequence[str]]  # lower-case name -> values in arrival order
    body: bytes

    def header(self, name: str) -> str | None:
        """The first value of a header, or None."""
        values = self.headers.get(name)
        return values[0] if values else None


class NonceCache:
    """Signature nonces seen within the replay window."""

    def __init__(self, window: float = 2 * MAX_SKEW_SECONDS) -> None:
        self._window = window
        self._seen: dict[str, float] = {}
        self._lock = threading.Lock()

    def check_and_add(self, nonce: str, now: float) -> bool:
        """True if the nonce is fresh (and remember it), False if it was used already."""
        with self._lock:
            if len(self._seen) > 10_000:
                self._seen = {n: t for n, t in self._seen.items() if now - t < self._window}
            if nonce in self._seen and now - self._seen[nonce] < self._window:
                return False
            self._seen[nonce] = now
            return True


def _canonical_query(raw: str) -> str:
    parsed = parse_qs(raw, keep_blank_values=True)
    return "&".join(f"{k}={quote(parsed[k][0], safe='~')}" for k in sorted(parsed))


def string_to_sign(req: SignedRequest, signed_headers: Sequence[str]) -> str:
    """The SDK's StringToSign for this request and header list."""
    lines = []
    for name in signed_headers:
        values = sorted(v.strip() for v in req.headers.get(name, ()))
        lines.append(f"{name}:{','.join(values)}\n")
    canonical = "\n".join(
        [
            req.method,
            req.path or "/",
            _canonical_query(req.query),
            "".join(lines),
            ";".join(signed_headers),
            req.header("x-acs-content-sha256") or "",
        ]
    )
    return f"{ALGORITHM}\n{hashlib.sha256(canonical.encode()).hexdigest()}"


def verify(
    req: SignedRequest,
    *,
    keys: Mapping[str, str],
    nonces: NonceCache,
    now: float | None = None,
) -> str:
    """Check the signature; return the AccessKeyId, or raise the service's error."""
    now = time.time() if now is None else now
    m = _AUTH.fullmatch((req.header("authorization") or "").strip())
    if not m:
        raise api_error("IncompleteSignature", "missing or malformed Authorization header")
    if m["alg"] != ALGORITHM:
        raise api_error("IncompleteSignature", f"unsupported algorithm {m['alg']}")
    signed = m["sh"].split(";")
    missing = [h for h in _MUST_SIGN if h not in signed]
    missing += [h for h in req.headers if h.startswith("x-acs-") and h not in signed]
    if missing:
        raise api_error(
            "IncompleteSignature", f"headers not signed: {', '.join(sorted(set(missing)))}"
        )
    secret = keys.get(m["ak"])
    if secret is None:
        raise api_error("InvalidAccessKeyId.NotFound", m["ak"])
    if hashlib.sha256(req.body).hexdigest() != (req.header("x-acs-content-sha256") or "").lower():
        raise api_error("SignatureDoesNotMatch", "the body does not hash to x-acs-content-sha256")
    sts = string_to_sign(req, signed)
    expected = hmac.new(secret.encode(), sts.encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, m["sig"].lower()):
        raise api_error("SignatureDoesNotMatch", f"server string to sign is: {sts!r}")
    try:
        stamp = datetime.strptime(req.header("x-acs-date") or "", "%Y-%m-%dT%H:%M:%SZ")
    except ValueError:
        raise api_error(
            "InvalidTimeStamp.Format", "x-acs-date must be yyyy-MM-ddTHH:mm:ssZ"
        ) from None
    if abs(stamp.replace(tzinfo=timezone.utc).timestamp() - now) > MAX_SKEW_SECONDS:
        raise api_error("InvalidTimeStamp.Expired", "more than 15 minutes from server time")
    if not nonces.check_and_add(req.header("x-acs-signature-nonce") or "", now):
        raise api_error("SignatureNonceUsed")
    return m["ak"]
