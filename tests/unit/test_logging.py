"""The library's logging: `logging.getLogger(__name__)` under `rdsssl`, a NullHandler and nothing
else configured, the SDK's loggers left alone, and no secret in any record, even at DEBUG."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

import rdsssl
from rdsssl.errors import Throttled
from rdsssl.models import AclMode, KeyType
from rdsssl.ops.apply import ApplyOptions, apply
from rdsssl.ops.audit import AuditLog
from rdsssl.ops.clock import Clock
from rdsssl.ops.desired import DesiredBuilder
from rdsssl.ops.guard import Proof
from rdsssl.ops.plan import DesiredSsl
from rdsssl.pki import crypto
from rdsssl.rds.api import AliyunRdsApi
from rdsssl.rds.settings import ApiSettings
from rdsssl.store.castore import CaStore

from .fakes import FakeApi, FakeTime, ok_probe, ssl_state
from .test_api_errors import ENDPOINT, FakeClient, api_with, sdk_error

NOW = datetime.now(timezone.utc).replace(microsecond=0)
PASSPHRASE = b"correct-horse-battery-staple-42"
ACCESS_KEY_SECRET = "AKSECRET-never-logged-0123456789"
STS_TOKEN = "STS.token-never-logged-abcdefghij"


def _pem_body(pem: bytes) -> list[str]:
    """The base64 lines of a PEM block: what a leaked key would show, whatever its wrapping."""
    return [line for line in pem.decode().splitlines() if line and not line.startswith("-----")]


def _logged(caplog: pytest.LogCaptureFixture) -> str:
    """Every captured record, formatted with its arguments, plus exception texts."""
    return "\n".join(
        f"{r.name} {r.levelname} {r.getMessage()} {r.exc_text or ''}" for r in caplog.records
    )


def test_the_library_only_adds_a_null_handler() -> None:
    handlers = logging.getLogger("rdsssl").handlers
    assert any(isinstance(h, logging.NullHandler) for h in handlers)
    assert all(type(h) is logging.NullHandler for h in handlers), handlers
    assert rdsssl.__name__ == "rdsssl"


def test_building_the_adapter_leaves_the_sdk_loggers_enabled(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ALIBABA_CLOUD_ACCESS_KEY_ID", "AKID")
    monkeypatch.setenv("ALIBABA_CLOUD_ACCESS_KEY_SECRET", ACCESS_KEY_SECRET)
    names = ("darabonba-core", "alibabacloud-tea")
    AliyunRdsApi(ApiSettings(endpoint=ENDPOINT))  # imports the SDK, which sets its own levels
    before = {n: (logging.getLogger(n).level, logging.getLogger(n).disabled) for n in names}
    AliyunRdsApi(ApiSettings(endpoint=ENDPOINT))
    after = {n: (logging.getLogger(n).level, logging.getLogger(n).disabled) for n in names}
    assert after == before
    assert not any(disabled for _, disabled in after.values())


def test_a_change_logged_at_debug_names_its_steps_and_no_secret(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ALIBABA_CLOUD_ACCESS_KEY_SECRET", ACCESS_KEY_SECRET)
    monkeypatch.setenv("ALIBABA_CLOUD_SECURITY_TOKEN", STS_TOKEN)
    ca_dir = tmp_path / "ca"
    with CaStore.init(
        ca_dir, cn="log-ca", key_type=KeyType.EC_P256, days=365, passphrase=PASSPHRASE, now=NOW
    ) as store:
        store.unlock(PASSPHRASE)
        alice = store.issue(user="alice", key_type=KeyType.EC_P256, days=30, now=NOW)
        bob = store.issue(user="bob", key_type=KeyType.EC_P256, days=30, now=NOW)
        store.revoke(serial=bob.cert.serial_number, now=NOW - timedelta(minutes=1))
        ca_key_pem = (ca_dir / "ca.key").read_bytes()
    cert_file, key_file = tmp_path / "alice.crt", tmp_path / "alice.key"
    cert_file.write_bytes(crypto.cert_pem(alice.cert))
    alice_key_pem = crypto.key_pem(alice.key)
    key_file.write_bytes(alice_key_pem)
    clear_ca_key = crypto.key_pem(
        crypto.load_private_key(ca_key_pem, source="ca.key", passphrase=PASSPHRASE)
    )

    builder = DesiredBuilder(now=NOW, unlock=lambda s: s.unlock(PASSPHRASE))
    desired = DesiredSsl(
        client_ca_pem=builder.ca_pem(ca_dir), crl=builder.crl_from_store(ca_dir), acl=AclMode.CERT
    )
    api = FakeApi(ssl_state())
    api.fail_modify.append(Throttled("too many requests", code="Throttling.User", retryable=True))
    t = FakeTime()
    caplog.set_level(logging.DEBUG)  # the root logger: the SDK's records would be caught too
    result = apply(
        api,
        "pgm-x",
        desired,
        ApplyOptions(settle=2.0, audit=AuditLog(tmp_path / "audit.jsonl"), lock=False),
        proof=Proof("alice", cert_file, key_file, ok_probe),
        clock=Clock(now=lambda: NOW, sleep=t.sleep, monotonic=t.clock),
    )
    assert result.applied and len(api.modify_calls) == 2

    text = _logged(caplog)
    by = {r.name for r in caplog.records}
    # the steps the brief of this logging promises, each from its own module's logger
    assert {
        "rdsssl.ops.guard",
        "rdsssl.ops.waiting",
        "rdsssl.rds.waiters",
        "rdsssl.store.crl_signing",
    } <= by
    assert "lockout guard: probe as alice: ok" in text
    assert "ModifyDBInstanceSSL failed: Throttling.User" in text
    assert "ModifyDBInstanceSSL accepted (RequestId req-2)" in text
    assert "signed CRL number 1: 1 entry" in text
    assert "poll 1:" in text
    # and no secret, in any form the code holds it
    secrets = [PASSPHRASE.decode(), ACCESS_KEY_SECRET, STS_TOKEN]
    secrets += _pem_body(ca_key_pem) + _pem_body(clear_ca_key) + _pem_body(alice_key_pem)
    leaked = [s for s in secrets if s in text]
    assert not leaked, leaked
    assert "PRIVATE KEY" not in text


def test_adapter_retries_are_logged_by_code_without_credentials(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from alibabacloud_tea_openapi.exceptions import ClientException, ServerException

    monkeypatch.setenv("ALIBABA_CLOUD_SECURITY_TOKEN", STS_TOKEN)
    client = FakeClient(
        [
            sdk_error(ClientException, 400, "Throttling.User"),
            sdk_error(ServerException, 503, "ServiceUnavailable"),
        ],
        {"SSLEnabled": "on", "LastModifyStatus": "success"},
    )
    sleeps: list[float] = []
    caplog.set_level(logging.DEBUG)
    api_with(monkeypatch, client, sleeps).describe_ssl("pgm-1")
    retries = [r for r in caplog.records if r.name == "rdsssl.rds.api" and "retrying" in r.msg]
    assert [r.levelno for r in retries] == [logging.INFO, logging.INFO]
    text = _logged(caplog)
    assert "DescribeDBInstanceSSL: throttled (Throttling.User); attempt 1 of 4" in text
    assert "DescribeDBInstanceSSL: retryable error (ServiceUnavailable); attempt 2 of 4" in text
    assert "secret" not in text and STS_TOKEN not in text
