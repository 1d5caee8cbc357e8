"""The wire format through the official SDK: response shapes, signatures, errors, control routes.

State-only instances (backend "none") and a movable clock: fast and deterministic.
"""

from __future__ import annotations

import json
import urllib.request
from datetime import datetime, timedelta, timezone

import pytest
from alibabacloud_rds20140815 import models as rds
from alibabacloud_rds20140815.client import Client
from alibabacloud_tea_openapi.exceptions import ClientException
from alibabacloud_tea_openapi.models import OpenApiRequest, Params
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from darabonba.runtime import RuntimeOptions

from rdsssl.emulator.server import Emulator
from tests.emulator.conftest import ACL_LOCK_SECONDS, RESTART_SECONDS
from tests.emulator.sdk import control, make_client, modify, raw_call, ssl_of, status_of
from tests.pgtls import KeyPair, make_crl


def _code(exc: pytest.ExceptionInfo[ClientException]) -> tuple[str, int]:
    return exc.value.code, exc.value.status_code


# -- shapes -------------------------------------------------------------------------------------


def test_describe_attribute_shape(client: Client, emu: Emulator, iid: str) -> None:
    req = rds.DescribeDBInstanceAttributeRequest(dbinstance_id=iid)
    body = client.describe_dbinstance_attribute(req).body
    attr = body.items.dbinstance_attribute[0]
    assert len(body.items.dbinstance_attribute) == 1 and body.request_id
    assert (attr.dbinstance_id, attr.dbinstance_status, attr.engine) == (
        iid,
        "Running",
        "PostgreSQL",
    )
    assert attr.engine_version == "15.0"
    assert (attr.dbinstance_storage_type, attr.pay_type, attr.lock_mode) == (
        "cloud_essd",
        "Postpaid",
        "Unlock",
    )
    assert attr.connection_string == f"{iid}.pg.rds.aliyuncs.com"
    assert attr.region_id == "cn-hangzhou" and isinstance(attr.port, str)
    assert datetime.strptime(attr.creation_time, "%Y-%m-%dT%H:%M:%SZ")


def test_describe_net_info_shape(client: Client, iid: str) -> None:
    req = rds.DescribeDBInstanceNetInfoRequest(dbinstance_id=iid)
    body = client.describe_dbinstance_net_info(req).body
    infos = body.dbinstance_net_infos.dbinstance_net_info
    assert [(i.connection_string, i.iptype) for i in infos] == [
        (f"{iid}.pg.rds.aliyuncs.com", "Private"),
        (f"{iid}o.pg.rds.aliyuncs.com", "Public"),
    ]
    assert {(i.ipaddress, i.connection_string_type) for i in infos} == {("127.0.0.1", "Normal")}
    assert body.instance_network_type == "VPC"


def test_describe_ssl_shape(client: Client, emu: Emulator, iid: str) -> None:
    body = ssl_of(client, iid)
    assert (body.sslenabled, body.catype, body.require_update) == ("on", "aliyun", "0")
    assert (body.client_cacert, body.client_cert_revocation_list) == ("", "")
    assert (body.acl, body.replication_acl) == ("prefer", "prefer")  # SSL on, no client CA
    assert (body.last_modify_status, body.modify_status_reason) == ("", "")  # never changed
    assert body.server_key is None
    assert body.server_caurl == f"{emu.endpoint}/_emulator/server-ca.pem"
    cert = x509.load_pem_x509_certificate(body.server_cert.encode())
    expire = datetime.strptime(body.sslexpire_time, "%Y-%m-%dT%H:%M:%SZ")
    assert expire.replace(tzinfo=timezone.utc) == cert.not_valid_after_utc
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "localhost" in sans.get_values_for_type(x509.DNSName)
    with urllib.request.urlopen(body.server_caurl, timeout=10) as resp:
        ca = x509.load_pem_x509_certificate(resp.read())
    assert cert.issuer == ca.subject
    cert.verify_directly_issued_by(ca)


def test_server_key_only_with_the_mimic_switch(client: Client, emu: Emulator, iid: str) -> None:
    emu.faults.switches.return_server_key = True
    assert "PRIVATE KEY" in ssl_of(client, iid).server_key


def test_modify_returns_a_request_id_then_polls_to_success(
    client: Client, emu: Emulator, iid: str, conn_str: str, client_ca: KeyPair
) -> None:
    request_id = modify(
        client, iid, conn_str, client_caenabled=1, client_cacert=client_ca.cert_pem.decode()
    )
    assert len(request_id) == 36
    assert status_of(client, iid) == "SSL_MODIFYING"
    assert ssl_of(client, iid).last_modify_status == "setting"
    emu.clock.advance(RESTART_SECONDS)
    body = ssl_of(client, iid)
    assert (status_of(client, iid), body.last_modify_status) == ("Running", "success")
    assert (body.client_cacert, body.acl, body.replication_acl) == (
        client_ca.cert_pem.decode(),
        "prefer",
        "prefer",
    )
    assert emu.restarts(iid) == 1


def test_modify_while_ssl_modifying_is_incorrect_state(
    client: Client, emu: Emulator, iid: str, conn_str: str, client_ca: KeyPair
) -> None:
    modify(client, iid, conn_str, client_caenabled=1, client_cacert=client_ca.cert_pem.decode())
    with pytest.raises(ClientException) as exc:
        modify(client, iid, conn_str, acl="cert")
    assert _code(exc) == ("IncorrectDBInstanceState", 403)
    emu.clock.advance(RESTART_SECONDS)
    modify(client, iid, conn_str, acl="cert")  # Running again: accepted
    emu.clock.advance(ACL_LOCK_SECONDS)
    assert (emu.restarts(iid), emu.reloads(iid)) == (1, 1)


def test_acl_without_client_ca_is_a_permission_error(
    client: Client, iid: str, conn_str: str
) -> None:
    with pytest.raises(ClientException) as exc:
        modify(client, iid, conn_str, acl="verify-ca")
    assert _code(exc) == ("InvalidACL.Permission", 403)
    assert exc.value.data["HostId"] == "rds.aliyuncs.com"
    assert exc.value.data["Recommend"].startswith("https://api.aliyun.com/troubleshoot?q=")


def test_verify_full_on_an_emulated_pg11_is_incorrect_engine_version(
    client: Client, emu: Emulator, client_ca: KeyPair
) -> None:
    old = emu.add_instance(engine_version="11.0", region="cn-shanghai")
    inst = emu.instance(old)
    assert inst.engine_version == "11.0"
    with pytest.raises(ClientException) as exc:
        modify(
            client,
            old,
            inst.connection_string,
            client_caenabled=1,
            client_cacert=client_ca.cert_pem.decode(),
            acl="verify-full",
        )
    assert _code(exc) == ("IncorrectEngineVersion", 403)


def test_one_call_with_ca_crl_and_acl_is_one_restart_and_one_logged_modify(
    client: Client, emu: Emulator, iid: str, conn_str: str, client_ca: KeyPair
) -> None:
    modify(
        client,
        iid,
        conn_str,
        client_caenabled=1,
        client_cacert=client_ca.cert_pem.decode(),
        client_crl_enabled=1,
        client_cert_revocation_list=make_crl(client_ca, []).decode(),
        acl="cert",
        replication_acl="verify-ca",
    )
    emu.clock.advance(RESTART_SECONDS)
    body = ssl_of(client, iid)
    assert (body.acl, body.replication_acl, body.last_modify_status) == (
        "cert",
        "verify-ca",
        "success",
    )
    assert (emu.restarts(iid), emu.reloads(iid)) == (1, 0)
    modifies = [r for r in emu.requests if r.action == "ModifyDBInstanceSSL"]
    assert len(modifies) == 1 and modifies[0].outcome == "ok"
    fingerprint = client_ca.cert.fingerprint(hashes.SHA256()).hex()
    assert modifies[0].params["ClientCACert"] == f"pem:sha256={fingerprint}"


def test_create_and_describe_accounts_without_passwords(
    client: Client, emu: Emulator, iid: str
) -> None:
    client.create_account(
        rds.CreateAccountRequest(
            dbinstance_id=iid, account_name="alice", account_password="Alice-pass-1"
        )
    )
    body = client.describe_accounts(rds.DescribeAccountsRequest(dbinstance_id=iid)).body
    [account] = body.accounts.dbinstance_account
    assert (account.account_name, account.account_type, account.account_status) == (
        "alice",
        "Normal",
        "Available",
    )
    assert "Alice-pass-1" not in json.dumps(body.to_map())
    assert emu.requests[0].params["AccountPassword"] == "<redacted>"
    with pytest.raises(ClientException) as exc:
        client.create_account(
            rds.CreateAccountRequest(dbinstance_id=iid, account_name="bob", account_password="x")
        )
    assert _code(exc) == ("InvalidAccountPassword.Malformed", 400)


def test_describe_instances_by_tags_with_or_semantics_and_paging(
    client: Client, emu: Emulator
) -> None:
    region = "cn-beijing"
    prod = emu.add_instance(region=region, tags={"env": "prod"})
    team = emu.add_instance(region=region, tags={"team": "a", "env": "dev"})
    emu.add_instance(region=region, tags={"env": "dev"})

    def ids(**kw: object) -> tuple[list[str], int, int]:
        req = rds.DescribeDBInstancesRequest(region_id=region, engine="PostgreSQL", **kw)
        body = client.describe_dbinstances(req).body
        return (
            [i.dbinstance_id for i in body.items.dbinstance],
            body.total_record_count,
            body.page_record_count,
        )

    assert ids(tags=json.dumps({"env": "prod", "team": "a"}))[0] == [prod, team]
    assert ids()[1] == 3
    first, total, count = ids(page_size=2, page_number=1)
    second, _, count2 = ids(page_size=2, page_number=2)
    assert (total, count, count2, len(set(first + second))) == (3, 2, 1, 3)
    assert ids(page_size=2, page_number=3)[0] == []
    with pytest.raises(ClientException) as exc:
        client.describe_dbinstances(rds.DescribeDBInstancesRequest(region_id=region, tags="{bad"))
    assert exc.value.code == "InvalidParameter"


def test_unknown_instance_is_not_found(client: Client) -> None:
    with pytest.raises(ClientException) as exc:
        ssl_of(client, "pgm-doesnotexist")
    assert _code(exc) == ("InvalidDBInstanceId.NotFound", 400)


# -- signatures --------------------------------------------------------------------------------


def test_a_wrong_secret_is_signature_does_not_match(emu: Emulator, iid: str) -> None:
    with pytest.raises(ClientException) as exc:
        ssl_of(make_client(emu, secret="not-the-secret"), iid)
    assert _code(exc) == ("SignatureDoesNotMatch", 400)
    assert emu.requests[-1].outcome == "SignatureDoesNotMatch"


def test_an_unknown_access_key_is_not_found(emu: Emulator, iid: str) -> None:
    with pytest.raises(ClientException) as exc:
        ssl_of(make_client(emu, ak="LTAI-nobody"), iid)
    assert _code(exc) == ("InvalidAccessKeyId.NotFound", 404)


def test_another_configured_key_pair_is_accepted(emu: Emulator, iid: str) -> None:
    emu.add_access_key("second-key", "second-secret")
    assert ssl_of(make_client(emu, ak="second-key", secret="second-secret"), iid).sslenabled == "on"


def test_replayed_nonce_and_old_dates_are_refused(emu: Emulator, iid: str) -> None:
    params = {"DBInstanceId": iid}
    assert raw_call(emu, "DescribeDBInstanceSSL", params, nonce="n-1")[0] == 200
    status, body = raw_call(emu, "DescribeDBInstanceSSL", params, nonce="n-1")
    assert (status, body["Code"]) == (400, "SignatureNonceUsed")
    old = datetime.now(timezone.utc) - timedelta(minutes=16)
    status, body = raw_call(emu, "DescribeDBInstanceSSL", params, date=old)
    assert (status, body["Code"]) == (400, "InvalidTimeStamp.Expired")
    status, body = raw_call(emu, "DescribeDBInstanceSSL", params, secret="wrong")
    assert (status, body["Code"]) == (400, "SignatureDoesNotMatch")


def test_missing_authorization_is_incomplete_signature(emu: Emulator, iid: str) -> None:
    req = urllib.request.Request(
        f"{emu.endpoint}/?DBInstanceId={iid}",
        method="POST",
        headers={"x-acs-action": "DescribeDBInstanceSSL", "x-acs-version": "2014-08-15"},
    )
    with pytest.raises(urllib.error.HTTPError) as exc:
        urllib.request.urlopen(req, timeout=10)
    assert exc.value.code == 400
    assert exc.value.headers["Content-Type"] == "application/json;charset=utf-8"
    body = json.loads(exc.value.read())
    assert body["Code"] == "IncompleteSignature"
    assert exc.value.headers["x-acs-request-id"] == body["RequestId"]


def test_wrong_version_and_unknown_action_are_404(emu: Emulator, iid: str) -> None:
    status, body = raw_call(
        emu, "DescribeDBInstanceSSL", {"DBInstanceId": iid}, version="2020-01-01"
    )
    assert (status, body["Code"]) == (404, "InvalidVersion")
    status, body = raw_call(emu, "DeleteDBInstance", {"DBInstanceId": iid})
    assert (status, body["Code"]) == (404, "InvalidAction.NotFound")


def test_form_body_parameters_with_the_query_winning(
    client: Client, emu: Emulator, iid: str, client_ca: KeyPair
) -> None:
    """The docs' §6.3 workaround: PEMs in a signed form body, through the SDK's call_api."""
    conn_str = emu.instance(iid).connection_string
    params = Params(
        action="ModifyDBInstanceSSL",
        version="2014-08-15",
        protocol="HTTP",
        pathname="/",
        method="POST",
        auth_type="AK",
        style="RPC",
        req_body_type="formData",
        body_type="json",
    )
    request = OpenApiRequest(
        query={"DBInstanceId": iid, "ConnectionString": conn_str, "ClientCAEnabled": "1"},
        body={"ClientCACert": client_ca.cert_pem.decode(), "ClientCAEnabled": "0"},
    )
    client.call_api(params, request, RuntimeOptions())
    emu.clock.advance(RESTART_SECONDS)
    assert ssl_of(client, iid).client_cacert == client_ca.cert_pem.decode()


def test_get_with_action_and_version_parameters(emu: Emulator, iid: str) -> None:
    """Action/Version as parameters (V2-style placement), still V3-signed."""
    params = {"Action": "DescribeDBInstanceSSL", "Version": "2014-08-15", "DBInstanceId": iid}
    status, body = raw_call(emu, "DescribeDBInstanceSSL", params, method="GET")
    assert (status, body["SSLEnabled"]) == (200, "on")


# -- control routes ----------------------------------------------------------------------------


def test_control_routes(client: Client, emu: Emulator, iid: str, conn_str: str) -> None:
    ssl_of(client, iid)
    logged = control(emu, "requests")["requests"]
    assert [(r["action"], r["outcome"], r["status"]) for r in logged] == [
        ("DescribeDBInstanceSSL", "ok", 200)
    ]
    listed = {i["DBInstanceId"]: i for i in control(emu, "instances")["instances"]}
    assert listed[iid]["DBInstanceStatus"] == "Running"
    control(emu, f"instances/{iid}", {"LockMode": "LockByExpiration", "LockReason": "expired"})
    with pytest.raises(ClientException) as exc:
        modify(client, iid, conn_str, acl="cert")
    assert _code(exc) == ("IncorrectDBInstanceLockMode", 403)
    assert status_of(client, iid) == "Running"
    before = control(emu, "clock")["offset"]
    assert control(emu, "clock", {"advance": 5})["offset"] == before + 5
    control(emu, "reset", {})
    assert emu.instance(iid).lock_mode == "Unlock" and emu.requests == []
