"""What the emulator keeps per instance: the instance record, its database accounts, the pending
SSL change, and the adjustable clock every timer reads. `rdsssl.emulator.state` drives them."""

from __future__ import annotations

import dataclasses
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from rdsssl.emulator.errors import api_error
from rdsssl.emulator.pg import PgBackend, PgSslConfig
from rdsssl.emulator.sslrules import SslSettings

__all__ = ["RUNNING", "Account", "Clock", "Instance", "OffsetClock", "PendingChange",
           "accounts_of", "validate_account"]  # fmt: skip

Clock = Callable[[], float]
RUNNING = "Running"
_ACCOUNT_NAME = re.compile(r"[a-z][a-z0-9_]{0,61}[a-z0-9]")
_RESERVED_ACCOUNTS = frozenset({"postgres", "root", "admin", "aliyun_root", "replicator"})
_PASSWORD_CHARS = re.compile(r"[A-Za-z0-9!@#$%^&*()_+\-=]{8,32}")


@dataclass
class Account:
    """A database account; the password lives only in PostgreSQL."""

    name: str
    type: str = "Normal"
    description: str = ""
    status: str = "Available"


@dataclass
class PendingChange:
    previous: SslSettings
    target: SslSettings
    shows_at: float  # the new values become readable (after the status lag)
    modifying_at: float  # SSL_MODIFYING / setting begins (after the early read-back)
    due: float  # PostgreSQL applies the change
    restart: bool


@dataclass
class Instance:
    """One emulated RDS for PostgreSQL instance. Reads hand out copies (`snapshot`)."""

    id: str
    region: str
    zone: str
    engine_version: str
    connection_string: str
    public_connection_string: str
    backend: PgBackend = field(repr=False)
    ssl: SslSettings = field(repr=False)
    created: float = 0.0
    tags: dict[str, str] = field(default_factory=dict)
    description: str = ""
    category: str = "HighAvailability"
    pay_type: str = "Postpaid"
    storage_type: str = "cloud_essd"
    lock_mode: str = "Unlock"
    lock_reason: str = ""
    status: str = RUNNING
    last_modify_status: str = ""  # "" until the first SSL change, as on a fresh RDS instance
    modify_status_reason: str = ""
    accounts: dict[str, Account] = field(default_factory=dict)
    restarts: int = 0
    reloads: int = 0
    pending: PendingChange | None = field(default=None, repr=False)
    applied: PgSslConfig | None = field(default=None, repr=False)  # what PostgreSQL runs

    @property
    def major_version(self) -> int:
        """The emulated major version (EngineVersion "11.0" -> 11)."""
        return int(self.engine_version.split(".")[0])

    @property
    def host(self) -> str:
        """Where the instance's PostgreSQL listens."""
        return self.backend.host

    @property
    def port(self) -> int:
        """The port of the instance's PostgreSQL."""
        return self.backend.port

    @property
    def connection_strings(self) -> tuple[str, str]:
        """Internal then public endpoint; both lead to the same PostgreSQL."""
        return (self.connection_string, self.public_connection_string)

    def snapshot(self) -> Instance:
        """A copy safe to read outside the lock."""
        return dataclasses.replace(self, tags=dict(self.tags), accounts=dict(self.accounts))


class OffsetClock:
    """Wall-clock time plus an adjustable offset: `advance()` fast-forwards every timer."""

    def __init__(self, base: Clock | None = None) -> None:
        self._base: Clock = base or time.time
        self.offset = 0.0

    def __call__(self) -> float:
        return self._base() + self.offset

    def wall(self) -> float:
        """The time without the offset (what real clients' clocks say)."""
        return self._base()

    def advance(self, seconds: float) -> None:
        """Move emulated time forward (a pending restart completes on the next read or tick)."""
        if seconds < 0:
            raise ValueError("time only moves forward")
        self.offset += seconds


def validate_account(name: str, password: str, account_type: str) -> None:
    """CreateAccount's rules for PostgreSQL (name, password complexity, type)."""
    if not _ACCOUNT_NAME.fullmatch(name) or name in _RESERVED_ACCOUNTS or name.startswith("pg_"):
        raise api_error(
            "InvalidAccountName.Malformed",
            "2-63 lowercase letters, digits or underscores, starting with a letter and ending "
            "with a letter or digit; not reserved (postgres, pg_*, ...)",
        )
    classes = sum(
        any(pred(c) for c in password)
        for pred in (str.isupper, str.islower, str.isdigit, lambda c: not c.isalnum())
    )
    if not _PASSWORD_CHARS.fullmatch(password) or classes < 3:
        raise api_error(
            "InvalidAccountPassword.Malformed",
            "8-32 characters with three of: upper case, lower case, digits, !@#$%^&*()_+-=",
        )
    if account_type not in ("Normal", "Super"):
        raise api_error("InvalidParameter", f"AccountType={account_type!r}; use Normal or Super")


def accounts_of(inst: Instance, name: str | None = None) -> list[Account]:
    """DescribeAccounts' filter."""
    return [a for a in inst.accounts.values() if name is None or a.name == name]
