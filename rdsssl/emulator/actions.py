"""The actions: read parameters, call the state, shape the JSON the SDK models parse.

One handler per action, about ten lines each (moto's responses.py). Value formats follow
docs/aliyun-rds-ssl-api.md §2-§3: strings for flags (`on`/`off`, `0`/`1`), `""` for unset
fields, list wrappers such as `Items.DBInstance[]`, times as yyyy-MM-ddTHH:mm:ssZ (UTC).

DescribeDBInstanceSSL reads the server certificate itself: `SSLExpireTime` is its notAfter
(cloud or custom), `SSLCreateTime` its notBefore. `RequireUpdate` is "1" when a cloud
certificate expires within `REQUIRE_UPDATE_DAYS` (30) by the emulator's clock, or has
expired, with `RequireUpdateItem` / `RequireUpdateReason` saying so; a custom certificate
never sets it (its renewal is the owner's job), and `ServerCAUrl` is "" for one, since its CA
is not the cloud's.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from cryptography import x509

from rdsssl.emulator.cloudca import REQUIRE_UPDATE_DAYS
from rdsssl.emulator.errors import api_error
from rdsssl.emulator.faults import Switches
from rdsssl.emulator.instances import Instance, accounts_of
from rdsssl.emulator.state import EmulatorState

__all__ = ["HANDLERS", "ActionContext", "Handler"]

Json = dict[str, Any]


@dataclass(frozen=True)
class ActionContext:
    """What handlers need besides the parameters."""

    state: EmulatorState
    switches: Switches
    server_ca_url: str


Handler = Callable[[ActionContext, Mapping[str, str]], Json]


def _time(ts: float | datetime) -> str:
    if isinstance(ts, float):
        ts = datetime.fromtimestamp(ts, timezone.utc)
    return ts.strftime("%Y-%m-%dT%H:%M:%SZ")


def _int(params: Mapping[str, str], name: str, default: int, lo: int, hi: int) -> int:
    raw = params.get(name) or str(default)
    if not raw.isdigit() or not lo <= int(raw) <= hi:
        raise api_error("InvalidParameter", f"{name} must be an integer within {lo}..{hi}")
    return int(raw)


def _summary(inst: Instance) -> Json:
    """Fields shared by DescribeDBInstances items and DescribeDBInstanceAttribute."""
    return {
        "DBInstanceId": inst.id,
        "DBInstanceDescription": inst.description,
        "RegionId": inst.region,
        "ZoneId": inst.zone,
        "Engine": "PostgreSQL",
        "EngineVersion": inst.engine_version,
        "DBInstanceStatus": inst.status,
        "DBInstanceStorageType": inst.storage_type,
        "DBInstanceType": "Primary",
        "DBInstanceClass": "pg.n2.2c.2m",
        "DBInstanceNetType": "Intranet",
        "InstanceNetworkType": "VPC",
        "Category": inst.category,
        "PayType": inst.pay_type,
        "LockMode": inst.lock_mode,
        "LockReason": inst.lock_reason,
        "ConnectionString": inst.connection_string,
        "ConnectionMode": "Standard",
        "ExpireTime": "",
        "VpcId": "vpc-emulator",
        "VSwitchId": "vsw-emulator",
        "ResourceGroupId": "rg-emulator",
        "MasterInstanceId": "",
        "ReadOnlyDBInstanceIds": {"ReadOnlyDBInstanceId": []},
        "Tips": "",
    }


def describe_instances(ctx: ActionContext, p: Mapping[str, str]) -> Json:
    region = p.get("RegionId") or ""
    if not region:
        raise api_error("MissingRegionId")
    try:
        tags = json.loads(p["Tags"]) if p.get("Tags") else None
    except ValueError:
        tags = []
    if tags is not None and (not isinstance(tags, dict) or len(tags) > 5):
        raise api_error(
            "InvalidParameter", 'Tags must be a JSON object {"k":"v"} of at most 5 tags'
        )
    ids = p["DBInstanceId"].split(",") if p.get("DBInstanceId") else None
    found = ctx.state.find(
        region=region,
        engine=p.get("Engine") or None,
        tags=tags,
        status=p.get("DBInstanceStatus") or None,
        ids=ids,
    )
    size, number = _int(p, "PageSize", 30, 1, 100), _int(p, "PageNumber", 1, 1, 10**6)
    page = found[(number - 1) * size : number * size]
    items = [{**_summary(i), "CreateTime": _time(i.created), "MutriORsignle": False} for i in page]
    return {
        "Items": {"DBInstance": items},
        "TotalRecordCount": len(found),
        "PageNumber": number,
        "PageRecordCount": len(page),
    }


def describe_attribute(ctx: ActionContext, p: Mapping[str, str]) -> Json:
    inst = ctx.state.get(p.get("DBInstanceId"))
    attr = {
        **_summary(inst),
        "CreationTime": _time(inst.created),
        "Port": str(inst.port),
        "DBInstanceCPU": "2",
        "DBInstanceMemory": 2048,
        "DBInstanceStorage": 20,
        "MaxConnections": 400,
        "AccountMaxQuantity": 999999,
        "DBMaxQuantity": 999999,
        "SecurityIPList": "127.0.0.1",
        "SecurityIPMode": "safety",
        "IPType": "IPv4",
        "TimeZone": "UTC",
    }
    return {"Items": {"DBInstanceAttribute": [attr]}}


def describe_net_info(ctx: ActionContext, p: Mapping[str, str]) -> Json:
    inst = ctx.state.get(p.get("DBInstanceId"))
    infos: list[Json] = [
        {
            "ConnectionString": cs,
            "IPAddress": inst.host,
            "IPType": ip_type,
            "Port": str(inst.port),
            "ConnectionStringType": "Normal",
            "VPCId": "vpc-emulator" if ip_type == "Private" else "",
            "VSwitchId": "vsw-emulator" if ip_type == "Private" else "",
            "Upgradeable": "Disabled",
            "ExpiredTime": "",
            "SecurityIPGroups": {"securityIPGroup": []},
            "DBInstanceWeights": {"DBInstanceWeight": []},
        }
        for cs, ip_type in zip(inst.connection_strings, ("Private", "Public"), strict=True)
    ]
    return {
        "DBInstanceNetInfos": {"DBInstanceNetInfo": infos},
        "InstanceNetworkType": "VPC",
        "SecurityIPMode": "safety",
    }


def _pem(ctx: ActionContext, text: str) -> str:
    """A PEM as read back: as sent ("exact"), or with LF line ends ("normalized")."""
    return text.replace("\r\n", "\n") if ctx.switches.crlf_pem_readback == "normalized" else text


def _require_update(cert: x509.Certificate, now: datetime) -> tuple[str, str, str]:
    """(RequireUpdate, RequireUpdateItem, RequireUpdateReason) of a cloud certificate."""
    end = cert.not_valid_after_utc
    if end <= now:
        return "1", "ServerCert", f"the cloud certificate expired on {_time(end)}"
    if end - now <= timedelta(days=REQUIRE_UPDATE_DAYS):
        reason = f"the cloud certificate expires on {_time(end)}, within {REQUIRE_UPDATE_DAYS} days"
        return "1", "ServerCert", reason
    return "0", "", ""


def describe_ssl(ctx: ActionContext, p: Mapping[str, str]) -> Json:
    inst = ctx.state.get(p.get("DBInstanceId"))
    ssl = inst.ssl
    on = ssl.enabled
    cert = x509.load_pem_x509_certificate(ssl.server_cert_pem.encode()) if on else None
    update = ("0", "", "")
    if cert is not None and ssl.ca_type == "aliyun":
        update = _require_update(cert, ctx.state.now())
    acl, replication_acl = ssl.acl, ssl.replication_acl
    if on and not ssl.client_ca_pem:  # RDS reads back prefer/prefer here (Terraform's tests)
        acl = replication_acl = ctx.switches.acl_without_ca
    body: Json = {
        "SSLEnabled": "on" if on else "off",
        "CAType": ssl.ca_type if on else "",
        "ConnectionString": ssl.connection_string if on else "",
        "ServerCert": _pem(ctx, ssl.server_cert_pem) if on else "",
        "ServerCAUrl": ctx.server_ca_url if on and ssl.ca_type == "aliyun" else "",
        "SSLCreateTime": _time(cert.not_valid_before_utc) if cert else "",
        "SSLExpireTime": _time(cert.not_valid_after_utc) if cert else "",
        "RequireUpdate": update[0],
        "RequireUpdateItem": update[1],
        "RequireUpdateReason": update[2],
        "ClientCACert": _pem(ctx, ssl.client_ca_pem),
        "ClientCACertExpireTime": "",
        "ClientCertRevocationList": _pem(ctx, ssl.crl_pem),
        "ACL": acl,
        "ReplicationACL": replication_acl,
        "LastModifyStatus": inst.last_modify_status,
        "ModifyStatusReason": inst.modify_status_reason,
    }
    if ctx.switches.return_server_key and on:
        body["ServerKey"] = _pem(ctx, ssl.server_key_pem)
    return body


def modify_ssl(ctx: ActionContext, p: Mapping[str, str]) -> Json:
    ctx.state.modify_ssl(p)
    return {}


def create_account(ctx: ActionContext, p: Mapping[str, str]) -> Json:
    ctx.state.create_account(
        p.get("DBInstanceId"),
        p.get("AccountName"),
        p.get("AccountPassword"),
        p.get("AccountType") or None,
        p.get("AccountDescription") or "",
    )
    return {}


def describe_accounts(ctx: ActionContext, p: Mapping[str, str]) -> Json:
    inst = ctx.state.get(p.get("DBInstanceId"))
    accounts = [
        {
            "DBInstanceId": inst.id,
            "AccountName": a.name,
            "AccountStatus": a.status,
            "AccountType": a.type,
            "AccountDescription": a.description,
            "PrivExceeded": "0",
            "DatabasePrivileges": {"DatabasePrivilege": []},
        }
        for a in accounts_of(inst, p.get("AccountName") or None)
    ]
    return {"Accounts": {"DBInstanceAccount": accounts}, "TotalRecordCount": len(accounts)}


HANDLERS: dict[str, Handler] = {
    "DescribeDBInstances": describe_instances,
    "DescribeDBInstanceAttribute": describe_attribute,
    "DescribeDBInstanceNetInfo": describe_net_info,
    "DescribeDBInstanceSSL": describe_ssl,
    "ModifyDBInstanceSSL": modify_ssl,
    "CreateAccount": create_account,
    "DescribeAccounts": describe_accounts,
}
