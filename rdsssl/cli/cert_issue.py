"""``rdsssl cert issue``: one certificate, or a batch (``--user`` repeated, ``--users-file``)
with one CA key unlock and one inventory transaction (`rdsssl.ops.client_issue.issue_many`).
A lazy sub-command of ``rdsssl cert``."""

from __future__ import annotations

import dataclasses
from datetime import datetime
from pathlib import Path

import click

from rdsssl.cli.app import App
from rdsssl.cli.common import (
    ca_dir_option,
    days_option,
    format_options,
    get_app,
    iso,
    json_option,
    key_type_option,
    p12_passphrase,
    passphrase_file_option,
    read_input_or_stdin,
    unlock,
    wait_lock_option,
    warn_truncated,
)
from rdsssl.models import KeyType
from rdsssl.ops import batch_input
from rdsssl.ops.client_issue import BatchOptions, ClientSpec, IssueResult, issue_many

__all__ = ["issue"]


@click.command("issue")
@ca_dir_option
@click.option(
    "--user",
    "users",
    multiple=True,
    help="Database user name: the certificate CN. Repeatable.",
)
@click.option(
    "--users-file",
    type=click.Path(path_type=Path, dir_okay=False, allow_dash=True),
    help="Issue for every user in FILE ('-': stdin): one name per line, or CSV with the "
    "header user,days,key-type (days, key-type optional). # comments and blank lines ignored.",
)
@days_option
@key_type_option(KeyType.EC_P256)
@click.option(
    "--out",
    "out_dir",
    type=click.Path(path_type=Path, file_okay=False),
    help="Output directory of the one user (default: ./USER), created 0700.",
)
@click.option(
    "--out-root",
    type=click.Path(path_type=Path, file_okay=False),
    help="Files of each user go to OUT_ROOT/USER/ (default: ./USER).",
)
@format_options
@click.option(
    "--force",
    is_flag=True,
    help="Overwrite existing files in the output directories; allow a key type that fails over "
    "TLS 1.2 (ec-p384).",
)
@passphrase_file_option
@wait_lock_option
@json_option
def issue(
    ca_dir: Path,
    users: tuple[str, ...],
    users_file: Path | None,
    days: int,
    key_type: str,
    out_dir: Path | None,
    out_root: Path | None,
    fmt: str,
    p12_passphrase_env: str | None,
    force: bool,
    passphrase_file: Path | None,
    wait_lock: float,
) -> None:
    """Issue a key and client certificate for one or many database users.

    Writes client.crt, client.key (0600) and root.crt (the client CA) into --out. For
    sslmode=verify-full the client also needs the instance's server CA as sslrootcert.

    Several users (--user repeated, --users-file): every name is checked first (a refusal
    issues nothing), the CA key is unlocked once, every certificate is recorded in one
    transaction; one line per user on stdout: USER, SERIAL, NOT AFTER, DIRECTORY (tabs).

    \b
    Examples:
      rdsssl cert issue --ca-dir ./ca --user alice --out ./alice
      rdsssl cert issue --ca-dir ./ca --users-file users.txt --out-root ./clients
    """
    app = get_app()
    now = app.now()
    if out_dir is not None and out_root is not None:
        raise click.UsageError("--out and --out-root contradict each other; pass one")
    clients = _clients(users, users_file, days=days, key_type=KeyType(key_type), now=now)
    if out_dir is not None and len(clients) != 1:
        raise click.UsageError(
            f"--out is the directory of one user, and {len(clients)} are named; pass "
            "--out-root ROOT (files go to ROOT/USER/)"
        )
    options = BatchOptions(
        ca_dir=ca_dir,
        clients=tuple(dataclasses.replace(c, out_dir=out_dir) for c in clients),
        now=now,
        out_root=out_root,
        fmt=fmt,
        p12_passphrase=p12_passphrase(fmt, p12_passphrase_env),
        force=force,
        wait_lock=wait_lock,
    )
    done = issue_many(
        options, unlock=lambda store: unlock(app, store, passphrase_file), warn=app.warn
    )
    if users_file is None and len(users) == 1:
        _report_one(app, done[0])
    else:
        _report_many(app, done)


def _clients(
    users: tuple[str, ...], users_file: Path | None, *, days: int, key_type: KeyType, now: datetime
) -> list[ClientSpec]:
    """The users of ``cert issue``: every --user, then the users file's, with their options."""
    if not users and users_file is None:
        raise click.UsageError("name the users: --user NAME (repeatable) or --users-file FILE")
    clients = [ClientSpec(user, days, key_type, label=f"--user {user!r}") for user in users]
    if users_file is not None:
        source = "stdin" if str(users_file) == "-" else str(users_file)
        text = batch_input.decode(read_input_or_stdin(users_file, "a users file"), source)
        clients.extend(
            ClientSpec(
                line.user,
                days if line.days is None else line.days,
                key_type if line.key_type is None else line.key_type,
                label=line.label,
            )
            for line in batch_input.read_users(text, source=source, now=now)
        )
    return clients


def _report_one(app: App, done: IssueResult) -> None:
    """The single form's output, as it has always been: the document and two messages."""
    record, files = done.issued.record, done.files
    app.result(
        {
            "certificate": record.to_json(app.now()),
            "files": [str(p) for p in files],
            "truncated": done.issued.truncated,
        }
    )
    warn_truncated(app, record, done.issued.truncated)
    app.info(
        f"issued certificate {record.serial_hex} for {record.cn} ({record.key_type}), "
        f"valid until {iso(record.not_after)}"
    )
    app.info("wrote " + ", ".join(str(p) for p in files))


def _report_many(app: App, done: list[IssueResult]) -> None:
    """A batch: ``issued``, one single-form document per certificate, and a line per user."""
    now = app.now()
    app.result(
        {
            "issued": [
                {
                    "certificate": d.issued.record.to_json(now),
                    "files": [str(p) for p in d.files],
                    "truncated": d.issued.truncated,
                }
                for d in done
            ]
        }
    )
    for d in done:
        record = d.issued.record
        folder = d.files[0].parent if d.files else ""
        app.out(f"{record.cn}\t{record.serial_hex}\t{iso(record.not_after)}\t{folder}")
        warn_truncated(app, record, d.issued.truncated)
    app.info(f"issued {len(done)} certificates")
