"""`rdsssl service-profile record`: settle the unknowns of the real RDS service on a throwaway
instance, and put the instance back as it was.

The documentation leaves open how a change shows (status lag, early read-back), how long it
takes, whether an ACL-only change restarts, whether a two-CA bundle is accepted, which code a
busy instance answers, the URL limit, the TLS version and whether PEMs come back byte-exact
(docs/aliyun-rds-ssl-api.md, §10 and "Review of the emulator"). The recorder measures each on
one instance and writes a service profile (format 1: `rdsssl.emulator.profiles` replays it,
`rdsssl.rds.service_profile` reads it for the waiters).

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
   read-back through `rdsssl.rds.waiters`; an instance that had no client CA ends with none.

Where each part lives: the calls and how one change is observed, `rdsssl.ops.profile_calls`
(the samples of steps 3 and 4 are polled every `poll_interval` seconds by the recorder itself,
since it measures them, and read by `rdsssl.ops.profile_timeline`; readiness and the restore
use the waiters); the steps 1 to 4, `rdsssl.ops.profile_session`; the temporary CAs and the
probe user's certificates, `rdsssl.ops.profile_pki` (the user's CA store is never touched);
the restore and the saved originals, `rdsssl.ops.profile_restore`.

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
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timezone
from pathlib import Path
from typing import Any

from rdsssl.errors import InputError
from rdsssl.models import LOCK_UNLOCK, MODIFY_SETTING, STATUS_RUNNING
from rdsssl.ops.profile_calls import Original, RecorderApi, RecordOptions, RestoreIncomplete
from rdsssl.ops.profile_pki import TemporaryPki, carries_temporary_ca
from rdsssl.ops.profile_restore import (
    SavedFiles,
    restore_after_interrupt,
    restore_or_report,
    save_original,
)
from rdsssl.ops.profile_session import Session
from rdsssl.rds.protocol import RdsApi
from rdsssl.store.fsutil import atomic_write
from rdsssl.store.paths import instance_lock

__all__ = [
    "Recording",
    "Step",
    "check_out",
    "describe_steps",
    "planned_steps",
    "preflight",
    "record",
    "record_with_consent",
]

FORMAT = 1


# ------------------------------------------------------------------ before any change


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
    if carries_temporary_ca(ssl.client_ca_pem):
        raise InputError(
            f"{instance_id} still has the recorder's temporary client CA: an earlier recording "
            "was not restored. Restore it first from that run's FILE.original.json (it lists "
            "the commands), then record again"
        )
    return Original(info, ssl)


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


@dataclass(frozen=True)
class Recording:
    """A finished recording: the profile written to `out`, notes on what could not be measured
    or was inferred, and how the instance was restored."""

    profile: dict[str, Any]
    notes: tuple[str, ...]
    out: Path
    restored: str
    changes: int  # ModifyDBInstanceSSL calls that changed the instance, the restore included
    instance_id: str

    def to_json(self) -> dict[str, Any]:
        """The JSON shape of `service-profile record`."""
        return {
            "instance": self.instance_id,
            "out": str(self.out),
            "profile": self.profile,
            "notes": list(self.notes),
            "restored": self.restored,
            "changes": self.changes,
        }


# ------------------------------------------------------------------ the profile


def _profile(session: Session, original: Original, options: RecordOptions) -> dict[str, Any]:
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
    from rdsssl.emulator.profiles import parse_profile
    from rdsssl.rds import service_profile

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
    api: RecorderApi, instance_id: str, *, out: Path, options: RecordOptions | None = None
) -> Recording:
    """Record a service profile of `instance_id` into `out`, then restore the instance (see
    the module docstring). The caller has shown `planned_steps` and got the user's consent.

    Errors: InputError (exit 3) before any change when the instance cannot be recorded on;
    after a change, the error that stopped the recording once the instance is restored, or
    `RestoreIncomplete` (saying what is left over and how to fix it by hand) when it is not.
    KeyboardInterrupt (Ctrl-C, SIGTERM) restores first; a second one abandons the restore.
    """
    opts = options or RecordOptions()
    saved = check_out(out)
    held = instance_lock(instance_id) if opts.lock else contextlib.nullcontext()
    with held, tempfile.TemporaryDirectory(prefix="rdsssl-record-") as tmp:
        original = preflight(api, instance_id)
        pki = TemporaryPki.make(Path(tmp), opts.probe_user, now=opts.now())
        save_original(original, saved)
        session = Session(api, original, pki, opts)
        try:
            session.measure()
            doc = _profile(session, original, opts)
            _check_and_write(doc, out)
        except KeyboardInterrupt:
            opts.warn(
                f"interrupted: restoring {instance_id} (press Ctrl-C again to abandon the restore)"
            )
            restore_after_interrupt(session, saved)
            raise
        except Exception as exc:
            opts.warn(f"the recording stopped ({exc}); restoring {instance_id}")
            try:
                done = restore_or_report(session, saved)
            except RestoreIncomplete as failed:
                raise RestoreIncomplete(f"the recording stopped ({exc}); {failed}") from exc
            opts.warn(f"{instance_id} restored: {done}")
            raise
        try:
            done = restore_or_report(session, saved)
        except RestoreIncomplete as failed:
            raise RestoreIncomplete(f"the profile was written to {out}, but {failed}") from None
        return Recording(doc, tuple(session.notes), out, done, session.changes, instance_id)


def record_with_consent(
    api: RecorderApi,
    instance_id: str,
    *,
    out: Path,
    options: RecordOptions,
    consent: Callable[[Sequence[Step]], None],
) -> Recording:
    """The whole `service-profile record`: check `out` and the instance (Describe calls only),
    show `consent` the planned steps (it raises to refuse), then `record`."""
    check_out(out)
    consent(planned_steps(preflight(api, instance_id)))
    return record(api, instance_id, out=out, options=options)


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
