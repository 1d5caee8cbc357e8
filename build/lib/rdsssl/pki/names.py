"""Database user names: what a certificate CN must be for PostgreSQL `cert` auth to log in.

The CN must equal the role name byte for byte, so a CN that can never be a role only produces a
certificate that can never log in; rdsssl also uses the name as a directory and prints it, so
names a file system or a terminal should not get are refused too.
"""

from __future__ import annotations

from rdsssl.errors import CryptoError

__all__ = ["unsafe_name_problem", "validate_role_name"]

_ROLE_NAME_MAX_BYTES = 63  # NAMEDATALEN - 1: longer names are silently truncated by PostgreSQL
_RESERVED_ROLE_NAMES = ("public", "none")  # CREATE ROLE refuses these outright


def validate_role_name(name: str) -> str:
    """Return `name` if PostgreSQL could have a role of that name, else raise CryptoError.

    The certificate CN must equal the role name byte for byte (`cert` auth maps CN to user), so a
    CN that can never be a role only produces a certificate that can never log in. rdsssl also
    uses the name as a directory (`OUT_ROOT/USER`) and prints it in messages and logs, so it
    refuses what PostgreSQL would allow in a quoted identifier but no file name or terminal
    should get (`unsafe_name_problem`).
    """
    problem = _role_name_problem(name)
    if problem:
        raise CryptoError(f"invalid database user name {name!r}: {problem}")
    return name


def unsafe_name_problem(name: str) -> str | None:
    """Why ``name`` cannot be one directory component or be printed raw, or None.

    Refused: ``/``, ``.`` and ``..`` (a path, not a name) and control characters (C0, DEL, C1:
    a CN printed to a terminal or a log line could move the cursor, fake a line or run a
    terminal escape). Shared by user names, `OUT_ROOT/USER` and `ca import`.
    """
    if name in (".", ".."):
        return f"{name!r} cannot be used as a directory name"
    if "/" in name:
        return "it contains '/', so it cannot be a directory name"
    bad = next((c for c in name if _is_control(c)), None)
    if bad is not None:
        return f"it contains the control character U+{ord(bad):04X}"
    return None


def _is_control(char: str) -> bool:
    code = ord(char)
    return code < 0x20 or 0x7F <= code <= 0x9F


def _role_name_problem(name: str) -> str | None:
    try:
        size = len(name.encode("utf-8"))
    except UnicodeEncodeError:
        return "it is not valid Unicode text"
    if not name:
        return "a PostgreSQL role name cannot be empty"
    if "\x00" in name:
        return "a PostgreSQL role name cannot contain a NUL character"
    unsafe = unsafe_name_problem(name)
    if unsafe:
        return unsafe
    if size > _ROLE_NAME_MAX_BYTES:
        return (
            f"it is {size} bytes in UTF-8; PostgreSQL role names are at most "
            f"{_ROLE_NAME_MAX_BYTES} bytes (the server truncates longer ones, so the CN would "
            "never match)"
        )
    if name.startswith("pg_"):
        return "role names starting with 'pg_' are reserved for PostgreSQL's predefined roles"
    if name in _RESERVED_ROLE_NAMES:
        return f"'{name}' is a reserved role name in PostgreSQL"
    return None
