"""``rdsssl service-profile record ID --out FILE --throwaway``: measure what the real RDS service
does where its documentation is silent, on an instance the user declares disposable, and
write a service profile (the logic is `rdsssl.ops.profile_recorder`).

It changes the instance several times (each client-CA change restarts it for ~3 minutes), so
`--throwaway` is mandatory, the steps and their restarts are listed first, and a terminal asks
for confirmation unless `--yes`; without a terminal `--yes` is required (exit 2), so a script
never waits on a prompt nobody sees. The instance is restored at the end, also after an error
or Ctrl-C. The probe password comes from an environment variable, never from a flag.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from rdsssl.cli.app import App
from rdsssl.cli.common import get_app, json_option
from rdsssl.errors import ConfigError, UsageError
from rdsssl.rds.api import AliyunRdsApi
from rdsssl.rds.settings import ApiSettings

if TYPE_CHECKING:
    from rdsssl.ops.profile_recorder import Step

__all__ = ["service_profile"]

_FILE = click.Path(path_type=Path, dir_okay=False)


@click.group("service-profile")
def service_profile() -> None:
    """Record what the RDS service does (a file for the emulator and the waiters)."""


@service_profile.command("record")
@click.argument("instance_id", metavar="ID")
@click.option("--out", "out", required=True, type=_FILE, help="Write the profile (JSON) here.")
@click.option(
    "--throwaway",
    is_flag=True,
    help="Required: confirms the instance is disposable (it is restarted several times).",
)
@click.option("--probe-user", metavar="USER", help="Database user to connect as (optional).")
@click.option(
    "--probe-password-env", metavar="VAR", help="Environment variable holding its password."
)
@click.option("--name", metavar="NAME", help="The profile's name (default: region and date).")
@click.option(
    "--poll-interval",
    type=click.FloatRange(min=0.05),
    default=1.0,
    show_default=True,
    metavar="SECONDS",
    help="How often the instance is read during a change (two Describe calls each time).",
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=1),
    default=1800.0,
    show_default=True,
    metavar="SECONDS",
    help="Longest wait for one change.",
)
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@json_option
def record_cmd(
    instance_id: str,
    out: Path,
    throwaway: bool,
    probe_user: str | None,
    probe_password_env: str | None,
    name: str | None,
    poll_interval: float,
    timeout: float,
    yes: bool,
) -> None:
    """Measure the service's undocumented behaviour on a THROWAWAY instance and restore it.

    \b
    Changes, in order (each RESTART takes ~3 min on a real instance, sessions dropped):
      - disable the client CA, if the instance has one            (restart)
      - a temporary two-CA client CA bundle, CRLF line ends         (restart)
      - one ACL-only change                                         (~1 min lock)
      - restore the original client CA, CRL and ACLs in one call   (restart)
    plus Describe calls only: a made-up id, and padded calls for the URL limit.

    \b
    Replay the file:
      rdsssl emulator serve --profile FILE        (the emulator answers as your region)
      rdsssl --service-profile FILE ...           (or RDSSSL_SERVICE_PROFILE: the waiters)

    \b
    Example:
      rdsssl service-profile record pgm-bp1scratch --out hangzhou.json --throwaway \\
          --probe-user alice --probe-password-env ALICE_PASSWORD
    """
    from rdsssl.ops.profile_calls import RecordOptions
    from rdsssl.ops.profile_recorder import record_with_consent

    app = get_app()
    password = _probe_password(throwaway, probe_user, probe_password_env)
    api = AliyunRdsApi(
        ApiSettings.from_env(region=app.region, endpoint=app.endpoint, profile=app.profile)
    )
    options = RecordOptions(
        probe_user=probe_user,
        probe_password=password,
        name=name,
        poll_interval=poll_interval,
        timeout=timeout,
        info=app.info,
        warn=app.warn,
        now=app.now,
    )
    consent = functools.partial(_confirm, app, instance_id, yes)
    result = record_with_consent(api, instance_id, out=out, options=options, consent=consent)
    for note in result.notes:
        app.info(f"note: {note}")
    _show(app, result.profile)
    app.out(f"written: {out}")
    app.info(f"{instance_id}: {result.restored}")
    app.result(result.to_json())


def _probe_password(
    throwaway: bool, probe_user: str | None, probe_password_env: str | None
) -> str | None:
    """Usage errors for the flags that go together; the probe password from its variable."""
    if not throwaway:
        raise UsageError(
            "--throwaway is required: recording restarts the instance several times (~3 min "
            "each, sessions dropped) and changes its client CA and ACLs before restoring them; "
            "use a scratch instance and pass --throwaway"
        )
    if probe_password_env and not probe_user:
        raise UsageError("--probe-password-env needs --probe-user")
    if probe_user and not probe_password_env:
        raise UsageError(
            "--probe-user needs --probe-password-env VAR (the ACLs used while recording ask "
            "for a password)"
        )
    if not probe_password_env:
        return None
    password = os.environ.get(probe_password_env)
    if not password:
        raise ConfigError(f"environment variable {probe_password_env} is not set")
    return password


def _confirm(app: App, instance_id: str, yes: bool, steps: Sequence[Step]) -> None:
    """Show the planned steps; ask unless --yes (no terminal: --yes is required)."""
    from rdsssl.ops.profile_recorder import describe_steps

    app.info(f"{instance_id} will be changed and restored (throwaway instance):")
    for line in describe_steps(steps):
        app.info(line)
    if yes:
        return
    if not app.interactive:
        raise UsageError(
            "no terminal to confirm on: pass --yes to record on this throwaway instance"
        )
    if not click.confirm(f"Record on {instance_id}?", default=False, err=True):
        raise click.Abort()


_SHOWN = (
    "multi_ca_bundle",
    "acl_change_restarts",
    "busy_error",
    "not_found_http_status",
    "url_limit_bytes",
    "tls_max_version",
    "status_lag_seconds",
    "early_readback_seconds",
    "restart_seconds",
    "acl_lock_seconds",
    "acl_without_ca",
    "crlf_pem_readback",
)


def _show(app: App, profile: dict[str, Any]) -> None:
    """The measured answers on stdout, one per line (`-`: not measured)."""
    app.out(f"profile {profile['name']!r} ({profile.get('region') or '-'}, PostgreSQL "
            f"{profile.get('engine_version') or '-'}, {profile['recorded_at']})")  # fmt: skip
    for key in _SHOWN:
        value = profile.get(key, "-")
        if isinstance(value, dict):
            value = " ".join(f"{k}={v}" for k, v in value.items())
        app.out(f"  {key}: {'null' if value is None else value}")
