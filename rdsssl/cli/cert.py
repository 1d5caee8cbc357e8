"""``rdsssl cert issue | sign | list | revoke | renew``: client certificates (local)."""

from __future__ import annotations

import contextlib
import os
import sys
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from rdsssl import crypto
from rdsssl.cli.app import App
from rdsssl.cli.common import (
    Duration,
    ca_dir_option,
    get_app,
    iso,
    json_option,
    key_type_option,
    open_store,
    passphrase_file_option,
    read_input,
    unlock,
    wait_lock_option,
)
from rdsssl.errors import ConfigError, HookFailed, InputError
from rdsssl.fsutil import atomic_write
from rdsssl.hooks import Deployment, check_hook, deploy_env, run_hook
from rdsssl.lock import FileLock, current_command
from rdsssl.models import KeyType, RevocationReason
from rdsssl.store import CertRecord, check_client_files_absent, user_dir, write_client_files
from rdsssl.store_renew import (
    CURRENT,
    Renewal,
    RenewalPlan,
    RenewalWindow,
    finish_interrupted,
    hook_pending,
    mark_deployed,
    plan_renewal,
    renew_due,
    user_dirs,
)

__all__ = ["cert"]

_FORMATS = ["pem", "pk8", "p12"]


@click.group()
def cert() -> None:
    """Issue, sign, list, revoke and renew client certificates (local, no cloud access)."""


def _days_option(f: click.decorators.FC) -> click.decorators.FC:
    return click.option(
        "--days",
        type=click.IntRange(min=1),
        default=crypto.DEFAULT_LEAF_DAYS,
        show_default=True,
        help="Certificate validity in days (never beyond the CA's notAfter).",
    )(f)


def _format_options(f: click.decorators.FC) -> click.decorators.FC:
    f = click.option(
        "--p12-passphrase-env",
        metavar="VAR",
        help="Encrypt client.p12 with the passphrase in environment variable VAR.",
    )(f)
    return click.option(
        "--format",
        "fmt",
        type=click.Choice(_FORMATS),
        default="pem",
        show_default=True,
        help="pem: client.crt/client.key/root.crt (libpq); pk8 adds client.pk8 (JDBC); "
        "p12 adds client.p12.",
    )(f)


def _p12_passphrase(fmt: str, var: str | None) -> bytes | None:
    if var is None:
        return None
    if fmt != "p12":
        raise ConfigError("--p12-passphrase-env only applies to --format p12")
    value = os.environ.get(var)
    if not value:
        raise ConfigError(f"--p12-passphrase-env {var}: the environment variable is not set")
    return value.encode("utf-8")


def _warn_truncated(app: App, record: CertRecord, truncated: bool) -> None:
    if truncated:
        app.warn(
            f"certificate {record.serial_hex} ends with the CA on {iso(record.not_after)}, "
            "earlier than asked; rotate the CA before then"
        )


@cert.command("issue")
@ca_dir_option
@click.option("--user", required=True, help="Database user name: the certificate CN.")
@_days_option
@key_type_option(KeyType.EC_P256)
@click.option(
    "--out",
    "out_dir",
    type=click.Path(path_type=Path, file_okay=False),
    help="Output directory (default: ./USER), created 0700.",
)
@_format_options
@click.option("--force", is_flag=True, help="Overwrite existing files in --out.")
@passphrase_file_option
@wait_lock_option
@json_option
def issue(
    ca_dir: Path,
    user: str,
    days: int,
    key_type: str,
    out_dir: Path | None,
    fmt: str,
    p12_passphrase_env: str | None,
    force: bool,
    passphrase_file: Path | None,
    wait_lock: float,
) -> None:
    """Issue a key and client certificate for a database user.

    Writes client.crt, client.key (0600) and root.crt (the client CA) into --out. For
    sslmode=verify-full the client also needs the instance's server CA as sslrootcert.

    \b
    Example:
      rdsssl cert issue --ca-dir ./ca --user alice --out ./alice
    """
    app = get_app()
    crypto.validate_role_name(user)
    out = out_dir if out_dir is not None else user_dir(Path(), user)
    p12_passphrase = _p12_passphrase(fmt, p12_passphrase_env)
    if not force:
        check_client_files_absent(out, fmt)  # before the inventory row, so a refusal is clean
    with open_store(ca_dir, wait_lock=wait_lock) as store:
        unlock(app, store, passphrase_file)
        issued = store.issue(user=user, key_type=KeyType(key_type), days=days, now=app.now())
        try:
            files = write_client_files(
                out, issued, store.ca_cert, fmt=fmt, overwrite=force, p12_passphrase=p12_passphrase
            )
        except (InputError, OSError) as exc:
            serial = issued.record.serial_hex
            why = str(exc) if isinstance(exc, InputError) else f"{exc.filename}: {exc.strerror}"
            raise InputError(
                f"certificate {serial} for {user} is recorded but its files were not written "
                f"({why}); issue again, and revoke it with rdsssl cert revoke --serial {serial}"
            ) from None
    record = issued.record
    app.result(
        {
            "certificate": record.to_json(app.now()),
            "files": [str(p) for p in files],
            "truncated": issued.truncated,
        }
    )
    _warn_truncated(app, record, issued.truncated)
    app.info(
        f"issued certificate {record.serial_hex} for {user} ({record.key_type}), "
        f"valid until {iso(record.not_after)}"
    )
    app.info("wrote " + ", ".join(str(p) for p in files))


@cert.command("sign")
@ca_dir_option
@click.option(
    "--csr",
    "csr_file",
    required=True,
    type=click.Path(path_type=Path),
    help="The certificate signing request (PEM or DER).",
)
@click.option("--user", help="Database user; must equal the CSR's CN (default: the CN).")
@_days_option
@click.option(
    "--out",
    "out_file",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Write the certificate here (default: stdout).",
)
@click.option("--force", is_flag=True, help="Overwrite --out if it exists.")
@passphrase_file_option
@wait_lock_option
@json_option
def sign(
    ca_dir: Path,
    csr_file: Path,
    user: str | None,
    days: int,
    out_file: Path | None,
    force: bool,
    passphrase_file: Path | None,
    wait_lock: float,
) -> None:
    """Sign a CSR: the user keeps the private key.

    \b
    Example:
      openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \\
          -keyout bob.key -out bob.csr -subj /CN=bob
      rdsssl cert sign --ca-dir ./ca --csr bob.csr --out bob.crt
    """
    app = get_app()
    csr_pem = read_input(csr_file, "a certificate signing request")
    if out_file is not None and out_file.exists() and not force:
        raise InputError(f"{out_file} already exists; pass --force to overwrite it")
    with open_store(ca_dir, wait_lock=wait_lock) as store:
        unlock(app, store, passphrase_file)
        signed = store.sign_csr(csr_pem, source=str(csr_file), user=user, days=days, now=app.now())
    pem = crypto.cert_pem(signed.cert)
    record = signed.record
    if out_file is not None:
        try:
            atomic_write(out_file, pem, mode=0o644, overwrite=force)
        except FileExistsError:
            raise InputError(f"{out_file} already exists; pass --force to overwrite it") from None
    data: dict[str, object] = {
        "certificate": record.to_json(app.now()),
        "out": None if out_file is None else str(out_file),
    }
    if out_file is None:
        data["certificate_pem"] = pem.decode("ascii")
        if not app.json:
            sys.stdout.write(pem.decode("ascii"))
            sys.stdout.flush()
    app.result(data)
    _warn_truncated(app, record, signed.truncated)
    where = f", wrote {out_file}" if out_file is not None else ""
    app.info(
        f"signed certificate {record.serial_hex} for {record.cn}, valid until "
        f"{iso(record.not_after)}{where}"
    )


@cert.command("list")
@ca_dir_option
@click.option("--user", help="Only this user's certificates.")
@click.option(
    "--status",
    type=click.Choice(["all", "valid", "revoked", "expired"]),
    default="all",
    show_default=True,
    help="Only certificates in this state.",
)
@json_option
def list_(ca_dir: Path, user: str | None, status: str) -> None:
    """List certificates: serial, CN, status (valid/revoked/expired), notAfter, fingerprint.

    \b
    Example:
      rdsssl cert list --ca-dir ./ca --status valid
      rdsssl cert list --ca-dir ./ca --json | jq -r '.certificates[].serial'
    """
    app = get_app()
    now = app.now()
    with open_store(ca_dir) as store:
        rows = [
            r for r in store.certificates(user=user) if status == "all" or r.state(now) == status
        ]
    app.result({"certificates": [r.to_json(now) for r in rows]})
    if not rows:
        app.info("no certificates")
        return
    width = max(len(r.serial_hex) for r in rows)
    cn_width = max(4, *(len(r.cn) for r in rows))
    app.out(
        f"{'SERIAL':<{width}}  {'CN':<{cn_width}}  {'STATUS':<7}  {'NOT AFTER':<20}  "
        "FINGERPRINT (SHA-256)"
    )
    for r in rows:
        app.out(
            f"{r.serial_hex:<{width}}  {r.cn:<{cn_width}}  {r.state(now):<7}  "
            f"{iso(r.not_after):<20}  {r.fingerprint or '(unknown)'}"
        )


@cert.command("revoke")
@ca_dir_option
@click.option("--serial", help="Serial in hex (as shown by cert list).")
@click.option(
    "--cert",
    "cert_file",
    type=click.Path(path_type=Path),
    help="The certificate file; also one issued outside rdsssl by this CA.",
)
@click.option("--user", help="The user's only valid certificate (refused when ambiguous).")
@click.option(
    "--reason",
    type=click.Choice([r.value for r in RevocationReason], case_sensitive=False),
    default=RevocationReason.UNSPECIFIED.value,
    show_default=True,
    help="CRL reason code.",
)
@wait_lock_option
@json_option
def revoke(
    ca_dir: Path,
    serial: str | None,
    cert_file: Path | None,
    user: str | None,
    reason: str,
    wait_lock: float,
) -> None:
    """Revoke a certificate (takes effect once a CRL is built and deployed).

    \b
    Examples:
      rdsssl cert revoke --ca-dir ./ca --serial 1f3a9c --reason keyCompromise
      rdsssl cert revoke --ca-dir ./ca --cert alice/client.crt
      rdsssl cert revoke --ca-dir ./ca --user alice
    """
    app = get_app()
    chosen = sum(x is not None for x in (serial, cert_file, user))
    if chosen != 1:
        raise click.UsageError(
            "select the certificate with exactly one of --serial, --cert, --user"
        )
    canonical = next(r for r in RevocationReason if r.value.lower() == reason.lower())
    serial_int = crypto.parse_serial(serial) if serial is not None else None
    cert_pem = read_input(cert_file, "a certificate") if cert_file is not None else None
    with open_store(ca_dir, wait_lock=wait_lock) as store:
        result = store.revoke(
            serial=serial_int,
            cert_pem=cert_pem,
            cert_source=str(cert_file),
            user=user,
            reason=canonical,
            now=app.now(),
        )
    record = result.record
    app.result({"changed": result.changed, "certificate": record.to_json(app.now())})
    if result.changed:
        app.info(
            f"revoked certificate {record.serial_hex} ({record.cn}), reason "
            f"{canonical.value}; build and deploy a CRL for it to take effect"
        )
    else:
        app.info(
            f"certificate {record.serial_hex} ({record.cn}) was already revoked on "
            f"{iso(record.revoked_at)}; nothing changed"
        )


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


def _renew_lock(
    out_root: Path, dry_run: bool, wait: float
) -> contextlib.AbstractContextManager[Any]:
    """One renew run per OUT_ROOT, held through the hooks too (which run after the CA store
    lock is released, so that a hook may call rdsssl on the same store)."""
    if dry_run:
        return contextlib.nullcontext()
    out_root.mkdir(parents=True, exist_ok=True)
    return FileLock(
        out_root / ".rdsssl-renew.lock",
        command=current_command(),
        wait=wait,
        label=f"renewals into {out_root}",
    )


def _run_hooks(
    app: App, command: str, deployments: list[Deployment], dry_run: bool
) -> list[dict[str, Any]]:
    """Run the deploy hook once per deployment; its output goes to stderr, never to stdout."""
    results: list[dict[str, Any]] = []
    for dep in deployments:
        ran = run_hook(command, deploy_env(dep, dry_run=dry_run))
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


@cert.command("renew")
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
@_days_option
@key_type_option(None)
@_format_options
@click.option(
    "--dry-run",
    is_flag=True,
    help="Show what is due and run the hook with RDSSSL_DRY_RUN=1; issue and write nothing.",
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
    passphrase_file: Path | None,
    wait_lock: float,
) -> None:
    """Re-issue certificates inside their renewal window (new key, new certificate).

    The new files replace OUT_ROOT/USER/* in one atomic step; the old certificate stays valid
    (revoke it once clients use the new one). A run killed half-way is finished by the next
    run. Exit 0 when nothing is due; 1 when the deploy hook failed (renewals stay done).

    \b
    Example (cron):
      rdsssl -q cert renew --ca-dir /srv/ca --before 30d --out-root /srv/client-certs \\
          --deploy-hook 'systemctl reload myapp'
    """
    app = get_app()
    now = app.now()
    window = RenewalWindow(before=before, at=at)
    p12_passphrase = _p12_passphrase(fmt, p12_passphrase_env)
    if deploy_hook is not None:
        check_hook(deploy_hook)  # before any work, as certbot does
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
                p12_passphrase=p12_passphrase,
                dry_run=dry_run,
            )
            plan = plan_renewal(store, now=now, before=before, at=at, user=user)
            dirs = user_dirs(store, out_root, user=user)
            if plan.due:
                window.check_days(days)
            if plan.due and not dry_run:
                unlock(app, store, passphrase_file)
                done = renew_due(
                    store,
                    plan,
                    now=now,
                    out_root=out_root,
                    days=days,
                    key_type=None if key_type is None else KeyType(key_type),
                    fmt=fmt,
                    p12_passphrase=p12_passphrase,
                    hook=deploy_hook is not None,
                )
        _report(app, plan, resumed, done, dry_run)
        hooks: list[dict[str, Any]] = []
        if deploy_hook is not None:
            pending = _dry_deployments(plan, resumed, dirs) if dry_run else hook_pending(dirs)
            hooks = _run_hooks(app, deploy_hook, pending, dry_run)
    failed = [h for h in hooks if not h["ok"]]
    app.result(
        {
            "ok": not failed,
            "dry_run": dry_run,
            "due": [r.to_json(now) for r in plan.due],
            "renewed": [_renewal_json(r, now) for r in done],
            "resumed": [_renewal_json(r, now) for r in resumed],
            "blocked": [r.to_json(now) for r in plan.blocked],
            "hooks": hooks,
        }
    )
    if failed:
        users = ", ".join(f"{h['user']} (exit {h['exit_code']})" for h in failed)
        again = "" if dry_run else "; the new files are in place and the hook runs again next time"
        raise HookFailed(f"the deploy hook failed for {users}{again}")


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
    app: App, plan: RenewalPlan, resumed: list[Renewal], done: list[Renewal], dry_run: bool
) -> None:
    for r in plan.blocked:
        app.warn(
            f"{r.cn}: certificate {r.serial_hex} already ends with the CA on "
            f"{iso(r.not_after)}; renewing cannot extend it: rotate the CA"
        )
    verb = "would finish" if dry_run else "finished"
    for item in resumed:
        app.info(f"{verb} an interrupted renewal of {item.user}: {item.new.serial_hex}")
    if not plan.due and not resumed:
        app.info("nothing to renew")
    for r in plan.due if dry_run else []:
        app.info(f"due: {r.cn} (certificate {r.serial_hex}, not after {iso(r.not_after)})")
    for item in done:
        _warn_truncated(app, item.new, item.truncated)
        app.info(
            f"renewed {item.user}: {item.old_serial} -> {item.new.serial_hex}, "
            f"valid until {iso(item.new.not_after)}, in {item.out_dir}"
        )
