"""``rdsssl cert renew``: re-issue certificates inside their renewal window, for cron.

Kept apart from `rdsssl.cli.cert` (which registers it on the `cert` group) because renewal has
its own machinery: the command parses its options into `rdsssl.ops.renew_run.RenewOptions`,
runs `rdsssl.ops.renew_run.run` (the run lock on OUT_ROOT, deploy hooks, the atomic version
switch of `rdsssl.ops.client_versions`) and renders the result.
"""

from __future__ import annotations

from datetime import timedelta
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
    p12_passphrase,
    passphrase_file_option,
    unlock,
    wait_lock_option,
    warn_truncated,
)
from rdsssl.cli.last_success import last_success
from rdsssl.models import KeyType
from rdsssl.ops.renew_run import HookRun, RenewOptions, RenewResult, run
from rdsssl.store.castore import CaStore

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


@click.command("renew")
@last_success("cert-renew")
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
    "--pre-hook",
    metavar="CMD",
    help="Shell command run once before the first renewal (only when something is due).",
)
@click.option(
    "--deploy-hook",
    metavar="CMD",
    help="Shell command run for each renewed user, with RDSSSL_USER, RDSSSL_SERIAL, "
    "RDSSSL_CERT_PATH, RDSSSL_KEY_PATH, ... in its environment. Checked before any work.",
)
@click.option(
    "--post-hook",
    metavar="CMD",
    help="Shell command run once after all renewals and deploy hooks, when something was "
    "renewed (50 users: one reload); RDSSSL_RENEWED_USERS lists them.",
)
@click.option(
    "--hooks-dir",
    type=click.Path(path_type=Path, file_okay=False),
    help="Also run the executables of DIR/pre, DIR/deploy and DIR/post (lexical order, "
    "before the command-line hook); DIR must be yours and not group/world-writable.",
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
    help="With --dry-run: run the hooks anyway, with RDSSSL_DRY_RUN=1 and the deploy hooks' "
    "serials empty (a hook must check RDSSSL_DRY_RUN).",
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
    pre_hook: str | None,
    deploy_hook: str | None,
    post_hook: str | None,
    hooks_dir: Path | None,
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
    run. Exit 0 when nothing is due; 1 when a hook failed (renewals stay done; a failed pre
    hook renews nothing); 3
    when a user was skipped (bad name, unsafe directory, a key that fails over TLS 1.2;
    everyone else is renewed).

    \b
    Example (cron):
      rdsssl -q cert renew --ca-dir /srv/ca --before 30d --out-root /srv/client-certs \\
          --post-hook 'systemctl reload myapp'
    """
    app = get_app()
    options = RenewOptions(
        ca_dir=ca_dir,
        out_root=out_root,
        now=app.now(),
        user=user,
        before=before,
        at=at,
        days=days,
        key_type=None if key_type is None else KeyType(key_type),
        fmt=fmt,
        p12_passphrase=p12_passphrase(fmt, p12_passphrase_env),
        pre_hook=pre_hook,
        deploy_hook=deploy_hook,
        post_hook=post_hook,
        hooks_dir=hooks_dir,
        hidden=(p12_passphrase_env,) if p12_passphrase_env else (),
        dry_run=dry_run,
        run_deploy_hooks=run_deploy_hooks,
        force=force,
        wait_lock=wait_lock,
    )
    result = run(options, _View(app, passphrase_file))
    app.result(result.to_json())
    error = result.error()
    if error is not None:
        raise error


class _View:
    """The CLI side of a run: prompts, warnings and the report on stderr."""

    def __init__(self, app: App, passphrase_file: Path | None) -> None:
        self._app, self._passphrase_file = app, passphrase_file

    def unlock(self, store: CaStore) -> None:
        unlock(self._app, store, self._passphrase_file)

    def warn(self, text: str) -> None:
        self._app.warn(text)

    def info(self, text: str) -> None:
        self._app.info(text)

    def hook_output(self, hook: HookRun, line: str) -> None:
        who = f"{hook.stage} hook ({hook.user})" if hook.user else f"{hook.stage} hook"
        (self._app.info if hook.ok else self._app.warn)(f"{who}: {line}")

    def renewed(self, outcome: RenewResult) -> None:
        app, plan, opts = self._app, outcome.plan, outcome.options
        for skipped in plan.skipped:
            app.warn(skipped.message())
        for r in plan.blocked:
            app.warn(
                f"{r.cn}: certificate {r.serial_hex} already ends with the CA on "
                f"{iso(r.not_after)}; renewing cannot extend it: renew the CA first "
                f"(rdsssl ca renew --ca-dir {opts.ca_dir}: same key, no client re-issue)"
            )
        verb = "would finish" if opts.dry_run else "finished"
        for item in outcome.resumed:
            app.info(f"{verb} an interrupted renewal of {item.user}: {item.new.serial_hex}")
        if not plan.due and not outcome.resumed and not plan.skipped:
            app.info("nothing to renew")
        for r in plan.due if opts.dry_run else []:
            app.info(f"due: {r.cn} (certificate {r.serial_hex}, not after {iso(r.not_after)})")
        for item in outcome.done:
            warn_truncated(app, item.new, item.truncated)
            app.info(
                f"renewed {item.user}: {item.old_serial} -> {item.new.serial_hex}, "
                f"valid until {iso(item.new.not_after)}, in {item.out_dir}"
            )
