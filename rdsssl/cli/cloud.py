"""What every cloud command shares: the API client, the mutating-command options, the plan
display and confirmation, progress while waiting, and the probe wiring.

Imported only by cloud commands (`instance`, `probe`, `plan`, `apply`, `rotate`, `check`, ...);
the SDK itself is imported lazily inside `rdsssl.rds.api` when a client is built.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

import click

from rdsssl.cli.app import App
from rdsssl.cli.common import restart_margin_option
from rdsssl.errors import UsageError
from rdsssl.ops.apply import DEFAULT_SETTLE, ApplyOptions
from rdsssl.ops.audit import AuditLog
from rdsssl.ops.plan import Plan
from rdsssl.ops.probe import ProbeTarget, probe_target, server_ca_file
from rdsssl.ops.probe_options import ProbeOptions
from rdsssl.rds.api import AliyunRdsApi
from rdsssl.rds.protocol import RdsApi
from rdsssl.rds.service_profile import ServiceProfile
from rdsssl.rds.settings import ApiSettings
from rdsssl.rds.waiters import Progress

__all__ = [
    "MutatingOptions",
    "confirm_plan",
    "instance_target",
    "make_api",
    "mutating_options",
    "plan_lines",
    "probe_options",
    "progress_reporter",
    "skip_proof_option",
    "take_mutating",
    "take_probe",
]

F = TypeVar("F", bound=Callable[..., Any])

DEFAULT_WAIT_TIMEOUT = 1800.0


def make_api(app: App) -> RdsApi:
    """The SDK adapter configured from the global options and their env twins."""
    settings = ApiSettings.from_env(region=app.region, endpoint=app.endpoint, profile=app.profile)
    return AliyunRdsApi(settings)


# ------------------------------------------------------------------ options


@dataclass(frozen=True)
class MutatingOptions:
    """The options every mutating command takes."""

    yes: bool
    dry_run: bool
    no_wait: bool
    timeout: float
    force: bool
    audit_log: Path | None
    settle: float | None = None  # None: the service profile's
    restart_margin: timedelta = timedelta(hours=1)

    @property
    def audit(self) -> AuditLog:
        """The audit log these options select (default: `rdsssl.ops.audit.default_path()`)."""
        return AuditLog(self.audit_log) if self.audit_log else AuditLog.default()

    def apply_options(self, profile: ServiceProfile) -> ApplyOptions:
        """The library's options for a change made with these options."""
        return ApplyOptions(
            dry_run=self.dry_run,
            wait=not self.no_wait,
            force=self.force,
            timeout=self.timeout,
            settle=self.settle,
            restart_margin=self.restart_margin,
            profile=profile,
            audit=self.audit,
        )


def mutating_options(f: F) -> F:
    """--yes --dry-run --no-wait --timeout --force --audit-log, collected into `mutating`."""

    options = [
        click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation."),
        click.option(
            "--dry-run", is_flag=True, help="Show the plan; make zero mutating API calls."
        ),
        click.option("--no-wait", is_flag=True, help="Return right after the API call."),
        click.option(
            "--timeout",
            type=float,
            default=DEFAULT_WAIT_TIMEOUT,
            show_default=True,
            help="Seconds to wait for the instance.",
        ),
        click.option(
            "--force",
            is_flag=True,
            help="Skip the lockout guard (no proof that a certificate still works).",
        ),
        click.option(
            "--settle",
            type=click.FloatRange(min=0),
            default=None,
            envvar="RDSSSL_SETTLE_SECONDS",
            metavar="SECONDS",
            help="How long a quiet instance is watched before its reads are believed (a change "
            f"may show late on the real service); default: the service profile's status lag, "
            f"else {DEFAULT_SETTLE:g}s. Env RDSSSL_SETTLE_SECONDS.",
        ),
        click.option(
            "--audit-log",
            type=click.Path(path_type=Path, dir_okay=False),
            envvar="RDSSSL_AUDIT_LOG",
            help="Append-only JSON-lines audit log (env RDSSSL_AUDIT_LOG; "
            "default ~/.local/state/rdsssl/audit.jsonl).",
        ),
    ]
    for option in reversed(options):
        f = option(f)
    return restart_margin_option(f)


def take_mutating(kwargs: dict[str, Any]) -> MutatingOptions:
    """Pop the mutating options from a command's kwargs."""
    return MutatingOptions(
        yes=kwargs.pop("yes"),
        dry_run=kwargs.pop("dry_run"),
        no_wait=kwargs.pop("no_wait"),
        timeout=kwargs.pop("timeout"),
        force=kwargs.pop("force"),
        audit_log=kwargs.pop("audit_log"),
        settle=kwargs.pop("settle"),
        restart_margin=kwargs.pop("restart_margin"),
    )


def skip_proof_option(f: F) -> F:
    """``--skip-proof CS`` (repeatable): an endpoint the server-side proof does not try because
    it is unreachable from here; reported as skipped, never as proven."""
    return click.option(
        "--skip-proof",
        multiple=True,
        metavar="CONNECTION_STRING",
        help="After a server SSL change, do not try this endpoint in the proof (unreachable "
        "from here; reported as skipped); repeatable.",
    )(f)


def probe_options(prefix: str = "--probe-") -> Callable[[F], F]:
    """--probe-user/--probe-cert/--probe-key/--probe-root-cert/--probe-password-env."""

    def decorate(f: F) -> F:
        path = click.Path(path_type=Path, dir_okay=False, exists=True)
        options = [
            click.option(f"{prefix}user", "probe_user", help="Database user to probe as."),
            click.option(f"{prefix}cert", "probe_cert", type=path, help="Client certificate."),
            click.option(f"{prefix}key", "probe_key", type=path, help="Client private key."),
            click.option(
                f"{prefix}root-cert",
                "probe_root_cert",
                type=path,
                help="Server CA (default: downloaded from the instance's ServerCAUrl).",
            ),
            click.option(
                f"{prefix}password-env",
                "probe_password_env",
                metavar="VAR",
                help="Environment variable holding the user's password.",
            ),
        ]
        for option in reversed(options):
            f = option(f)
        return f

    return decorate


def take_probe(kwargs: dict[str, Any]) -> ProbeOptions:
    """Pop the probe options from a command's kwargs."""
    opts = ProbeOptions(
        user=kwargs.pop("probe_user"),
        cert=kwargs.pop("probe_cert"),
        key=kwargs.pop("probe_key"),
        root_cert=kwargs.pop("probe_root_cert"),
        password_env=kwargs.pop("probe_password_env"),
    )
    if (opts.cert or opts.key) and not opts.user:
        raise UsageError("--probe-cert/--probe-key need --probe-user")
    return opts


# ------------------------------------------------------------------ probing


@contextmanager
def instance_target(
    api: RdsApi, instance_id: str, root_cert: Path | None
) -> Iterator[tuple[ProbeTarget, Path]]:
    """The instance's main endpoint (`probe.probe_target`) and a server CA file for
    sslmode=verify-full: `root_cert`, else the CA downloaded from ServerCAUrl into a temp file.
    """
    with server_ca_file(api, instance_id, root_cert) as path:
        yield probe_target(api, instance_id), path


# ------------------------------------------------------------------ plans and progress


_EFFECT_TEXT = {
    "restart": "RESTARTS the instance (~3 min; open sessions are dropped)",
    "acl-lock": "locks the instance for ~1 min (no restart)",
    "none": "no change",
}


def plan_lines(plan: Plan) -> list[str]:
    """The human rendering of a plan: one line per change, then its cost."""
    if plan.noop:
        return [f"{plan.instance_id}: up to date, nothing to change"]
    calls = "two ModifyDBInstanceSSL calls" if _two_calls(plan) else "one ModifyDBInstanceSSL call"
    lines = [f"{plan.instance_id}: {len(plan.changes)} change(s), {calls}:"]
    for change in plan.changes:
        lines.append(f"  {change.field}: {change.before} -> {change.after}")
    lines.append(f"  effect: {_EFFECT_TEXT[plan.effect.value]}")
    lines.extend(f"  warning: {w}" for w in plan.warnings)
    return lines


def _two_calls(plan: Plan) -> bool:
    """SSL is switched on in a call of its own (`rdsssl.ops.apply_fleet`, a service profile
    with `one_call_ssl_setup: false`)."""
    return any(w.code == "two-calls" for w in plan.warnings)


def confirm_plan(app: App, plan: Plan, opts: MutatingOptions) -> bool:
    """Show the plan on stderr; on a TTY ask unless --yes. False means: do not proceed."""
    for line in plan_lines(plan):
        app.info(line)
    if plan.noop or opts.dry_run or opts.yes or not app.interactive:
        return True
    return click.confirm("Apply this change?", default=False, err=True)


def progress_reporter(app: App, instance_id: str | None = None) -> Callable[[Progress], None]:
    """Progress while waiting: a live line on a terminal (one per instance in a fleet, see
    rdsssl.cli.progress), plain log lines otherwise; each starts with `instance_id` when given
    (a fleet run names the instance on every line)."""
    if app.json or app.verbosity < 0:
        return lambda p: None
    who = f"{instance_id}: " if instance_id else ""
    import sys

    if sys.stderr.isatty():
        from rdsssl.cli.progress import line_for

        board = app.progress_board()
        key = instance_id or ""
        return lambda p: board.update(key, who + line_for(p))

    def log(p: Progress) -> None:
        app.info(
            f"{who}{p.waiter}: {p.status} (elapsed {p.elapsed:.0f}s, "
            f"next check in {p.next_delay:.1f}s)"
        )

    return log
