"""``rdsssl cert renew``: re-issue certificates inside their renewal window, for cron.

Kept apart from `rdsssl.cli.cert` (which registers it on the `cert` group) because renewal has
its own machinery: the run lock on OUT_ROOT, deploy hooks and the atomic version switch of
`rdsssl.ops.deploy`.

A dry run never runs the deploy hook unless ``--run-deploy-hooks`` asks for it: hooks are
written for real renewals (a hook that revokes ``$RDSSSL_OLD_SERIAL`` would revoke a live
certificate). Asked for, it runs with ``RDSSSL_DRY_RUN=1`` and both serials empty.
"""

from __future__ import annotations

import contextlib
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from rdsssl.cli.app import App
from rdsssl.cli.common import (
    Duration,
    ca_dir_option,
    days_option,
    format_options,
    get_app,
    iso,
    json_option,
    key_type_option,
    open_store,
    p12_passphrase,
    passphrase_file_option,
    unlock,
    wait_lock_option,
    warn_truncated,
)
from rdsssl.errors import HookFailed, InputError, UsageError
from rdsssl.models import KeyType
from rdsssl.ops import rotation_state
from rdsssl.ops.deploy import (
    CURRENT,
    Renewal,
    RenewalPlan,
    RenewalWindow,
    Skipped,
    finish_interrupted,
    hook_pending,
    mark_deployed,
    plan_renewal,
    renew_due,
    tls12_skips,
    user_dirs,
)
from rdsssl.ops.hooks import Deployment, check_hook, deploy_env, run_hook
from rdsssl.ops.rotation_state import Phase
from rdsssl.store.files import loose_client_dir_warning
from rdsssl.store.fsutil import make_private_dirs
from rdsssl.store.lock import FileLock, current_command

__all__ = ["renew"]


if TYPE_CHECKING:  # click >= 8.3 types ParamType as a generic (as in cli/common.py)
    _PercentBase = click.ParamType[float, Any]
else:
    _PercentBase = click.ParamType


class _Percent(_PercentBase):
    """``66%`` or ``66`` -> 0.66 (the share of a certificate's validity)."""

    name = "percent"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> float:
        if isinstance(value, float):
            return value
        text = str(value).strip().removesuffix("%")
        try:
            share = float(text) / 100
        except ValueError:
            self.fail(f"{value!r} is not a percentage like 66%", param, ctx)
        if not 0 < share <= 1:
            self.fail(f"{value!r}: give a percentage above 0 and at most 100", param, ctx)
        return share


def _refuse_during_rotation(ca_dir: Path, out_root: Path) -> None:
    """A rotation away from this CA reissues every user into its out-root; renewing from the
    old CA into the same directories would put old-CA certificates back over them."""
    state = rotation_state.load(rotation_state.state_path(ca_dir))
    in_progress = (Phase.STAGED, Phase.REISSUED, Phase.VERIFIED)
    if state is None or state.phase not in in_progress:
        return
    if Path(state.out_root).resolve() == out_root.resolve():
        raise InputError(
            f"a rotation of {ca_dir} to {state.new.dir} is in progress ({state.phase.value}) and "
            f"writes to {out_root}: renew from the new CA (--ca-dir {state.new.dir}), or "
            "finish the rotation first (rdsssl rotate ca --retire)"
        )


def _renew_lock(
    out_root: Path, dry_run: bool, wait: float
) -> contextlib.AbstractContextManager[Any]:
    """One renew run per OUT_ROOT, held through the hooks too (which run after the CA store
    lock is released, so that a hook may call rdsssl on the same store)."""
    if dry_run:
        return contextlib.nullcontext()
    make_private_dirs(out_root)
    return FileLock(
        out_root / ".rdsssl-renew.lock",
        command=current_command(),
        wait=wait,
        label=f"renewals into {out_root}",
    )


def _run_hooks(
    app: App, command: str, deployments: list[Deployment], dry_run: bool, exclude: tuple[str, ...]
) -> list[dict[str, Any]]:
    """Run the deploy hook once per deployment; its output goes to stderr, never to stdout.
    ``exclude``: variables the hook must not see besides the secrets (--p12-passphrase-env)."""
    results: list[dict[str, Any]] = []
    for dep in deployments:
        ran = run_hook(command, deploy_env(dep, dry_run=dry_run), exclude=exclude)
        say = app.info if ran.ok else app.warn
        for line in ran.output.splitlines():
            say(f"deploy hook ({dep.user}): {line}")
        if ran.ok and not dry_run:
            mark_deployed(dep)
        results.append(
            {"user": dep.user, "serial": dep.serial, "exit_code": ran.returncode, "ok": ran.ok}
        )
    return results


def _renewal_json(r: Renewal, now: datetime) -> dict[str, Any]:
    return {
        "user": r.user,
        "old_serial": r.old_serial,
        "certificate": r.new.to_json(now),
        "files": [str(p) for p in r.files],
        "version_dir": str(r.version_dir),
        "resumed": r.resumed,
    }


@click.command("renew")
@ca_dir_option
@click.option("--user", help="Only this user.")
@click.option(
    "--before",
    type=Duration(),
    help="Renew certificates with at most this long left (30d, 12h, 2w). Default: 30d.",
)
@click.option(
    "--at",
    type=_Percent(),
    help="Instead of --before: renew once this share of the validity has elapsed (66%).",
)
@click.option(
    "--out-root",
    type=click.Path(path_type=Path, file_okay=False),
    default=Path("."),
    show_default=True,
    help="Files go to OUT_ROOT/USER/ (symlinks into a version directory, swapped atomically).",
)
@click.option(
    "--deploy-hook",
    metavar="CMD",
    help="Shell command run for each renewed user, with RDSSSL_USER, RDSSSL_SERIAL, "
    "RDSSSL_CERT_PATH, RDSSSL_KEY_PATH, ... in its environment. Checked before any work.",
)
@days_option
@key_type_option(None)
@format_options
@click.option(
    "--dry-run",
    is_flag=True,
    help="Show what is due; issue, write and run nothing (see --run-deploy-hooks).",
)
@click.option(
    "--run-deploy-hooks",
    is_flag=True,
    help="With --dry-run: run the deploy hook anyway, with RDSSSL_DRY_RUN=1 and both serials "
    "empty (the hook must check RDSSSL_DRY_RUN).",
)
@click.option(
    "--force",
    is_flag=True,
    help="Also renew keys that fail over TLS 1.2 (ec-p384), which are skipped otherwise.",
)
@passphrase_file_option
@wait_lock_option
@json_option
def renew(
    ca_dir: Path,
    user: str | None,
    before: timedelta | None,
    at: float | None,
    out_root: Path,
    deploy_hook: str | None,
    days: int,
    key_type: str | None,
    fmt: str,
    p12_passphrase_env: str | None,
    dry_run: bool,
    run_deploy_hooks: bool,
    force: bool,
    passphrase_file: Path | None,
    wait_lock: float,
) -> None:
    """Re-issue certificates inside their renewal window (new key, new certificate).

    The new files replace OUT_ROOT/USER/* in one atomic step; the old certificate stays valid
    (revoke it once clients use the new one). A run killed half-way is finished by the next
    run. Exit 0 when nothing is due; 1 when the deploy hook failed (renewals stay done); 3
    when a user was skipped (bad name, unsafe directory, a key that fails over TLS 1.2;
    everyone else is renewed).

    \b
    Example (cron):
      rdsssl -q cert renew --ca-dir /srv/ca --before 30d --out-root /srv/client-certs \\
          --deploy-hook 'systemctl reload myapp'
    """
    app = get_app()
    now = app.now()
    _check_hook_flags(deploy_hook, dry_run, run_deploy_hooks)
    _refuse_during_rotation(ca_dir, out_root)
    window = RenewalWindow(before=before, at=at)
    p12_secret = p12_passphrase(fmt, p12_passphrase_env)
    hidden = (p12_passphrase_env,) if p12_passphrase_env else ()
    if deploy_hook is not None:
        check_hook(deploy_hook, exclude=hidden)  # before any work, as certbot does
    done: list[Renewal] = []
    with _renew_lock(out_root, dry_run, wait_lock):
        with (
            open_store(ca_dir, wait_lock=wait_lock) as store,
            store.locked() if not dry_run else contextlib.nullcontext(),
        ):
            resumed = finish_interrupted(
                store,
                out_root=out_root,
                user=user,
                fmt=fmt,
                p12_passphrase=p12_secret,
                dry_run=dry_run,
            )
            plan = plan_renewal(store, now=now, before=before, at=at, user=user, out_root=out_root)
            chosen = None if key_type is None else KeyType(key_type)
            if not force:
                plan = tls12_skips(plan, chosen)
            dirs = user_dirs(store, out_root, user=user)
            if plan.due:
                window.check_days(days)
            _warn_loose_dirs(app, plan, dirs)
            if plan.due and not dry_run:
                unlock(app, store, passphrase_file)
                done = renew_due(
                    store,
                    plan,
                    now=now,
                    out_root=out_root,
                    days=days,
                    key_type=chosen,
                    fmt=fmt,
                    p12_passphrase=p12_secret,
                    hook=deploy_hook is not None,
                    allow_tls13_only=force,
                )
        _report(app, ca_dir, plan, resumed, done, dry_run)
        hooks: list[dict[str, Any]] = []
        if deploy_hook is not None and dry_run and not run_deploy_hooks:
            app.info(
                "dry run: the deploy hook is not run (--run-deploy-hooks runs it with "
                "RDSSSL_DRY_RUN=1)"
            )
        elif deploy_hook is not None:
            pending = _dry_deployments(plan, resumed, dirs) if dry_run else hook_pending(dirs)
            hooks = _run_hooks(app, deploy_hook, pending, dry_run, hidden)
    failed = [h for h in hooks if not h["ok"]]
    app.result(
        {
            "ok": not failed and not plan.skipped,
            "dry_run": dry_run,
            "due": [r.to_json(now) for r in plan.due],
            "renewed": [_renewal_json(r, now) for r in done],
            "resumed": [_renewal_json(r, now) for r in resumed],
            "blocked": [r.to_json(now) for r in plan.blocked],
            "skipped": [s.to_json() for s in plan.skipped],
            "hooks_ran": bool(hooks),
            "hooks": hooks,
        }
    )
    if plan.skipped:
        raise InputError(_skipped_summary(plan.skipped, failed, dry_run))
    if failed:
        users = ", ".join(f"{h['user']} (exit {h['exit_code']})" for h in failed)
        again = "" if dry_run else "; the new files are in place and the hook runs again next time"
        raise HookFailed(f"the deploy hook failed for {users}{again}")


def _check_hook_flags(deploy_hook: str | None, dry_run: bool, run_deploy_hooks: bool) -> None:
    if run_deploy_hooks and not dry_run:
        raise UsageError("--run-deploy-hooks goes with --dry-run (a real renewal runs the hook)")
    if run_deploy_hooks and deploy_hook is None:
        raise UsageError("--run-deploy-hooks needs --deploy-hook CMD")


def _warn_loose_dirs(app: App, plan: RenewalPlan, dirs: dict[str, Path]) -> None:
    """An existing OUT_ROOT/USER open to other users is worth a warning (keys go there)."""
    for record in plan.due:
        loose = loose_client_dir_warning(dirs[record.cn]) if record.cn in dirs else None
        if loose:
            app.warn(loose)


def _skipped_summary(skipped: list[Skipped], failed: list[dict[str, Any]], dry_run: bool) -> str:
    """The error a run with skipped users ends with (exit 3), after everyone else was done."""
    serials = ", ".join(s.record.serial_hex for s in skipped)
    others = "would be renewed" if dry_run else "were renewed"
    text = (
        f"{len(skipped)} certificate(s) skipped ({serials}): see the warnings above; every "
        f"other due certificate {others}"
    )
    if failed:
        users = ", ".join(f"{h['user']} (exit {h['exit_code']})" for h in failed)
        text += f"; the deploy hook also failed for {users}"
    return text


def _dry_deployments(
    plan: RenewalPlan, resumed: list[Renewal], dirs: dict[str, Path]
) -> list[Deployment]:
    """Under --dry-run the hook runs for what would be renewed or finished, with the paths
    where the files would go (no serial: nothing is issued)."""
    due = [
        Deployment(r.cn, "", r.serial_hex, dirs[r.cn], dirs[r.cn] / CURRENT)
        for r in plan.due
        if r.cn in dirs
    ]
    return due + [
        Deployment(r.user, r.new.serial_hex, r.old_serial, r.out_dir, r.version_dir)
        for r in resumed
    ]


def _report(
    app: App,
    ca_dir: Path,
    plan: RenewalPlan,
    resumed: list[Renewal],
    done: list[Renewal],
    dry_run: bool,
) -> None:
    for skipped in plan.skipped:
        app.warn(skipped.message())
    for r in plan.blocked:
        app.warn(
            f"{r.cn}: certificate {r.serial_hex} already ends with the CA on "
            f"{iso(r.not_after)}; renewing cannot extend it: renew the CA first "
            f"(rdsssl ca renew --ca-dir {ca_dir}: same key, no client re-issue)"
        )
    verb = "would finish" if dry_run else "finished"
    for item in resumed:
        app.info(f"{verb} an interrupted renewal of {item.user}: {item.new.serial_hex}")
    if not plan.due and not resumed and not plan.skipped:
        app.info("nothing to renew")
    for r in plan.due if dry_run else []:
        app.info(f"due: {r.cn} (certificate {r.serial_hex}, not after {iso(r.not_after)})")
    for item in done:
        warn_truncated(app, item.new, item.truncated)
        app.info(
            f"renewed {item.user}: {item.old_serial} -> {item.new.serial_hex}, "
            f"valid until {iso(item.new.not_after)}, in {item.out_dir}"
        )
