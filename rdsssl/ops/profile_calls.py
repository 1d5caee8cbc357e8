"""The calls a recording (`rdsssl.ops.profile_recorder`) makes on its instance, and how it
observes one change: the instance as found (`Original`), the options, and `Calls`, which the
measurements (`rdsssl.ops.profile_session`) and the restore (`rdsssl.ops.profile_restore`)
share.

`Calls` keeps what it learned as it goes, so whatever stops a recording, the restore knows
whether a ModifyDBInstanceSSL was attempted (`sent`) and what the instance last read back
(`last_ssl`). A change is observed by sampling the instance every `poll_interval` seconds
(`rdsssl.ops.profile_timeline` reads the samples): done once it was seen in progress and then
settled, or, never seen in progress, once it stayed settled for `settle` seconds. While a
change runs, the same call is sent once more: its error is the busy answer.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Protocol

from rdsssl.errors import (
    ApiError,
    ApiUnreachable,
    ChangeFailed,
    InstanceBusy,
    InstanceNotFound,
    Throttled,
    VerificationError,
    WaiterTimeout,
)
from rdsssl.models import MODIFY_FAILED, AclMode, InstanceInfo, SslModifyRequest, SslState
from rdsssl.ops.profile_pki import TemporaryPki, fingerprints_of
from rdsssl.ops.profile_timeline import NEW, OLD, Sample, Timing
from rdsssl.rds.protocol import RdsApi
from rdsssl.rds.waiters import DEFAULT_TIMEOUT, Reads

__all__ = [
    "DEFAULT_POLL_INTERVAL",
    "DEFAULT_SETTLE",
    "Calls",
    "Measured",
    "Original",
    "RecordOptions",
    "RecorderApi",
    "RestoreIncomplete",
    "acl_text",
]

DEFAULT_POLL_INTERVAL = 1.0
DEFAULT_SETTLE = 30.0  # a change never seen in progress is believed after this long
# Busy answers the adapter does not classify as busy: one documented code, plus the measured one.
_BUSY_LIKE = frozenset({"InvalideStatus.Format"})


class RecorderApi(RdsApi, Protocol):
    """`RdsApi` plus the padded Describe the URL-limit search needs (`AliyunRdsApi` has it)."""

    def request_target_fits(self, instance_id: str, target_bytes: int) -> bool:
        """Whether a Describe with a request target of `target_bytes` passes the gateway."""
        ...


class RestoreIncomplete(VerificationError):
    """The instance could not be put back as it was; the message says what is left over and
    how to restore it by hand."""


def _quiet(message: str) -> None:
    return None


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


@dataclass(frozen=True)
class Original:
    """The instance as found: what the restore puts back."""

    instance: InstanceInfo
    ssl: SslState

    @property
    def instance_id(self) -> str:
        return self.instance.instance_id

    @property
    def connection_string(self) -> str:
        """The endpoint ModifyDBInstanceSSL names: the one SSL protects."""
        return self.ssl.connection_string or self.instance.connection_string

    @property
    def has_ca(self) -> bool:
        return self.ssl.client_ca_pem is not None


@dataclass(frozen=True)
class RecordOptions:
    """How to record. `probe_user` / `probe_password`: a database account to connect as (the
    restart check and the TLS version need it). `sleep`, `clock` and `now` are injectable."""

    probe_user: str | None = None
    probe_password: str | None = field(default=None, repr=False)
    name: str | None = None
    poll_interval: float = DEFAULT_POLL_INTERVAL
    settle: float = DEFAULT_SETTLE
    timeout: float = DEFAULT_TIMEOUT
    lock: bool = True
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.monotonic
    now: Callable[[], datetime] = _utcnow
    info: Callable[[str], None] = _quiet
    warn: Callable[[str], None] = _quiet


@dataclass
class Measured:
    multi_ca_bundle: bool | None = None
    acl_change_restarts: bool | None = None
    busy_error: tuple[str, int] | None = None
    not_found_http_status: int | None = None
    url_limit: tuple[int | None] | None = None  # (value,) once measured: the value may be None
    tls_max_version: str | None = None
    acl_without_ca: str | None = None
    crlf_pem_readback: str | None = None
    ca_timing: Timing | None = None
    acl_timing: Timing | None = None
    sequences: dict[str, list[dict[str, Any]]] = field(default_factory=dict)


def acl_text(acl: AclMode | None) -> str:
    return "" if acl is None else acl.value


def _signature(ssl: SslState) -> tuple[object, ...]:
    """What tells two SSL read-backs apart (by fingerprint, so line ends do not count)."""
    return (
        fingerprints_of(ssl.client_ca_pem),
        fingerprints_of(ssl.crl_pem),
        ssl.acl,
        ssl.replication_acl,
    )


class Calls:
    """The reads and calls of one recording on one instance, and what they learned."""

    def __init__(
        self, api: RecorderApi, original: Original, pki: TemporaryPki, options: RecordOptions
    ) -> None:
        self.api = api
        self.original = original
        self.iid = original.instance_id
        self.pki = pki
        self.opts = options
        self.m = Measured()
        self.notes: list[str] = []
        self.sent = False  # a ModifyDBInstanceSSL was attempted: the restore must run
        self.changes = 0
        self.restore_sent: str | None = None  # the restore call's RequestId, once accepted
        self.last_ssl: SslState | None = original.ssl

    # -- reads and calls

    def read_ssl(self) -> SslState:
        ssl = self.api.describe_ssl(self.iid)
        self.last_ssl = ssl
        return ssl

    def reads(self) -> Reads:
        return Reads(ssl=self.read_ssl, instance=lambda: self.api.describe_instance(self.iid))

    def request(self, **fields: Any) -> SslModifyRequest:
        return SslModifyRequest(self.iid, self.original.connection_string, **fields)

    def send(self, request: SslModifyRequest) -> str:
        self.sent = True
        request_id = self.api.modify_ssl(request)
        self.changes += 1
        self.opts.info(f"{self.iid}: sent {request.summary()} (RequestId {request_id})")
        return request_id

    def is_busy(self, exc: ApiError) -> bool:
        known = {self.m.busy_error[0]} if self.m.busy_error else set()
        return isinstance(exc, InstanceBusy) or exc.code in _BUSY_LIKE | known

    def is_refusal(self, exc: ApiError) -> bool:
        """The service refused the parameters (nothing changed), as opposed to busy,
        throttled, unreachable or a 5xx."""
        transient = (ApiUnreachable, InstanceBusy, InstanceNotFound, Throttled)
        status = exc.http_status
        return (
            not isinstance(exc, transient)
            and not exc.retryable
            and not self.is_busy(exc)
            and status is not None
            and 400 <= status < 500
        )

    # -- one observed change

    def change(self, label: str, request: SslModifyRequest) -> tuple[list[Sample], SslState]:
        """Send `request` and sample the instance until the change is done (module doc)."""
        before = self.start(request)
        samples = self.watch(label, before, None)
        assert self.last_ssl is not None
        return samples, self.last_ssl

    def start(self, request: SslModifyRequest) -> SslState:
        """Read the instance (what "old" means for the samples), then send `request`."""
        before = self.read_ssl()
        self.send(request)
        return before

    def watch(
        self, label: str, before: SslState, busy_request: SslModifyRequest | None
    ) -> list[Sample]:
        opts = self.opts
        start = opts.clock()
        samples: list[Sample] = []
        seen = False
        stable_since: float | None = None
        shown: tuple[object, ...] | None = None
        while True:
            sample, ssl = self._sample(start, before)
            samples.append(sample)
            if sample.key() != shown:  # progress: each new state once
                shown = sample.key()
                opts.info(f"{label}: {sample.describe()}")
            stale = before.last_modify_status == MODIFY_FAILED and not seen
            if ssl is not None and ssl.last_modify_status == MODIFY_FAILED and not stale:
                raise ChangeFailed(
                    f"{self.iid}: the {label} failed: {ssl.modify_status_reason or 'no reason'}",
                    waiter=label, elapsed=sample.t,
                )  # fmt: skip
            if sample.in_progress:
                if not seen and busy_request is not None and self.m.busy_error is None:
                    self._busy_probe(busy_request)
                seen = True
            if sample.settled and seen:
                return samples
            if sample.settled:
                stable_since = sample.t if stable_since is None else stable_since
                if sample.t - stable_since >= opts.settle:
                    self.notes.append(f"{label}: never seen in progress; settled by waiting")
                    return samples
            else:
                stable_since = None
            if sample.t >= opts.timeout:
                raise WaiterTimeout(
                    f"{self.iid}: the {label} was not done after {sample.t:.0f}s",
                    waiter=label, elapsed=sample.t,
                )  # fmt: skip
            due = start + len(samples) * opts.poll_interval - opts.clock()
            opts.sleep(max(0.0, due))

    def _sample(self, start: float, before: SslState) -> tuple[Sample, SslState | None]:
        t = self.opts.clock() - start
        try:
            info = self.api.describe_instance(self.iid)
            ssl = self.read_ssl()
        except ApiError as exc:
            if not exc.retryable:
                raise
            return Sample(t, error=exc.code or type(exc).__name__), None
        readback = OLD if _signature(ssl) == _signature(before) else NEW
        return Sample(t, info.status, ssl.last_modify_status, readback), ssl

    def _busy_probe(self, request: SslModifyRequest) -> None:
        """The same call again while the change runs: what a busy instance answers."""
        self.sent = True
        try:
            self.api.modify_ssl(request)
        except ApiUnreachable as exc:
            self.notes.append(f"busy_error: the second call got no answer ({exc})")
        except ApiError as exc:
            if exc.code and exc.http_status is not None:
                self.m.busy_error = (exc.code, exc.http_status)
                self.opts.info(f"{self.iid}: busy answer {exc.code} (HTTP {exc.http_status})")
            else:
                self.notes.append(f"busy_error: the second call got {exc}")
        else:
            self.changes += 1
            self.notes.append("busy_error: a second call during the restart was accepted")
