"""``cert issue`` as a library call: ``issue_many(options, unlock=..., warn=...)`` for a batch
of users, ``issue(options, ...)`` for one (a batch of one: the same code, the same rules).

Everything that can be refused is refused, for every user, before any key is made or any
inventory row exists: a bad user name, the same user (or output directory) twice, a key type
that fails over TLS 1.2 unless forced, an unsafe output directory, files already there unless
forced. A batch with any refusal is refused whole, each problem named by its label (e.g. the
users file and line); one user gets exactly the single error. So a refusal leaves nothing
behind: no key, no row, no file, no serial used.

Then the store is opened and the CA key unlocked ONCE, and every certificate is signed and
recorded in ONE inventory transaction (``CaStore.issue_many``) before any file is written
(`rdsssl.store.issuing`); a kill before that COMMIT leaves no row, after it every certificate
can be revoked. Files are written user by user after the COMMIT; when writing some fails, the
others are still written and the error names the recorded serials without files and how to
revoke them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
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
from rdsssl.store.issuing import IssueRequest, check_request
from rdsssl.store.records import IssuedCert
from rdsssl.store.revocation import refusal

__all__ = ["BatchOptions", "ClientSpec", "IssueOptions", "IssueResult", "issue", "issue_many"]

_WRITERS = 8  # threads writing client files (bound by fsync latency, not by the CPU)


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
class ClientSpec:
    """One user of a batch. ``out_dir`` None: ``OUT_ROOT/USER``. ``label`` names the user in a
    refusal (e.g. ``users.txt line 4``; default: the user name)."""

    user: str
    days: int
    key_type: KeyType
    out_dir: Path | None = None
    label: str = ""


@dataclass(frozen=True)
class BatchOptions:
    """Users issued together; ``out_root`` None: the current directory. ``force`` as in
    ``IssueOptions``, for every user."""

    ca_dir: Path
    clients: tuple[ClientSpec, ...]
    now: datetime
    out_root: Path | None = None
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
    batch = BatchOptions(
        ca_dir=opts.ca_dir,
        clients=(ClientSpec(opts.user, opts.days, opts.key_type, opts.out_dir),),
        now=opts.now,
        fmt=opts.fmt,
        p12_passphrase=opts.p12_passphrase,
        force=opts.force,
        wait_lock=opts.wait_lock,
    )
    (done,) = issue_many(batch, unlock=unlock, warn=warn)
    return done


def issue_many(
    options: BatchOptions,
    *,
    unlock: Callable[[CaStore], None],
    warn: Callable[[str], None],
) -> list[IssueResult]:
    """Issue a key and certificate for every client, in order, and write their client files;
    ``unlock`` is called once. All refusals come before anything is made (module docstring)."""
    opts = options
    if not opts.clients:
        raise InputError("no users to issue certificates for")
    outs = _check_all(opts)
    for out in outs:
        loose = loose_client_dir_warning(out)
        if loose:
            warn(loose)
    requests = [IssueRequest(c.user, c.key_type, c.days) for c in opts.clients]
    with CaStore.open(opts.ca_dir, wait_lock=opts.wait_lock) as store:
        unlock(store)
        issued = store.issue_many(requests, now=opts.now, allow_tls13_only=opts.force)
        return _write_all(opts, store, issued, outs)


def _check_all(opts: BatchOptions) -> list[Path]:
    """The output directory of every client, after every check; one error for a batch."""
    if len(opts.clients) == 1:
        return [_check_one(opts, opts.clients[0])]
    outs: list[Path] = []
    problems: list[str] = []
    users: dict[str, str] = {}
    dirs: dict[Path, str] = {}
    for client in opts.clients:
        label = client.label or client.user
        try:
            out = _check_one(opts, client)
        except InputError as exc:
            problems.append(f"{label}: {exc}")
            continue
        if client.user in users:
            problems.append(f"{label}: user {client.user!r} is also on {users[client.user]}")
            continue
        if out.absolute() in dirs:
            problems.append(f"{label}: {out} is also the directory of {dirs[out.absolute()]}")
            continue
        users[client.user] = dirs[out.absolute()] = label
        outs.append(out)
    if problems:
        raise refusal(problems, total=len(opts.clients), what="issued")
    return outs


def _check_one(opts: BatchOptions, client: ClientSpec) -> Path:
    """The client's output directory, after the checks that come before the store is even
    opened: the name, the key type, the directory and the files in it."""
    check_request(
        IssueRequest(client.user, client.key_type, client.days), allow_tls13_only=opts.force
    )
    crypto.check_days(client.days, "certificate", now=opts.now)
    out = client.out_dir
    if out is None:
        out = user_dir(opts.out_root if opts.out_root is not None else Path(), client.user)
    check_client_dir(out, client_file_names(opts.fmt))
    if not opts.force:
        check_client_files_absent(out, opts.fmt)
    return out


def _write_all(
    opts: BatchOptions, store: CaStore, issued: Sequence[IssuedCert], outs: Sequence[Path]
) -> list[IssueResult]:
    """Write every client's files (the certificates are recorded); InputError naming the
    certificates whose files could not be written, after writing all the others.

    Users are written by a few threads at once: each file is fsynced before its rename, and
    the disk's flushes, not the CPU, bound a batch; concurrent fsyncs share the filesystem's
    journal commits (``atomic_write`` is safe across threads: fleet runs rely on it too)."""

    def write(one: IssuedCert, out: Path) -> list[Path] | str:
        try:
            return write_client_files(
                out,
                one,
                store.ca_cert,
                fmt=opts.fmt,
                overwrite=opts.force,
                p12_passphrase=opts.p12_passphrase,
            )
        except InputError as exc:
            return str(exc)
        except OSError as exc:
            return f"{exc.filename}: {exc.strerror}"

    if len(issued) == 1:
        outcomes = [write(issued[0], outs[0])]
    else:
        with ThreadPoolExecutor(max_workers=min(_WRITERS, len(issued))) as pool:
            outcomes = list(pool.map(write, issued, outs))
    done = [
        IssueResult(issued=one, files=files)
        for one, files in zip(issued, outcomes, strict=True)
        if isinstance(files, list)
    ]
    failed = [(one, why) for one, why in zip(issued, outcomes, strict=True) if isinstance(why, str)]
    if len(failed) == 1 and len(issued) == 1:
        (one, why), serial = failed[0], failed[0][0].record.serial_hex
        raise InputError(
            f"certificate {serial} for {one.record.cn} is recorded but its files were not "
            f"written ({why}); issue again, and revoke it with rdsssl cert revoke --serial "
            f"{serial}"
        )
    if failed:
        listed = "; ".join(f"{o.record.cn} {o.record.serial_hex} ({why})" for o, why in failed)
        serials = " ".join(o.record.serial_hex for o, _ in failed)
        raise InputError(
            f"{len(failed)} of {len(issued)} certificates are recorded but their files were "
            f"not written: {listed}; the other {len(done)} were written. Issue those users "
            f"again, and revoke the unwritten certificates with rdsssl cert revoke "
            f"--serials-file FILE (serials: {serials})"
        )
    return done
