"""The hooks of a `cert renew` run (`rdsssl.ops.renew_run`): which hooks run at each stage
(a hooks directory's first, then the command-line one), running them with their output sent to
the run's view, and the sentence a failed stage ends the run with. What runs when, and with
which environment, is decided in `rdsssl.ops.renew_run` and `rdsssl.ops.hooks`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rdsssl.ops.cert_renewal import Renewal
from rdsssl.ops.client_versions import CURRENT, mark_deployed
from rdsssl.ops.hooks import STAGES, Deployment, Hook, check_hook, deploy_env, dir_hooks, run_hook
from rdsssl.ops.renewal_plan import RenewalPlan

if TYPE_CHECKING:
    from rdsssl.ops.renew_run import RenewOptions, RenewView

__all__ = [
    "HookRun",
    "HookSet",
    "dry_deployments",
    "hook_set",
    "hooks_failed",
    "run_deploys",
    "run_one",
    "run_stage",
]


@dataclass(frozen=True)
class HookRun:
    """One hook run: a deploy hook for one user, or a pre or post hook (``user`` empty)."""

    user: str
    serial: str
    exit_code: int
    ok: bool
    stage: str = "deploy"
    hook: str = ""  # the command, or the file of a hooks directory

    def to_json(self) -> dict[str, Any]:
        return {
            "stage": self.stage,
            "hook": self.hook,
            "user": self.user,
            "serial": self.serial,
            "exit_code": self.exit_code,
            "ok": self.ok,
        }


@dataclass(frozen=True)
class HookSet:
    """Every hook of a run by stage, the hooks directory's first."""

    stages: dict[str, tuple[Hook, ...]] = field(default_factory=dict)

    def of(self, stage: str) -> tuple[Hook, ...]:
        return self.stages.get(stage, ())

    def __bool__(self) -> bool:
        return any(self.stages.values())


def hook_set(opts: RenewOptions, view: RenewView) -> HookSet:
    """The run's hooks, each checked: the hooks directory's, then the command-line one."""
    from_dir = dir_hooks(opts.hooks_dir, view.warn) if opts.hooks_dir is not None else {}
    given = {"pre": opts.pre_hook, "deploy": opts.deploy_hook, "post": opts.post_hook}
    stages: dict[str, tuple[Hook, ...]] = {}
    for stage in STAGES:
        command = given[stage]
        if command is not None:
            check_hook(command, option=f"--{stage}-hook", exclude=opts.hidden)
        mine = (Hook(stage, command, command),) if command is not None else ()
        stages[stage] = (*from_dir.get(stage, ()), *mine)
    return HookSet(stages)


def run_deploys(
    opts: RenewOptions, hooks: Sequence[Hook], deployments: list[Deployment], view: RenewView
) -> list[HookRun]:
    """Run every deploy hook once per deployment, in order; a version counts as deployed (not
    retried next run) when all of them succeeded. Output goes to the view, never to stdout."""
    results: list[HookRun] = []
    for dep in deployments if hooks else []:
        env = deploy_env(dep, dry_run=opts.dry_run)
        runs = [run_one(opts, hook, env, view, user=dep.user, serial=dep.serial) for hook in hooks]
        if all(r.ok for r in runs) and not opts.dry_run:
            mark_deployed(dep)
        results += runs
    return results


def run_stage(
    opts: RenewOptions, hooks: Sequence[Hook], env: dict[str, str], view: RenewView
) -> list[HookRun]:
    """Run a pre or post stage: every hook once, in order, each whatever the others did."""
    return [run_one(opts, hook, env, view) for hook in hooks]


def run_one(
    opts: RenewOptions,
    hook: Hook,
    env: dict[str, str],
    view: RenewView,
    *,
    user: str = "",
    serial: str = "",
) -> HookRun:
    ran = run_hook(hook.command, env, exclude=opts.hidden)
    result = HookRun(user, serial, ran.returncode, ran.ok, hook.stage, hook.label)
    for line in ran.output.splitlines():
        view.hook_output(result, line)
    return result


def dry_deployments(
    plan: RenewalPlan, resumed: list[Renewal], dirs: dict[str, Path]
) -> list[Deployment]:
    """Under a dry run the hook runs for what would be renewed or finished, with the paths
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


def _users(failed: list[HookRun]) -> str:
    return ", ".join(f"{h.user} (exit {h.exit_code})" for h in failed)


def hooks_failed(failed: list[HookRun], dry_run: bool) -> str:
    """One sentence per failed stage, saying what stays done."""
    parts: list[str] = []
    pre = [h for h in failed if h.stage == "pre"]
    deploy = [h for h in failed if h.stage == "deploy"]
    post = [h for h in failed if h.stage == "post"]
    if pre:
        parts.append(
            f"the pre hook {_labels(pre)} failed: nothing was renewed (the next run tries again)"
        )
    if deploy:
        again = "" if dry_run else "; the new files are in place and the hook runs again next time"
        parts.append(f"the deploy hook failed for {_users(deploy)}{again}")
    if post:
        done = "" if dry_run else " (the renewals are done)"
        parts.append(f"the post hook {_labels(post)} failed{done}")
    return "; ".join(parts)


def _labels(failed: list[HookRun]) -> str:
    return ", ".join(f"{h.hook!r} (exit {h.exit_code})" for h in failed)
