"""`rdsssl emulator serve`: run the local RDS OpenAPI emulator in the foreground.

A thin layer over `rdsssl.emulator.serve.serve` (which `python -m rdsssl.emulator` also
uses); defaults mimic production timings, tests and demos pass shorter ones.
"""

from __future__ import annotations

from pathlib import Path

import click

from rdsssl.cli.app import App
from rdsssl.errors import ConfigError

__all__ = ["emulator"]


def _set_json(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if value:
        ctx.ensure_object(App).json = True


@click.group("emulator")
def emulator() -> None:
    """Run the local RDS OpenAPI emulator (real HTTP, real signatures, real PostgreSQL)."""


@emulator.command("serve")
@click.option(
    "--port", type=int, default=0, show_default=True, help="Port on 127.0.0.1 (0: any free)."
)
@click.option("--instances", type=click.IntRange(min=0), default=1, show_default=True)
@click.option(
    "--restart-seconds",
    type=click.FloatRange(min=0),
    help="How long a client CA / CRL / SSL change keeps the instance in SSL_MODIFYING "
    "[default: the profile's, else 180].",
)
@click.option(
    "--acl-lock-seconds",
    type=click.FloatRange(min=0),
    help="How long an ACL-only change locks the instance [default: the profile's, else 60].",
)
@click.option(
    "--profile",
    default="documented",
    show_default=True,
    metavar="documented|pessimistic|FILE",
    help="How the emulator answers where the real API is undocumented: a built-in profile "
    "or a file recorded on a real account (a service profile, not the global credentials "
    "`rdsssl --profile`).",
)
@click.option(
    "--state-dir",
    type=click.Path(path_type=Path, file_okay=False),
    help="Keep the cloud CA here across runs; instance data lives here while running.",
)
@click.option(
    "--backend",
    type=click.Choice(["pg", "none"]),
    default="pg",
    show_default=True,
    help="pg: a real PostgreSQL per instance; none: state only (fleet-scale runs).",
)
@click.option("--env", "env", is_flag=True, help="Print `export ...` lines a shell can eval.")
@click.option(
    "--env-file",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Also write the export lines to FILE once ready (removed on exit).",
)
@click.option("--engine-version", metavar="V", help="EngineVersion to report, e.g. 11.0.")
@click.option("--access-key-id", metavar="ID", help="Fixed key id (default: made up per run).")
@click.option("--access-key-secret", metavar="SECRET", help="Fixed key secret (default: made up).")
@click.option(
    "--ssl/--no-ssl",
    default=True,
    show_default=True,
    help="Create the instances with SSL on (a cloud certificate) or off, as new RDS instances.",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the fault RNG.")
@click.option(
    "--json",
    is_flag=True,
    expose_value=False,
    callback=_set_json,
    help="Print exactly one JSON document on stdout.",
)
@click.pass_context
def serve(
    ctx: click.Context,
    port: int,
    instances: int,
    restart_seconds: float | None,
    acl_lock_seconds: float | None,
    profile: str,
    state_dir: Path | None,
    backend: str,
    env: bool,
    env_file: Path | None,
    engine_version: str | None,
    access_key_id: str | None,
    access_key_secret: str | None,
    ssl: bool,
    seed: int,
) -> None:
    """Serve until SIGINT/SIGTERM; prints the endpoint, the key pair and the instances.

    The key pair is the emulator's own and works nowhere else. Every PostgreSQL started is
    stopped on exit.
    """
    from rdsssl.emulator.pg import PgError
    from rdsssl.emulator.serve import ServeOptions
    from rdsssl.emulator.serve import serve as run_serve

    app = ctx.ensure_object(App)
    opts = ServeOptions(
        port=port, instances=instances, restart_seconds=restart_seconds,
        acl_lock_seconds=acl_lock_seconds, state_dir=state_dir, backend=backend, env=env,
        env_file=env_file, engine_version=engine_version, access_key_id=access_key_id,
        access_key_secret=access_key_secret, seed=seed, json=app.json, profile=profile, ssl=ssl,
    )  # fmt: skip
    try:
        run_serve(opts)
    except PgError as exc:
        raise ConfigError(f"emulator: {exc}") from exc
    except OSError as exc:
        raise ConfigError(
            f"emulator: cannot serve on 127.0.0.1:{port}: {exc.strerror or exc}"
        ) from exc
    except ValueError as exc:
        raise ConfigError(f"emulator: {exc}") from exc
