"""`RdsApi`: the calls the use cases make to RDS. `rdsssl.rds.api.AliyunRdsApi` implements it
over the SDK; tests implement it with fakes (tests/unit/fakes.py) or reach the emulator."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from rdsssl.models import InstanceInfo, NetInfo, SslModifyRequest, SslState

__all__ = ["RdsApi"]


class RdsApi(Protocol):
    """What the service layer needs from RDS; the SDK adapter and test fakes implement it."""

    def describe_instance(self, instance_id: str) -> InstanceInfo:
        """DescribeDBInstanceAttribute. InstanceNotFound when the id (or region) is wrong."""
        ...

    def describe_ssl(self, instance_id: str) -> SslState:
        """DescribeDBInstanceSSL, without the server key."""
        ...

    def describe_net_info(self, instance_id: str) -> list[NetInfo]:
        """DescribeDBInstanceNetInfo: the endpoints a ConnectionString can name."""
        ...

    def list_instances(
        self, *, region: str, tags: Mapping[str, str] | None = None, engine: str = "PostgreSQL"
    ) -> list[InstanceInfo]:
        """DescribeDBInstances, every page; `tags` must ALL match (AND)."""
        ...

    def modify_ssl(self, request: SslModifyRequest) -> str:
        """ModifyDBInstanceSSL; returns the RequestId once the change is accepted."""
        ...

    def create_account(self, instance_id: str, name: str, password: str) -> str:
        """CreateAccount (a normal account); returns the RequestId."""
        ...

    def server_ca_pem(self, url: str) -> bytes:
        """Download the server CA from DescribeDBInstanceSSL's ServerCAUrl."""
        ...
