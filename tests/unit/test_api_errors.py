"""rdsssl.rds.api without a server: real SDK exception objects translated, endpoint parsing,
credentials errors without secrets, the retry policy, and response parsing."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from alibabacloud_credentials.exceptions import CredentialException
from alibabacloud_tea_openapi.exceptions import (
    ClientException,
    ServerException,
    ThrottlingException,
)
from darabonba.exceptions import RetryError, UnretryableException
from darabonba.policy.retry import RetryPolicyContext

from rdsssl.errors import (
    ApiError,
    ApiUnreachable,
    ConfigError,
    ExitCode,
    InstanceBusy,
    InstanceNotFound,
    Throttled,
)
from rdsssl.models import AclMode, SslModifyRequest
from rdsssl.rds.api import AliyunRdsApi, translate_error
from rdsssl.rds.parse import ssl_from
from rdsssl.rds.settings import ApiSettings, parse_endpoint

ENDPOINT = "http://127.0.0.1:1"
ENV_VARS = (
    "ALIBABA_CLOUD_ACCESS_KEY_ID",
    "ALIBABA_CLOUD_ACCESS_KEY_SECRET",
    "ALIBABA_CLOUD_SECURITY_TOKEN",
    "ALIBABA_CLOUD_PROFILE",
)


def sdk_error(
    cls: type[Any], status: int, code: str, message: str = "raw text", request_id: str = "RID-1"
) -> Any:
    """Built exactly as alibabacloud_tea_openapi's do_request builds it."""
    data = {"RequestId": request_id, "HostId": "rds.aliyuncs.com", "Code": code, "Message": message}
    return cls(
        status_code=status,
        code=code,
        message=f"code: {status}, {message} request id: {request_id}",
        data=data,
        request_id=request_id,
    )


def unretryable(inner: BaseException) -> UnretryableException:
    return UnretryableException(RetryPolicyContext(retries_attempted=1, exception=inner))


def translate(exc: BaseException) -> Any:
    return translate_error(exc, action="DescribeDBInstanceSSL", endpoint=ENDPOINT)


# ------------------------------------------------------------------ translation


def test_client_error_keeps_code_raw_message_status_and_request_id() -> None:
    error = translate(
        sdk_error(
            ClientException,
            400,
            "SignatureDoesNotMatch",
            "Specified signature is not matched with our calculation.",
        )
    )
    assert type(error) is ApiError
    assert error.code == "SignatureDoesNotMatch"
    assert error.raw_message == "Specified signature is not matched with our calculation."
    assert error.http_status == 400 and error.request_id == "RID-1"
    assert error.action == "DescribeDBInstanceSSL"
    assert error.retryable is False and error.exit_code is ExitCode.API_ERROR
    assert "code: 400" not in str(error)  # the SDK's reformatted text is not used


@pytest.mark.parametrize(
    ("cls", "status", "code", "expected", "retryable"),
    [
        (ClientException, 400, "Throttling.User", Throttled, True),
        (ClientException, 400, "Throttling", Throttled, True),
        (ClientException, 400, "ConcurrentLimit", Throttled, True),
        (ThrottlingException, 400, "Throttling.Api", Throttled, True),
        (ServerException, 503, "ServiceUnavailable", ApiError, True),
        (ServerException, 500, "InternalError", ApiError, True),
        (ServerException, 500, "InvokeProxyFailure", ApiError, True),
        (ServerException, 502, "SomethingNew", ApiError, True),  # any 5xx
        (ClientException, 403, "IncorrectDBInstanceState", InstanceBusy, True),
        (ClientException, 400, "OperationDenied.DBInstanceStatus", InstanceBusy, True),
        (ClientException, 400, "InvalideStatus.Format", InstanceBusy, True),
        (ClientException, 400, "ConcurrentTaskExceeded", InstanceBusy, True),
        (ClientException, 404, "InvalidDBInstanceId.NotFound", InstanceNotFound, False),
        (ClientException, 400, "InvalidDBInstanceId.NotFound", InstanceNotFound, False),
        (ClientException, 403, "IncorrectDBInstanceLockMode", ApiError, False),
        (ClientException, 400, "InvalidClientCACert", ApiError, False),
        (ClientException, 404, "InvalidAccessKeyId.NotFound", ApiError, False),
    ],
)
def test_classification_by_code(
    cls: type[Any], status: int, code: str, expected: type[ApiError], retryable: bool
) -> None:
    error = translate(sdk_error(cls, status, code))
    assert type(error) is expected
    assert error.code == code and error.retryable is retryable
    assert error.raw_message == "raw text"


def test_throttling_exception_with_retry_after_is_throttled() -> None:
    exc = ThrottlingException(
        status_code=400,
        code="Throttling.User",
        message="m",
        data={"Code": "Throttling.User", "Message": "flow control"},
        request_id="R",
        retry_after=1500,
    )
    error = translate(exc)
    assert isinstance(error, Throttled) and error.raw_message == "flow control"


def test_missing_body_message_falls_back_to_the_unformatted_sdk_text() -> None:
    exc = ClientException(
        status_code=400,
        code="Odd",
        message="code: 400, bare text request id: R",
        data=None,
        request_id="R",
    )
    assert translate(exc).raw_message == "bare text"


def test_connection_refused_is_unreachable_without_the_url() -> None:
    inner = RetryError(
        "HTTPConnectionPool(host='127.0.0.1', port=1): Max retries exceeded with "
        "url: /?AccountPassword=hunter2 (Caused by NewConnectionError('[Errno 111] "
        "Connection refused'))"
    )
    error = translate(unretryable(inner))
    assert isinstance(error, ApiUnreachable) and error.retryable is False
    assert f"cannot reach the RDS API at {ENDPOINT}: connection refused" in str(error)
    assert "check --endpoint/RDSSSL_ENDPOINT" in str(error)
    assert "hunter2" not in str(error)


def test_timeout_is_unreachable_and_retryable() -> None:
    error = translate(
        unretryable(RetryError("HTTPConnectionPool: Read timed out. (read timeout=10.0)"))
    )
    assert isinstance(error, ApiUnreachable) and error.retryable is True
    assert "timed out" in str(error)


def test_html_414_page_is_unreachable_and_permanent() -> None:
    html = (
        'Failed to parse the value as json format, Value: "<html><head><title>414 '
        'Request-URI Too Large</title></head><body>tengine</body></html>".'
    )
    error = translate(unretryable(RuntimeError(html)))
    assert isinstance(error, ApiUnreachable)
    assert error.http_status == 414 and error.retryable is False
    assert "non-JSON page" in str(error) and "CRL" in str(error)
    assert "tengine" not in str(error)


def test_html_502_page_is_unreachable_and_retryable() -> None:
    html = 'Failed to parse the value as json format, Value: "<html>502 Bad Gateway</html>".'
    error = translate(unretryable(RuntimeError(html)))
    assert isinstance(error, ApiUnreachable)
    assert error.http_status == 502 and error.retryable is True


def test_unretryable_wrapping_an_sdk_error_is_translated_as_that_error() -> None:
    # darabonba re-raises a wrapped ResponseException from __init__: what callers see is the
    # ClientException itself, which must translate like any other.
    inner = sdk_error(ClientException, 400, "Throttling.User")
    with pytest.raises(ClientException) as caught:
        unretryable(inner)
    assert isinstance(translate(caught.value), Throttled)


def test_no_credentials_from_the_chain_is_a_config_error() -> None:
    error = translate(
        unretryable(
            CredentialException("unable to load credentials from any of the providers in the chain")
        )
    )
    assert isinstance(error, ConfigError) and error.exit_code is ExitCode.BAD_INPUT
    assert "ALIBABA_CLOUD_ACCESS_KEY_ID" in str(error)


# ------------------------------------------------------------------ endpoint parsing


@pytest.mark.parametrize(
    ("value", "protocol", "host"),
    [
        ("http://127.0.0.1:8080", "http", "127.0.0.1:8080"),
        ("http://127.0.0.1:8080/", "http", "127.0.0.1:8080"),
        ("https://rds.aliyuncs.com", "https", "rds.aliyuncs.com"),
        ("HTTPS://rds.example.com:8443", "https", "rds.example.com:8443"),
        ("127.0.0.1:9000", "http", "127.0.0.1:9000"),
        ("localhost:9000", "http", "localhost:9000"),
        ("[::1]:9000", "http", "[::1]:9000"),
        ("rds.example.com:443", "https", "rds.example.com:443"),
        ("10.0.0.5:8080", "https", "10.0.0.5:8080"),
    ],
)
def test_parse_endpoint(value: str, protocol: str, host: str) -> None:
    endpoint = parse_endpoint(value)
    assert (endpoint.protocol, endpoint.host) == (protocol, host)


@pytest.mark.parametrize(
    "value",
    ["ftp://host", "http://host:1/path", "http://:80", "host:99999", "", "http://user@host:1"],
)
def test_bad_endpoint_is_a_config_error(value: str) -> None:
    with pytest.raises(ConfigError, match="bad endpoint"):
        parse_endpoint(value)


# ------------------------------------------------------------------ credentials


@pytest.fixture
def no_credentials(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """No env credentials, an empty HOME, no ECS metadata: the default chain finds nothing.
    The credentials package reads its environment at import, so its module state is patched."""
    from alibabacloud_credentials.utils import auth_constant, auth_util

    for name in ENV_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # where rdsssl looks for ~/.aliyun/config.json
    monkeypatch.setattr(auth_constant, "HOME", str(tmp_path))
    for attr in (
        "environment_access_key_id",
        "environment_access_key_secret",
        "environment_security_token",
        "environment_credentials_file",
        "environment_profile_name",
        "environment_credentials_uri",
    ):
        monkeypatch.setattr(auth_util, attr, None)
    monkeypatch.setattr(auth_util, "environment_ecs_metadata_disabled", "true")
    monkeypatch.setattr(auth_util, "enable_oidc_credential", False)
    yield


def test_half_set_env_credentials_name_the_missing_variable_not_the_value(
    no_credentials: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ALIBABA_CLOUD_ACCESS_KEY_SECRET", "s3cr3t-value")
    with pytest.raises(ConfigError) as caught:
        AliyunRdsApi(ApiSettings(endpoint=ENDPOINT))
    assert "ALIBABA_CLOUD_ACCESS_KEY_ID" in str(caught.value)
    assert "s3cr3t-value" not in str(caught.value)


def test_no_credentials_anywhere_is_a_config_error_on_the_first_call(no_credentials: None) -> None:
    sleeps: list[float] = []
    api = AliyunRdsApi(ApiSettings(endpoint=ENDPOINT, sleep=sleeps.append))
    with pytest.raises(ConfigError) as caught:
        api.describe_ssl("pgm-1")
    assert "ALIBABA_CLOUD_ACCESS_KEY_SECRET" in str(caught.value)
    assert sleeps == []  # not retried


def test_profile_is_read_from_credentials_ini(no_credentials: None, tmp_path: Path) -> None:
    ini = tmp_path / ".alibabacloud" / "credentials.ini"
    ini.parent.mkdir()
    ini.write_text(
        "[ops]\ntype = access_key\naccess_key_id = AKID\naccess_key_secret = profile-secret\n"
    )
    assert AliyunRdsApi(ApiSettings(endpoint=ENDPOINT, profile="ops")).endpoint == ENDPOINT
    with pytest.raises(ConfigError) as caught:
        AliyunRdsApi(ApiSettings(endpoint=ENDPOINT, profile="nope"))
    assert "'nope'" in str(caught.value) and "profile-secret" not in str(caught.value)


def test_no_region_and_no_endpoint_is_a_config_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("ALIBABA_CLOUD_ACCESS_KEY_ID", "AKID")
    monkeypatch.setenv("ALIBABA_CLOUD_ACCESS_KEY_SECRET", "secret")
    monkeypatch.setenv("HOME", str(tmp_path))  # no aliyun CLI config to take a region from
    monkeypatch.delenv("ALIBABA_CLOUD_REGION_ID", raising=False)
    with pytest.raises(ConfigError, match="no region") as caught:
        AliyunRdsApi(ApiSettings())
    assert str(tmp_path / ".aliyun" / "config.json") in str(caught.value)


# ------------------------------------------------------------------ retry policy


class FakeClient:
    """Stands in for the SDK client: each method raises the scripted errors, then answers."""

    def __init__(self, errors: list[BaseException], body: dict[str, Any]) -> None:
        self.errors = errors
        self.body = body
        self.calls = 0

    def _answer(self, _request: Any) -> Any:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return SimpleNamespace(body=SimpleNamespace(to_map=lambda: self.body))

    describe_dbinstance_ssl = modify_dbinstance_ssl = _answer


def api_with(
    monkeypatch: pytest.MonkeyPatch, client: FakeClient, sleeps: list[float]
) -> AliyunRdsApi:
    monkeypatch.setenv("ALIBABA_CLOUD_ACCESS_KEY_ID", "AKID")
    monkeypatch.setenv("ALIBABA_CLOUD_ACCESS_KEY_SECRET", "secret")
    api = AliyunRdsApi(ApiSettings(endpoint=ENDPOINT, sleep=sleeps.append, retries=3))
    api._client = client
    return api


MODIFY = SslModifyRequest("pgm-1", "pgm-1.example", acl=AclMode.CERT)
Call = Callable[[AliyunRdsApi], object]


def test_reads_retry_retryable_errors_with_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    sleeps: list[float] = []
    client = FakeClient(
        [
            sdk_error(ClientException, 400, "Throttling.User"),
            sdk_error(ServerException, 503, "ServiceUnavailable"),
        ],
        {"SSLEnabled": "on", "LastModifyStatus": "success"},
    )
    state = api_with(monkeypatch, client, sleeps).describe_ssl("pgm-1")
    assert state.ssl_enabled and client.calls == 3
    assert len(sleeps) == 2 and all(0 < s <= 8.5 for s in sleeps)


def test_reads_give_up_after_the_configured_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    sleeps: list[float] = []
    client = FakeClient([sdk_error(ServerException, 500, "InternalError")] * 10, {})
    with pytest.raises(ApiError, match="InternalError"):
        api_with(monkeypatch, client, sleeps).describe_ssl("pgm-1")
    assert client.calls == 4 and len(sleeps) == 3


@pytest.mark.parametrize(
    "error",
    [
        sdk_error(ClientException, 400, "Throttling.User"),
        sdk_error(ClientException, 403, "IncorrectDBInstanceState"),
        sdk_error(ServerException, 503, "ServiceUnavailable"),
        unretryable(RetryError("Read timed out.")),
    ],
)
def test_modify_is_never_retried_by_the_adapter_the_service_re_reads_first(
    monkeypatch: pytest.MonkeyPatch,
    error: BaseException,
) -> None:
    client = FakeClient([error], {"RequestId": "R9"})
    with pytest.raises(ApiError):
        api_with(monkeypatch, client, []).modify_ssl(MODIFY)
    assert client.calls == 1


# ------------------------------------------------------------------ parsing


def test_ssl_state_parsing_drops_the_server_key_and_empty_fields() -> None:
    body = {
        "SSLEnabled": "on",
        "CAType": "aliyun",
        "ServerKey": "-----BEGIN PRIVATE KEY-----x",
        "ServerCert": "CERT",
        "SSLExpireTime": "2026-10-11T08:16:43Z",
        "RequireUpdate": "0",
        "ClientCACert": "",
        "ClientCertRevocationList": "-",
        "ACL": "verify-full",
        "ReplicationACL": "",
        "LastModifyStatus": "setting",
        "ModifyStatusReason": "",
    }
    state = ssl_from(body)
    assert state.ssl_enabled and state.client_ca_pem is None and state.crl_pem is None
    assert state.acl is AclMode.VERIFY_FULL and state.replication_acl is None
    assert state.ssl_expire_time is not None and state.ssl_expire_time.year == 2026
    assert "PRIVATE KEY" not in repr(state)


def test_unknown_acl_value_is_an_api_error() -> None:
    with pytest.raises(ApiError, match="unknown ACL"):
        ssl_from({"ACL": "sometimes"})
