"""``rdsssl cron renew|refresh-crl|check``: the cron jobs, and ``rdsssl cron install``: their
systemd units.

A job is configured by environment variables only (the README's "Running rdsssl from cron"),
read after ``--env-file`` / ``RDSSSL_ENV_FILE``; `rdsssl.ops.cron_jobs` checks that file and the
lock directory, takes the lock and runs the rdsssl command in a child process. Here the output
is decided, for cron, which mails whatever a job prints:

- all well (exit 0): nothing at all;
- otherwise the child's stdout (the findings of ``check`` on exit 10, the per-instance table
  of ``crl refresh``); errors and warnings reach stderr in any case;
- with ``RDSSSL_JSON_LOG`` the child's JSON document is appended to that file, and on a
  non-zero exit the same findings are printed from it, so that cron still mails them.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any

import click

from rdsssl.cli.app import App
from rdsssl.cli.common import get_app
from rdsssl.cli.fleet_opts import print_results
from rdsssl.errors import ConfigError, UsageError
from rdsssl.ops import cron_jobs, systemd_units

__all__ = ["cron", "executable"]

HEADERS = ("INSTANCE / STORE", "STATUS", "FINDING")


@click.group("cron")
def cron() -> None:
    """Cron / systemd-timer entry points: renew, refresh-crl, check; and their systemd units.

    Each job reads its configuration from environment variables (after RDSSSL_ENV_FILE),
    runs one at a time (a lock in a private directory: exit 7 when held), prints nothing when
    all is well and the findings when not (cron mails them).
    """


def _env_file_option(f: Any) -> Any:
    return click.option(
        "--env-file",
        envvar=cron_jobs.ENV_FILE,
        type=click.Path(path_type=Path, dir_okay=False),
        help="Read VAR=value lines from this file first; it must be owned by you or root and "
        f"not group/world-writable (env {cron_jobs.ENV_FILE}).",
    )(f)


def _run(name: str, env_file: Path | None) -> int:
    app = get_app()
    if app.json:
        raise UsageError("cron jobs write their JSON documents to RDSSSL_JSON_LOG, not stdout")
    env = cron_jobs.job_environment(env_file)
    log = env.get("RDSSSL_JSON_LOG") or None
    done = cron_jobs.run_job(cron_jobs.JOBS[name], env, as_json=log is not None)
    if log is None:
        if done.exit_code != 0 and done.stdout:
            click.echo(done.stdout, nl=not done.stdout.endswith("\n"))
        return done.exit_code
    _append(Path(log), done.stdout)
    if done.exit_code != 0:
        print_results(app, HEADERS, findings_rows(done.stdout))
    return done.exit_code


def _append(log: Path, document: str) -> None:
    """Append the document (one per run) to the JSON log; a log that cannot be written is a
    warning: the job ran, and its exit code is what a scheduler acts on."""
    if not document:
        return
    try:
        with log.open("a", encoding="utf-8") as f:
            f.write(document if document.endswith("\n") else document + "\n")
    except OSError as exc:
        get_app().warn(f"cannot append to RDSSSL_JSON_LOG={log}: {exc.strerror or exc}")


def findings_rows(documents: str) -> list[tuple[str, str, str]]:
    """The rows of the human table from the job's JSON documents (one per line, one per
    command): each instance or store that failed, every finding that is not ok, and a
    command that failed as a whole."""
    rows: list[tuple[str, str, str]] = []
    for line in documents.splitlines():
        try:
            doc: dict[str, Any] = json.loads(line)
        except ValueError:
            continue
        rows += _document_rows(doc)
    return rows


def _document_rows(doc: dict[str, Any]) -> list[tuple[str, str, str]]:
    rows: list[tuple[str, str, str]] = []
    entries = [*doc.get("instances", []), *doc.get("stores", [])]
    if not entries and doc.get("error"):  # a one-instance command, or a command that failed
        name = str(doc.get("instance") or doc.get("command", ""))
        return [(name, "error", str(doc["error"].get("message", "")))]
    for entry in entries:
        name = str(entry.get("instance", ""))
        if not entry.get("ok", True):
            rows.append((name, "error", str(entry.get("error", {}).get("message", ""))))
            continue
        shown = [f for f in entry.get("findings", []) if f.get("severity") != "ok"]
        for n, finding in enumerate(shown):
            rows.append(
                (
                    name if n == 0 else "",
                    str(entry.get("status", "")) if n == 0 else "",
                    f"{finding.get('severity')}: {finding.get('msg')}",
                )
            )
    return rows


@cron.command("renew")
@_env_file_option
def renew_job(env_file: Path | None) -> int:
    """Run `rdsssl cert renew` for cron (RDSSSL_CA_DIR, RDSSSL_OUT_ROOT, ...).

    Exit 0 renewed or nothing due; 1 a hook failed (renewals done); 3 configuration; 7 another
    run holds the lock.
    """
    return _run("renew", env_file)


@cron.command("refresh-crl")
@_env_file_option
def refresh_crl_job(env_file: Path | None) -> int:
    """Run `rdsssl crl refresh --yes` for cron (RDSSSL_INSTANCES / RDSSSL_TAGS / RDSSSL_CONFIG).

    Exit 0 refreshed, nothing due or deferred to RDSSSL_CRL_WINDOW; 3 configuration; 4 API
    error; 5 a change failed; 7 another run holds the lock.
    """
    return _run("refresh-crl", env_file)


@cron.command("check")
@_env_file_option
def check_job(env_file: Path | None) -> int:
    """Run `rdsssl check` for cron (RDSSSL_INSTANCES / RDSSSL_TAGS / RDSSSL_CONFIG / CA_DIR).

    Exit 0 all well (nothing printed); 10 something needs action (the findings on stdout, also
    with RDSSSL_JSON_LOG); 3 configuration; 4 API error; 7 another run holds the lock.
    """
    return _run("check", env_file)


def executable() -> list[str]:
    """The rdsssl being run, as an absolute command line: the console script next to this
    Python (a virtualenv's), else the one on PATH, else ``python -m rdsssl``."""
    candidates = [Path(sys.executable).parent / "rdsssl"]
    on_path = shutil.which("rdsssl")
    if on_path:
        candidates.append(Path(on_path))
    for path in candidates:
        if path.is_file() and os.access(path, os.X_OK):
            return [os.path.abspath(path)]
    return [os.path.abspath(sys.executable), "-m", "rdsssl"]


@cron.command("install")
@click.option("--print", "print_only", is_flag=True, help="Print the units; write nothing.")
@click.option(
    "--dir",
    "directory",
    type=click.Path(path_type=Path, file_okay=False),
    default=Path("/etc/systemd/system"),
    show_default=True,
    help="Where to install the units (never over a file rdsssl did not write).",
)
@click.option(
    "--env-file",
    type=click.Path(path_type=Path, dir_okay=False),
    default=systemd_units.DEFAULT_ENV_FILE,
    show_default=True,
    help="The EnvironmentFile= of the services (the jobs' configuration).",
)
@click.option(
    "--read-write",
    "read_write",
    multiple=True,
    metavar="PATH",
    help="A path the jobs write to (repeatable; a leading '-' lets it be missing). Default: "
    + " ".join(systemd_units.DEFAULT_READ_WRITE),
)
def install(print_only: bool, directory: Path, env_file: Path, read_write: tuple[str, ...]) -> None:
    """Print or install the systemd services and timers of the three jobs.

    \b
    Examples:
      rdsssl cron install --print
      sudo rdsssl cron install --read-write /srv/ca --read-write /srv/client-certs
      sudo systemctl daemon-reload
      sudo systemctl enable --now rdsssl-renew.timer rdsssl-refresh-crl.timer rdsssl-check.timer
    """
    app = get_app()
    units = systemd_units.render_units(
        executable(),
        env_file=env_file,
        read_write=read_write or systemd_units.DEFAULT_READ_WRITE,
    )
    if print_only:
        _print_units(app, directory, units)
        return
    try:
        done = systemd_units.install_units(directory, units)
    except PermissionError as exc:
        raise ConfigError(f"cannot write into {directory}: {exc.strerror} (run as root?)") from None
    app.result({"units": [{"path": str(i.path), "action": i.action} for i in done]})
    for item in done:
        app.info(f"{item.action}: {item.path}")
    timers = " ".join(n for n in systemd_units.UNIT_NAMES if n.endswith(".timer"))
    app.info(f"then: systemctl daemon-reload && systemctl enable --now {timers}")


def _print_units(app: App, directory: Path, units: dict[str, str]) -> None:
    app.result({"units": [{"path": str(directory / n), "text": t} for n, t in units.items()]})
    for n, (name, text) in enumerate(units.items()):
        if n:
            app.out()
        app.out(f"# ==> {directory / name} <==")
        app.out(text.rstrip("\n"))
