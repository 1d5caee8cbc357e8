"""One recording session of `rdsssl service-profile record`: the measurements on the instance,
the temporary PKI they use, and the restore mechanics (`rdsssl.ops.profile_recorder` is the entry
point; its docstring gives the sequence and the reasons for it).

`Session.measure` runs the steps in order and keeps what it learned in `Session.m` as it goes,
so whatever stops it, `Session.restore` knows whether a ModifyDBInstanceSSL was attempted and
what the instance last read back (`Session.leftovers` describes the difference from the
original without a new call, for a report after a second Ctrl-C).
"""

from __future__ import annotations

import secrets
import string
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Protocol

from rdsssl.errors import (
    ApiError,
    ApiUnreachable,
    ChangeFailed,
    ConfigError,
    InstanceBusy,
    InstanceNotFound,
    RdsSslError,
    Throttled,
    VerificationError,
    WaiterTimeout,
)
from rdsssl.models import MODIFY_FAILED, AclMode, InstanceInfo, SslModifyRequest, SslState
from rdsssl.ops.probe import ProbeTarget, ServerFacts, probe_target, server_facts
from rdsssl.ops.profile_timeline import NEW, OLD, Sample, Timing, analyse, restart_statuses
from rdsssl.pki import crypto
from rdsssl.rds.acceptors import instance_ready, ssl_applied
from rdsssl.rds.api import RdsApi
from rdsssl.rds.waiters import DEFAULT_TIMEOUT, Reads, wait_until
from rdsssl.store.fsutil import atomic_write

__all__ = [
    "ACL_RESTART_SHARE",
    "CA_NAMES",
    "DEFAULT_POLL_INTERVAL",
    "DEFAULT_SETTLE",
    "URL_RESOLUTION",
    "URL_SEARCH_MAX",
    "URL_SEARCH_MIN",
    "Measured",
    "Options",
    "Original",
    "RecorderApi",
    "RestoreIncomplete",
    "Session",
    "TemporaryPki",
    "acl_text",
    "fingerprints_of",
    "made_up_id",
    "search_url_limit",
]

URL_SEARCH_MIN = 1024
URL_SEARCH_MAX = 63 * 1024
URL_RESOLUTION = 256
DEFAULT_POLL_INTERVAL = 1.0
DEFAULT_SETTLE = 30.0  # a change never seen in progress is believed after this long
ACL_RESTART_SHARE = 0.75
# Busy answers the adapter does not classify as busy: one documented code, plus the measured one.
_BUSY_LIKE = frozenset({"InvalideStatus.Format"})
CA_NAMES = ("rdsssl profile recorder CA 1", "rdsssl profile recorder CA 2")
_ID_CHARS = string.ascii_lowercase + string.digits


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


# ------------------------------------------------------------------ the instance and the options


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


def _acl_target(current: AclMode | None) -> AclMode:
    return AclMode.PREFER if current is AclMode.VERIFY_CA else AclMode.VERIFY_CA


@dataclass(frozen=True)
class Options:
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


# ------------------------------------------------------------------ the temporary PKI


@dataclass(frozen=True)
class _Leaf:
    cert: Path
    key: Path


@dataclass(frozen=True)
class TemporaryPki:
    """Two throwaway CAs (LF PEM text) and, with a probe user, a certificate of each for it."""

    ca_pems: tuple[str, str]
    leaves: tuple[_Leaf, _Leaf] | None
    root: Path

    @classmethod
    def make(cls, root: Path, user: str | None, *, now: datetime) -> TemporaryPki:
        pems: list[str] = []
        leaves: list[_Leaf] = []
        for number, cn in enumerate(CA_NAMES, start=1):
            key = crypto.generate_key()
            ca = crypto.make_ca(key, cn=cn, now=now, days=7)
            pems.append(crypto.cert_pem(ca).decode("ascii"))
            if user is not None:
                leaf_key = crypto.generate_key()
                issued = crypto.issue_client_cert(
                    ca, key, leaf_key.public_key(), user=user, now=now, days=2
                )
                leaf = _Leaf(root / f"client{number}.crt", root / f"client{number}.key")
                atomic_write(leaf.cert, crypto.cert_pem(issued.cert), mode=0o600)
                atomic_write(leaf.key, crypto.key_pem(leaf_key), mode=0o600)
                leaves.append(leaf)
        pair = (leaves[0], leaves[1]) if leaves else None
        return cls((pems[0], pems[1]), pair, root)

    def fingerprints(self) -> tuple[str, str]:
        first, second = (sorted(fingerprints_of(pem)) for pem in self.ca_pems)
        return first[0], second[0]


def fingerprints_of(pem: str | None) -> frozenset[str]:
    if not pem or not pem.strip():
        return frozenset()
    try:
        return crypto.pem_fingerprints(pem.encode("utf-8"), source="the read-back")
    except RdsSslError:
        return frozenset({"unparsable:" + pem.strip()[:32]})


def _signature(ssl: SslState) -> tuple[object, ...]:
    """What tells two SSL read-backs apart (by fingerprint, so line ends do not count)."""
    return (
        fingerprints_of(ssl.client_ca_pem),
        fingerprints_of(ssl.crl_pem),
        ssl.acl,
        ssl.replication_acl,
    )


# ------------------------------------------------------------------ what is measured


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


class Session:
    """One recording on one instance: the measurements, then the restore."""

    def __init__(
        self, api: RecorderApi, original: Original, pki: TemporaryPki, options: Options
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
        self.target: ProbeTarget | None = None
        self.server_ca: Path | None = None

    # -- reads and calls

    def _read_ssl(self) -> SslState:
        ssl = self.api.describe_ssl(self.iid)
        self.last_ssl = ssl
        return ssl

    def _reads(self) -> Reads:
        return Reads(ssl=self._read_ssl, instance=lambda: self.api.describe_instance(self.iid))

    def _request(self, **fields: Any) -> SslModifyRequest:
        return SslModifyRequest(self.iid, self.original.connection_string, **fields)

    def _send(self, request: SslModifyRequest) -> str:
        self.sent = True
        request_id = self.api.modify_ssl(request)
        self.changes += 1
        self.opts.info(f"{self.iid}: sent {request.summary()} (RequestId {request_id})")
        return request_id

    def _is_busy(self, exc: ApiError) -> bool:
        known = {self.m.busy_error[0]} if self.m.busy_error else set()
        return isinstance(exc, InstanceBusy) or exc.code in _BUSY_LIKE | known

    def _is_refusal(self, exc: ApiError) -> bool:
        """The service refused the parameters (nothing changed), as opposed to busy,
        throttled, unreachable or a 5xx."""
        transient = (ApiUnreachable, InstanceBusy, InstanceNotFound, Throttled)
        status = exc.http_status
        return (
            not isinstance(exc, transient)
            and not exc.retryable
            and not self._is_busy(exc)
            and status is not None
            and 400 <= status < 500
        )

    # -- the measurements

    def measure(self) -> None:
        """Every step of the module docstring except the restore."""
        self._not_found()
        self._url_limit()
        self._probe_setup()
        if self.original.has_ca:
            _, final = self._change("ca_off", self._request(client_ca_enabled=False))
            self.m.acl_without_ca = acl_text(final.acl)
        else:
            self.m.acl_without_ca = acl_text(self.original.ssl.acl)
        self._install_temp_ca()
        self._check_trust()
        self._acl_change()

    def _not_found(self) -> None:
        fake = made_up_id(self.iid)
        try:
            self.api.describe_ssl(fake)
        except ApiUnreachable:
            raise
        except ApiError as exc:
            if exc.http_status is None:
                self.notes.append(f"not_found_http_status: {exc.code or 'the error'} had no status")
                return
            self.m.not_found_http_status = exc.http_status
            if exc.code != "InvalidDBInstanceId.NotFound":
                self.notes.append(
                    f"not_found_http_status: a made-up id got {exc.code or '-'} "
                    f"(HTTP {exc.http_status}), not InvalidDBInstanceId.NotFound"
                )
            return
        self.notes.append(f"not_found_http_status: the made-up id {fake} was answered")

    def _url_limit(self) -> None:
        limit = search_url_limit(lambda size: self.api.request_target_fits(self.iid, size))
        self.m.url_limit = (limit,)
        if limit is not None:
            self.opts.info(f"{self.iid}: the longest request target accepted: about {limit} bytes")

    def _probe_setup(self) -> None:
        if self.opts.probe_user is None:
            return
        try:
            self.target = probe_target(self.api, self.iid)
            url = self.original.ssl.server_ca_url
            if not url:
                raise ConfigError("the instance reports no ServerCAUrl")
            self.server_ca = self.pki.root / "server-ca.pem"
            atomic_write(self.server_ca, self.api.server_ca_pem(url), mode=0o600)
        except (ApiError, ConfigError) as exc:
            self.target = None
            self.notes.append(f"probe: cannot prepare a connection ({exc}); nothing is probed")

    def _facts(self, leaf: int) -> ServerFacts | None:
        """A probe session with the certificate of temporary CA `leaf` (0 or 1)."""
        if self.target is None or self.pki.leaves is None or self.opts.probe_user is None:
            return None
        files = self.pki.leaves[leaf]
        result, facts = server_facts(
            self.target, user=self.opts.probe_user, cert=files.cert, key=files.key,
            root_cert=self.server_ca, password=self.opts.probe_password,
        )  # fmt: skip
        if facts is None:
            self.notes.append(
                f"probe with a certificate of temporary CA {leaf + 1}: "
                f"{result.outcome.value}: {result.detail}"
            )
        return facts

    def _install_temp_ca(self) -> None:
        """Step 3: the bundle, or one CA; CRLF, or LF (module docstring)."""
        fp1, fp2 = self.pki.fingerprints()
        bundle_ok: bool | None = None
        refused: dict[tuple[str, bool], ApiError] = {}
        attempts = (("bundle", True), ("single", True), ("bundle", False), ("single", False))
        for kind, crlf in attempts:
            if kind == "bundle" and bundle_ok is False:
                continue
            pem = "".join(self.pki.ca_pems) if kind == "bundle" else self.pki.ca_pems[0]
            if crlf:
                pem = pem.replace("\n", "\r\n")
            request = self._request(client_ca_enabled=True, client_ca_pem=pem)
            label = f"a {'two-CA bundle' if kind == 'bundle' else 'single CA'} with " + (
                "CRLF" if crlf else "LF"
            )
            try:
                before = self._start(request)
            except ApiError as exc:  # the call itself: a refusal changed nothing
                if not self._is_refusal(exc):
                    raise
                refused[(kind, crlf)] = exc
                self.notes.append(f"{label} was refused: {exc.code or exc}")
                continue
            try:
                samples = self._watch("ca_change", before, request)
            except ChangeFailed as exc:
                if kind != "bundle":
                    raise
                bundle_ok = False
                self.notes.append(f"{label} was accepted, then failed: {exc}")
                continue
            assert self.last_ssl is not None
            final = self.last_ssl
            read = fingerprints_of(final.client_ca_pem)
            if kind == "bundle":
                bundle_ok = fp1 in read and fp2 in read
                if not bundle_ok:
                    self.notes.append(f"{label} was accepted but read back without both CAs")
            elif ("bundle", crlf) in refused:
                bundle_ok = False
            if crlf:
                self.m.crlf_pem_readback = "exact" if final.client_ca_pem == pem else "normalized"
            elif ("single", True) in refused:
                self.notes.append("crlf_pem_readback: PEMs with CRLF line ends were refused")
            if fp1 not in read:
                self.notes.append("the temporary CA does not read back; probes will fail")
            self.m.ca_timing = analyse(samples)
            self.m.sequences["ca_change"] = [s.to_json() for s in samples]
            self.m.multi_ca_bundle = bundle_ok
            return
        last = refused[("single", False)]
        raise ApiError(
            f"the service refuses the recorder's temporary client CA ({last.raw_message})",
            action=last.action, code=last.code, request_id=last.request_id,
            http_status=last.http_status,
        )  # fmt: skip

    def _check_trust(self) -> None:
        """TLS version, and whether the second CA of an accepted bundle is really trusted."""
        first = self._facts(0)
        if first is None:
            if self.opts.probe_user is not None:
                self.notes.append("tls_max_version: no probe connection succeeded")
            return
        self.m.tls_max_version = first.tls_version
        if self.m.multi_ca_bundle and self._facts(1) is None:
            self.m.multi_ca_bundle = False
            self.notes.append(
                "multi_ca_bundle: the bundle reads back, but a certificate of its second CA "
                "was refused by PostgreSQL"
            )

    def _acl_change(self) -> None:
        """Step 4: one ACL-only change; did PostgreSQL restart?"""
        current = self._read_ssl()
        target = _acl_target(current.acl)
        before = self._facts(0)
        samples, _ = self._change("acl_change", self._request(acl=target))
        self.m.acl_timing = analyse(samples)
        self.m.sequences["acl_change"] = [s.to_json() for s in samples]
        after = self._facts(0) if before is not None else None
        if before is not None and after is not None:
            self.m.acl_change_restarts = after.started != before.started
            self.notes.append(
                "acl_change_restarts: measured, pg_postmaster_start_time() before and after"
            )
            return
        restart_words = restart_statuses(samples)
        ca_busy = self.m.ca_timing.busy if self.m.ca_timing else None
        acl_busy = self.m.acl_timing.busy
        if restart_words:
            self.m.acl_change_restarts = True
            evidence = f"inferred: the status {restart_words[0]} was seen"
        elif ca_busy and acl_busy is not None:
            self.m.acl_change_restarts = acl_busy >= ACL_RESTART_SHARE * ca_busy
            evidence = (
                f"inferred: busy {acl_busy:g}s for the ACL change against {ca_busy:g}s for the "
                f"CA change (a restart if at least {ACL_RESTART_SHARE:g} of it)"
            )
        else:
            self.notes.append("acl_change_restarts: no probe connection and no busy phase seen")
            return
        self.notes.append(f"acl_change_restarts: {evidence}")

    # -- one observed change

    def _change(self, label: str, request: SslModifyRequest) -> tuple[list[Sample], SslState]:
        """Send `request` and sample the instance until the change is done (module doc)."""
        before = self._start(request)
        samples = self._watch(label, before, None)
        assert self.last_ssl is not None
        return samples, self.last_ssl

    def _start(self, request: SslModifyRequest) -> SslState:
        """Read the instance (what "old" means for the samples), then send `request`."""
        before = self._read_ssl()
        self._send(request)
        return before

    def _watch(
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
            ssl = self._read_ssl()
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

    # -- the restore

    def restore(self) -> str:
        """Put the original client CA, CRL and ACLs back in one call and verify the read-back.
        Raises (an ApiError, a WaiterError or RestoreIncomplete) when it cannot."""
        if not self.sent:
            return "nothing was changed"
        reads = self._reads()
        wait_until(
            instance_ready(timeout=self.opts.timeout), reads, timeout=self.opts.timeout,
            sleep=self.opts.sleep, clock=self.opts.clock,
        )  # fmt: skip
        request = self._restore_request()
        started = self.opts.clock()
        while True:
            try:
                self.restore_sent = self._send(request)
                break
            except ApiError as exc:  # a change still queued (status lag) refuses ours
                if not self._is_busy(exc) or self.opts.clock() - started > self.opts.timeout:
                    raise
                self.opts.sleep(self.opts.poll_interval)
                wait_until(
                    instance_ready(timeout=self.opts.timeout), reads,
                    sleep=self.opts.sleep, clock=self.opts.clock,
                )  # fmt: skip
        wait_until(
            ssl_applied(self._is_original, timeout=self.opts.timeout, settle=self.opts.settle),
            reads, sleep=self.opts.sleep, clock=self.opts.clock,
        )  # fmt: skip
        final = self._read_ssl()
        if not self._is_original(final):
            raise RestoreIncomplete(f"{self.iid} reads back {self.leftovers(final)}")
        if self.original.has_ca:
            return "the original client CA, CRL and ACLs read back"
        return "the client CA is off again, as it was"

    def _restore_request(self) -> SslModifyRequest:
        ssl = self.original.ssl
        if not self.original.has_ca:
            return self._request(client_ca_enabled=False)
        return self._request(
            client_ca_enabled=True,
            client_ca_pem=ssl.client_ca_pem,
            crl_enabled=True if ssl.crl_pem else None,
            crl_pem=ssl.crl_pem,
            acl=ssl.acl,
            replication_acl=ssl.replication_acl,
        )

    def _is_original(self, ssl: SslState) -> bool:
        want = self.original.ssl
        if fingerprints_of(ssl.client_ca_pem) != fingerprints_of(want.client_ca_pem):
            return False
        if fingerprints_of(ssl.crl_pem) != fingerprints_of(want.crl_pem):
            return False
        if not self.original.has_ca:
            return True
        return (want.acl is None or ssl.acl == want.acl) and (
            want.replication_acl is None or ssl.replication_acl == want.replication_acl
        )

    def leftovers(self, current: SslState | None) -> str:
        """What differs from the original, from the last read (no new call)."""
        if current is None:
            return "an unknown state (it could not be read)"
        want = self.original.ssl
        parts = []
        if fingerprints_of(current.client_ca_pem) != fingerprints_of(want.client_ca_pem):
            parts.append(
                f"client CA {self._ca_text(current.client_ca_pem)} instead of "
                f"{self._ca_text(want.client_ca_pem)}"
            )
        if fingerprints_of(current.crl_pem) != fingerprints_of(want.crl_pem):
            parts.append(
                f"CRL {'none' if not current.crl_pem else 'present'} instead of "
                f"{'none' if not want.crl_pem else 'the original CRL'}"
            )
        if self.original.has_ca:
            for name, now, was in (
                ("ACL", current.acl, want.acl),
                ("ReplicationACL", current.replication_acl, want.replication_acl),
            ):
                if was is not None and now != was:
                    parts.append(f"{name} {acl_text(now) or 'none'} instead of {was.value}")
        return "; ".join(parts) or "the original settings (a change may still be pending)"

    def _ca_text(self, pem: str | None) -> str:
        fps = fingerprints_of(pem)
        if not fps:
            return "none"
        if fps <= set(self.pki.fingerprints()):
            return "the recorder's temporary CA"
        if fps == fingerprints_of(self.original.ssl.client_ca_pem):
            return "the original CA"
        return f"another CA ({len(fps)} certificate(s))"


def search_url_limit(fits: Callable[[int], bool]) -> int | None:
    """The longest request target `fits` accepts, to `URL_RESOLUTION` bytes (the largest
    multiple of it that passes), searched between `URL_SEARCH_MIN` and `URL_SEARCH_MAX`;
    None when even the maximum passes. Below the minimum the search goes on down to
    `URL_RESOLUTION` (a plain Describe, about 50 bytes, is known to pass)."""
    if fits(URL_SEARCH_MAX):
        return None
    lo, hi = URL_SEARCH_MIN, URL_SEARCH_MAX
    if not fits(lo):
        lo, hi = URL_RESOLUTION, URL_SEARCH_MIN
    while hi - lo > URL_RESOLUTION:
        mid = max(lo + URL_RESOLUTION, (lo + hi) // 2 // URL_RESOLUTION * URL_RESOLUTION)
        if fits(mid):
            lo = mid
        else:
            hi = mid
    return lo


def acl_text(acl: AclMode | None) -> str:
    return "" if acl is None else acl.value


def made_up_id(instance_id: str) -> str:
    """An id shaped like `instance_id` (same prefix and length) that names no instance."""
    prefix, dash, rest = instance_id.partition("-")
    if not dash:
        prefix, rest = "pgm", instance_id
    while True:
        made = prefix + "-" + "".join(secrets.choice(_ID_CHARS) for _ in range(max(16, len(rest))))
        if made != instance_id:
            return made
