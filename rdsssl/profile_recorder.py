"""`rdsssl service-profile record`: settle the unknowns of the real RDS service on a throwaway
instance, and put the instance back as it was.

The documentation leaves open how a change shows (status lag, early read-back), how long it
takes, whether an ACL-only change restarts, whether a two-CA bundle is accepted, which code a
busy instance answers, the URL limit, the TLS version and whether PEMs come back byte-exact
(docs/aliyun-rds-ssl-api.md, §10 and "Review of the emulator"). The recorder measures each on
one instance and writes a service profile (format 1: `rdsssl.emulator.profiles` replays it,
`rdsssl.service_profile` reads it for the waiters).

The sequence, chosen to cost as few restarts as possible:
1. No change: a Describe of a made-up id (the NotFound HTTP status) and padded Describe calls
   (a binary search of the URL limit between 1 KiB and 63 KiB, to 256 bytes; 63 KiB keeps the
   request line under the 64 KiB that common HTTP servers take, so "no limit found" is null).
2. Only if the instance has a client CA: disable it (a restart) to read what the ACL shows
   without one. Without a client CA the original read-back already says it.
3. Enable a temporary two-CA bundle sent with CRLF line ends (a restart). A refused call
   changes nothing, so a refusal costs no restart: then one CA with CRLF, then the bundle and
   one CA with LF; which one passes tells the bundle answer from the CRLF one. While the
   restart runs, the same call is sent again: its error is the busy answer.
4. An ACL-only change (prefer <-> verify-ca). With a probe user, `pg_postmaster_start_time()`
   before and after says whether PostgreSQL restarted. Without one it is inferred from the
   status sequence: a status naming a restart (`Rebooting`...) means yes; otherwise an ACL
   change busy for at least 3/4 of the CA change's time counts as a restart (the documented
   lengths are ~1 min for an ACL lock and ~3 min for a restart). The JSON output says which.
5. Restore the original client CA, CRL and ACLs in ONE call (a restart), verified by
   read-back through `rdsssl.waiters`; an instance that had no client CA ends with none.

The samples of steps 3 and 4 are polled every `poll_interval` seconds by the recorder itself
(`rdsssl.profile_timeline`), since it measures them; readiness and the restore use the
waiters. The temporary CAs and the probe user's certificates are made with `rdsssl.crypto` in
a temporary directory: the user's CA store is never touched.

Restoring: the original PEMs and ACLs are saved next to `--out` (0600) before the first
change. Whatever stops the recording (an error, Ctrl-C, SIGTERM), the restore runs; a second
Ctrl-C abandons it and the report says what is left over and the commands that restore it by
hand from the saved files. The saved files are removed once the restore is verified.

A value that could not be measured is left out of the profile (its documented answer then
applies) and a note says why: writing null would claim an answer (for `tls_max_version`, null
means "no cap"). The profile is checked by both readers before it is written.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import string
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Protocol

from rdsssl import crypto
from rdsssl.api import RdsApi
from rdsssl.errors import (
    ApiError,
    ApiUnreachable,
    ChangeFailed,
    ConfigError,
    InputError,
    InstanceBusy,
    InstanceNotFound,
    RdsSslError,
    Throttled,
    VerificationError,
    WaiterTimeout,
)
from rdsssl.fsutil import atomic_write
from rdsssl.models import (
    LOCK_UNLOCK,
    MODIFY_FAILED,
    MODIFY_SETTING,
    STATUS_RUNNING,
    AclMode,
    InstanceInfo,
    SslModifyRequest,
    SslState,
)
from rdsssl.paths import instance_lock
from rdsssl.probe import ProbeTarget, ServerFacts, probe_target, server_facts
from rdsssl.profile_timeline import NEW, OLD, Sample, Timing, analyse, restart_statuses
from rdsssl.waiters import Reads, instance_ready, ssl_applied, wait_until

__all__ = [
    "ACL_RESTART_SHARE",
    "DEFAULT_POLL_INTERVAL",
    "DEFAULT_SETTLE",
    "URL_SEARCH_MAX",
    "URL_SEARCH_MIN",
    "Options",
    "Original",
    "RecorderApi",
    "Recording",
    "RestoreIncomplete",
    "SavedFiles",
    "Step",
    "by_hand",
    "check_out",
    "describe_steps",
    "planned_steps",
    "preflight",
    "record",
    "search_url_limit",
]

FORMAT = 1
URL_SEARCH_MIN = 1024
URL_SEARCH_MAX = 63 * 1024
URL_RESOLUTION = 256
DEFAULT_POLL_INTERVAL = 1.0
DEFAULT_SETTLE = 30.0  # a change never seen in progress is believed after this long
DEFAULT_TIMEOUT = 1800.0  # per change, as the waiters
ACL_RESTART_SHARE = 0.75
# Busy answers the adapter does not classify as busy: one documented code, plus the measured one.
_BUSY_LIKE = frozenset({"InvalideStatus.Format"})
_CA_NAMES = ("rdsssl profile recorder CA 1", "rdsssl profile recorder CA 2")
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


# ------------------------------------------------------------------ before any change


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


def preflight(api: RdsApi, instance_id: str) -> Original:
    """Read the instance; InputError (exit 3) unless it can be recorded on right now: SSL on,
    Running, unlocked, no SSL change in progress. Makes Describe calls only."""
    info = api.describe_instance(instance_id)
    ssl = api.describe_ssl(instance_id)
    if not ssl.ssl_enabled:
        raise InputError(
            f"{instance_id}: SSL is off; turn it on in the console first (the recorder measures "
            "client-CA changes, which need server SSL, and never sends SSLEnabled itself)"
        )
    if info.lock_mode not in ("", LOCK_UNLOCK):
        raise InputError(
            f"{instance_id} is locked (LockMode {info.lock_mode}); nothing can be changed on it"
        )
    if info.status != STATUS_RUNNING or ssl.last_modify_status == MODIFY_SETTING:
        raise InputError(
            f"{instance_id} is busy (status {info.status or '-'}, LastModifyStatus "
            f"{ssl.last_modify_status or '-'}); wait for it (rdsssl instance wait "
            f"{instance_id}) and run again"
        )
    if not (ssl.connection_string or info.connection_string):
        raise InputError(f"{instance_id} reports no connection string to name in the calls")
    if _carries_temporary_ca(ssl.client_ca_pem):
        raise InputError(
            f"{instance_id} still has the recorder's temporary client CA: an earlier recording "
            "was not restored. Restore it first from that run's FILE.original.json (it lists "
            "the commands), then record again"
        )
    return Original(info, ssl)


def _carries_temporary_ca(pem: str | None) -> bool:
    if not pem:
        return False
    try:
        certs = crypto.load_certificates(pem.encode("utf-8"), source="the client CA")
    except RdsSslError:
        return False
    return any((crypto.cn_of(c.subject) or "") in _CA_NAMES for c in certs)


def check_out(out: Path) -> SavedFiles:
    """InputError unless `out` can be written and no earlier run left its saved originals
    next to it (they may be the only record of the instance's real settings)."""
    if not out.parent.is_dir():
        raise InputError(f"--out {out}: the directory {out.parent} does not exist")
    saved = SavedFiles.next_to(out)
    if saved.existing():
        raise InputError(
            f"{saved.existing()[0]} exists: an earlier recording did not finish restoring its "
            "instance. Restore it with the commands in that file (or check that it is "
            "restored: rdsssl instance show ID), remove the file, then record again"
        )
    return saved


@dataclass(frozen=True)
class Step:
    """One step of a recording as shown before it starts. `effect`: none, restart, acl-lock."""

    effect: str
    text: str


def planned_steps(original: Original) -> list[Step]:
    """What a recording will do to this instance, in order (every restart listed)."""
    steps = [
        Step("none", "Describe a made-up instance id (the HTTP status of NotFound)"),
        Step("none", "padded DescribeDBInstanceSSL calls: the URL length limit (up to 63 KiB)"),
    ]
    if original.has_ca:
        steps.append(Step("restart", "disable the client CA (what the ACL reads back without one)"))
    steps.append(
        Step(
            "restart",
            "enable a temporary two-CA bundle sent with CRLF line ends (one CA if the bundle "
            "is refused: a refused call changes nothing); the same call is sent again during "
            "the restart to record the busy answer",
        )
    )
    steps.append(
        Step(
            "acl-lock",
            "ACL-only change, prefer <-> verify-ca (a lock of ~1 min; whether it restarts "
            "PostgreSQL is what is measured)",
        )
    )
    if original.has_ca:
        what = "restore the original client CA, CRL and ACLs in one call"
    else:
        what = "disable the client CA again (the instance has none now)"
    steps.append(Step("restart", what))
    return steps


def _acl_target(current: AclMode | None) -> AclMode:
    return AclMode.PREFER if current is AclMode.VERIFY_CA else AclMode.VERIFY_CA


# ------------------------------------------------------------------ options and results


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


@dataclass(frozen=True)
class SavedFiles:
    """Where the original settings are kept until the restore is verified (next to --out)."""

    json: Path
    ca: Path
    crl: Path

    @classmethod
    def next_to(cls, out: Path) -> SavedFiles:
        return cls(
            out.with_name(out.name + ".original.json"),
            out.with_name(out.name + ".original-ca.pem"),
            out.with_name(out.name + ".original-crl.pem"),
        )

    def existing(self) -> list[Path]:
        return [p for p in (self.json, self.ca, self.crl) if p.exists()]

    def remove(self) -> None:
        for path in (self.json, self.ca, self.crl):
            path.unlink(missing_ok=True)


@dataclass(frozen=True)
class Recording:
    """A finished recording: the profile written to `out`, notes on what could not be measured
    or was inferred, and how the instance was restored."""

    profile: dict[str, Any]
    notes: tuple[str, ...]
    out: Path
    restored: str
    changes: int  # ModifyDBInstanceSSL calls that changed the instance, the restore included


# ------------------------------------------------------------------ the temporary PKI


@dataclass(frozen=True)
class _Leaf:
    cert: Path
    key: Path


@dataclass(frozen=True)
class _Pki:
    """Two throwaway CAs (LF PEM text) and, with a probe user, a certificate of each for it."""

    ca_pems: tuple[str, str]
    leaves: tuple[_Leaf, _Leaf] | None
    root: Path

    @classmethod
    def make(cls, root: Path, user: str | None, *, now: datetime) -> _Pki:
        pems: list[str] = []
        leaves: list[_Leaf] = []
        for number, cn in enumerate(_CA_NAMES, start=1):
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
        first, second = (sorted(_fps(pem)) for pem in self.ca_pems)
        return first[0], second[0]


def _fps(pem: str | None) -> frozenset[str]:
    if not pem or not pem.strip():
        return frozenset()
    try:
        return crypto.pem_fingerprints(pem.encode("utf-8"), source="the read-back")
    except RdsSslError:
        return frozenset({"unparsable:" + pem.strip()[:32]})


def _signature(ssl: SslState) -> tuple[object, ...]:
    """What tells two SSL read-backs apart (by fingerprint, so line ends do not count)."""
    return (_fps(ssl.client_ca_pem), _fps(ssl.crl_pem), ssl.acl, ssl.replication_acl)


# ------------------------------------------------------------------ what is measured


@dataclass
class _Measured:
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


class _Session:
    """One recording on one instance: the measurements, then the restore."""

    def __init__(self, api: RecorderApi, original: Original, pki: _Pki, options: Options) -> None:
        self.api = api
        self.original = original
        self.iid = original.instance_id
        self.pki = pki
        self.opts = options
        self.m = _Measured()
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
            self.m.acl_without_ca = _acl_text(final.acl)
        else:
            self.m.acl_without_ca = _acl_text(self.original.ssl.acl)
        self._install_temp_ca()
        self._check_trust()
        self._acl_change()

    def _not_found(self) -> None:
        fake = _made_up_id(self.iid)
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
            read = _fps(final.client_ca_pem)
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
        if _fps(ssl.client_ca_pem) != _fps(want.client_ca_pem):
            return False
        if _fps(ssl.crl_pem) != _fps(want.crl_pem):
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
        if _fps(current.client_ca_pem) != _fps(want.client_ca_pem):
            parts.append(
                f"client CA {self._ca_text(current.client_ca_pem)} instead of "
                f"{self._ca_text(want.client_ca_pem)}"
            )
        if _fps(current.crl_pem) != _fps(want.crl_pem):
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
                    parts.append(f"{name} {_acl_text(now) or 'none'} instead of {was.value}")
        return "; ".join(parts) or "the original settings (a change may still be pending)"

    def _ca_text(self, pem: str | None) -> str:
        fps = _fps(pem)
        if not fps:
            return "none"
        if fps <= set(self.pki.fingerprints()):
            return "the recorder's temporary CA"
        if fps == _fps(self.original.ssl.client_ca_pem):
            return "the original CA"
        return f"another CA ({len(fps)} certificate(s))"


# ------------------------------------------------------------------ saving and restoring by hand


def _save_original(original: Original, saved: SavedFiles) -> None:
    """The original settings, 0600, before the first change (a crash leaves them behind)."""
    ssl = original.ssl
    doc = {
        "instance_id": original.instance_id,
        "connection_string": original.connection_string,
        "client_ca_pem": ssl.client_ca_pem,
        "crl_pem": ssl.crl_pem,
        "acl": _acl_text(ssl.acl) or None,
        "replication_acl": _acl_text(ssl.replication_acl) or None,
        "restore_commands": by_hand(original, saved),
    }
    try:
        atomic_write(saved.json, (json.dumps(doc, indent=2) + "\n").encode(), mode=0o600)
        if ssl.client_ca_pem:
            atomic_write(saved.ca, ssl.client_ca_pem.encode(), mode=0o600)
        if ssl.crl_pem:
            atomic_write(saved.crl, ssl.crl_pem.encode(), mode=0o600)
    except OSError as exc:
        raise InputError(
            f"cannot save the original settings next to --out ({saved.json}): {exc.strerror}"
        ) from None


def by_hand(original: Original, saved: SavedFiles) -> list[str]:
    """The commands that restore `original` from the saved files."""
    iid, ssl = original.instance_id, original.ssl
    if not original.has_ca:
        return [f"rdsssl instance disable-client-ca {iid} --yes --force"]
    lines = [f"rdsssl instance enable-client-ca {iid} --ca-cert {saved.ca} --yes --force"]
    if ssl.crl_pem:
        lines.append(f"rdsssl instance upload-crl {iid} --crl {saved.crl} --yes --force")
    acls = []
    if ssl.acl is not None:
        acls.append(f"--acl {ssl.acl.value}")
    if ssl.replication_acl is not None:
        acls.append(f"--replication-acl {ssl.replication_acl.value}")
    if acls:
        lines.append(f"rdsssl instance set-acl {iid} {' '.join(acls)} --yes --force")
    return lines


def _not_restored(session: _Session, saved: SavedFiles, why: str) -> str:
    commands = "; ".join(by_hand(session.original, saved))
    pending = ""
    if session.restore_sent:
        pending = (
            f" The restore call was accepted (RequestId {session.restore_sent}) and may still "
            f"complete: check with `rdsssl instance show {session.iid}` first."
        )
    return (
        f"{session.iid} was NOT restored ({why}): it last read back "
        f"{session.leftovers(session.last_ssl)}.{pending} The original settings are saved in "
        f"{saved.json}; restore them by hand with: {commands}"
    )


# ------------------------------------------------------------------ the profile


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


def _acl_text(acl: AclMode | None) -> str:
    return "" if acl is None else acl.value


def _made_up_id(instance_id: str) -> str:
    """An id shaped like `instance_id` (same prefix and length) that names no instance."""
    prefix, dash, rest = instance_id.partition("-")
    if not dash:
        prefix, rest = "pgm", instance_id
    while True:
        made = prefix + "-" + "".join(secrets.choice(_ID_CHARS) for _ in range(max(16, len(rest))))
        if made != instance_id:
            return made


def _profile(session: _Session, original: Original, options: Options) -> dict[str, Any]:
    """The profile document; each measured value is checked as the emulator would check it,
    and one it would refuse is left out with a note."""
    from rdsssl.emulator.faults import check_switch

    m = session.m
    now = options.now().astimezone(timezone.utc)
    region = original.instance.region or None
    doc: dict[str, Any] = {
        "format": FORMAT,
        "name": options.name or f"recorded {region or original.instance_id} {now:%Y-%m-%d}",
        "region": region,
        "engine_version": original.instance.engine_version or None,
        "recorded_at": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    ca, acl = m.ca_timing, m.acl_timing
    values: list[tuple[str, str | None, Any]] = [
        ("multi_ca_bundle", "multi_ca_bundle", m.multi_ca_bundle),
        ("acl_change_restarts", "restart_on_acl_change", m.acl_change_restarts),
        ("not_found_http_status", "not_found_http_status", m.not_found_http_status),
        ("url_limit_bytes", "url_limit", m.url_limit),
        ("tls_max_version", "tls_max_version", m.tls_max_version),
        ("status_lag_seconds", "status_lag_seconds", ca.status_lag if ca else None),
        ("early_readback_seconds", "early_readback_seconds", ca.early_readback if ca else None),
        ("restart_seconds", None, ca.busy if ca else None),
        ("acl_lock_seconds", None, acl.busy if acl else None),
        ("acl_without_ca", "acl_without_ca", m.acl_without_ca),
        ("crlf_pem_readback", "crlf_pem_readback", m.crlf_pem_readback),
    ]
    for key, switch, value in values:
        if key == "url_limit_bytes":
            if value is None:
                session.notes.append("url_limit_bytes: not measured")
                continue
            value = value[0]  # None: no limit up to URL_SEARCH_MAX
        elif value is None:
            continue
        try:
            doc[key] = check_switch(switch, value, label=key) if switch else value
        except ValueError as exc:
            session.notes.append(f"{key}: left out, the emulator would refuse it ({exc})")
    if m.busy_error is not None:
        code, status = m.busy_error
        try:
            check_switch("busy_code", code)
            check_switch("busy_http_status", status)
            doc["busy_error"] = {"code": code, "http_status": status}
        except ValueError as exc:
            session.notes.append(f"busy_error: left out ({exc})")
    doc["sequences"] = dict(m.sequences)
    missing = [k for k in ("multi_ca_bundle", "acl_change_restarts", "busy_error",
                           "not_found_http_status", "tls_max_version", "status_lag_seconds",
                           "acl_without_ca", "crlf_pem_readback") if k not in doc]  # fmt: skip
    if missing:
        session.notes.append(
            f"not measured (the documented answer applies on replay): {', '.join(missing)}"
        )
    return doc


def _check_and_write(doc: dict[str, Any], out: Path) -> None:
    """Both readers must take the document (the emulator's and the client's), then it is
    written atomically."""
    from rdsssl import service_profile
    from rdsssl.emulator.profiles import parse_profile

    try:
        parse_profile(doc)
    except ValueError as exc:  # a bug here: every value was checked one by one
        raise InputError(f"the recorded profile does not load in the emulator: {exc}") from None
    service_profile.parse(doc, source=str(out))
    try:
        atomic_write(out, (json.dumps(doc, indent=2) + "\n").encode())
    except OSError as exc:
        raise InputError(f"cannot write {out}: {exc.strerror}") from None


# ------------------------------------------------------------------ the whole run


def record(
    api: RecorderApi, instance_id: str, *, out: Path, options: Options | None = None
) -> Recording:
    """Record a service profile of `instance_id` into `out`, then restore the instance (see
    the module docstring). The caller has shown `planned_steps` and got the user's consent.

    Errors: InputError (exit 3) before any change when the instance cannot be recorded on;
    after a change, the error that stopped the recording once the instance is restored, or
    `RestoreIncomplete` (saying what is left over and how to fix it by hand) when it is not.
    KeyboardInterrupt (Ctrl-C, SIGTERM) restores first; a second one abandons the restore.
    """
    opts = options or Options()
    saved = check_out(out)
    held = instance_lock(instance_id) if opts.lock else contextlib.nullcontext()
    with held, tempfile.TemporaryDirectory(prefix="rdsssl-record-") as tmp:
        original = preflight(api, instance_id)
        pki = _Pki.make(Path(tmp), opts.probe_user, now=opts.now())
        _save_original(original, saved)
        session = _Session(api, original, pki, opts)
        try:
            session.measure()
            doc = _profile(session, original, opts)
            _check_and_write(doc, out)
        except KeyboardInterrupt:
            opts.warn(
                f"interrupted: restoring {instance_id} (press Ctrl-C again to abandon the restore)"
            )
            _restore_after_interrupt(session, saved)
            raise
        except Exception as exc:
            opts.warn(f"the recording stopped ({exc}); restoring {instance_id}")
            try:
                done = _restore_or_report(session, saved)
            except RestoreIncomplete as failed:
                raise RestoreIncomplete(f"the recording stopped ({exc}); {failed}") from exc
            opts.warn(f"{instance_id} restored: {done}")
            raise
        try:
            done = _restore_or_report(session, saved)
        except RestoreIncomplete as failed:
            raise RestoreIncomplete(f"the profile was written to {out}, but {failed}") from None
        return Recording(doc, tuple(session.notes), out, done, session.changes)


def _restore(session: _Session, saved: SavedFiles) -> str:
    """The restore, turning every failure into `RestoreIncomplete` with the by-hand commands;
    a KeyboardInterrupt is left to the caller."""
    try:
        done = session.restore()
    except RestoreIncomplete as exc:
        raise RestoreIncomplete(_not_restored(session, saved, str(exc))) from None
    except Exception as exc:
        raise RestoreIncomplete(_not_restored(session, saved, str(exc))) from exc
    saved.remove()
    session.opts.info(f"{session.iid}: restored: {done}")
    return done


def _restore_or_report(session: _Session, saved: SavedFiles) -> str:
    """`_restore`; an interrupt abandons it, with the report of what is left over."""
    try:
        return _restore(session, saved)
    except KeyboardInterrupt:
        session.opts.warn(
            "restore abandoned: " + _not_restored(session, saved, "the restore was interrupted")
        )
        raise


def _restore_after_interrupt(session: _Session, saved: SavedFiles) -> None:
    """The restore after a first Ctrl-C: every outcome is reported, nothing but a second
    interrupt raised (the caller re-raises the first one anyway)."""
    try:
        done = _restore_or_report(session, saved)
    except KeyboardInterrupt:
        return
    except RestoreIncomplete as exc:
        session.opts.warn(str(exc))
    else:
        session.opts.warn(f"{session.iid} restored: {done}")


def describe_steps(steps: Sequence[Step]) -> list[str]:
    """The human rendering of `planned_steps`, with the restart count and the time it takes."""
    lines = []
    for number, step in enumerate(steps, start=1):
        effect = {"none": "no change", "restart": "RESTART ~3 min", "acl-lock": "ACL LOCK ~1 min"}
        lines.append(f"  {number}. [{effect[step.effect]}] {step.text}")
    restarts = sum(1 for s in steps if s.effect == "restart")
    locks = sum(1 for s in steps if s.effect == "acl-lock")
    minutes = 3 * restarts + locks
    lines.append(
        f"  {restarts} restart(s) (sessions dropped each time) and {locks} ACL lock(s): about "
        f"{minutes} minutes on a real instance (~{minutes + 3} with the ACL change restarting)"
    )
    return lines
