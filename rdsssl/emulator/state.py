"""Instances, their accounts and SSL blocks, and the status machine (no HTTP, no files).

One `threading.RLock` guards everything. Time comes from an injected `clock` (wall-clock
seconds), after moto's managed state: a change is accepted at t, the instance shows
`SSL_MODIFYING` / `setting` until t + delay, and the transition to `Running` happens on the
first read after that (lazily) or on the server's ticker (`tick()`), whichever comes first.
The transition is where PostgreSQL is restarted or reloaded, under the lock, so every read
after it sees the outcome. While `setting`, DescribeDBInstanceSSL already shows the requested
values; a client that trusts the read-back without waiting for `Running` is caught out.
"""

from __future__ import annotations

import dataclasses
import logging
import re
import secrets
import string
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from rdsssl.emulator.errors import EmulatorError, api_error
from rdsssl.emulator.faults import Switches
from rdsssl.emulator.pg import PgApplyError, PgBackend
from rdsssl.emulator.sslrules import SslSettings, plan_ssl_change

__all__ = [
    "Account",
    "Clock",
    "EmulatorError",
    "EmulatorState",
    "Instance",
    "OffsetClock",
    "SslSettings",
    "accounts_of",
    "validate_account",
]

Clock = Callable[[], float]
log = logging.getLogger("rdsssl.emulator")

RUNNING = "Running"
SSL_MODIFYING = "SSL_MODIFYING"
_ID_ALPHABET = string.ascii_lowercase + string.digits
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
class _Pending:
    previous: SslSettings
    due: float
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
    aliyun_cert: tuple[str, str] = field(repr=False)  # the cloud server cert and key
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
    last_modify_status: str = "success"
    modify_status_reason: str = ""
    accounts: dict[str, Account] = field(default_factory=dict)
    restarts: int = 0
    reloads: int = 0
    pending: _Pending | None = field(default=None, repr=False)

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


def _required(value: str | None, name: str) -> str:
    if not value:
        raise api_error(f"Missing{name}")
    return value


class EmulatorState:
    """All instances of one emulator, and the rules of the actions that change them."""

    def __init__(
        self,
        *,
        clock: Clock,
        switches: Switches | None = None,
        restart_seconds: float = 0.3,
        acl_lock_seconds: float = 0.2,
    ) -> None:
        self.clock = clock
        self.switches = switches or Switches()
        self.restart_seconds = restart_seconds
        self.acl_lock_seconds = acl_lock_seconds
        self.lock = threading.RLock()
        self._instances: dict[str, Instance] = {}
        self._initial: dict[str, SslSettings] = {}

    # -- registry ---------------------------------------------------------------------------

    @staticmethod
    def new_id() -> str:
        """A fresh instance id: `pgm-` and 16 random lowercase letters and digits."""
        return "pgm-" + "".join(secrets.choice(_ID_ALPHABET) for _ in range(16))

    def register(self, instance: Instance) -> None:
        """Add an instance whose backend is already running `instance.ssl`."""
        with self.lock:
            self._instances[instance.id] = instance
            self._initial[instance.id] = instance.ssl

    @property
    def instance_ids(self) -> list[str]:
        """Ids in creation order."""
        with self.lock:
            return list(self._instances)

    def _get(self, instance_id: str | None) -> Instance:
        inst = self._instances.get(_required(instance_id, "DBInstanceId"))
        if inst is None:
            raise api_error("InvalidDBInstanceId.NotFound", instance_id)
        self._advance(inst)
        return inst

    def get(self, instance_id: str | None) -> Instance:
        """A snapshot of one instance (after any due transition)."""
        with self.lock:
            return self._get(instance_id).snapshot()

    def find(
        self,
        *,
        region: str,
        engine: str | None = None,
        tags: Mapping[str, str] | None = None,
        status: str | None = None,
        ids: Iterable[str] | None = None,
    ) -> list[Instance]:
        """DescribeDBInstances' filters; tags match if ANY pair matches (the API's OR)."""
        wanted = set(ids) if ids is not None else None
        with self.lock:
            self.tick()
            return [
                inst.snapshot()
                for inst in self._instances.values()
                if inst.region == region
                and (engine is None or engine.lower() == "postgresql")
                and (status is None or inst.status == status)
                and (wanted is None or inst.id in wanted)
                and (not tags or any(inst.tags.get(k) == v for k, v in tags.items()))
            ]

    # -- the status machine -------------------------------------------------------------------

    def tick(self) -> None:
        """Complete every change whose delay has passed (the server calls this periodically)."""
        with self.lock:
            for inst in self._instances.values():
                self._advance(inst)

    def _advance(self, inst: Instance) -> None:
        pending = inst.pending
        if pending is None or self.clock() < pending.due:
            return
        inst.pending = None
        if pending.restart:
            inst.restarts += 1
        else:
            inst.reloads += 1
        try:
            inst.backend.apply(inst.ssl.to_pg(), restart=pending.restart)
        except PgApplyError as e:
            self._fail(inst, pending, e.reason)
        except Exception as e:  # an unexpected backend failure must not wedge the instance
            self._fail(inst, pending, f"{type(e).__name__}: {e}")
        else:
            inst.last_modify_status, inst.modify_status_reason = "success", ""
            log.info(
                "%s: SSL change applied (%s)", inst.id, "restart" if pending.restart else "reload"
            )
        inst.status = RUNNING

    @staticmethod
    def _fail(inst: Instance, pending: _Pending, reason: str) -> None:
        log.warning("%s: SSL change failed, previous configuration kept: %s", inst.id, reason)
        inst.ssl = pending.previous
        inst.last_modify_status, inst.modify_status_reason = "failed", reason

    def _check_operable(self, inst: Instance) -> None:
        if inst.lock_mode != "Unlock":
            raise api_error("IncorrectDBInstanceLockMode", f"LockMode is {inst.lock_mode}")
        if inst.status != RUNNING:
            raise api_error("IncorrectDBInstanceState", f"status is {inst.status}")

    # -- actions that change state ----------------------------------------------------------------

    def modify_ssl(self, params: Mapping[str, str]) -> None:
        """ModifyDBInstanceSSL: validate in the documented order, then start the task."""
        instance_id = _required(params.get("DBInstanceId"), "DBInstanceId")
        connection_string = _required(params.get("ConnectionString"), "ConnectionString")
        with self.lock:
            inst = self._get(instance_id)
            self._check_operable(inst)
            if inst.major_version < 10:
                raise api_error("IncorrectEngineVersion", "SSL needs PostgreSQL 10 or later")
            if not inst.storage_type.startswith("cloud_") or inst.pay_type.lower() == "serverless":
                raise api_error("IncorrectDBInstanceType", "cloud disks only, no Serverless")
            if connection_string not in inst.connection_strings:
                raise api_error("InvalidConnectionString.NotFound", connection_string)
            change = plan_ssl_change(
                inst.ssl,
                params,
                major_version=inst.major_version,
                aliyun_cert=inst.aliyun_cert,
                switches=self.switches,
            )
            restart = change.restart or self.switches.restart_on_acl_change
            delay = self.restart_seconds if change.restart else self.acl_lock_seconds
            inst.pending = _Pending(previous=inst.ssl, due=self.clock() + delay, restart=restart)
            inst.ssl = change.target
            inst.status = SSL_MODIFYING
            inst.last_modify_status = "setting"
            inst.modify_status_reason = ""
            log.info(
                "%s: SSL change accepted (%s in %.1fs)",
                inst.id,
                "restart" if restart else "reload",
                delay,
            )

    def create_account(
        self,
        instance_id: str | None,
        name: str | None,
        password: str | None,
        account_type: str | None = None,
        description: str = "",
    ) -> None:
        """CreateAccount: a real role with that password (the password is not kept here)."""
        name = _required(name, "AccountName")
        password = _required(password, "AccountPassword")
        account_type = account_type or "Normal"
        with self.lock:
            inst = self._get(instance_id)
            self._check_operable(inst)
            validate_account(name, password, account_type)
            if name in inst.accounts:
                raise api_error("InvalidAccountName.Duplicate", name)
            try:
                inst.backend.create_role(name, password)
            except Exception as e:
                raise api_error(
                    "InternalError", f"the database refused the role ({type(e).__name__})"
                ) from e
            inst.accounts[name] = Account(name, account_type, description)

    def set_lock_mode(self, instance_id: str, mode: str, reason: str = "") -> None:
        """Lock or unlock an instance (a control-route helper; LockMode is not an API action)."""
        with self.lock:
            inst = self._get(instance_id)
            inst.lock_mode, inst.lock_reason = mode, reason if mode != "Unlock" else ""

    def reset(self) -> None:
        """Every instance back to its initial SSL block, Running, unlocked, counters at zero."""
        with self.lock:
            for inst in self._instances.values():
                initial = self._initial[inst.id]
                inst.pending = None
                if inst.ssl != initial:
                    try:
                        inst.backend.apply(initial.to_pg(), restart=False)
                    except PgApplyError as e:
                        log.warning("%s: reset could not reload: %s", inst.id, e.reason)
                inst.ssl = initial
                inst.status, inst.lock_mode, inst.lock_reason = RUNNING, "Unlock", ""
                inst.last_modify_status, inst.modify_status_reason = "success", ""
                inst.restarts = inst.reloads = 0

    def counters(self, instance_id: str) -> tuple[int, int]:
        """(restarts, reloads) performed for one instance, after any due transition."""
        with self.lock:
            inst = self._get(instance_id)
            return inst.restarts, inst.reloads


def accounts_of(inst: Instance, name: str | None = None) -> list[Account]:
    """DescribeAccounts' filter."""
    return [a for a in inst.accounts.values() if name is None or a.name == name]
