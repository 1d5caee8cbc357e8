"""Which rdsssl error a service answer or a transport failure becomes: classification by the
service's `Code`, not by HTTP status (docs/aliyun-rds-ssl-api.md §4), and a short reason for a
transport failure. The SDK's own text is used to classify only, never shown: it can hold the
request URL, and the URL holds every parameter. `rdsssl.rds.api.translate_error` (the one place
an SDK exception is looked at) calls these.
"""

from __future__ import annotations

import re
from typing import Any

from rdsssl.errors import (
    ApiError,
    ApiUnreachable,
    InstanceBusy,
    InstanceNotFound,
    RdsSslError,
    Throttled,
)
from rdsssl.rds.parse import clean, to_int
from rdsssl.rds.settings import missing_credentials

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


def response_error(exc: Any, *, action: str, throttled: bool) -> RdsSslError:
    """The error for a service answer (an SDK response exception, read through its attributes
    and ``data`` only): Code, the raw Message, HTTP status and RequestId kept; ``throttled`` when
    the SDK itself called it throttling."""
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
    if throttled:
        cls, retryable = Throttled, True
    return cls(
        message or code or "the RDS API returned an error without a message",
        action=action,
        code=code,
        request_id=request_id,
        http_status=status,
        retryable=retryable,
    )


def unreachable(exc: BaseException, *, action: str, endpoint: str) -> ApiUnreachable:
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
