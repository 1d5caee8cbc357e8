"""rdsssl: client-certificate authentication for ApsaraDB RDS for PostgreSQL, safe to automate.

The Python surface a cron job or runbook uses; the `rdsssl` command line is a thin layer over
exactly these names::

    import rdsssl

    with rdsssl.AliyunRdsApi(rdsssl.ApiSettings.from_env()) as api:
        desired = rdsssl.DesiredSsl(client_ca_pem=..., crl=..., acl=rdsssl.AclMode.CERT)
        result = rdsssl.apply(api, "pgm-bp1example", desired, proof=rdsssl.Proof(...))

Importing `rdsssl` is cheap: names are loaded on first use (PEP 562), and neither the Alibaba
Cloud SDK nor psycopg is imported until an `AliyunRdsApi` is built or a probe runs. The
layers behind these names are described in docs/ARCHITECTURE.md. Every exception rdsssl
raises on purpose is a class of `rdsssl.errors`, and each is exported here. `__version__` is the
installed distribution's version ("0+unknown" when run from a tree that was never installed),
read on first use too: importlib.metadata costs every command ~30 ms of start-up otherwise.
The library logs to `logging.getLogger("rdsssl.<layer>.<module>")` and configures nothing.
"""

from __future__ import annotations

import importlib
import logging
from typing import TYPE_CHECKING, Any


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("rdsssl")
    except PackageNotFoundError:
        return "0+unknown"


# A library never configures logging: records go nowhere unless the program adds a handler
# (the `rdsssl` command installs its own, see rdsssl.cli.logs).
logging.getLogger(__name__).addHandler(logging.NullHandler())

# name -> module it lives in (loaded on first attribute access)
_LAZY: dict[str, str] = {
    "ProbeOutcome": "rdsssl.ops.probe",
    "ProbeResult": "rdsssl.ops.probe",
    "ProbeTarget": "rdsssl.ops.probe",
    "probe": "rdsssl.ops.probe",
    "probe_instance": "rdsssl.ops.probe",
    "CaStore": "rdsssl.store.castore",
    "write_client_files": "rdsssl.store.files",
    "KeyType": "rdsssl.models",
    "AclMode": "rdsssl.models",
    "RevocationReason": "rdsssl.models",
    "DesiredSsl": "rdsssl.ops.plan",
    "CrlFromStore": "rdsssl.ops.plan",
    "Plan": "rdsssl.ops.plan",
    "ApplyOptions": "rdsssl.ops.apply",
    "ApplyResult": "rdsssl.ops.apply",
    "Clock": "rdsssl.ops.clock",
    "plan": "rdsssl.ops.plan",
    "apply": "rdsssl.ops.apply",
    "AliyunRdsApi": "rdsssl.rds.api",
    "ApiSettings": "rdsssl.rds.settings",
    "RdsApi": "rdsssl.rds.protocol",
    "wait_until": "rdsssl.rds.waiters",
    "ssl_applied": "rdsssl.rds.acceptors",
    "instance_ready": "rdsssl.rds.acceptors",
    "load_desired_state": "rdsssl.ops.config",
    "DesiredBuilder": "rdsssl.ops.desired",
    "desired_ssl": "rdsssl.ops.desired",
    "resolve": "rdsssl.ops.desired",
    "AuditLog": "rdsssl.ops.audit",
    "Proof": "rdsssl.ops.guard",
    "PlanChanged": "rdsssl.errors",
    "StalePlan": "rdsssl.errors",
    "ExitCode": "rdsssl.errors",
    "RdsSslError": "rdsssl.errors",
    "UsageError": "rdsssl.errors",
    "InputError": "rdsssl.errors",
    "ConfigError": "rdsssl.errors",
    "CryptoError": "rdsssl.errors",
    "StoreError": "rdsssl.errors",
    "NotFoundError": "rdsssl.errors",
    "LockHeld": "rdsssl.errors",
    "ApiError": "rdsssl.errors",
    "ApiUnreachable": "rdsssl.errors",
    "InstanceNotFound": "rdsssl.errors",
    "InstanceBusy": "rdsssl.errors",
    "Throttled": "rdsssl.errors",
    "WaiterError": "rdsssl.errors",
    "WaiterTimeout": "rdsssl.errors",
    "ChangeFailed": "rdsssl.errors",
    "VerificationError": "rdsssl.errors",
    "LockoutGuard": "rdsssl.errors",
    "HookFailed": "rdsssl.errors",
    "DesiredServer": "rdsssl.ops.server_ssl_plan",
    "ServerMaterial": "rdsssl.ops.server_ssl_plan",
    "ServerCertFromStore": "rdsssl.ops.server_ssl_plan",
    "prepare_custom_cert": "rdsssl.ops.server_ssl",
    "ServerChange": "rdsssl.ops.server_ssl_change",
    "ServerOutcome": "rdsssl.ops.server_ssl_change",
}

__all__ = [
    "AclMode",
    "AliyunRdsApi",
    "ApiError",
    "ApiSettings",
    "ApiUnreachable",
    "ApplyOptions",
    "ApplyResult",
    "AuditLog",
    "CaStore",
    "ChangeFailed",
    "Clock",
    "ConfigError",
    "CrlFromStore",
    "CryptoError",
    "DesiredBuilder",
    "DesiredServer",
    "DesiredSsl",
    "ExitCode",
    "HookFailed",
    "InputError",
    "InstanceBusy",
    "InstanceNotFound",
    "KeyType",
    "LockHeld",
    "LockoutGuard",
    "NotFoundError",
    "Plan",
    "PlanChanged",
    "ProbeOutcome",
    "ProbeResult",
    "ProbeTarget",
    "Proof",
    "RdsApi",
    "RdsSslError",
    "RevocationReason",
    "ServerCertFromStore",
    "ServerChange",
    "ServerMaterial",
    "ServerOutcome",
    "StalePlan",
    "StoreError",
    "Throttled",
    "UsageError",
    "VerificationError",
    "WaiterError",
    "WaiterTimeout",
    "__version__",
    "apply",
    "desired_ssl",
    "instance_ready",
    "load_desired_state",
    "plan",
    "prepare_custom_cert",
    "probe",
    "probe_instance",
    "resolve",
    "ssl_applied",
    "wait_until",
    "write_client_files",
]


def __getattr__(name: str) -> Any:
    if name == "__version__":
        version = globals()["__version__"] = _version()
        return version
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'rdsssl' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this hook
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY) | {"__version__"})


if TYPE_CHECKING:  # what type checkers and IDEs see; keep in step with _LAZY
    __version__: str
    from rdsssl.errors import (
        ApiError,
        ApiUnreachable,
        ChangeFailed,
        ConfigError,
        CryptoError,
        ExitCode,
        HookFailed,
        InputError,
        InstanceBusy,
        InstanceNotFound,
        LockHeld,
        LockoutGuard,
        NotFoundError,
        PlanChanged,
        RdsSslError,
        StalePlan,
        StoreError,
        Throttled,
        UsageError,
        VerificationError,
        WaiterError,
        WaiterTimeout,
    )
    from rdsssl.models import AclMode, KeyType, RevocationReason
    from rdsssl.ops.apply import ApplyOptions, ApplyResult, apply
    from rdsssl.ops.audit import AuditLog
    from rdsssl.ops.clock import Clock
    from rdsssl.ops.config import load_desired_state
    from rdsssl.ops.desired import DesiredBuilder, desired_ssl, resolve
    from rdsssl.ops.guard import Proof
    from rdsssl.ops.plan import CrlFromStore, DesiredSsl, Plan, plan
    from rdsssl.ops.probe import ProbeOutcome, ProbeResult, ProbeTarget, probe, probe_instance
    from rdsssl.ops.server_ssl import prepare_custom_cert
    from rdsssl.ops.server_ssl_change import ServerChange, ServerOutcome
    from rdsssl.ops.server_ssl_plan import DesiredServer, ServerCertFromStore, ServerMaterial
    from rdsssl.rds.acceptors import instance_ready, ssl_applied
    from rdsssl.rds.api import AliyunRdsApi
    from rdsssl.rds.protocol import RdsApi
    from rdsssl.rds.settings import ApiSettings
    from rdsssl.rds.waiters import wait_until
    from rdsssl.store.castore import CaStore
    from rdsssl.store.files import write_client_files
