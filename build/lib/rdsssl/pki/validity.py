"""Times and validity periods: the defaults, the X.509 limits, and `utc`, the one conversion.

Nothing here reads the clock: `now` is always a parameter, so the store, the CLI and the tests
decide what time it is. X.509 times are whole seconds, so every `now` goes through `utc` first.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from rdsssl.errors import CryptoError

__all__ = [
    "CLOCK_SKEW",
    "DEFAULT_CA_DAYS",
    "DEFAULT_CRL_DAYS",
    "DEFAULT_CRL_EXPIRED_GRACE",
    "DEFAULT_LEAF_DAYS",
    "EARLIEST_TIME",
    "LATEST_TIME",
    "check_days",
    "max_days",
    "utc",
]

DEFAULT_CA_DAYS = 3650  # the manual procedure's `openssl req -x509 -days 3650`
DEFAULT_LEAF_DAYS = 365
DEFAULT_CRL_DAYS = 180  # nextUpdate: PostgreSQL rejects every client once the CRL is stale
# Revoked certificates that expired longer ago than this leave the CRL (keeps it small).
DEFAULT_CRL_EXPIRED_GRACE = timedelta(days=30)

# X.509 times end here: GeneralizedTime has four year digits (RFC 5280 section 4.1.2.5), and
# Python's datetime cannot go further either (a larger --days would raise OverflowError).
LATEST_TIME = datetime(9999, 12, 31, 23, 59, 59, tzinfo=timezone.utc)
# ... and cryptography's builders start here (the first year UTCTime can express).
EARLIEST_TIME = datetime(1950, 1, 1, tzinfo=timezone.utc)

# notBefore is back-dated by this much, so a server whose clock is a few minutes behind ours does
# not reject a certificate (or a whole CA) we have just made as "not yet valid".
CLOCK_SKEW = timedelta(minutes=5)


def utc(now: datetime) -> datetime:
    """`now` in UTC, whole seconds (X.509 times have no fractions; comparisons stay exact)."""
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("datetimes passed to rdsssl.pki must be timezone-aware")
    return now.astimezone(timezone.utc).replace(microsecond=0)


def max_days(now: datetime) -> int:
    """The longest validity, in whole days from `now`, that still ends by `LATEST_TIME`."""
    return (LATEST_TIME - utc(now)).days


def check_days(days: int, what: str, *, now: datetime) -> None:
    """CryptoError unless a validity of `days` from `now` is at least a day and ends by
    `LATEST_TIME`. The signing functions apply it; commands call it on their --days options
    before any work, so an absurd value costs nothing (not even half a rotation)."""
    if days < 1:
        raise CryptoError(f"{what} validity must be at least 1 day (got {days})")
    most = max_days(now)
    if days > most:
        raise CryptoError(
            f"{what} validity of {days} days would end after {LATEST_TIME:%Y-%m-%d}, the last "
            f"date X.509 can express; use at most {most} days"
        )
