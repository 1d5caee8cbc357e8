"""AliyunRdsApi against the real emulator over HTTP: shapes, a change that converges, and the
errors a user meets (wrong secret, nothing listening, throttling, HTML pages)."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from datetime import datetime, timezone

import pytest

import rdsssl.rds.api
from rdsssl.emulator.server import Emulator
from rdsssl.errors import ApiError, ApiUnreachable, ExitCode, InstanceNotFound
from rdsssl.models import AclMode, Observation, SslModifyRequest, SslState
from rdsssl.pki import crypto
from rdsssl.rds.acceptors import ssl_applied
from rdsssl.rds.api import AliyunRdsApi
from rdsssl.rds.settings import ApiSettings
from rdsssl.rds.waiters import wait_until

REGION = "cn-hangzhou"


@pytest.fixture(scope="module")
def adapter_emu() -> Iterator[Emulator]:
    """State-only instances with short, real timings (the waiter really sleeps)."""
    with Emulator(instances=1, backend="none", restart_seconds=0.3, acl_lock_seconds=0.2) as emu:
        emu.add_instance(region="cn-tags", tags={"env": "prod", "team": "a"})
        emu.add_instance(region="cn-tags", tags={"env": "prod", "team": "b"})
        emu.add_instance(region="cn-tags", tags={"env": "dev", "team": "a"})
        for _ in range(5):
            emu.add_instance(region="cn-paging")
        yield emu


@pytest.fixture
def emu(adapter_emu: Emulator, monkeypatch: pytest.MonkeyPatch) -> Emulator:
    """Reset per test; the emulator's key pair in the environment, as a user would set it."""
    adapter_emu.reset()
    monkeypatch.setenv("ALIBABA_CLOUD_ACCESS_KEY_ID", adapter_emu.access_key_id)
    monkeypatch.setenv("ALIBABA_CLOUD_ACCESS_KEY_SECRET", adapter_emu.access_key_secret)
    monkeypatch.delenv("ALIBABA_CLOUD_SECURITY_TOKEN", raising=False)
    return adapter_emu


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture
def api(emu: Emulator, sleeps: list[float]) -> AliyunRdsApi:
    return AliyunRdsApi(ApiSettings(region=REGION, endpoint=emu.endpoint, sleep=sleeps.append))


@pytest.fixture
def iid(emu: Emulator) -> str:
    return emu.instance_ids[0]


def calls(emu: Emulator, action: str) -> int:
    return sum(1 for r in emu.requests if r.action == action)


def test_describe_instance_shape(api: AliyunRdsApi, emu: Emulator, iid: str) -> None:
    info = api.describe_instance(iid)
    truth = emu.instance(iid)
    assert info.instance_id == iid and info.region == REGION
    assert (info.status, info.lock_mode, info.engine) == ("Running", "Unlock", "PostgreSQL")
    assert info.major_version >= 10 and info.storage_type.startswith("cloud_")
    assert info.connection_string == truth.connection_string
    assert info.port == truth.port  # 0 for the state-only backend


def test_describe_ssl_net_info_and_server_ca(api: AliyunRdsApi, emu: Emulator, iid: str) -> None:
    ssl = api.describe_ssl(iid)
    assert ssl.ssl_enabled and ssl.ca_type == "aliyun"
    assert ssl.client_ca_pem is None and ssl.crl_pem is None
    assert ssl.acl == ssl.replication_acl == AclMode.PREFER  # as RDS reads back without a CA
    assert ssl.last_modify_status == "" and "BEGIN CERTIFICATE" in ssl.server_cert_pem
    nets = api.describe_net_info(iid)
    assert ssl.connection_string in {n.connection_string for n in nets}
    assert all(n.port == emu.instance(iid).port and n.connection_string_type for n in nets)
    assert api.server_ca_pem(ssl.server_ca_url) == emu.server_ca_pem


def test_unknown_instance_is_instance_not_found(api: AliyunRdsApi) -> None:
    with pytest.raises(InstanceNotFound) as caught:
        api.describe_instance("pgm-doesnotexist")
    assert caught.value.code == "InvalidDBInstanceId.NotFound" and caught.value.request_id


def test_list_instances_tags_are_anded(api: AliyunRdsApi) -> None:
    found = api.list_instances(region="cn-tags", tags={"env": "prod", "team": "a"})
    assert len(found) == 1 and dict(found[0].tags) == {"env": "prod", "team": "a"}
    assert len(api.list_instances(region="cn-tags", tags={"env": "prod"})) == 2
    assert len(api.list_instances(region="cn-tags")) == 3


def test_list_instances_pages_through_everything(
    api: AliyunRdsApi,
    emu: Emulator,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(rdsssl.rds.api, "PAGE_SIZE", 2)
    found = api.list_instances(region="cn-paging")
    assert len({i.instance_id for i in found}) == 5
    pages = [r.params.get("PageNumber") for r in emu.requests if r.action == "DescribeDBInstances"]
    assert pages == ["1", "2", "3"]


def test_modify_ssl_then_wait_converges_with_one_call(
    api: AliyunRdsApi,
    emu: Emulator,
    iid: str,
) -> None:
    now = datetime.now(timezone.utc)
    ca_pem = crypto.cert_pem(crypto.make_ca(crypto.generate_key(), cn="adapter-ca", now=now))
    info = api.describe_instance(iid)
    request = SslModifyRequest(
        iid,
        info.connection_string,
        client_ca_enabled=True,
        client_ca_pem=ca_pem.decode(),
        acl=AclMode.VERIFY_CA,
    )
    wanted = crypto.pem_fingerprints(ca_pem, source="CA")

    def matches(ssl: SslState) -> bool:
        return (
            ssl.client_ca_pem is not None
            and ssl.acl is AclMode.VERIFY_CA
            and (crypto.pem_fingerprints(ssl.client_ca_pem.encode(), source="read-back") == wanted)
        )

    assert api.modify_ssl(request)
    final = wait_until(ssl_applied(matches), lambda: _observe(api, iid), timeout=60)
    assert final.ssl is not None and matches(final.ssl)
    assert final.instance is not None and final.instance.status == "Running"
    assert calls(emu, "ModifyDBInstanceSSL") == 1
    sent = next(r.params for r in emu.requests if r.action == "ModifyDBInstanceSSL")
    assert "SSLEnabled" not in sent and "CAType" not in sent  # only the fields that change


def _observe(api: AliyunRdsApi, iid: str) -> Observation:
    return Observation(api.describe_instance(iid), api.describe_ssl(iid), None, time.monotonic())


def test_wrong_secret_is_signature_does_not_match(
    emu: Emulator,
    monkeypatch: pytest.MonkeyPatch,
    iid: str,
) -> None:
    monkeypatch.setenv("ALIBABA_CLOUD_ACCESS_KEY_SECRET", "not-the-secret")
    api = AliyunRdsApi(ApiSettings(endpoint=emu.endpoint, sleep=lambda s: None))
    with pytest.raises(ApiError) as caught:
        api.describe_ssl(iid)
    error = caught.value
    assert error.code == "SignatureDoesNotMatch" and error.exit_code is ExitCode.API_ERROR
    assert not error.retryable and error.request_id and error.http_status in (400, 403)
    assert "not-the-secret" not in str(error)
    assert calls(emu, "DescribeDBInstanceSSL") == 1


def test_nothing_listening_is_unreachable(emu: Emulator) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    api = AliyunRdsApi(ApiSettings(endpoint=f"127.0.0.1:{port}", sleep=lambda s: None))
    with pytest.raises(ApiUnreachable) as caught:
        api.describe_instance("pgm-x")
    assert f"cannot reach the RDS API at http://127.0.0.1:{port}: connection refused" in str(
        caught.value
    )


def test_throttling_on_a_describe_is_retried_transparently(
    api: AliyunRdsApi,
    emu: Emulator,
    iid: str,
    sleeps: list[float],
) -> None:
    emu.faults.push("throttling", action="DescribeDBInstanceSSL", count=2)
    assert api.describe_ssl(iid).ssl_enabled
    assert calls(emu, "DescribeDBInstanceSSL") == 3 and len(sleeps) == 2


def test_html_502_on_a_describe_is_retried_transparently(
    api: AliyunRdsApi,
    emu: Emulator,
    iid: str,
    sleeps: list[float],
) -> None:
    emu.faults.push("html502", action="DescribeDBInstanceAttribute")
    assert api.describe_instance(iid).instance_id == iid
    assert len(sleeps) == 1


def test_modify_5xx_surfaces_without_a_resend(api: AliyunRdsApi, emu: Emulator, iid: str) -> None:
    emu.faults.push("unavailable", action="ModifyDBInstanceSSL")
    info = api.describe_instance(iid)
    with pytest.raises(ApiError) as caught:
        api.modify_ssl(SslModifyRequest(iid, info.connection_string, acl=AclMode.PREFER))
    assert caught.value.code == "ServiceUnavailable" and caught.value.retryable
    assert calls(emu, "ModifyDBInstanceSSL") == 1


def test_url_too_long_is_a_clear_414(api: AliyunRdsApi, emu: Emulator, iid: str) -> None:
    info = api.describe_instance(iid)
    emu.faults.url_limit = 300
    with pytest.raises(ApiUnreachable) as caught:
        api.modify_ssl(
            SslModifyRequest(
                iid,
                info.connection_string,
                client_ca_enabled=True,
                client_ca_pem="-----BEGIN CERTIFICATE-----\n" + "A" * 400,
            )
        )
    assert caught.value.http_status == 414 and "non-JSON page" in str(caught.value)
