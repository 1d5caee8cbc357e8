"""One ``cert issue`` as a library call: ``issue(options, unlock=..., warn=...)``.

Everything that can be refused is refused before the inventory row exists (a bad user name, a
key type that fails over TLS 1.2 unless forced, an unsafe output directory, files already
there unless forced), so a refusal leaves nothing behind. The certificate is recorded before its
files are written (`rdsssl.store.castore`); when writing them fails, the error names the
recorded serial and how to revoke it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from rdsssl.errors import InputError
from rdsssl.models import KeyType
from rdsssl.pki import crypto
from rdsssl.store.castore import CaStore
from rdsssl.store.files import (
    check_client_dir,
    check_client_files_absent,
    client_file_names,
    loose_client_dir_warning,
    user_dir,
    write_client_files,
)
from rdsssl.store.records import IssuedCert

__all__ = ["IssueOptions", "IssueResult", "issue"]


@dataclass(frozen=True)
class IssueOptions:
    """``out_dir`` None: ``./USER``. ``force``: overwrite files, allow a TLS 1.3-only key."""

    ca_dir: Path
    user: str
    days: int
    key_type: KeyType
    now: datetime
    out_dir: Path | None = None
    fmt: str = "pem"
    p12_passphrase: bytes | None = None
    force: bool = False
    wait_lock: float = 0.0


@dataclass(frozen=True)
class IssueResult:
    """The recorded certificate (and its key) and the files written."""

    issued: IssuedCert
    files: list[Path]


def issue(
    options: IssueOptions,
    *,
    unlock: Callable[[CaStore], None],
    warn: Callable[[str], None],
) -> IssueResult:
    """Issue a key and certificate for ``options.user`` and write its client files."""
    opts = options
    crypto.validate_role_name(opts.user)
    problem = None if opts.force else crypto.tls12_key_problem(opts.key_type)
    if problem:
        raise InputError(f"{opts.user}: {problem}")  # before the store is even opened
    out = opts.out_dir if opts.out_dir is not None else user_dir(Path(), opts.user)
    check_client_dir(out, client_file_names(opts.fmt))  # before the inventory row, like the next
    if not opts.force:
        check_client_files_absent(out, opts.fmt)  # before the inventory row: a clean refusal
    loose = loose_client_dir_warning(out)
    if loose:
        warn(loose)
    with CaStore.open(opts.ca_dir, wait_lock=opts.wait_lock) as store:
        unlock(store)
        issued = store.issue(
            user=opts.user,
            key_type=opts.key_type,
            days=opts.days,
            now=opts.now,
            allow_tls13_only=opts.force,
        )
        try:
            files = write_client_files(
                out,
                issued,
                store.ca_cert,
                fmt=opts.fmt,
                overwrite=opts.force,
                p12_passphrase=opts.p12_passphrase,
            )
        except (InputError, OSError) as exc:
            serial = issued.record.serial_hex
            why = str(exc) if isinstance(exc, InputError) else f"{exc.filename}: {exc.strerror}"
            raise InputError(
                f"certificate {serial} for {opts.user} is recorded but its files were not "
                f"written ({why}); issue again, and revoke it with rdsssl cert revoke --serial "
                f"{serial}"
            ) from None
    return IssueResult(issued=issued, files=list(files))
