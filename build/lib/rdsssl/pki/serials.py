"""Certificate and CRL serials: drawing a new one, the valid range, and the one spelling.

Serials are 159 random bits (RFC 5280: at most 20 octets, positive), printed as lowercase hex
without colons everywhere (CLI, store, JSON), and read back however users paste them.
"""

from __future__ import annotations

import re

from cryptography import x509

from rdsssl.errors import CryptoError

__all__ = ["MAX_SERIAL", "new_serial", "parse_serial", "serial_hex"]

MAX_SERIAL = 2**159  # RFC 5280: at most 20 octets, positive; serials are below this
_MIN_SERIAL_BITS = 64  # CA/B Forum baseline: at least 64 bits of CSPRNG output


def new_serial() -> int:
    """A positive random serial below 2**159 with at least 64 significant bits.

    Same draw as `x509.random_serial_number()` (159 CSPRNG bits); the loop only rejects the
    ~2**-95 chance of a serial so small that it would carry fewer than 64 bits.
    """
    while True:
        serial = x509.random_serial_number()
        if serial.bit_length() >= _MIN_SERIAL_BITS:
            return serial


def serial_hex(serial: int) -> str:
    """The one serial spelling used everywhere (CLI, store, JSON): lowercase hex, no colons."""
    return format(serial, "x")


def parse_serial(text: str) -> int:
    """Read a serial as users paste it: 'f00d', '0xF00D', 'F0:0D', 'serial=F00D' (openssl)."""
    cleaned = text.strip().lower().removeprefix("serial=").removeprefix("0x")
    cleaned = cleaned.replace(":", "").replace(" ", "")
    if not cleaned or not re.fullmatch(r"[0-9a-f]+", cleaned):
        raise CryptoError(f"invalid serial {text!r}: expected hexadecimal, e.g. '1f3a9c'")
    return int(cleaned, 16)
