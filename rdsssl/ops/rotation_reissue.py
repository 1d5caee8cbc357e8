"""The reissue step of a rotation: every user holding a valid old-CA certificate gets one from
the new CA (same key type), written to ``OUT_ROOT/<user>/`` like ``cert renew``.

Reissue records the user's intent before issuing and goes through ``cert renew``'s crash-safe
swap, so a certificate a killed run issued is finished and adopted, and a key it staged but
never got certified is discarded: never two valid new certificates per user.

User names: a valid old-CA certificate whose CN is no valid user name (an old store's) cannot be
reissued. A run that would stage refuses up front (``check_users``), before any instance
restarts; revoking those certificates clears it. A run past staging reissues everyone else,
reports each such certificate, and then fails (exit 3) without completing the step.
"""

from __future__ import annotations

import shutil
from datetime import datetime
from pathlib import Path

from rdsssl.errors import CryptoError, InputError
from rdsssl.ops import crashpoints
from rdsssl.ops.cert_renewal import finish_interrupted, renew_due
from rdsssl.ops.client_versions import PENDING
from rdsssl.ops.renewal_plan import RenewalPlan, tls12_skips
from rdsssl.ops.rotation_context import Context, Event
from rdsssl.ops.rotation_state import Step, UserRecord
from rdsssl.pki import crypto
from rdsssl.store.castore import CaStore
from rdsssl.store.files import client_file_names, user_dir
from rdsssl.store.records import CertRecord, format_time, parse_time

__all__ = ["check_users", "reissue"]


def _users_to_reissue(old: CaStore, now: datetime) -> dict[str, CertRecord]:
    """Each user's newest valid (unrevoked, unexpired) certificate from the old CA (users
    whose name ``_name_problem`` refuses are left out: see ``_unusable``)."""
    newest: dict[str, CertRecord] = {}
    for row in old.certificates():
        valid = row.state(now) == "valid" and _name_problem(row.cn) is None
        if valid and (row.cn not in newest or row.not_after >= newest[row.cn].not_after):
            newest[row.cn] = row
    return dict(sorted(newest.items()))


def _name_problem(cn: str) -> str | None:
    """Why no certificate can be reissued for ``cn`` (``crypto.validate_role_name``), or None."""
    try:
        crypto.validate_role_name(cn)
    except CryptoError as exc:
        return str(exc)
    return None


def _unusable(
    old: CaStore, now: datetime, *, allow_tls13_only: bool = False
) -> list[tuple[CertRecord, str]]:
    """The valid old-CA certificates that cannot be reissued (a bad user name; a key type that
    fails over TLS 1.2, unless `allow_tls13_only`), with the reason."""
    rows = [r for r in old.certificates() if r.state(now) == "valid"]
    found = [(r, p) for r, p in ((r, _name_problem(r.cn)) for r in rows) if p is not None]
    if not allow_tls13_only:
        named = {r.serial for r, _ in found}
        plan = tls12_skips(RenewalPlan(due=[r for r in rows if r.serial not in named], blocked=[]))
        found += [(s.record, s.problem) for s in plan.skipped]
    return found


def _revoke_hint(old: CaStore, rows: list[tuple[CertRecord, str]]) -> str:
    commands = " && ".join(
        f"rdsssl cert revoke --ca-dir {old.path} --serial {r.serial_hex}" for r, _ in rows
    )
    return f"fix them as said, or revoke them ({commands}), then run rotate ca again"


def check_users(old: CaStore, now: datetime, *, allow_tls13_only: bool = False) -> None:
    """InputError listing the valid old-CA certificates that could not be reissued (bad user
    names, keys that fail over TLS 1.2), so that a rotation refuses them before staging restarts
    any instance."""
    bad = _unusable(old, now, allow_tls13_only=allow_tls13_only)
    if bad:
        listed = "; ".join(f"certificate {r.serial_hex}: {problem}" for r, problem in bad)
        raise InputError(
            f"{len(bad)} valid certificate(s) of the old CA cannot be reissued ({listed}). "
            f"No instance was changed: {_revoke_hint(old, bad)}"
        )


def reissue(ctx: Context) -> bool:
    """Reissue every user that can be; InputError (step left open) naming the others."""
    now = ctx.clock()
    due = _users_to_reissue(ctx.old, now)
    refused = _unusable(ctx.old, now, allow_tls13_only=ctx.options.force)
    root = Path(ctx.state.out_root)
    targets = {user: user_dir(root, user) for user in due}  # refuse bad names first
    if not due and not refused:
        ctx.emit(Event(Step.REISSUE, "skipped", detail="no valid old-CA certificate"))
    for row, problem in refused:
        detail = f"certificate {row.serial_hex} is not reissued: {problem}"
        ctx.emit(Event(Step.REISSUE, "refused", detail=detail))
    skip = {r.serial for r, _ in refused}
    for user, old in due.items():
        if old.serial not in skip:
            _reissue_one(ctx, user, old, root, targets[user], now)
    if refused:
        raise InputError(
            f"every other user was reissued, but {len(refused)} certificate(s) of the old "
            f"CA cannot be (see above); the reissue step stays open: "
            f"{_revoke_hint(ctx.old, refused)}"
        )
    return True


def _reissue_one(
    ctx: Context, user: str, old: CertRecord, root: Path, out_dir: Path, now: datetime
) -> None:
    """One user, through ``cert renew``'s crash-safe swap (``cert_renewal.renew_due``)
    signing with the NEW store. The intent is recorded first, so a run killed after the
    certificate went live but before it was recorded adopts it instead of issuing again."""
    record = ctx.state.users.get(user)
    if record is not None and record.new_serial is not None:
        row = ctx.new.get(int(record.new_serial, 16))
        if row is not None and row.state(now) == "valid":
            ctx.emit(Event(Step.REISSUE, "unchanged", user=user, detail=record.new_serial))
            return
    if ctx.options.dry_run:
        ctx.emit(Event(Step.REISSUE, "would-reissue", user=user, detail=old.serial_hex))
        return
    at = format_time(now)
    if record is not None and record.pending_since is not None:
        kept = _finish_interrupted(ctx, user, parse_time(record.pending_since), root, now)
        if kept is not None:
            _record_user(ctx, user, old, kept.serial_hex, out_dir, at)
            ctx.emit(Event(Step.REISSUE, "adopted", user=user, detail=kept.serial_hex))
            return
    ctx.state.set_user(user, UserRecord(old.serial_hex, pending_since=at), at=at)
    ctx.save()  # the intent is on disk before the certificate exists
    plan = RenewalPlan(due=[old], blocked=[])
    (done,) = renew_due(
        ctx.new,
        plan,
        now=now,
        out_root=root,
        days=ctx.options.days,
        allow_tls13_only=ctx.options.force,
    )
    _record_user(ctx, user, old, done.new.serial_hex, out_dir, at)
    short = " (ends with the new CA, earlier than asked)" if done.truncated else ""
    detail = f"{old.serial_hex} -> {done.new.serial_hex} in {out_dir}{short}"
    ctx.emit(Event(Step.REISSUE, "reissued", user=user, detail=detail))


def _record_user(
    ctx: Context, user: str, old: CertRecord, serial: str, out_dir: Path, at: str
) -> None:
    crashpoints.reached("reissue.live")
    files = tuple(str(out_dir / n) for n in client_file_names("pem"))
    ctx.state.set_user(user, UserRecord(old.serial_hex, serial, at, None, files), at=at)
    ctx.save()


def _finish_interrupted(
    ctx: Context, user: str, since: datetime, root: Path, now: datetime
) -> CertRecord | None:
    """The certificate a killed run issued for ``user`` and put live, if any."""
    finish_interrupted(ctx.new, out_root=root, user=user)  # a certified key: finish it
    out_dir = user_dir(root, user)
    mine = ctx.new.certificates(user=user)
    if not mine:  # finish_interrupted skips users the store has never certified
        pending = out_dir / PENDING
        if pending.is_dir():  # a key staged by the killed run, never signed: unusable
            shutil.rmtree(pending)
        return None
    on_disk = _serial_on_disk(out_dir)
    live = [r for r in mine if r.serial == on_disk and r.created_at >= since]
    return live[0] if live and live[0].state(now) == "valid" else None


def _serial_on_disk(out_dir: Path) -> int | None:
    """The serial of ``out_dir/client.crt`` when ``client.key`` matches it, else None."""
    try:
        crt, key = out_dir / "client.crt", out_dir / "client.key"
        cert = crypto.load_certificates(crt.read_bytes(), source=str(crt), what="a cert")[0]
        pkey = crypto.load_private_key(key.read_bytes(), source=str(key), passphrase=None)
        crypto.check_key_matches(cert, pkey, source=str(key))
    except (OSError, InputError):
        return None
    return cert.serial_number
