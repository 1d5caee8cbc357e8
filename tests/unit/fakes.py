"""One shared in-memory `RdsApi` for unit tests, and a clock that moves only when slept on.

`FakeApi` applies a Modify at once (no status machine; the waiter paths are covered with a
status machine by tests/unit/test_waiters.py and the emulator tests). It can fail the next
Modify calls (`fail_modify`), and counts every call.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from rdsssl.errors import ApiError
from rdsssl.models import InstanceInfo, NetInfo, SslModifyRequest, SslState
from rdsssl.ops.probe import ProbeOutcome, ProbeResult, ProbeTarget


class FakeTime:
    """A clock that only moves when someone sleeps (`clock`, `sleep`)."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def ssl_state(**kw: object) -> SslState:
    base = dict(
        ssl_enabled=True,
        ca_type="aliyun",
        connection_string="pgm-x.pg.rds.aliyuncs.com",
        server_cert_pem="",
        server_ca_url="",
        ssl_expire_time=None,
        require_update=False,
        client_ca_pem=None,
        crl_pem=None,
        acl=None,
        replication_acl=None,
        last_modify_status="success",
        modify_status_reason="",
    )
    base.update(kw)
    return SslState(**base)  # type: ignore[arg-type]


def instance_info(**kw: object) -> InstanceInfo:
    base = dict(
        instance_id="pgm-x",
        region="cn-hangzhou",
        status="Running",
        lock_mode="Unlock",
        engine="PostgreSQL",
        engine_version="15.0",
        storage_type="cloud_essd",
        connection_string="pgm-x.pg.rds.aliyuncs.com",
        port=5432,
        pay_type="Postpaid",
    )
    base.update(kw)
    return InstanceInfo(**base)  # type: ignore[arg-type]


class FakeApi:
    """Applies Modify calls at once and counts them; optionally fails the first calls."""

    def __init__(self, ssl: SslState, info: InstanceInfo | None = None) -> None:
        self.ssl = ssl
        self.info = info or instance_info()
        self.modify_calls: list[SslModifyRequest] = []
        self.describe_calls = 0
        self.fail_modify: list[ApiError] = []  # raised before the change is taken
        self.fail_after: list[ApiError] = []  # raised after the change was taken
        self.cloud_cert_pem = ""  # what SSLEnabled=1 with CAType=aliyun serves

    def describe_instance(self, instance_id: str) -> InstanceInfo:
        self.describe_calls += 1
        return self.info

    def describe_ssl(self, instance_id: str) -> SslState:
        self.describe_calls += 1
        return self.ssl

    def describe_net_info(self, instance_id: str) -> list[NetInfo]:
        return [NetInfo(self.info.connection_string, "127.0.0.1", "Public", 5432, "Normal")]

    def list_instances(
        self, *, region: str, tags: Mapping[str, str] | None = None, engine: str = "PostgreSQL"
    ) -> list[InstanceInfo]:
        return [self.info]

    def create_account(self, instance_id: str, name: str, password: str) -> str:
        return "req-account"

    def server_ca_pem(self, url: str) -> bytes:
        return b""

    def modify_ssl(self, request: SslModifyRequest) -> str:
        self.modify_calls.append(request)
        if self.fail_modify:
            raise self.fail_modify.pop(0)
        changes: dict[str, object] = {}
        if request.ssl_enabled is False:  # SSL off takes the client side with it
            changes.update(
                ssl_enabled=False, ca_type="", connection_string="", server_cert_pem="",
                client_ca_pem=None, crl_pem=None, acl=None, replication_acl=None,
            )  # fmt: skip
        elif request.ssl_enabled:
            changes.update(ssl_enabled=True, connection_string=request.connection_string)
            changes["ca_type"] = request.ca_type or "aliyun"
            changes["server_cert_pem"] = request.server_cert_pem or self.cloud_cert_pem
        if request.client_ca_enabled is False:
            changes.update(client_ca_pem=None, crl_pem=None, acl=None, replication_acl=None)
        if request.client_ca_pem is not None:
            changes["client_ca_pem"] = request.client_ca_pem
        if request.crl_pem is not None:
            changes["crl_pem"] = request.crl_pem
        if request.acl is not None:
            changes["acl"] = request.acl
        if request.replication_acl is not None:
            changes["replication_acl"] = request.replication_acl
        self.ssl = dataclasses.replace(self.ssl, **changes)  # type: ignore[arg-type]
        if self.fail_after:
            raise self.fail_after.pop(0)
        return f"req-{len(self.modify_calls)}"


def ok_probe() -> ProbeResult:
    return ProbeResult(
        ProbeOutcome.OK, ProbeTarget("h", 1), "alice", "connected", 0.0, "verify-full"
    )


def bad_probe() -> ProbeResult:
    return ProbeResult(
        ProbeOutcome.REVOKED,
        ProbeTarget("h", 1),
        "alice",
        "certificate revoked",
        0.0,
        "verify-full",
    )
