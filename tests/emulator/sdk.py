"""Helpers for driving the emulator with the official SDK, and with hand-signed raw requests.

The raw signer follows docs/aliyun-rds-ssl-api.md §6.1 independently of the emulator's code,
so a test can send what the SDK would not (a replayed nonce, an old date, a form body).
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import json
import time
import uuid
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any
from urllib.parse import quote, urlencode

from alibabacloud_rds20140815 import models as rds
from alibabacloud_rds20140815.client import Client
from alibabacloud_tea_openapi.models import Config

from rdsssl.emulator.server import Emulator


def make_client(emu: Emulator, *, ak: str | None = None, secret: str | None = None) -> Client:
    """An SDK client pointed at `emu` (plain HTTP), with the emulator's key pair by default."""
    return Client(
        Config(
            access_key_id=ak or emu.access_key_id,
            access_key_secret=secret or emu.access_key_secret,
            endpoint=f"{emu.host}:{emu.port}",
            protocol="http",
            region_id="cn-hangzhou",
        )
    )


def ssl_of(client: Client, instance_id: str) -> rds.DescribeDBInstanceSSLResponseBody:
    """DescribeDBInstanceSSL's body."""
    req = rds.DescribeDBInstanceSSLRequest(dbinstance_id=instance_id)
    return client.describe_dbinstance_ssl(req).body


def status_of(client: Client, instance_id: str) -> str:
    """DBInstanceStatus from DescribeDBInstanceAttribute."""
    req = rds.DescribeDBInstanceAttributeRequest(dbinstance_id=instance_id)
    return str(
        client.describe_dbinstance_attribute(req)
        .body.items.dbinstance_attribute[0]
        .dbinstance_status
    )


def wait_applied(
    client: Client, instance_id: str, *, timeout: float = 30.0
) -> rds.DescribeDBInstanceSSLResponseBody:
    """Poll until Running and LastModifyStatus is no longer `setting`; the final SSL body."""
    deadline = time.monotonic() + timeout
    while True:
        body = ssl_of(client, instance_id)
        if body.last_modify_status != "setting" and status_of(client, instance_id) == "Running":
            return body
        if time.monotonic() > deadline:
            raise AssertionError(f"{instance_id} still {body.last_modify_status} after {timeout}s")
        time.sleep(0.05)


def modify(client: Client, instance_id: str, connection_string: str, **fields: Any) -> str:
    """ModifyDBInstanceSSL with SDK attribute names (client_caenabled=1, acl="cert", ...)."""
    req = rds.ModifyDBInstanceSSLRequest(
        dbinstance_id=instance_id, connection_string=connection_string, **fields
    )
    return str(client.modify_dbinstance_ssl(req).body.request_id)


def raw_call(
    emu: Emulator,
    action: str,
    params: Mapping[str, str],
    *,
    secret: str | None = None,
    date: datetime | None = None,
    nonce: str | None = None,
    form: Mapping[str, str] | None = None,
    method: str = "POST",
    version: str = "2014-08-15",
) -> tuple[int, dict[str, Any]]:
    """Send one V3-signed request; (HTTP status, parsed JSON body)."""
    body = urlencode(sorted(form.items())).encode() if form else b""
    headers = {
        "host": f"{emu.host}:{emu.port}",
        "x-acs-action": action,
        "x-acs-version": version,
        "x-acs-date": (date or datetime.now(timezone.utc)).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "x-acs-signature-nonce": nonce or uuid.uuid4().hex,
        "x-acs-content-sha256": hashlib.sha256(body).hexdigest(),
        "accept": "application/json",
    }
    if form:
        headers["content-type"] = "application/x-www-form-urlencoded"
    names = sorted(headers)
    canonical_query = "&".join(f"{k}={quote(params[k], safe='~')}" for k in sorted(params))
    canonical = "\n".join(
        [
            method,
            "/",
            canonical_query,
            "".join(f"{n}:{headers[n].strip()}\n" for n in names),
            ";".join(names),
            headers["x-acs-content-sha256"],
        ]
    )
    to_sign = "ACS3-HMAC-SHA256\n" + hashlib.sha256(canonical.encode()).hexdigest()
    key = (secret or emu.access_key_secret).encode()
    signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    headers["authorization"] = (
        f"ACS3-HMAC-SHA256 Credential={emu.access_key_id},SignedHeaders={';'.join(names)},"
        f"Signature={signature}"
    )
    target = "/?" + urlencode(params) if params else "/"
    conn = http.client.HTTPConnection(emu.host, emu.port, timeout=10)
    try:
        conn.request(method, target, body=body, headers=headers)
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read())
    finally:
        conn.close()


def control(emu: Emulator, path: str, doc: Mapping[str, Any] | None = None) -> Any:
    """Call a control route: GET without `doc`, POST with it; the parsed JSON answer."""
    conn = http.client.HTTPConnection(emu.host, emu.port, timeout=10)
    try:
        if doc is None:
            conn.request("GET", f"/_emulator/{path}")
        else:
            conn.request("POST", f"/_emulator/{path}", body=json.dumps(doc).encode())
        resp = conn.getresponse()
        data = resp.read()
        if resp.status != 200:
            raise AssertionError(f"{path}: HTTP {resp.status}: {data!r}")
        return json.loads(data)
    finally:
        conn.close()
