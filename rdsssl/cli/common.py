"""Options and helpers shared by the local commands: the CA directory, the lock wait, the CA
passphrase, durations like ``30d``, input files, and the JSON shapes of common objects.

Passphrase sources, in order: ``--passphrase-file FILE`` (first line), the environment variable
``RDSSSL_CA_PASSPHRASE``, a hidden prompt when stdin is a terminal. A cron run with none of them
gets an error saying how to provide one instead of hanging on a prompt. The passphrase is never
printed, logged or put in an error message.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

import click

from rdsssl.cli.app import App
from rdsssl.errors import ConfigError, CryptoError, InputError, StoreError, UsageError
from rdsssl.models import KeyType
from rdsssl.pki import crypto
from rdsssl.store.castore import CaStore
from rdsssl.store.records import CertRecord, format_time

__all__ = [
    "CLIENT_FORMATS",
    "NEW_PASSPHRASE_ENV",
    "PASSPHRASE_ENV",
    "Duration",
    "ca_dir_option",
    "cert_json",
    "check_days",
    "current_passphrase",
    "days_option",
    "format_options",
    "get_app",
    "iso",
    "json_option",
    "key_type_option",
    "new_passphrase",
    "open_store",
    "p12_passphrase",
    "passphrase_file_option",
    "read_input",
    "restart_margin_option",
    "unlock",
    "wait_lock_option",
    "warn_truncated",
]

PASSPHRASE_ENV = "RDSSSL_CA_PASSPHRASE"
NEW_PASSPHRASE_ENV = "RDSSSL_NEW_CA_PASSPHRASE"  # the new key's (ca passphrase, rotate ca)
F = TypeVar("F", bound=Callable[..., Any])


def get_app() -> App:
    """The App of the running command (which learns the command's name for its document)."""
    ctx = click.get_current_context()
    app = ctx.ensure_object(App)
    app.command = ctx.command_path
    return app


def _set_json(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    if value:
        app = ctx.ensure_object(App)
        app.json = True
        app.json_lines = app.json_lines or param.name == "json_lines"


def json_option(f: F) -> F:
    """``--json`` / ``--json-lines`` on a sub-command, equivalent to the global flags."""
    f = click.option(
        "--json-lines",
        "json_lines",
        is_flag=True,
        expose_value=False,
        callback=_set_json,
        help="Like --json, compact on one line.",
    )(f)
    return click.option(
        "--json",
        is_flag=True,
        expose_value=False,
        callback=_set_json,
        help="Print exactly one JSON document on stdout.",
    )(f)


def ca_dir_option(f: F) -> F:
    """``--ca-dir DIR`` (env RDSSSL_CA_DIR)."""
    return click.option(
        "--ca-dir",
        envvar="RDSSSL_CA_DIR",
        required=True,
        type=click.Path(path_type=Path, file_okay=False),
        help="The CA store directory (env RDSSSL_CA_DIR).",
    )(f)


def wait_lock_option(f: F) -> F:
    """``--wait-lock SECONDS``: wait for another run instead of failing with exit 7."""
    return click.option(
        "--wait-lock",
        type=click.FloatRange(min=0),
        default=0.0,
        show_default=True,
        metavar="SECONDS",
        help="Wait this long for a run holding the store lock (else exit 7 at once).",
    )(f)


def passphrase_file_option(f: F) -> F:
    """``--passphrase-file FILE`` for the CA key."""
    return click.option(
        "--passphrase-file",
        type=click.Path(path_type=Path, dir_okay=False),
        help=f"Read the CA key passphrase from FILE (first line); else ${PASSPHRASE_ENV}, "
        "else a prompt on a terminal.",
    )(f)


def key_type_option(default: KeyType | None) -> Callable[[F], F]:
    """``--key-type`` with the KeyType values."""
    return click.option(
        "--key-type",
        type=click.Choice([k.value for k in KeyType]),
        default=None if default is None else default.value,
        show_default=default is not None,
        help="Private key algorithm.",
    )


if TYPE_CHECKING:  # click >= 8.3 types ParamType as a generic; older clicks do not subscript
    _DurationBase = click.ParamType[timedelta, Any]
else:
    _DurationBase = click.ParamType


class Duration(_DurationBase):
    """``30d``, ``12h``, ``90m``, ``45s``, ``2w``; a bare number means days."""

    name = "duration"
    _UNITS: ClassVar[dict[str, str]] = {
        "s": "seconds",
        "m": "minutes",
        "h": "hours",
        "d": "days",
        "w": "weeks",
    }

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> timedelta:
        if isinstance(value, timedelta):
            return value
        match = re.fullmatch(r"\s*(\d+)\s*([smhdw]?)\s*", str(value))
        if not match:
            self.fail(f"{value!r} is not a duration like 30d, 12h, 90m or 2w", param, ctx)
        unit = self._UNITS[match.group(2) or "d"]
        try:
            return timedelta(**{unit: int(match.group(1))})
        except OverflowError:
            self.fail(f"{value!r} is longer than any certificate can live", param, ctx)


RESTART_MARGIN_ENV = "RDSSSL_RESTART_MARGIN"


def restart_margin_option(f: F) -> F:
    """``--restart-margin DURATION``: a CRL must stay valid this long after the change (1h)."""
    return click.option(
        "--restart-margin",
        type=Duration(),
        default="1h",
        show_default=True,
        envvar=RESTART_MARGIN_ENV,
        metavar="DURATION",
        help="Refuse a CRL that expires within this long (the restart applying it takes ~3 "
        f"min, and an expired CRL locks every certificate user out); env {RESTART_MARGIN_ENV}.",
    )(f)


def read_input(path: Path, what: str) -> bytes:
    """The bytes of an input file, or InputError naming it (exit 3, not a traceback)."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise InputError(f"{path}: no such file ({what})") from None
    except IsADirectoryError:
        raise InputError(f"{path}: is a directory, expected {what}") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot read {what}: {exc.strerror}") from None


def read_input_or_stdin(path: Path, what: str) -> bytes:
    """`read_input`, or stdin's bytes when the path is `-` (a users or serials file)."""
    if str(path) == "-":
        return sys.stdin.buffer.read()
    return read_input(path, what)


def resolve_passphrase(
    app: App,
    *,
    passphrase_file: Path | None,
    envs: Sequence[str] = (PASSPHRASE_ENV,),
    prompt: str | None,
    confirm: bool = False,
) -> bytes | None:
    """THE passphrase resolver of the CLI, for a CA key: the first line of ``passphrase_file``
    (ConfigError when empty), else the first of the environment variables ``envs`` that is set
    and not empty, else, on a terminal and with a ``prompt``, what the user types (asked twice
    with ``confirm``). None when no source gave one: the caller says what to do."""
    if passphrase_file is not None:
        return _from_file(passphrase_file)
    for name in envs:
        value = os.environ.get(name)
        if value:
            return value.encode("utf-8")
    if prompt is None or not app.interactive:
        return None
    typed: str = click.prompt(prompt, hide_input=True, confirmation_prompt=confirm, err=True)
    return typed.encode("utf-8")


def _from_file(path: Path) -> bytes:
    lines = read_input(path, "a passphrase file").splitlines()
    value = lines[0] if lines else b""
    if not value:
        raise ConfigError(f"{path}: the passphrase file is empty")
    return value


def new_passphrase(
    app: App,
    *,
    key_path: Path,
    no_passphrase: bool,
    passphrase_file: Path | None,
    env: str = PASSPHRASE_ENV,
    file_option: str = "--passphrase-file",
    prompt: str = "Passphrase",
) -> bytes | None:
    """The passphrase that will encrypt a CA key (``ca init`` / ``ca import``; ``ca passphrase``
    passes its own ``env``, ``file_option`` and ``prompt``): the file, the environment
    variable, or a confirmed prompt on a terminal; None only with ``no_passphrase``."""
    if no_passphrase:
        if passphrase_file is not None:
            raise UsageError(f"--no-passphrase and {file_option} contradict each other")
        return None
    value = resolve_passphrase(
        app,
        passphrase_file=passphrase_file,
        envs=(env,),
        prompt=f"{prompt} for {key_path}",
        confirm=True,
    )
    if value == b"":
        raise ConfigError("an empty passphrase would not protect the CA key")
    if value is not None:
        return value
    raise ConfigError(
        f"{key_path} needs a passphrase: set {env}, pass {file_option} FILE, "
        "run on a terminal to be asked, or pass --no-passphrase for an unencrypted key"
    )


def open_store(ca_dir: Path, *, wait_lock: float = 0.0) -> CaStore:
    """Open the CA store (ownership and mode checks included)."""
    return CaStore.open(ca_dir, wait_lock=wait_lock)


def current_passphrase(
    app: App,
    store: CaStore,
    passphrase_file: Path | None,
    *,
    envs: Sequence[str] = (PASSPHRASE_ENV,),
) -> bytes | None:
    """The passphrase of the store's CA key from the first available source
    (``resolve_passphrase``); None when the key is not encrypted (StoreError when it is and no
    source gave one)."""
    if not store.key_encrypted:
        return None
    passphrase = resolve_passphrase(
        app, passphrase_file=passphrase_file, envs=envs, prompt=f"Passphrase for {store.key_path}"
    )
    if passphrase is None:
        raise StoreError(
            f"{store.key_path} is encrypted and no passphrase was given: set "
            f"{' or '.join(envs)}, pass --passphrase-file FILE, or run on a terminal to be asked"
        )
    return passphrase


def unlock(
    app: App,
    store: CaStore,
    passphrase_file: Path | None,
    *,
    envs: Sequence[str] = (PASSPHRASE_ENV,),
) -> None:
    """Decrypt the CA key with the first available passphrase source (``resolve_passphrase``:
    the file, then the variables ``envs`` in order, then a prompt), once: a store already
    unlocked is left alone (no second prompt, no second slow key derivation)."""
    if not store.unlocked:
        store.unlock(current_passphrase(app, store, passphrase_file, envs=envs))


def iso(value: datetime | None) -> str | None:
    """Timestamps in output: ISO 8601 UTC with a Z."""
    return None if value is None else format_time(value)


def cert_json(cert: crypto.CertInfo) -> dict[str, Any]:
    """The JSON shape of a certificate that is not an inventory row (the CA itself)."""
    return {
        "subject": cert.subject,
        "issuer": cert.issuer,
        "serial": cert.serial_hex,
        "not_before": iso(cert.not_before),
        "not_after": iso(cert.not_after),
        "fingerprint": cert.fingerprint,
        "key_type": cert.key_type,
        "is_ca": cert.is_ca,
    }


CLIENT_FORMATS = ["pem", "pk8", "p12"]


def check_days(what: str) -> Callable[[click.Context, click.Parameter, int | None], int | None]:
    """A callback for a ``--days``-like option: ``crypto.check_days`` as soon as it is parsed,
    so a validity no certificate or CRL can carry is exit 3 (with the maximum that works)
    before the command does anything, not an OverflowError half-way through."""

    def callback(ctx: click.Context, param: click.Parameter, value: int | None) -> int | None:
        if value is not None:
            try:
                crypto.check_days(value, what, now=ctx.ensure_object(App).now())
            except CryptoError as exc:
                raise CryptoError(f"{param.opts[0]} {value}: {exc}") from None
        return value

    return callback


def days_option(f: click.decorators.FC) -> click.decorators.FC:
    """``--days N``: a client certificate's validity (cert issue, sign and renew)."""
    return click.option(
        "--days",
        type=click.IntRange(min=1),
        default=crypto.DEFAULT_LEAF_DAYS,
        show_default=True,
        callback=check_days("certificate"),
        help="Certificate validity in days (never beyond the CA's notAfter).",
    )(f)


def format_options(f: click.decorators.FC) -> click.decorators.FC:
    """``--format pem|pk8|p12`` and ``--p12-passphrase-env VAR`` for written client files."""
    f = click.option(
        "--p12-passphrase-env",
        metavar="VAR",
        help="Encrypt client.p12 with the passphrase in environment variable VAR.",
    )(f)
    return click.option(
        "--format",
        "fmt",
        type=click.Choice(CLIENT_FORMATS),
        default="pem",
        show_default=True,
        help="pem: client.crt/client.key/root.crt (libpq); pk8 adds client.pk8 (JDBC); "
        "p12 adds client.p12.",
    )(f)


def p12_passphrase(fmt: str, var: str | None) -> bytes | None:
    """The PKCS#12 passphrase from the named environment variable (never from a flag)."""
    if var is None:
        return None
    if fmt != "p12":
        raise ConfigError("--p12-passphrase-env only applies to --format p12")
    value = os.environ.get(var)
    if not value:
        raise ConfigError(f"--p12-passphrase-env {var}: the environment variable is not set")
    return value.encode("utf-8")


def warn_truncated(app: App, record: CertRecord, truncated: bool) -> None:
    """Say when a certificate was cut to end with its CA (renew the CA before then)."""
    if truncated:
        app.warn(
            f"certificate {record.serial_hex} ends with the CA on {iso(record.not_after)}, "
            "earlier than asked; renew the CA before then (rdsssl ca renew: same key, no "
            "client re-issue)"
        )
