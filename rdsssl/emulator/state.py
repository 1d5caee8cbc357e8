"""Instances, their accounts and SSL blocks, and the status machine (no HTTP, no files).

One `threading.RLock` guards everything. Time comes from an injected `clock` (wall-clock
seconds), after moto's managed state. A change accepted at t0 goes through phases whose
lengths are the switches `status_lag_seconds` (L) and `early_readback_seconds` (E) and the
change's delay R (`restart_seconds`, or `acl_lock_seconds` for an ACL-only change):

    [t0, t0+L)          Running, the previous LastModifyStatus, the OLD values (queued)
    [t0+L, t0+L+E)      Running / success, the NEW values (read back before the restart)
    [t0+L+E, +R)        SSL_MODIFYING / setting, the new values
    then                PostgreSQL restarts or reloads; Running / success (or failed)

Both switches are 0 in the documented profile, so a change shows `SSL_MODIFYING` / `setting`
with the requested values at once. Phase changes happen on the first read after their time
(lazily) or on the server's ticker (`tick()`), whichever comes first. The last one is where
PostgreSQL is restarted or reloaded, under the lock, so every read after it sees the outcome;
until then PostgreSQL runs the OLD configuration, whatever DescribeDBInstanceSSL says. A client
that trusts the read-back (or "Running + success") without seeing the task through is caught
out. The instance is busy for every Modify from t0 until the end.
"""

from __future__ import annotations

import logging
import secrets
import string
import threading
from collections.abc import Iterable, Mapping
from datetime import datetime, timezone

from rdsssl.emulator.cloudca import CloudCa
from rdsssl.emulator.errors import CATALOGUE, EmulatorError, api_error
from rdsssl.emulator.faults import Switches
from rdsssl.emulator.instances import (
    RUNNING,
    Account,
    Clock,
    Instance,
    OffsetClock,
    PendingChange,
    validate_account,
)
from rdsssl.emulator.pg import PgApplyError, PgSslConfig
from rdsssl.emulator.sslrules import SslSettings, plan_ssl_change

__all__ = ["EmulatorError", "EmulatorState"]

log = logging.getLogger("rdsssl.emulator")

SSL_MODIFYING = "SSL_MODIFYING"
BUSY_MESSAGE = CATALOGUE["InvalideStatus.Format"][1]  # for a recorded busy code we do not know
_ID_ALPHABET = string.ascii_lowercase + string.digits


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
        cloud_ca: CloudCa | None = None,
    ) -> None:
        self.clock = clock
        self.cloud_ca = cloud_ca  # made on first use when none is given
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

    def now(self) -> datetime:
        """The emulator's clock as an aware UTC datetime."""
        return datetime.fromtimestamp(self.clock(), timezone.utc)

    def issue_cloud_cert(self, connection_string: str) -> tuple[str, str]:
        """A new cloud certificate (and key) for `connection_string` alone, valid a year
        from the emulator's clock and from the wall clock's now (cloudca.py)."""
        with self.lock:
            if self.cloud_ca is None:
                self.cloud_ca = CloudCa.create(now=self.now())
            ca = self.cloud_ca
        wall = self.clock.wall() if isinstance(self.clock, OffsetClock) else self.clock()
        cert = ca.issue_server_cert(
            hostnames=[connection_string],
            now=self.now(),
            valid_from=datetime.fromtimestamp(wall, timezone.utc),
        )
        return cert.cert_pem.decode(), cert.key_pem.decode()

    def pg_config(self, ssl: SslSettings) -> PgSslConfig:
        """What PostgreSQL runs for `ssl` under the current switches (the TLS cap)."""
        return ssl.to_pg(tls_max_version=self.switches.tls_max_version)

    def register(self, instance: Instance) -> None:
        """Add an instance whose backend is already running `pg_config(instance.ssl)`."""
        with self.lock:
            if instance.applied is None:
                instance.applied = self.pg_config(instance.ssl)
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
            raise api_error(
                "InvalidDBInstanceId.NotFound",
                instance_id,
                status=self.switches.not_found_http_status,
            )
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

    @staticmethod
    def _show_phase(inst: Instance, now: float) -> None:
        """Set what Describe shows for the phase `now` falls in (docstring of this module)."""
        pending = inst.pending
        if pending is None or now < pending.shows_at:
            return  # queued: old values, Running, the previous LastModifyStatus
        inst.ssl = pending.target
        if now < pending.modifying_at:
            inst.status, inst.last_modify_status, inst.modify_status_reason = RUNNING, "success", ""
        else:
            inst.status = SSL_MODIFYING
            inst.last_modify_status, inst.modify_status_reason = "setting", ""

    def _advance(self, inst: Instance) -> None:
        pending = inst.pending
        if pending is None:
            return
        now = self.clock()
        self._show_phase(inst, now)
        if now < pending.due:
            return
        inst.pending = None
        if pending.restart:
            inst.restarts += 1
        else:
            inst.reloads += 1
        config = self.pg_config(pending.target)
        try:
            inst.backend.apply(config, restart=pending.restart)
        except PgApplyError as e:
            self._fail(inst, pending, e.reason)
        except Exception as e:  # an unexpected backend failure must not wedge the instance
            self._fail(inst, pending, f"{type(e).__name__}: {e}")
        else:
            inst.applied = config
            inst.ssl = pending.target
            inst.last_modify_status, inst.modify_status_reason = "success", ""
            log.info(
                "%s: SSL change applied (%s)", inst.id, "restart" if pending.restart else "reload"
            )
        inst.status = RUNNING

    @staticmethod
    def _fail(inst: Instance, pending: PendingChange, reason: str) -> None:
        log.warning("%s: SSL change failed, previous configuration kept: %s", inst.id, reason)
        inst.ssl = pending.previous
        inst.last_modify_status, inst.modify_status_reason = "failed", reason

    def _busy(self, inst: Instance) -> str | None:
        """Why `inst` cannot take a change now, or None."""
        if inst.pending is not None:
            return f"status is {inst.status}; an SSL change is in progress"
        if inst.status != RUNNING:
            return f"status is {inst.status}"
        return None

    def _check_operable(
        self, inst: Instance, *, busy: tuple[str, int | None] | None = None
    ) -> None:
        """Unlocked and idle, else the lock error or `busy` (code, HTTP status or None)."""
        if inst.lock_mode != "Unlock":
            raise api_error("IncorrectDBInstanceLockMode", f"LockMode is {inst.lock_mode}")
        reason = self._busy(inst)
        if reason is not None:
            code, status = busy or ("IncorrectDBInstanceState", None)
            raise api_error(code, reason, status=status, fallback=BUSY_MESSAGE)

    # -- actions that change state ----------------------------------------------------------------

    def modify_ssl(self, params: Mapping[str, str]) -> None:
        """ModifyDBInstanceSSL: validate in the documented order, then start the task."""
        instance_id = _required(params.get("DBInstanceId"), "DBInstanceId")
        connection_string = _required(params.get("ConnectionString"), "ConnectionString")
        with self.lock:
            inst = self._get(instance_id)
            sw = self.switches
            self._check_operable(inst, busy=(sw.busy_code, sw.busy_http_status))
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
                issue_cloud_cert=self.issue_cloud_cert,
                now=self.now(),
                switches=self.switches,
            )
            restart = change.restart or sw.restart_on_acl_change
            delay = self.restart_seconds if change.restart else self.acl_lock_seconds
            now = self.clock()
            shows_at = now + sw.status_lag_seconds
            modifying_at = shows_at + sw.early_readback_seconds
            inst.pending = PendingChange(
                previous=inst.ssl,
                target=change.target,
                shows_at=shows_at,
                modifying_at=modifying_at,
                due=modifying_at + delay,
                restart=restart,
            )
            self._show_phase(inst, now)  # not _advance: PostgreSQL is never touched in the call
            log.info(
                "%s: SSL change accepted (%s in %.1fs after %.1fs lag + %.1fs early read-back)",
                inst.id,
                "restart" if restart else "reload",
                delay,
                sw.status_lag_seconds,
                sw.early_readback_seconds,
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

    def set_ssl_enabled(self, instance_id: str, on: bool) -> None:
        """Turn SSL off or on out of band, as in the console (a control-route helper).

        Off: no server certificate, client CA, CRL and ACLs cleared, PostgreSQL with
        `ssl = off`. On: a new cloud certificate for the main connection string, no client
        CA; an instance that already has SSL on is left as it is. PostgreSQL reloads (`ssl`
        is a reloadable setting); the change counters do not move. Refused while a change runs.
        """
        with self.lock:
            inst = self._get(instance_id)
            self._check_operable(inst)
            if on == inst.ssl.enabled:
                return
            if on:
                cert, key = self.issue_cloud_cert(inst.connection_string)
            else:
                cert, key = inst.ssl.server_cert_pem, inst.ssl.server_key_pem
            target = SslSettings(
                enabled=on,
                ca_type="aliyun",
                connection_string=inst.connection_string if on else "",
                server_cert_pem=cert,
                server_key_pem=key,
            )
            self._apply_now(inst, target)
            log.info("%s: SSL turned %s", inst.id, "on" if on else "off")

    def _apply_now(self, inst: Instance, target: SslSettings) -> None:
        """Reload PostgreSQL with `target` unless it already runs that; raises on failure."""
        config = self.pg_config(target)
        if config != inst.applied:
            try:
                inst.backend.apply(config, restart=False)
            except PgApplyError as e:
                raise api_error("InternalError", f"PostgreSQL refused it: {e.reason}") from e
            inst.applied = config
        inst.ssl = target

    def reset(self) -> None:
        """Every instance back to its initial SSL block, Running, unlocked, counters at zero,
        LastModifyStatus "" (never changed)."""
        with self.lock:
            for inst in self._instances.values():
                initial = self._initial[inst.id]
                inst.pending = None
                try:
                    self._apply_now(inst, initial)
                except EmulatorError as e:
                    log.warning("%s: reset could not reload: %s", inst.id, e.message)
                    inst.ssl = initial
                inst.status, inst.lock_mode, inst.lock_reason = RUNNING, "Unlock", ""
                inst.last_modify_status, inst.modify_status_reason = "", ""
                inst.restarts = inst.reloads = 0

    def counters(self, instance_id: str) -> tuple[int, int]:
        """(restarts, reloads) performed for one instance, after any due transition."""
        with self.lock:
            inst = self._get(instance_id)
            return inst.restarts, inst.reloads
