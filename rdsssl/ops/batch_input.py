"""The files of the batch commands, read line by line with every problem named by its line:
``cert issue --users-file`` (``read_users``) and ``cert revoke --serials-file``
(``read_serials``).

Both skip blank lines and lines whose first non-blank character is ``#`` (whole-line comments
only: ``#`` may be part of a quoted role name). A users file is either

- a plain list, one user name per line (surrounding blanks stripped). A line holding a comma is
  refused: it is almost always a CSV file missing its header, and a role named ``alice,30``
  would be a surprise; or
- CSV with a header line whose first column is ``user``, then optionally ``days`` and
  ``key-type`` (``key_type`` too) in any order after it; a cell left empty takes the command's
  option. Read with the stdlib ``csv`` module (quotes work as usual).

Syntax is checked here (cells, days, key types); whether a name can be a role, duplicates and
output directories are the use case's (``rdsssl.ops.client_issue.issue_many``). Nothing here
touches a store: a refused file costs nothing.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime

from rdsssl.errors import CryptoError, InputError
from rdsssl.models import KeyType
from rdsssl.pki import crypto
from rdsssl.store.revocation import refusal

__all__ = ["SerialLine", "UserLine", "decode", "read_serials", "read_users"]

_COLUMNS = {"user": "user", "days": "days", "key-type": "key-type", "key_type": "key-type"}


@dataclass(frozen=True)
class UserLine:
    """One user of a users file; ``days``/``key_type`` None: the command's option."""

    user: str
    days: int | None
    key_type: KeyType | None
    label: str  # "FILE line N", for messages


@dataclass(frozen=True)
class SerialLine:
    """One serial of a serials file."""

    serial: int
    label: str


def decode(data: bytes, source: str) -> str:
    """The text of an input file: UTF-8 (a byte-order mark is dropped), else InputError."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError(f"{source}: not UTF-8 text (byte {exc.start})") from None


def _meaningful(text: str) -> Iterator[tuple[int, str]]:
    """(line number, stripped line) of every line that is neither blank nor a comment."""
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if line and not line.startswith("#"):
            yield number, line


def _cells(line: str) -> list[str]:
    return [cell.strip() for cell in next(csv.reader([line]))]


def _header(line: str) -> list[str] | None:
    """The canonical column names when ``line`` is a users-file CSV header, else None."""
    names = [cell.lower() for cell in _cells(line)]
    if not names or names[0] != "user" or not all(n in _COLUMNS for n in names):
        return None
    return [_COLUMNS[n] for n in names]


def read_users(text: str, *, source: str, now: datetime) -> list[UserLine]:
    """Every user of a users file, in order; one InputError naming every line refused."""
    lines = list(_meaningful(text))
    if not lines:
        raise InputError(f"{source} names no users (blank lines and # comments only)")
    header = _header(lines[0][1])
    problems: list[str] = []
    users: list[UserLine] = []
    if header is not None:
        duplicated = {c for c in header if header.count(c) > 1}
        if duplicated:
            raise InputError(f"{source} line {lines[0][0]}: column {sorted(duplicated)[0]} twice")
        lines = lines[1:]
    for number, line in lines:
        label = f"{source} line {number}"
        try:
            users.append(_user_line(line, header, label, now))
        except InputError as exc:
            problems.append(f"{label}: {exc}")
    if problems:
        raise refusal(problems, total=len(lines), what="issued")
    if not users:
        raise InputError(f"{source} names no users (only its header line)")
    return users


def _user_line(line: str, header: list[str] | None, label: str, now: datetime) -> UserLine:
    if header is None:
        if "," in line:
            raise InputError(
                f"{line!r} holds a comma; a CSV file starts with the header line user,days,key-type"
            )
        return UserLine(user=line, days=None, key_type=None, label=label)
    cells = _cells(line)
    if len(cells) > len(header):
        raise InputError(f"{len(cells)} cells, the header names {len(header)} columns")
    row = dict(zip(header, cells, strict=False))
    user = row.get("user", "")
    if not user:
        raise InputError("no user name in the first column")
    return UserLine(
        user=user,
        days=_days(row.get("days", ""), now),
        key_type=_key_type(row.get("key-type", "")),
        label=label,
    )


def _days(cell: str, now: datetime) -> int | None:
    if not cell:
        return None
    try:
        days = int(cell)
    except ValueError:
        raise InputError(f"days {cell!r} is not a whole number of days") from None
    crypto.check_days(days, "certificate", now=now)
    return days


def _key_type(cell: str) -> KeyType | None:
    if not cell:
        return None
    try:
        return KeyType(cell.lower())
    except ValueError:
        known = ", ".join(k.value for k in KeyType)
        raise InputError(f"key-type {cell!r} is not one of {known}") from None


def read_serials(text: str, *, source: str) -> list[SerialLine]:
    """Every serial of a serials file (hex as ``cert list`` prints it, or as openssl does:
    ``crypto.parse_serial``), in order; one InputError naming every line refused."""
    lines = list(_meaningful(text))
    if not lines:
        raise InputError(f"{source} names no serials (blank lines and # comments only)")
    problems: list[str] = []
    serials: list[SerialLine] = []
    for number, line in lines:
        label = f"{source} line {number}"
        try:
            serials.append(SerialLine(serial=crypto.parse_serial(line), label=label))
        except CryptoError as exc:
            problems.append(f"{label}: {exc}")
    if problems:
        raise refusal(problems, total=len(lines), what="revoked")
    return serials
