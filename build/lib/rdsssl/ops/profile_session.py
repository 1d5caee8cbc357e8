"""The measurements of one recording of `rdsssl service-profile record` (steps 1 to 4 of the
sequence in `rdsssl.ops.profile_recorder`, whose docstring gives the reasons for it).

`Session.measure` runs the steps in order and keeps what it learned in `Session.m` as it goes
(`rdsssl.ops.profile_calls` `Calls`: the reads, the calls and how one change is observed), so
whatever stops it, the restore (`rdsssl.ops.profile_restore`) knows whether a
ModifyDBInstanceSSL was attempted and what the instance last read back.
"""

from __future__ import annotations

import secrets
import string
from collections.abc import Callable
from pathlib import Path

from rdsssl.errors import ApiError, ApiUnreachable, ChangeFailed, ConfigError
from rdsssl.models import AclMode
from rdsssl.ops.probe import ProbeTarget, ServerFacts, probe_target, server_facts
from rdsssl.ops.profile_calls import Calls, Original, RecorderApi, RecordOptions, acl_text
from rdsssl.ops.profile_pki import TemporaryPki, fingerprints_of
from rdsssl.ops.profile_timeline import analyse, restart_statuses
from rdsssl.store.fsutil import atomic_write

__all__ = [
    "ACL_RESTART_SHARE",
    "URL_RESOLUTION",
    "URL_SEARCH_MAX",
    "URL_SEARCH_MIN",
    "Session",
    "made_up_id",
    "search_url_limit",
]

URL_SEARCH_MIN = 1024
URL_SEARCH_MAX = 63 * 1024
URL_RESOLUTION = 256
ACL_RESTART_SHARE = 0.75
_ID_CHARS = string.ascii_lowercase + string.digits


def _acl_target(current: AclMode | None) -> AclMode:
    return AclMode.PREFER if current is AclMode.VERIFY_CA else AclMode.VERIFY_CA


class Session(Calls):
    """One recording on one instance: the measurements (the restore is
    `rdsssl.ops.profile_restore`)."""

    def __init__(
        self, api: RecorderApi, original: Original, pki: TemporaryPki, options: RecordOptions
    ) -> None:
        super().__init__(api, original, pki, options)
        self.target: ProbeTarget | None = None
        self.server_ca: Path | None = None

    # -- the measurements

    def measure(self) -> None:
        """Every step of the module docstring except the restore."""
        self._not_found()
        self._url_limit()
        self._probe_setup()
        if self.original.has_ca:
            _, final = self.change("ca_off", self.request(client_ca_enabled=False))
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
            request = self.request(client_ca_enabled=True, client_ca_pem=pem)
            label = f"a {'two-CA bundle' if kind == 'bundle' else 'single CA'} with " + (
                "CRLF" if crlf else "LF"
            )
            try:
                before = self.start(request)
            except ApiError as exc:  # the call itself: a refusal changed nothing
                if not self.is_refusal(exc):
                    raise
                refused[(kind, crlf)] = exc
                self.notes.append(f"{label} was refused: {exc.code or exc}")
                continue
            try:
                samples = self.watch("ca_change", before, request)
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
        current = self.read_ssl()
        target = _acl_target(current.acl)
        before = self._facts(0)
        samples, _ = self.change("acl_change", self.request(acl=target))
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


def made_up_id(instance_id: str) -> str:
    """An id shaped like `instance_id` (same prefix and length) that names no instance."""
    prefix, dash, rest = instance_id.partition("-")
    if not dash:
        prefix, rest = "pgm", instance_id
    while True:
        made = prefix + "-" + "".join(secrets.choice(_ID_CHARS) for _ in range(max(16, len(rest))))
        if made != instance_id:
            return made
