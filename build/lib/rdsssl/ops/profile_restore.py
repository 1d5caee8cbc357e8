"""Putting the instance back after a recording (step 5 of `rdsssl.ops.profile_recorder`), and
what is left when that cannot be done.

The original PEMs and ACLs are saved next to `--out` (0600, `SavedFiles`) before the first
change. `restore` puts the original client CA, CRL and ACLs back in ONE call and verifies the
read-back through `rdsssl.rds.waiters`; an instance that had no client CA ends with none. Every
failure becomes `RestoreIncomplete`, saying what the instance last read back (`leftovers`, from
the last read: no new call) and the commands that restore it by hand from the saved files
(`by_hand`). A second Ctrl-C abandons the restore with that report. The saved files are removed
once the restore is verified.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path

from rdsssl.errors import ApiError, InputError
from rdsssl.models import SslModifyRequest, SslState
from rdsssl.ops.profile_calls import Calls, Original, RestoreIncomplete, acl_text
from rdsssl.ops.profile_pki import fingerprints_of
from rdsssl.rds.acceptors import instance_ready, ssl_applied
from rdsssl.rds.waiters import wait_until
from rdsssl.store.fsutil import atomic_write

__all__ = [
    "SavedFiles",
    "by_hand",
    "leftovers",
    "restore",
    "restore_after_interrupt",
    "restore_or_report",
    "save_original",
]


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


def save_original(original: Original, saved: SavedFiles) -> None:
    """The original settings, 0600, before the first change (a crash leaves them behind)."""
    ssl = original.ssl
    doc = {
        "instance_id": original.instance_id,
        "connection_string": original.connection_string,
        "client_ca_pem": ssl.client_ca_pem,
        "crl_pem": ssl.crl_pem,
        "acl": acl_text(ssl.acl) or None,
        "replication_acl": acl_text(ssl.replication_acl) or None,
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


def _not_restored(calls: Calls, saved: SavedFiles, why: str) -> str:
    commands = "; ".join(by_hand(calls.original, saved))
    pending = ""
    if calls.restore_sent:
        pending = (
            f" The restore call was accepted (RequestId {calls.restore_sent}) and may still "
            f"complete: check with `rdsssl instance show {calls.iid}` first."
        )
    return (
        f"{calls.iid} was NOT restored ({why}): it last read back "
        f"{leftovers(calls, calls.last_ssl)}.{pending} The original settings are saved in "
        f"{saved.json}; restore them by hand with: {commands}"
    )


def restore(calls: Calls) -> str:
    """Put the original client CA, CRL and ACLs back in one call and verify the read-back.
    Raises (an ApiError, a WaiterError or RestoreIncomplete) when it cannot."""
    if not calls.sent:
        return "nothing was changed"
    reads = calls.reads()
    wait_until(
        instance_ready(timeout=calls.opts.timeout), reads, timeout=calls.opts.timeout,
        sleep=calls.opts.sleep, clock=calls.opts.clock,
    )  # fmt: skip
    request = _restore_request(calls)
    started = calls.opts.clock()
    while True:
        try:
            calls.restore_sent = calls.send(request)
            break
        except ApiError as exc:  # a change still queued (status lag) refuses ours
            if not calls.is_busy(exc) or calls.opts.clock() - started > calls.opts.timeout:
                raise
            calls.opts.sleep(calls.opts.poll_interval)
            wait_until(
                instance_ready(timeout=calls.opts.timeout), reads,
                sleep=calls.opts.sleep, clock=calls.opts.clock,
            )  # fmt: skip
    is_original = functools.partial(_is_original, calls)
    wait_until(
        ssl_applied(is_original, timeout=calls.opts.timeout, settle=calls.opts.settle),
        reads, sleep=calls.opts.sleep, clock=calls.opts.clock,
    )  # fmt: skip
    final = calls.read_ssl()
    if not _is_original(calls, final):
        raise RestoreIncomplete(f"{calls.iid} reads back {leftovers(calls, final)}")
    if calls.original.has_ca:
        return "the original client CA, CRL and ACLs read back"
    return "the client CA is off again, as it was"


def _restore_request(calls: Calls) -> SslModifyRequest:
    ssl = calls.original.ssl
    if not calls.original.has_ca:
        return calls.request(client_ca_enabled=False)
    return calls.request(
        client_ca_enabled=True,
        client_ca_pem=ssl.client_ca_pem,
        crl_enabled=True if ssl.crl_pem else None,
        crl_pem=ssl.crl_pem,
        acl=ssl.acl,
        replication_acl=ssl.replication_acl,
    )


def _is_original(calls: Calls, ssl: SslState) -> bool:
    want = calls.original.ssl
    if fingerprints_of(ssl.client_ca_pem) != fingerprints_of(want.client_ca_pem):
        return False
    if fingerprints_of(ssl.crl_pem) != fingerprints_of(want.crl_pem):
        return False
    if not calls.original.has_ca:
        return True
    return (want.acl is None or ssl.acl == want.acl) and (
        want.replication_acl is None or ssl.replication_acl == want.replication_acl
    )


def leftovers(calls: Calls, current: SslState | None) -> str:
    """What differs from the original, from the last read (no new call)."""
    if current is None:
        return "an unknown state (it could not be read)"
    want = calls.original.ssl
    parts = []
    if fingerprints_of(current.client_ca_pem) != fingerprints_of(want.client_ca_pem):
        parts.append(
            f"client CA {_ca_text(calls, current.client_ca_pem)} instead of "
            f"{_ca_text(calls, want.client_ca_pem)}"
        )
    if fingerprints_of(current.crl_pem) != fingerprints_of(want.crl_pem):
        parts.append(
            f"CRL {'none' if not current.crl_pem else 'present'} instead of "
            f"{'none' if not want.crl_pem else 'the original CRL'}"
        )
    if calls.original.has_ca:
        for name, now, was in (
            ("ACL", current.acl, want.acl),
            ("ReplicationACL", current.replication_acl, want.replication_acl),
        ):
            if was is not None and now != was:
                parts.append(f"{name} {acl_text(now) or 'none'} instead of {was.value}")
    return "; ".join(parts) or "the original settings (a change may still be pending)"


def _ca_text(calls: Calls, pem: str | None) -> str:
    fps = fingerprints_of(pem)
    if not fps:
        return "none"
    if fps <= set(calls.pki.fingerprints()):
        return "the recorder's temporary CA"
    if fps == fingerprints_of(calls.original.ssl.client_ca_pem):
        return "the original CA"
    return f"another CA ({len(fps)} certificate(s))"


def _restore(calls: Calls, saved: SavedFiles) -> str:
    """The restore, turning every failure into `RestoreIncomplete` with the by-hand commands;
    a KeyboardInterrupt is left to the caller."""
    try:
        done = restore(calls)
    except RestoreIncomplete as exc:
        raise RestoreIncomplete(_not_restored(calls, saved, str(exc))) from None
    except Exception as exc:
        raise RestoreIncomplete(_not_restored(calls, saved, str(exc))) from exc
    saved.remove()
    calls.opts.info(f"{calls.iid}: restored: {done}")
    return done


def restore_or_report(calls: Calls, saved: SavedFiles) -> str:
    """`_restore`; an interrupt abandons it, with the report of what is left over."""
    try:
        return _restore(calls, saved)
    except KeyboardInterrupt:
        calls.opts.warn(
            "restore abandoned: " + _not_restored(calls, saved, "the restore was interrupted")
        )
        raise


def restore_after_interrupt(calls: Calls, saved: SavedFiles) -> None:
    """The restore after a first Ctrl-C: every outcome is reported, nothing but a second
    interrupt raised (the caller re-raises the first one anyway)."""
    try:
        done = restore_or_report(calls, saved)
    except KeyboardInterrupt:
        return
    except RestoreIncomplete as exc:
        calls.opts.warn(str(exc))
    else:
        calls.opts.warn(f"{calls.iid} restored: {done}")
