"""The RDS OpenAPI boundary: an `RdsApi` Protocol and the adapter over the official Aliyun SDK.

This is the only module that imports the SDK (`alibabacloud_rds20140815`, `Tea`, `darabonba`,
`alibabacloud_tea_openapi`, `alibabacloud_credentials`), and it imports it lazily, when an
`AliyunRdsApi` is built, so `from rdsssl.rds.protocol import RdsApi` stays cheap and local commands
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
- What ModifyDBInstanceSSL sends is `rdsssl.rds.modify`'s decision; the response-error
  reading and transport classification are `rdsssl.rds.classify`'s, the ServerCAUrl download
  `rdsssl.rds.server_ca`'s.
- `request_target_fits` (only `rdsssl service-profile record` uses it) measures the gateway's
  URL limit with a DescribeDBInstanceSSL padded through `OwnerAccount`, a parameter of the SDK's
  own request model, so the call takes the SDK's ordinary path (no hand-built request); a dummy
  parameter would need `call_api` with hand-made Params. The gateway judges the request line
  before any parameter, so any JSON answer (success or a service error about the odd owner
  account) means the length passed; only a non-JSON 4xx page (Tengine's HTML 414) means too long.
- Logging goes to `logging.getLogger(__name__)`: each call's action at DEBUG, retries and the
  rate limiter's waits at INFO/DEBUG; never parameters, bodies or credentials. The SDK's own
  loggers (`darabonba-core`, `alibabacloud-tea`, `credentials`) are left alone: a library does
  not configure or silence another's logging. They print request lines (every query parameter,
  an STS token and CreateAccount's password included) only when the environment says
  `DEBUG=sdk`; the `rdsssl` command keeps them at WARNING and redacts those values (see
  `rdsssl.cli.logs`), a program embedding rdsssl decides for itself.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from functools import partial
from typing import Any, TypeVar
from urllib.parse import urlencode

from tenacity import (
    RetryCallState,
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
    InstanceNotFound,
    RdsSslError,
    Throttled,
    UsageError,
)
from rdsssl.models import InstanceInfo, NetInfo, SslModifyRequest, SslState
from rdsssl.rds.classify import response_error, unreachable
from rdsssl.rds.modify import modify_ssl_params
from rdsssl.rds.parse import field, instance_from, items, net_info_from, ssl_from, to_int
from rdsssl.rds.server_ca import check_url, download
from rdsssl.rds.settings import (
    ENV_ACCESS_KEY_ID,
    ENV_ACCESS_KEY_SECRET,
    ENV_PROFILE,
    ENV_SECURITY_TOKEN,
    ApiSettings,
    default_region,
    missing_credentials,
    parse_endpoint,
    region_error,
)

T = TypeVar("T")
log = logging.getLogger(__name__)
PAGE_SIZE = 100  # DescribeDBInstances maximum
_MAX_PAGES = 1000  # a guard against a service that never stops paging


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
            return unreachable(inner, action=action, endpoint=endpoint)
        return unreachable(exc, action=action, endpoint=endpoint)
    if isinstance(exc, TeaException):
        from alibabacloud_tea_openapi.exceptions import ThrottlingException

        return response_error(exc, action=action, throttled=isinstance(exc, ThrottlingException))
    return unreachable(exc, action=action, endpoint=endpoint)


# ------------------------------------------------------------------ the adapter


class AliyunRdsApi:
    """`RdsApi` over the official SDK. Building it imports the SDK and resolves credentials.

    A context manager: `with AliyunRdsApi(settings) as api: ...` closes it on the way out.
    The SDK client holds no connection of its own (darabonba sends through process-wide, pooled
    `requests` sessions shared by every client), so `close()` only drops the client and its
    credentials; it is idempotent, and a call on a closed adapter is a `UsageError`.
    """

    def __init__(self, settings: ApiSettings) -> None:
        override = parse_endpoint(settings.endpoint) if settings.endpoint else None
        if not settings.region:  # the aliyun CLI profile's, as `ApiSettings.from_env` does
            region = default_region(settings.profile)
            if region is None and override is None:
                raise region_error(settings.profile)
            settings = replace(settings, region=region)
        self._settings = settings
        credentials = _credential_options(settings.profile)
        from alibabacloud_credentials.exceptions import CredentialException
        from alibabacloud_rds20140815 import models
        from alibabacloud_rds20140815.client import Client
        from alibabacloud_tea_openapi.utils_models import Config
        from Tea.exceptions import TeaException

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
        self._closed = False

    def __enter__(self) -> AliyunRdsApi:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Drop the SDK client (and the credentials it holds); safe to call more than once."""
        self._closed = True
        self._client = None

    @property
    def closed(self) -> bool:
        return self._closed

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
        check_url(url)
        timeout = self._settings.read_timeout_ms / 1000
        data: bytes = self._call("ServerCAUrl", lambda: download(url, timeout), sdk=False)
        return data

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
        sdk_request = self._models.ModifyDBInstanceSSLRequest(**modify_ssl_params(request))
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

        if self._closed:
            raise UsageError(f"{action}: this AliyunRdsApi was closed; build a new one")

        def attempt() -> Any:
            self._pace(action)
            log.debug("calling %s", action)
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
            before_sleep=partial(_log_retry, action, attempts),
            reraise=True,
        )
        return retrying(attempt)

    def _pace(self, action: str) -> None:
        """The optional rate limiter: at least `min_interval` seconds between calls."""
        if self._settings.min_interval <= 0:
            return
        with self._lock:
            wait = self._last_call + self._settings.min_interval - time.monotonic()
            if wait > 0:
                log.debug("rate limit: waiting %.2fs before %s", wait, action)
                self._settings.sleep(wait)
            self._last_call = time.monotonic()


def _retry_read(exc: BaseException) -> bool:
    return isinstance(exc, ApiError) and exc.retryable


def _log_retry(action: str, attempts: int, state: RetryCallState) -> None:
    """One INFO line per retry: the action, the error's code (never its parameters), the wait."""
    exc = state.outcome.exception() if state.outcome is not None else None
    what = "throttled" if isinstance(exc, Throttled) else "retryable error"
    code = (getattr(exc, "code", None) or type(exc).__name__) if exc is not None else "?"
    log.info(
        "%s: %s (%s); attempt %d of %d, retrying in %.1fs",
        action,
        what,
        code,
        state.attempt_number,
        attempts,
        state.upcoming_sleep,
    )


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
