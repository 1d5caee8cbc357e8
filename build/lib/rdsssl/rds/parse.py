"""Parsing RDS OpenAPI response bodies into rdsssl models (pure: dicts in, dataclasses out).

Kept apart from `rdsssl.rds.api` (the adapter, the one SDK importer) because it needs no SDK at
all: the adapter hands it `response.body.to_map()` dictionaries. The SDK types every field as a
string and leaves absent ones as the string "None" or "-", so every reader here normalises.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

from rdsssl.errors import ApiError
from rdsssl.models import AclMode, InstanceInfo, NetInfo, SslState

__all__ = ["clean", "field", "instance_from", "items", "net_info_from", "ssl_from", "to_int"]


def clean(value: object) -> str:
    """SDK fields are often the string "None" (f'{None}') when absent."""
    text = "" if value is None else str(value).strip()
    return "" if text == "None" else text


def to_int(value: object) -> int:
    """An integer field sent as a string; 0 when absent or unparsable."""
    try:
        return int(str(value).strip())
    except ValueError:
        return 0


# ------------------------------------------------------------------ response parsing


def field(d: Mapping[str, Any], key: str) -> str:
    """A string field of a response body, normalised by `clean`."""
    return clean(d.get(key))


def _pem(value: object) -> str | None:
    text = "" if value is None else str(value)
    return None if text.strip() in ("", "-", "None") else text


def _acl(value: object, field: str) -> AclMode | None:
    text = clean(value)
    if text in ("", "-"):
        return None
    try:
        return AclMode(text.lower())
    except ValueError:
        raise ApiError(
            f"DescribeDBInstanceSSL returned an unknown {field} value {text!r}",
            action="DescribeDBInstanceSSL",
            code="UnexpectedResponse",
        ) from None


def _time(value: str) -> datetime | None:
    """SSLExpireTime is `yyyy-MM-ddTHH:mm:ssZ` UTC; blank or unparsable -> None."""
    if value in ("", "-"):
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def instance_from(d: Mapping[str, Any], region: str = "") -> InstanceInfo:
    """An InstanceInfo from a DescribeDBInstanceAttribute / DescribeDBInstances item."""
    return InstanceInfo(
        instance_id=field(d, "DBInstanceId"),
        region=field(d, "RegionId") or region,
        status=field(d, "DBInstanceStatus"),
        lock_mode=field(d, "LockMode"),
        engine=field(d, "Engine"),
        engine_version=field(d, "EngineVersion"),
        storage_type=field(d, "DBInstanceStorageType"),
        connection_string=field(d, "ConnectionString"),
        port=to_int(d.get("Port")),
        pay_type=field(d, "PayType"),
    )


def ssl_from(d: Mapping[str, Any]) -> SslState:
    """An SslState from a DescribeDBInstanceSSL body; ServerKey is never read."""
    return SslState(
        ssl_enabled=field(d, "SSLEnabled").lower() in ("on", "yes", "1", "true", "enabled"),
        ca_type=field(d, "CAType"),
        connection_string=field(d, "ConnectionString"),
        server_cert_pem=_pem(d.get("ServerCert")) or "",
        server_ca_url=field(d, "ServerCAUrl"),
        ssl_expire_time=_time(field(d, "SSLExpireTime")),
        require_update=field(d, "RequireUpdate").lower() in ("1", "yes", "true"),
        client_ca_pem=_pem(d.get("ClientCACert")),
        crl_pem=_pem(d.get("ClientCertRevocationList")),
        acl=_acl(d.get("ACL"), "ACL"),
        replication_acl=_acl(d.get("ReplicationACL"), "ReplicationACL"),
        last_modify_status=field(d, "LastModifyStatus"),
        modify_status_reason=field(d, "ModifyStatusReason"),
    )


def net_info_from(d: Mapping[str, Any]) -> NetInfo:
    """A NetInfo from one DBInstanceNetInfos.DBInstanceNetInfo item."""
    return NetInfo(
        connection_string=field(d, "ConnectionString"),
        ip_address=field(d, "IPAddress"),
        ip_type=field(d, "IPType"),
        port=to_int(d.get("Port")),
        connection_string_type=field(d, "ConnectionStringType"),
    )


def items(body: Mapping[str, Any], outer: str, inner: str) -> list[Mapping[str, Any]]:
    """The list inside `{outer: {inner: [...]}}` (the SDK's list wrappers), dicts only."""
    wrapper = body.get(outer) or {}
    found = wrapper.get(inner) if isinstance(wrapper, Mapping) else None
    return [item for item in found or [] if isinstance(item, Mapping)]
