"""The RDS OpenAPI boundary: an `RdsApi` Protocol and the adapter over the official Aliyun SDK.

This is the only module that imports the SDK (`alibabacloud_rds20140815`, `Tea`, `darabonba`,
`alibabacloud_tea_openapi`, `alibabacloud_credentials`), and it imports it lazily, when an
`AliyunRdsApi` is built, so `from rdsssl.rds.api import RdsApi` stays cheap and local commands
never load the SDK.
Everything leaving this module is an rdsssl model or an rdsssl error; no SDK object escapes.

Decisions (see docs/aliyun-rds-ssl-api.md):
- Errors are classified by `Code`, not by HTTP status (§4); the raw service Message is kept, not
  the SDK's reformatted `e.message` (§5.1). Transport failures and non-JSON (HTML) answers become
  `ApiUnreachable` with a sentence saying what to check; the SDK's own text is never shown, since
  it can hold the request URL, and the URL holds every parameter (CreateAccount's password too).
- Describe* calls retry retryable errors with exponential backoff and jitter (tenacity, bounded by
  `ApiSettings.retries`, injectable sleep). ModifyDBInstanceSSL has no ClientToken, so the adapter
  never retries it: every error surfaces, and the service layer re-reads the instance before it
  decides to send again (even a throttling or busy answer may follow an accepted change
  somewhere between the gateway and the instance). CreateAccount follows the same rule.
- ModifyDBInstanceSSL sends only DBInstanceId, ConnectionString and the client-CA / CRL / ACL
  fields that are set; never SSLEnabled / CAType, because re-sending them may renew the cloud
  server certificate that clients pin (§1.3, open question 4). Server SSL must already be on.
- Endpoint override: `http://host:port` -> plain HTTP; `https://host[:port]` -> HTTPS; a bare
  `host[:port]` -> HTTP for loopback hosts (127.0.0.0/8, ::1, localhost: the emulator) and HTTPS
  otherwise. Without an override the SDK's default endpoint for the region is used.
- `request_target_fits` (only `rdsssl service-profile record` uses it) measures the gateway's
  URL limit with a DescribeDBInstanceSSL padded through `OwnerAccount`, a parameter of the SDK's
  own request model, so the call takes the SDK's ordinary path (no hand-built request); a dummy
  parameter would need `call_api` with hand-made Params. The gateway judges the request line
  before any parameter, so any JSON answer (success or a service error about the odd owner
  account) means the length passed; only a non-JSON 4xx page (Tengine's HTML 414) means too long.
- Credentials: explicit `profile` (--profile) > ALIBABA_CLOUD_ACCESS_KEY_ID / _SECRET (and
  _SECURITY_TOKEN), read when the adapter is built, not when the credentials package was imported >
  ALIBABA_CLOUD_PROFILE > the package's default chain (OIDC, CLI profile, credentials.ini, ECS RAM
  role, credentials URI). None found -> `ConfigError` naming the variables; no value is echoed.
- The SDK's debug loggers are disabled: with DEBUG=sdk they would print whole requests and
  responses, and DescribeDBInstanceSSL answers with the server's private key.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from functools import partial
from typing import Any, Protocol, TypeVar
from urllib.parse import urlencode, urlsplit

from tenacity import (
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential,
    wait_random,
)

from rdsssl.errors import (
    ApiError,
    ApiUnreachable,
    ConfigError,
    InstanceBusy,
    InstanceNotFound,
    RdsSslError,
    Throttled,
)
from rdsssl.models import InstanceInfo, NetInfo, SslModifyRequest, SslState
from rdsssl.rds.parse import (
    clean,
    field,
    instance_from,
    items,
    net_info_from,
    ssl_from,
    to_int,
)

T = TypeVar("T")

ENV_ACCESS_KEY_ID = "ALIBABA_CLOUD_ACCESS_KEY_ID"
ENV_ACCESS_KEY_SECRET = "ALIBABA_CLOUD_ACCESS_KEY_SECRET"
ENV_SECURITY_TOKEN = "ALIBABA_CLOUD_SECURITY_TOKEN"
ENV_PROFILE = "ALIBABA_CLOUD_PROFILE"
ENV_REGION = "ALIBABA_CLOUD_REGION_ID"
ENV_ENDPOINT = "RDSSSL_ENDPOINT"
PAGE_SIZE = 100  # DescribeDBInstances maximum
_MAX_PAGES = 1000  # a guard against a service that never stops paging

CREDENTIALS_HELP = (
    f"set {ENV_ACCESS_KEY_ID} and {ENV_ACCESS_KEY_SECRET} (plus {ENV_SECURITY_TOKEN} for STS), "
    "or configure a profile in ~/.aliyun/config.json or ~/.alibabacloud/credentials.ini and "
    f"select it with --profile / {ENV_PROFILE}, or run on ECS with a RAM role"
)

# Classification by Code (doc §4). Anything not listed is permanent.
_TRANSIENT_CODES = frozenset(
    {
        "ServiceUnavailable",
        "InternalError",
        "ExternalFailure",
        "RequestMetaDataFailed",
        "InvokeProxyFailure",
        "SignatureNonceUsed",
    }  # the SDK makes a new nonce per attempt
)
# The API reference lists two busy answers for ModifyDBInstanceSSL: IncorrectDBInstanceState
# (403) and InvalideStatus.Format (400, "The instance status does not support this operation").
_BUSY_CODES = frozenset(
    {
        "IncorrectDBInstanceState",
        "InvalideStatus.Format",
        "OperationDenied.DBInstanceStatus",
        "ConcurrentTaskExceeded",
        "LockTimeout",
    }
)
_NOT_FOUND_CODES = frozenset({"InvalidDBInstanceId.NotFound"})
_NO_CREDENTIALS_CODES = frozenset({"InvalidCredentials"})  # raised by the SDK itself


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


# ------------------------------------------------------------------ settings and endpoint


@dataclass(frozen=True)
class ApiSettings:
    """How to reach RDS. `region` is needed unless `endpoint` overrides the SDK's default;
    `min_interval` (seconds) spaces consecutive calls of one adapter (0 = no rate limit)."""

    region: str | None = None
    endpoint: str | None = None
    profile: str | None = None
    connect_timeout_ms: int = 5000
    read_timeout_ms: int = 10000
    retries: int = 4
    sleep: Callable[[float], None] = time.sleep
    min_interval: float = 0.0

    @classmethod
    def from_env(
        cls, *, region: str | None = None, endpoint: str | None = None, profile: str | None = None
    ) -> ApiSettings:
        """Explicit values win; otherwise ALIBABA_CLOUD_REGION_ID and RDSSSL_ENDPOINT (the
        CLI's env twins, for Python callers). ALIBABA_CLOUD_PROFILE is left to the credential
        chain, where env access keys come first; an explicit `profile` beats them."""
        return cls(
            region=region or os.environ.get(ENV_REGION) or None,
            endpoint=endpoint or os.environ.get(ENV_ENDPOINT) or None,
            profile=profile,
        )


@dataclass(frozen=True)
class Endpoint:
    """An endpoint override split the way the SDK's Config wants it."""

    protocol: str  # "http" or "https"
    host: str  # host[:port]

    def __str__(self) -> str:
        return f"{self.protocol}://{self.host}"


def parse_endpoint(value: str) -> Endpoint:
    """`http://host:port` / `https://host[:port]` / bare `host[:port]` (HTTP only on loopback)."""
    text = value.strip()
    hint = f"bad endpoint {value!r}: use http://HOST:PORT, https://HOST or HOST:PORT"
    scheme = ""
    if "://" in text:
        scheme, _, rest = text.partition("://")
        scheme = scheme.lower()
        if scheme not in ("http", "https"):
            raise ConfigError(f"{hint} (unsupported scheme {scheme!r})")
    else:
        rest = text
    parts = urlsplit("//" + rest)
    try:
        port = parts.port
    except ValueError:
        raise ConfigError(f"{hint} (bad port)") from None
    host = parts.hostname
    if not host or parts.path not in ("", "/") or parts.query or parts.fragment or parts.username:
        raise ConfigError(hint)
    if not scheme:
        scheme = "http" if _is_loopback(host) else "https"
    shown = f"[{host}]" if ":" in host else host
    return Endpoint(scheme, f"{shown}:{port}" if port is not None else shown)


def _is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


# ------------------------------------------------------------------ error translation


def translate_error(exc: BaseException, *, action: str, endpoint: str) -> RdsSslError:
    """The one place an SDK / transport exception becomes an rdsssl error.

    Returns (never raises) an `ApiError` subclass keeping Code, the raw Message, HTTP status and
    RequestId, classified per doc §4; `ApiUnreachable` for transport failures and HTML pages;
    `ConfigError` when no credentials could be found.
    """
    from alibabacloud_credentials.exceptions import CredentialException
    from Tea.exceptions import TeaException, UnretryableException

    if isinstance(exc, CredentialException):
        return missing_credentials()
    if isinstance(exc, UnretryableException):
        inner = exc.inner_exception
        if isinstance(inner, BaseException) and inner is not exc:
            if isinstance(inner, (TeaException, CredentialException)):
                return translate_error(inner, action=action, endpoint=endpoint)
            return _unreachable(inner, action=action, endpoint=endpoint)
        return _unreachable(exc, action=action, endpoint=endpoint)
    if isinstance(exc, TeaException):
        return _from_response_error(exc, action=action)
    return _unreachable(exc, action=action, endpoint=endpoint)


def missing_credentials(detail: str = "no Alibaba Cloud credentials found") -> ConfigError:
    """The error for absent credentials: what to set, never a value."""
    return ConfigError(f"{detail}: {CREDENTIALS_HELP}")


def _from_response_error(exc: Any, *, action: str) -> RdsSslError:
    from alibabacloud_tea_openapi.exceptions import ThrottlingException

    data = exc.data if isinstance(exc.data, dict) else {}
    code = clean(getattr(exc, "code", None)) or clean(data.get("Code") or data.get("code"))
    if code in _NO_CREDENTIALS_CODES:
        return missing_credentials()
    status = to_int(getattr(exc, "status_code", None) or data.get("statusCode")) or None
    request_id = clean(getattr(exc, "request_id", None)) or clean(
        data.get("RequestId") or data.get("requestId")
    )
    message = clean(data.get("Message") or data.get("message"))
    if not message:  # no body: undo the SDK's "code: 400, <Message> request id: <id>" format
        text = clean(getattr(exc, "message", None))
        found = re.match(r"code: \d+, (.*) request id: .*$", text, re.S)
        message = clean(found.group(1)) if found else text
    cls, retryable = classify(code, status)
    if isinstance(exc, ThrottlingException):
        cls, retryable = Throttled, True
    return cls(
        message or code or "the RDS API returned an error without a message",
        action=action,
        code=code,
        request_id=request_id,
        http_status=status,
        retryable=retryable,
    )


def classify(code: str, http_status: int | None) -> tuple[type[ApiError], bool]:
    """(error class, retryable) for a service error Code (doc §4)."""
    if code.startswith("Throttling") or code in ("ConcurrentLimit", "Rejected.Throttling"):
        return Throttled, True
    if code in _BUSY_CODES:
        return InstanceBusy, True
    if code in _NOT_FOUND_CODES:
        return InstanceNotFound, False
    if code in _TRANSIENT_CODES or (http_status is not None and http_status >= 500):
        return ApiError, True
    return ApiError, False


def _unreachable(exc: BaseException, *, action: str, endpoint: str) -> ApiUnreachable:
    text = str(exc)  # used to classify only: it may contain the request URL and its parameters
    if "Failed to parse the value as json" in text:
        found = re.search(r"\b([45]\d\d)\b", text)
        status = int(found.group(1)) if found else None
        if status == 414:
            why = (
                "HTTP 414 Request-URI Too Large): the parameters are too long for the URL; "
                "shrink the CA bundle or the CRL (fewer CAs, drop long-expired revocations)"
            )
        elif status is not None:
            why = f"HTTP {status}): a gateway or proxy error; retry later or check the endpoint"
        else:
            why = "HTTP 414/502?): is this the RDS API? check --endpoint/RDSSSL_ENDPOINT"
        return ApiUnreachable(
            f"the RDS API at {endpoint} answered with a non-JSON page ({why}",
            action=action,
            http_status=status,
            retryable=status is not None and status >= 500,
        )
    reason, retryable = transport_reason(text)
    return ApiUnreachable(
        f"cannot reach the RDS API at {endpoint}: {reason} — check --endpoint/RDSSSL_ENDPOINT "
        "and the network",
        action=action,
        retryable=retryable,
    )


def transport_reason(text: str) -> tuple[str, bool]:
    """A short reason (and whether a retry may help) from a transport exception's text."""
    lowered = text.lower()
    if "refused" in lowered:
        return "connection refused", False
    if any(
        s in lowered
        for s in (
            "name resolution",
            "name or service not known",
            "nodename nor servname",
            "getaddrinfo",
            "no address",
        )
    ):
        return "the host name does not resolve", False
    if "timed out" in lowered or "timeout" in lowered:
        return "timed out", True
    if "ssl" in lowered or "certificate" in lowered:
        return "TLS failed (certificate or protocol)", False
    if any(s in lowered for s in ("reset", "aborted", "remotedisconnected", "broken pipe")):
        return "the connection was dropped", True
    return "transport error", True


# ------------------------------------------------------------------ the adapter


class AliyunRdsApi:
    """`RdsApi` over the official SDK. Building it imports the SDK and resolves credentials."""

    def __init__(self, settings: ApiSettings) -> None:
        self._settings = settings
        override = parse_endpoint(settings.endpoint) if settings.endpoint else None
        if override is None and not settings.region:
            raise ConfigError(
                f"no region: pass --region or set {ENV_REGION} "
                f"(or point --endpoint / {ENV_ENDPOINT} at an endpoint)"
            )
        credentials = _credential_options(settings.profile)
        from alibabacloud_credentials.exceptions import CredentialException
        from alibabacloud_rds20140815 import models
        from alibabacloud_rds20140815.client import Client
        from alibabacloud_tea_openapi.utils_models import Config
        from Tea.exceptions import TeaException

        for name in ("darabonba-core", "alibabacloud-tea"):
            logging.getLogger(name).disabled = True
        config = Config(
            region_id=settings.region,
            connect_timeout=settings.connect_timeout_ms,
            read_timeout=settings.read_timeout_ms,
            **credentials,
        )
        if override is not None:
            config.endpoint, config.protocol = override.host, override.protocol
        self._client: Any = Client(config)
        self._models: Any = models
        self._sdk_errors: tuple[type[BaseException], ...] = (
            TeaException,
            CredentialException,
            OSError,
        )
        self.endpoint = str(override) if override else f"https://{self._client._endpoint}"
        self._lock = threading.Lock()
        self._last_call = float("-inf")

    # -- reads

    def describe_instance(self, instance_id: str) -> InstanceInfo:
        request = self._models.DescribeDBInstanceAttributeRequest(dbinstance_id=instance_id)
        body = self._call(
            "DescribeDBInstanceAttribute",
            lambda: self._client.describe_dbinstance_attribute(request),
        )
        found = items(body, "Items", "DBInstanceAttribute")
        if not found:
            raise InstanceNotFound(
                f"instance {instance_id} not found (check the id and the region)",
                action="DescribeDBInstanceAttribute",
                code="InvalidDBInstanceId.NotFound",
                request_id=field(body, "RequestId"),
            )
        return instance_from(found[0], self._settings.region or "")

    def describe_ssl(self, instance_id: str) -> SslState:
        request = self._models.DescribeDBInstanceSSLRequest(dbinstance_id=instance_id)
        body = self._call(
            "DescribeDBInstanceSSL", lambda: self._client.describe_dbinstance_ssl(request)
        )
        return ssl_from(body)

    def describe_net_info(self, instance_id: str) -> list[NetInfo]:
        request = self._models.DescribeDBInstanceNetInfoRequest(dbinstance_id=instance_id)
        body = self._call(
            "DescribeDBInstanceNetInfo", lambda: self._client.describe_dbinstance_net_info(request)
        )
        return [net_info_from(i) for i in items(body, "DBInstanceNetInfos", "DBInstanceNetInfo")]

    def list_instances(
        self, *, region: str, tags: Mapping[str, str] | None = None, engine: str = "PostgreSQL"
    ) -> list[InstanceInfo]:
        """Every page of DescribeDBInstances. The service's Tags filter is OR, so each tag is
        listed on its own and the results intersected: k tags cost k listings, exact AND."""
        if not tags:
            return self._list_pages(region, engine, None)
        selected: dict[str, InstanceInfo] | None = None
        for key, value in tags.items():
            found = {i.instance_id: i for i in self._list_pages(region, engine, {key: value})}
            selected = (
                found if selected is None else {k: v for k, v in selected.items() if k in found}
            )
        return [replace(info, tags=dict(tags)) for info in (selected or {}).values()]

    def _list_pages(
        self, region: str, engine: str, tag: Mapping[str, str] | None
    ) -> list[InstanceInfo]:
        seen: dict[str, InstanceInfo] = {}
        for page in range(1, _MAX_PAGES + 1):
            request = self._models.DescribeDBInstancesRequest(
                region_id=region,
                engine=engine or None,
                page_size=PAGE_SIZE,
                page_number=page,
                tags=json.dumps(dict(tag)) if tag else None,
            )
            body = self._call(
                "DescribeDBInstances", partial(self._client.describe_dbinstances, request)
            )
            page_items = items(body, "Items", "DBInstance")
            for item in page_items:
                info = instance_from(item, region)
                seen.setdefault(info.instance_id, info)
            total = to_int(body.get("TotalRecordCount"))  # 0 when absent: then a short page ends
            if not page_items or (len(seen) >= total if total else len(page_items) < PAGE_SIZE):
                break
        return list(seen.values())

    def server_ca_pem(self, url: str) -> bytes:
        if urlsplit(url).scheme not in ("http", "https"):
            raise ApiError(f"ServerCAUrl {url!r} is not an http(s) URL", action="ServerCAUrl")
        data: bytes = self._call("ServerCAUrl", lambda: self._download(url), sdk=False)
        return data

    def _download(self, url: str) -> bytes:
        import urllib.error  # lazily: urllib.request pulls in http.client and ssl
        import urllib.request

        timeout = self._settings.read_timeout_ms / 1000
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response:
                data: bytes = response.read(1_000_000)
                return data
        except urllib.error.HTTPError as exc:
            raise ApiUnreachable(
                f"cannot download the server CA from {url}: HTTP {exc.code}",
                action="ServerCAUrl",
                http_status=exc.code,
                retryable=exc.code >= 500,
            ) from None
        except OSError as exc:  # URLError, timeouts, refused
            reason, retryable = transport_reason(str(exc))
            raise ApiUnreachable(
                f"cannot download the server CA from {url}: {reason} — check the network",
                action="ServerCAUrl",
                retryable=retryable,
            ) from None

    def request_target_fits(self, instance_id: str, target_bytes: int) -> bool:
        """Whether a DescribeDBInstanceSSL whose request target (`/?` + query, what an HTTP
        server's URL limit counts) is exactly `target_bytes` long gets past the gateway.

        The SDK sends `/?` + urlencode(DBInstanceId, OwnerAccount) (darabonba `compose_url`);
        the padding is letters, which urlencode leaves alone, so the length is exact. Raises
        ApiError for transport failures and 5xx pages: those say nothing about the length.
        """
        base = len("/?" + urlencode({"DBInstanceId": instance_id, "OwnerAccount": ""}))
        pad = target_bytes - base
        if pad < 1:
            raise ValueError(f"a request target of {target_bytes} bytes is below the minimum")
        request = self._models.DescribeDBInstanceSSLRequest(
            dbinstance_id=instance_id, owner_account="a" * pad
        )
        try:
            self._call(
                "DescribeDBInstanceSSL", lambda: self._client.describe_dbinstance_ssl(request)
            )
        except ApiUnreachable as exc:
            if exc.http_status is not None and 400 <= exc.http_status < 500:
                return False  # a gateway page (HTML 414): the request line was too long
            raise
        except ApiError:
            return True  # the service itself answered: the length passed the gateway
        return True

    # -- writes (not retried except where the service surely refused them)

    def modify_ssl(self, request: SslModifyRequest) -> str:
        params: dict[str, Any] = {
            "dbinstance_id": request.instance_id,
            "connection_string": request.connection_string,
        }
        if request.client_ca_enabled is not None:
            params["client_caenabled"] = int(request.client_ca_enabled)
        if request.client_ca_pem is not None:
            params["client_cacert"] = request.client_ca_pem
        if request.crl_enabled is not None:
            params["client_crl_enabled"] = int(request.crl_enabled)
        if request.crl_pem is not None:
            params["client_cert_revocation_list"] = request.crl_pem
        if request.acl is not None:
            params["acl"] = request.acl.value
        if request.replication_acl is not None:
            params["replication_acl"] = request.replication_acl.value
        sdk_request = self._models.ModifyDBInstanceSSLRequest(**params)
        body = self._call(
            "ModifyDBInstanceSSL",
            lambda: self._client.modify_dbinstance_ssl(sdk_request),
            mutating=True,
        )
        return field(body, "RequestId")

    def create_account(self, instance_id: str, name: str, password: str) -> str:
        request = self._models.CreateAccountRequest(
            dbinstance_id=instance_id,
            account_name=name,
            account_password=password,
        )
        body = self._call(
            "CreateAccount", lambda: self._client.create_account(request), mutating=True
        )
        return field(body, "RequestId")

    # -- the one call path

    def _call(
        self, action: str, fn: Callable[[], Any], *, mutating: bool = False, sdk: bool = True
    ) -> Any:
        """Run one API call with rate limiting, translation and bounded retries; returns the
        response body as a dict with the wire names (or `fn`'s value when `sdk` is False)."""

        def attempt() -> Any:
            self._pace()
            try:
                result = fn()
            except self._sdk_errors as exc:
                # `from None`: the SDK's exception text may contain the request URL
                raise translate_error(exc, action=action, endpoint=self.endpoint) from None
            return result.body.to_map() if sdk else result

        attempts = 1 if mutating else max(1, self._settings.retries + 1)
        retrying = Retrying(
            retry=retry_if_exception(_retry_read),
            stop=stop_after_attempt(attempts),
            # 0.5, 1, 2, 4, 8 s (+ up to 0.5 s jitter); composed so tenacity 8 and 9 agree
            wait=wait_exponential(multiplier=0.5, max=8.0) + wait_random(0, 0.5),
            sleep=self._settings.sleep,
            reraise=True,
        )
        return retrying(attempt)

    def _pace(self) -> None:
        """The optional rate limiter: at least `min_interval` seconds between calls."""
        if self._settings.min_interval <= 0:
            return
        with self._lock:
            wait = self._last_call + self._settings.min_interval - time.monotonic()
            if wait > 0:
                self._settings.sleep(wait)
            self._last_call = time.monotonic()


def _retry_read(exc: BaseException) -> bool:
    return isinstance(exc, ApiError) and exc.retryable


def _credential_options(profile: str | None) -> dict[str, Any]:
    """Config keyword arguments for the credential chain described in the module docstring."""
    env = os.environ
    if profile:
        return {"credential": _profile_credential(profile)}
    key_id, secret = env.get(ENV_ACCESS_KEY_ID, ""), env.get(ENV_ACCESS_KEY_SECRET, "")
    if key_id and secret:
        return {
            "access_key_id": key_id,
            "access_key_secret": secret,
            "security_token": env.get(ENV_SECURITY_TOKEN) or None,
        }
    if key_id or secret:
        missing, present = (
            (ENV_ACCESS_KEY_SECRET, ENV_ACCESS_KEY_ID)
            if key_id
            else (ENV_ACCESS_KEY_ID, ENV_ACCESS_KEY_SECRET)
        )
        raise ConfigError(
            f"{present} is set but {missing} is not: set both (or neither, to use "
            f"a profile or a RAM role)"
        )
    if env.get(ENV_PROFILE):
        return {"credential": _profile_credential(env[ENV_PROFILE])}
    from alibabacloud_credentials.client import Client as CredentialClient

    return {"credential": CredentialClient()}  # the default chain, resolved on the first call


def _profile_credential(name: str) -> Any:
    """A named profile from the aliyun CLI's config.json, else from credentials.ini."""
    from alibabacloud_credentials.client import Client as CredentialClient
    from alibabacloud_credentials.provider import (
        CLIProfileCredentialsProvider,
        ProfileCredentialsProvider,
    )

    for provider in (
        CLIProfileCredentialsProvider(profile_name=name),
        ProfileCredentialsProvider(profile_name=name),
    ):
        try:
            provider.get_credentials()
        except Exception:  # the chain's own errors: no file, no such profile, STS refused
            continue
        return CredentialClient(provider=provider)
    raise missing_credentials(
        f"profile {name!r} was not found or is not usable in ~/.aliyun/config.json or "
        "~/.alibabacloud/credentials.ini"
    )
