"""The rdsssl command line: the root group, lazy sub-command loading, and ``main()``.

Sub-commands live in one module each and are imported only when invoked (``COMMANDS``), so the
local PKI commands start fast and never import the Alibaba Cloud SDK or psycopg; ``--help``
lists them from the table without importing anything. ``main()`` is the only place where
exceptions become exit codes (``rdsssl.errors.ExitCode``).
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import NoReturn

import click

from rdsssl import __version__
from rdsssl.cli import logs
from rdsssl.cli.app import App
from rdsssl.cli.lazy import LazyGroup
from rdsssl.errors import ExitCode, RdsSslError
from rdsssl.ops import audit

__all__ = ["COMMANDS", "App", "Terminated", "cli", "main", "run"]


class Terminated(KeyboardInterrupt):
    """SIGTERM (systemd stopping a unit, `timeout`, `kill`): handled like Ctrl-C, exit 143."""


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise Terminated()


# name -> ("module:attribute", one-line help); each module imports its heavy dependencies itself.
# An entry whose module is not installed is hidden (_available).
COMMANDS: dict[str, tuple[str, str]] = {
    "ca": ("rdsssl.cli.ca:ca", "Create, import and show the client CA store (local)."),
    "cert": ("rdsssl.cli.cert:cert", "Issue, sign, list, revoke and renew client certificates."),
    "crl": ("rdsssl.cli.crl:crl", "Build and show CRLs (local); refresh them on instances."),
    "emulator": ("rdsssl.cli.emulator:emulator", "Run the local RDS OpenAPI emulator."),
    "instance": ("rdsssl.cli.instance:instance", "Show and change an instance's SSL settings."),
    "server-ca": ("rdsssl.cli.server_ca:server_ca", "Server CA bundle for clients' sslrootcert."),
    "probe": ("rdsssl.cli.probe:probe_cmd", "Connect with a client certificate and classify."),
    "plan": ("rdsssl.cli.apply:plan_cmd", "Show what `apply` would change (desired-state file)."),
    "apply": ("rdsssl.cli.apply:apply_cmd", "Make instances match a desired-state file."),
    "rotate": ("rdsssl.cli.rotate:rotate", "Two-phase client CA rotation with rollback."),
    "check": ("rdsssl.cli.check:check_cmd", "Expiry and drift checks (Nagios-style exit codes)."),
    "service-profile": (
        "rdsssl.cli.service_profile:service_profile",
        "Record what the RDS service does, on a throwaway instance.",
    ),
}


@click.group(cls=LazyGroup, lazy=COMMANDS, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--region",
    envvar="ALIBABA_CLOUD_REGION_ID",
    metavar="REGION",
    help="Alibaba Cloud region id (env ALIBABA_CLOUD_REGION_ID).",
)
@click.option(
    "--endpoint",
    envvar="RDSSSL_ENDPOINT",
    metavar="URL",
    help="RDS API endpoint, e.g. the emulator's http://127.0.0.1:PORT (env RDSSSL_ENDPOINT).",
)
@click.option(
    "--profile",
    envvar="ALIBABA_CLOUD_PROFILE",
    metavar="NAME",
    help="Credentials profile (env ALIBABA_CLOUD_PROFILE).",
)
@click.option(
    "--service-profile",
    envvar="RDSSSL_SERVICE_PROFILE",
    type=click.Path(path_type=Path, dir_okay=False),
    metavar="FILE",
    help="What the RDS service is known to do (rdsssl service-profile record); env "
    "RDSSSL_SERVICE_PROFILE. Default: the documented timings.",
)
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Print exactly one JSON document on stdout; messages go to stderr.",
)
@click.option(
    "-v",
    "--verbose",
    count=True,
    help="More detail on stderr (-v: the library's log at INFO; -vv: DEBUG and tracebacks).",
)
@click.option("-q", "--quiet", count=True, help="Less on stderr (-q: nothing on success).")
@click.version_option(__version__, prog_name="rdsssl")
@click.pass_context
def cli(
    ctx: click.Context,
    region: str | None,
    endpoint: str | None,
    profile: str | None,
    service_profile: Path | None,
    as_json: bool,
    verbose: int,
    quiet: int,
) -> None:
    """rdsssl: client-certificate authentication for ApsaraDB RDS for PostgreSQL.

    Exit codes: 0 ok, 1 unexpected, 2 usage, 3 bad local input, 4 API error, 5 wait failed,
    6 verification failed, 7 lock held, 10 check needs action, 130 interrupted.
    """
    app = ctx.ensure_object(App)
    app.region, app.endpoint, app.profile = region, endpoint, profile
    app.service_profile_path = service_profile
    app.json = app.json or as_json
    app.verbosity = verbose - quiet
    logs.install(app.verbosity, timestamps=app.timestamps)


def _wants_json(args: Sequence[str]) -> bool:
    """``--json`` anywhere before ``--``: known before parsing, so even a usage error can
    answer with a JSON document."""
    for arg in args:
        if arg == "--":
            return False
        if arg == "--json":
            return True
    return False


def run(argv: Sequence[str] | None = None, *, app: App | None = None) -> int:
    """Run the command line and return the exit code (``main`` exits with it)."""
    args = list(sys.argv[1:] if argv is None else argv)
    app = app if app is not None else App()
    app.json = _wants_json(args)
    audit.forget_unconfirmed()
    try:
        rv = cli.main(args, prog_name="rdsssl", standalone_mode=False, obj=app)
    except RdsSslError as exc:
        return app.fail(exc)
    except click.exceptions.Abort as exc:  # Ctrl-C / SIGTERM / end of input, or "no" to a prompt
        return app.interrupted(exc.__cause__ if isinstance(exc.__cause__, BaseException) else exc)
    except click.ClickException as exc:
        return app.fail_usage(exc)
    except KeyboardInterrupt as exc:
        return app.interrupted(exc)
    except BrokenPipeError:  # `rdsssl cert list | head`: the reader left; nothing to report
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # so the final flush at exit stays quiet
        return int(ExitCode.UNEXPECTED)
    except Exception as exc:  # the last door: a bug, reported briefly
        return app.fail(exc)
    finally:
        logs.uninstall()
    return rv if isinstance(rv, int) else int(ExitCode.OK)


def main(argv: Sequence[str] | None = None) -> NoReturn:
    """Console-script entry point (``rdsssl``, ``python -m rdsssl``). SIGTERM is handled like
    Ctrl-C (one message, one JSON document, the audit line of an unconfirmed change kept)."""
    signal.signal(signal.SIGTERM, _on_sigterm)
    sys.exit(run(argv))
