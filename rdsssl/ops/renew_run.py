"""One ``cert renew`` run as a library call: ``run(options, view)``.

The run holds the OUT_ROOT run lock (one renewal per OUT_ROOT, held through the hooks too, which
run after the CA store lock is released so that a hook may call rdsssl on the same store),
finishes what a killed run left (`rdsssl.ops.cert_renewal.finish_interrupted`), plans
(`rdsssl.ops.renewal_plan`), renews what is due, then runs the deploy hooks once per new version.

Pre and post hooks (`rdsssl.ops.hooks`) run once per run, certbot's rule: the pre hooks before
the first renewal, and only when there is something to renew, finish or deploy (found by a
read-only look at the store, without its lock, so that a pre hook may call rdsssl too); the post
hooks after every deploy hook, when a renewal was attempted (the pre hooks ran, or something was
renewed, finished or deployed), even when the renewal then failed, so that what a pre hook
stopped is started again. A failed pre hook stops the run before anything is renewed (exit 1,
the post hooks do not run: nothing was attempted); a failed post hook is exit 1 with the
renewals done.

A rotation away from this CA that writes to the same OUT_ROOT refuses the run: renewing from the
old CA would put old-CA certificates back over the new ones.

A dry run never runs a hook unless ``run_deploy_hooks`` asks for it: hooks are written for
real renewals (a hook that revokes ``$RDSSSL_OLD_SERIAL`` would revoke a live certificate).
Asked for, every stage runs (pre and post only when something would be renewed) with
``RDSSSL_DRY_RUN=1``, and the deploy hooks with both serials empty.

The caller (the CLI) supplies a `RenewView`: it unlocks the store (a passphrase may be prompted
for), shows warnings as they arise, reports the renewals before the hooks run, and shows the
hooks' output; the `RenewResult` carries the JSON and the error the run ends with.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

from rdsssl.errors import HookFailed, InputError, RdsSslError, UsageError
from rdsssl.models import KeyType
from rdsssl.ops import rotation_file
from rdsssl.ops.cert_renewal import Renewal, finish_interrupted, renew_due
from rdsssl.ops.client_versions import hook_pending, user_dirs
from rdsssl.ops.hooks import STAGES, stage_env
from rdsssl.ops.renew_hooks import (
    HookRun,
    HookSet,
    dry_deployments,
    hook_set,
    hooks_failed,
    run_deploys,
    run_stage,
)
from rdsssl.ops.renewal_plan import RenewalPlan, RenewalWindow, Skipped, plan_renewal, tls12_skips
from rdsssl.ops.rotation_state import Phase
from rdsssl.store.castore import CaStore
from rdsssl.store.files import loose_client_dir_warning
from rdsssl.store.fsutil import make_private_dirs
from rdsssl.store.lock import FileLock, current_command

__all__ = ["HookRun", "HookSet", "RenewOptions", "RenewResult", "RenewView", "run"]


@dataclass(frozen=True)
class RenewOptions:
    """Everything a ``cert renew`` run needs. ``p12_passphrase`` is the secret itself;
    ``hidden``: environment variables the hook must not see besides the secrets."""

    ca_dir: Path
    out_root: Path
    now: datetime
    user: str | None = None
    before: timedelta | None = None
    at: float | None = None
    days: int = 365
    key_type: KeyType | None = None
    fmt: str = "pem"
    p12_passphrase: bytes | None = None
    pre_hook: str | None = None
    deploy_hook: str | None = None
    post_hook: str | None = None
    hooks_dir: Path | None = None
    hidden: tuple[str, ...] = ()
    dry_run: bool = False
    run_deploy_hooks: bool = False
    force: bool = False
    wait_lock: float = 0.0


class RenewView(Protocol):
    """What the run shows and asks for, in order."""

    def unlock(self, store: CaStore) -> None:
        """Unlock the CA key (only when something is due and not a dry run)."""

    def warn(self, text: str) -> None:
        """A warning as it arises (a user directory open to others)."""

    def renewed(self, outcome: RenewResult) -> None:
        """The renewals, before any hook runs (``hooks`` still empty)."""

    def info(self, text: str) -> None:
        """A note (e.g. the hook not run in a dry run)."""

    def hook_output(self, hook: HookRun, line: str) -> None:
        """One line a hook printed (``hook.ok``: whether it succeeded)."""


@dataclass(frozen=True)
class RenewResult:
    """What a run did: the plan, renewals finished from a killed run, new ones, hooks."""

    options: RenewOptions
    plan: RenewalPlan
    resumed: list[Renewal]
    done: list[Renewal]
    hooks: tuple[HookRun, ...] = ()

    def to_json(self) -> dict[str, Any]:
        now = self.options.now
        return {
            "dry_run": self.options.dry_run,
            "due": [r.to_json(now) for r in self.plan.due],
            "renewed": [_renewal_json(r, now) for r in self.done],
            "resumed": [_renewal_json(r, now) for r in self.resumed],
            "blocked": [r.to_json(now) for r in self.plan.blocked],
            "skipped": [s.to_json() for s in self.plan.skipped],
            "hooks_ran": bool(self.hooks),
            "hooks": [h.to_json() for h in self.hooks],
        }

    @property
    def failed_hooks(self) -> list[HookRun]:
        return [h for h in self.hooks if not h.ok]

    def error(self) -> RdsSslError | None:
        """The error the run ends with: skipped users (exit 3), else a failed hook (exit 1)."""
        failed, dry_run = self.failed_hooks, self.options.dry_run
        if self.plan.skipped:
            return InputError(_skipped_summary(self.plan.skipped, failed, dry_run))
        if failed:
            return HookFailed(hooks_failed(failed, dry_run))
        return None


def run(options: RenewOptions, view: RenewView) -> RenewResult:
    """Renew what is due (see the module docstring); errors before any work for bad flags, a
    rotation writing to the same OUT_ROOT, a bad hook or hooks directory, or a --days inside
    the window."""
    opts = options
    hooks = hook_set(opts, view)  # checked before any work, as certbot does
    _check_hook_flags(opts, hooks)
    _refuse_during_rotation(opts.ca_dir, opts.out_root)
    window = RenewalWindow(before=opts.before, at=opts.at)
    with _renew_lock(opts.out_root, opts.dry_run, opts.wait_lock):
        if opts.dry_run:
            return _dry_run(opts, window, view, hooks)
        pre: list[HookRun] = []
        if hooks.of("pre") and _work_pending(opts):
            env = stage_env(out_root=opts.out_root, dry_run=False)
            pre = run_stage(opts, hooks.of("pre"), env, view)
            if any(not h.ok for h in pre):
                raise HookFailed(hooks_failed([h for h in pre if not h.ok], False))
        try:
            result, dirs = _renew(opts, window, view, deploy=bool(hooks.of("deploy")))
        except BaseException:
            if pre:  # start again what the pre hooks stopped
                run_stage(opts, hooks.of("post"), _post_env(opts, []), view)
            raise
        view.renewed(result)
        pending = hook_pending(dirs) if hooks.of("deploy") else []
        ran = pre + run_deploys(opts, hooks.of("deploy"), pending, view)
        renewed = [r.user for r in (*result.resumed, *result.done)] + [d.user for d in pending]
        if pre or renewed:
            ran += run_stage(opts, hooks.of("post"), _post_env(opts, renewed), view)
    return RenewResult(opts, result.plan, result.resumed, result.done, tuple(ran))


def _dry_run(
    opts: RenewOptions, window: RenewalWindow, view: RenewView, hooks: HookSet
) -> RenewResult:
    """A dry run: what is due; the hooks only with ``run_deploy_hooks`` (RDSSSL_DRY_RUN=1)."""
    result, dirs = _renew(opts, window, view, deploy=bool(hooks.of("deploy")))
    view.renewed(result)
    if not hooks:
        return result
    if not opts.run_deploy_hooks:
        stages = [stage for stage in STAGES if hooks.of(stage)]
        what = (
            f"the {stages[0]} hook is" if len(stages) == 1 else f"the {', '.join(stages)} hooks are"
        )
        view.info(f"dry run: {what} not run (--run-deploy-hooks: run with RDSSSL_DRY_RUN=1)")
        return result
    deployments = dry_deployments(result.plan, result.resumed, dirs)
    if not deployments:
        return result
    env = stage_env(out_root=opts.out_root, dry_run=True)
    ran = run_stage(opts, hooks.of("pre"), env, view)
    ran += run_deploys(opts, hooks.of("deploy"), deployments, view)
    ran += run_stage(opts, hooks.of("post"), _post_env(opts, [d.user for d in deployments]), view)
    return RenewResult(opts, result.plan, result.resumed, result.done, tuple(ran))


def _work_pending(opts: RenewOptions) -> bool:
    """Whether the run will renew, finish or deploy anything: a look at the store without its
    lock (nothing is written), so that the pre hooks run before the lock is taken."""
    with CaStore.open(opts.ca_dir, wait_lock=opts.wait_lock) as store:
        resumed = finish_interrupted(
            store, out_root=opts.out_root, user=opts.user, fmt=opts.fmt, dry_run=True
        )
        plan = _plan(store, opts)
        dirs = user_dirs(store, opts.out_root, user=opts.user)
    return bool(plan.due or resumed or hook_pending(dirs))


def _plan(store: CaStore, opts: RenewOptions) -> RenewalPlan:
    """What is due (keys that would fail over TLS 1.2 skipped unless ``force``)."""
    plan = plan_renewal(
        store, now=opts.now, before=opts.before, at=opts.at, user=opts.user,
        out_root=opts.out_root,
    )  # fmt: skip
    return plan if opts.force else tls12_skips(plan, opts.key_type)


def _post_env(opts: RenewOptions, renewed: Sequence[str]) -> dict[str, str]:
    return stage_env(out_root=opts.out_root, dry_run=opts.dry_run, renewed=dict.fromkeys(renewed))


def _renew(
    opts: RenewOptions, window: RenewalWindow, view: RenewView, *, deploy: bool
) -> tuple[RenewResult, dict[str, Path]]:
    """Finish, plan and renew under the CA store lock."""
    done: list[Renewal] = []
    with (
        CaStore.open(opts.ca_dir, wait_lock=opts.wait_lock) as store,
        store.locked() if not opts.dry_run else contextlib.nullcontext(),
    ):
        resumed = finish_interrupted(
            store,
            out_root=opts.out_root,
            user=opts.user,
            fmt=opts.fmt,
            p12_passphrase=opts.p12_passphrase,
            dry_run=opts.dry_run,
        )
        plan = _plan(store, opts)
        dirs = user_dirs(store, opts.out_root, user=opts.user)
        if plan.due:
            window.check_days(opts.days)
        _warn_loose_dirs(view, plan, dirs)
        if plan.due and not opts.dry_run:
            view.unlock(store)
            done = renew_due(
                store,
                plan,
                now=opts.now,
                out_root=opts.out_root,
                days=opts.days,
                key_type=opts.key_type,
                fmt=opts.fmt,
                p12_passphrase=opts.p12_passphrase,
                hook=deploy,
                allow_tls13_only=opts.force,
            )
    return RenewResult(opts, plan, resumed, done), dirs


def _check_hook_flags(opts: RenewOptions, hooks: HookSet) -> None:
    if opts.run_deploy_hooks and not opts.dry_run:
        raise UsageError("--run-deploy-hooks goes with --dry-run (a real renewal runs the hook)")
    if opts.run_deploy_hooks and not hooks:
        raise UsageError(
            "--run-deploy-hooks needs --deploy-hook, --pre-hook or --post-hook CMD, or "
            "--hooks-dir DIR"
        )


def _refuse_during_rotation(ca_dir: Path, out_root: Path) -> None:
    """A rotation away from this CA reissues every user into its out-root; renewing from the
    old CA into the same directories would put old-CA certificates back over them."""
    state = rotation_file.load(rotation_file.state_path(ca_dir))
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
    """One renew run per OUT_ROOT, held through the hooks too."""
    if dry_run:
        return contextlib.nullcontext()
    make_private_dirs(out_root)
    return FileLock(
        out_root / ".rdsssl-renew.lock",
        command=current_command(),
        wait=wait,
        label=f"renewals into {out_root}",
    )


def _warn_loose_dirs(view: RenewView, plan: RenewalPlan, dirs: dict[str, Path]) -> None:
    """An existing OUT_ROOT/USER open to other users is worth a warning (keys go there)."""
    for record in plan.due:
        loose = loose_client_dir_warning(dirs[record.cn]) if record.cn in dirs else None
        if loose:
            view.warn(loose)


def _renewal_json(r: Renewal, now: datetime) -> dict[str, Any]:
    return {
        "user": r.user,
        "old_serial": r.old_serial,
        "certificate": r.new.to_json(now),
        "files": [str(p) for p in r.files],
        "version_dir": str(r.version_dir),
        "resumed": r.resumed,
    }


def _skipped_summary(skipped: list[Skipped], failed: list[HookRun], dry_run: bool) -> str:
    """The error a run with skipped users ends with (exit 3), after everyone else was done."""
    serials = ", ".join(s.record.serial_hex for s in skipped)
    others = "would be renewed" if dry_run else "were renewed"
    text = (
        f"{len(skipped)} certificate(s) skipped ({serials}): see the warnings above; every "
        f"other due certificate {others}"
    )
    if failed:
        text += f"; also, {hooks_failed(failed, dry_run)}"
    return text
