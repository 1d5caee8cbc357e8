"""Downloading the cloud server CA from DescribeDBInstanceSSL's ServerCAUrl: a plain HTTP(S)
GET, not an SDK call, so it lives apart from the adapter (`rdsssl.rds.api` runs it through its
one call path for pacing and retries). A failure is an `ApiUnreachable` with a short reason,
retryable for 5xx answers and transient transport failures.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from rdsssl.errors import ApiError, ApiUnreachable
from rdsssl.rds.classify import transport_reason

__all__ = ["MAX_BYTES", "check_url", "download"]

MAX_BYTES = 1_000_000  # a CA certificate is a few kB; more is not a certificate


def check_url(url: str) -> None:
    """ApiError unless ``url`` is an http(s) URL."""
    if urlsplit(url).scheme not in ("http", "https"):
        raise ApiError(f"ServerCAUrl {url!r} is not an http(s) URL", action="ServerCAUrl")


def download(url: str, timeout: float) -> bytes:
    """The body of ``url`` (at most ``MAX_BYTES``), within ``timeout`` seconds."""
    import urllib.error  # lazily: urllib.request pulls in http.client and ssl
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            data: bytes = response.read(MAX_BYTES)
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
