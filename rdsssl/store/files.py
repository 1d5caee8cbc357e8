"""Files around the CA store: checks that the store directory can be trusted, and the client
files (``root.crt``, ``client.crt``, ``client.key``, ``.pk8``, ``.p12``) handed to users.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import stat
from collections.abc import Callable, Iterable
from pathlib import Path

from cryptography import x509

from rdsssl.errors import InputError, StoreError
from rdsssl.pki import crypto
from rdsssl.store.db import Inventory
from rdsssl.store.fsutil import atomic_write, fsync_dir, loose_dir_mode, make_private_dirs
from rdsssl.store.lock import LOCK_NAME, open_lock_file
from rdsssl.store.records import CertRecord, IssuedCert

__all__ = [
    "CA_CERT",
    "CA_KEY",
    "INVENTORY",
    "check_client_dir",
    "check_client_files_absent",
    "check_key_file",
    "check_store_dir",
    "check_store_target",
    "client_file_names",
    "create_store_dir",
    "loose_client_dir_warning",
    "replace_key_file",
    "user_dir",
    "write_client_files",
]

CA_CERT = "ca.crt"
CA_KEY = "ca.key"
INVENTORY = "inventory.sqlite"


def check_store_dir(path: Path, *, marker: str) -> None:
    """Refuse a directory rdsssl should not trust or cannot use, saying how to fix it.

    Trust needs: a directory owned by the effective user, readable by it, writable by nobody
    else (anyone who can write there can swap ca.crt or the inventory), holding ``marker``.
    Modes are checked from the bits rather than with ``os.access`` so that root, which bypasses
    permissions, gets the same verdict as everyone else.
    """
    try:
        st = path.stat()
    except FileNotFoundError:
        raise StoreError(
            f"not a CA store: {path} does not exist; run rdsssl ca init --ca-dir {path}"
        ) from None
    except OSError as exc:
        raise StoreError(f"cannot access the CA directory {path}: {exc.strerror}") from None
    if not stat.S_ISDIR(st.st_mode):
        raise StoreError(f"not a CA store: {path} is not a directory")
    mode = stat.S_IMODE(st.st_mode)
    me = os.geteuid()
    if st.st_uid != me:
        raise StoreError(
            f"the CA directory {path} is owned by uid {st.st_uid}, not by you (uid {me}); "
            f"run rdsssl as its owner, or fix it: chown -R {me} {path}"
        )
    if mode & 0o500 != 0o500:
        raise StoreError(
            f"the CA directory {path} is not readable (mode {mode:04o}); fix it: chmod 700 {path}"
        )
    if mode & 0o022:
        raise StoreError(
            f"the CA directory {path} is writable by others (mode {mode:04o}); "
            f"fix it: chmod 700 {path}"
        )
    if not (path / marker).is_file():
        raise StoreError(
            f"not a CA store: {path} has no {marker}; run rdsssl ca init --ca-dir {path}"
            " (or rdsssl ca import)"
        )


def check_key_file(path: Path) -> None:
    """The CA key must exist, belong to us and be private (like ssh's rule for identity files)."""
    try:
        st = path.stat()
    except FileNotFoundError:
        raise StoreError(f"{path} is missing: the CA store is incomplete") from None
    mode = stat.S_IMODE(st.st_mode)
    me = os.geteuid()
    if st.st_uid != me or mode & 0o077:
        raise StoreError(
            f"{path} must be private to its owner (mode {mode:04o}, uid {st.st_uid}); "
            f"fix it: chown {me} {path} && chmod 600 {path}"
        )


def replace_key_file(
    path: Path, data: bytes, *, stamp: str, verify: Callable[[bytes], None], keep_old: bool
) -> Path | None:
    """Replace the key file ``path`` with ``data`` so that it is never missing, partial or
    unverified, and the old key survives until the new one has been checked.

    1. the old key is kept as ``path.bak-<stamp>`` (a hard link: same bytes, same 0600 inode);
    2. ``path.new`` is written 0600 and fsynced, read back, and ``verify`` must accept it;
    3. it is renamed over ``path`` (atomic; the directory is fsynced);
    4. ``path`` is read back and compared; then the backup goes, unless ``keep_old``.

    Returns the backup kept, or None. Before step 3 a failure removes ``path.new`` and the
    backup (``path`` was never touched); after it, the backup stays and the error names it.
    """
    new = path.with_name(f"{path.name}.new")
    backup = _link_backup(path, stamp)
    try:
        atomic_write(new, data, mode=0o600)
        verify(new.read_bytes())
        os.replace(new, path)
    except BaseException:
        for leftover in (new, backup):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(leftover)
        raise
    fsync_dir(path.parent)
    if path.read_bytes() != data:
        raise StoreError(f"{path} does not read back as written; the old key is in {backup}")
    if keep_old:
        return backup
    os.unlink(backup)
    fsync_dir(path.parent)
    return None


def _link_backup(path: Path, stamp: str) -> Path:
    """Hard-link ``path`` as ``path.bak-<stamp>`` (``-2``, ``-3``, ... when that name is taken:
    ``link(2)`` never replaces a file)."""
    for attempt in range(1, 100):
        backup = path.with_name(f"{path.name}.bak-{stamp}" + (f"-{attempt}" if attempt > 1 else ""))
        try:
            os.link(path, backup)
        except FileExistsError:
            continue
        except OSError as exc:
            raise StoreError(f"cannot keep a copy of {path} as {backup}: {exc.strerror}") from None
        return backup
    raise StoreError(f"too many {path.name}.bak-{stamp}* files next to {path}; remove some")


def check_store_target(path: Path) -> None:
    """A new store goes into a missing or empty directory only: never over someone's files."""
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise StoreError(f"{path} already exists and is not empty; choose a new --ca-dir")


def create_store_dir(
    path: Path, *, key_pem: bytes, cert_pem: bytes, meta: dict[str, str], rows: list[CertRecord]
) -> None:
    """Build a complete store in a private sibling directory, then rename it into place.

    ``rename(2)`` of a directory is atomic and replaces only a missing or empty directory, so a
    crash leaves either no store or a whole one (plus, at worst, a ``.NAME.new-*`` leftover that
    nobody reads), and two concurrent inits cannot both win.
    """
    check_store_target(path)
    make_private_dirs(path.parent)
    tmp = path.parent / f".{path.name}.new-{secrets.token_hex(4)}"
    os.mkdir(tmp, 0o700)
    try:
        atomic_write(tmp / CA_KEY, key_pem, mode=0o600)
        atomic_write(tmp / CA_CERT, cert_pem, mode=0o644)
        os.close(open_lock_file(tmp / LOCK_NAME))
        inv = Inventory.create(tmp / INVENTORY, meta=meta)
        try:
            with inv.transaction():
                for row in rows:
                    inv.insert(row)
        finally:
            inv.close()
        fsync_dir(tmp)
        try:
            os.rename(tmp, path)
        except OSError as exc:
            raise StoreError(f"cannot create {path}: {exc.strerror}") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    fsync_dir(path.parent)


_CLIENT_FILES = {
    "pem": ("root.crt", "client.crt", "client.key"),
    "pk8": ("root.crt", "client.crt", "client.key", "client.pk8"),
    "p12": ("root.crt", "client.crt", "client.key", "client.p12"),
}


def client_file_names(fmt: str) -> tuple[str, ...]:
    """The files ``cert issue --format fmt`` writes."""
    return _CLIENT_FILES[fmt]


def user_dir(root: Path, user: str) -> Path:
    """``root/user``, refusing user names that would escape ``root`` or name no directory
    (PostgreSQL allows ``/`` and ``..`` in quoted role names; a path must not)."""
    problem = "it is empty" if not user else crypto.unsafe_name_problem(user)
    if problem:
        raise InputError(
            f"user {user!r} cannot be used as a directory name under {root} ({problem}); "
            "pass an explicit output directory"
        )
    return root / user


def check_client_dir(
    out_dir: Path,
    names: Iterable[str],
    *,
    allowed_link: Callable[[str, str], bool] | None = None,
) -> None:
    """InputError unless client files can go into ``out_dir`` without following a link.

    ``out_dir`` must be missing (it is then created 0700) or a real directory, not a symlink;
    none of ``names`` in it may be a symlink, dangling or not, except those ``allowed_link(name,
    target)`` accepts (renewal's own ``current/NAME`` links). Whoever can plant a link there
    could otherwise have a private key written, or read back, where they choose; and a
    dangling link makes the write fail only after the certificate was recorded.
    """
    try:
        st = out_dir.lstat()
    except (FileNotFoundError, NotADirectoryError):
        return  # nothing there to follow; creating it reports what is in the way
    if stat.S_ISLNK(st.st_mode):
        raise InputError(
            f"{out_dir} is a symbolic link (to {os.readlink(out_dir)!r}); client files (a private "
            "key) are written only into a real directory: remove the link or choose another one"
        )
    if not stat.S_ISDIR(st.st_mode):
        raise InputError(f"{out_dir} exists and is not a directory; choose another one")
    for name in names:
        target = out_dir / name
        try:
            is_link = stat.S_ISLNK(target.lstat().st_mode)
        except FileNotFoundError:
            continue
        if not is_link:
            continue
        link = os.readlink(target)
        if allowed_link is not None and allowed_link(name, link):
            continue
        kind = "a symbolic link" if target.exists() else "a dangling symbolic link"
        raise InputError(
            f"{target} is {kind} (to {link!r}); rdsssl never writes a key or certificate "
            f"through a link: remove it (rm {target}) or choose another directory"
        )


def loose_client_dir_warning(out_dir: Path) -> str | None:
    """A warning when the existing ``out_dir`` is open to group or others (it will hold a
    private key); None when it is private or does not exist yet (it is then made 0700)."""
    mode = loose_dir_mode(out_dir)
    if mode is None:
        return None
    return (
        f"{out_dir} is accessible to other users (mode {mode:04o}) and will hold a private key;"
        f" consider: chmod 700 {out_dir}"
    )


def check_client_files_absent(out_dir: Path, fmt: str) -> None:
    """InputError naming the first client file that already exists in ``out_dir``."""
    for name in client_file_names(fmt):
        if (out_dir / name).exists():
            raise InputError(f"{out_dir / name} already exists; pass --force to overwrite it")


def write_client_files(
    out_dir: Path,
    issued: IssuedCert,
    ca_cert: x509.Certificate,
    *,
    fmt: str = "pem",
    overwrite: bool = False,
    p12_passphrase: bytes | None = None,
) -> list[Path]:
    """Write the files a client needs into ``out_dir`` (created 0700): ``root.crt`` (the CA
    that issued the certificate), ``client.crt``, ``client.key`` (0600) and, for ``pk8`` /
    ``p12``, ``client.pk8`` / ``client.p12`` (0600). Each file is atomic; without
    ``overwrite`` an existing file is an InputError naming it (nothing is replaced); so is a
    symlink in the way (``check_client_dir``)."""
    check_client_dir(out_dir, client_file_names(fmt))
    if not overwrite:
        check_client_files_absent(out_dir, fmt)
    make_private_dirs(out_dir)
    contents: dict[str, tuple[bytes, int]] = {
        "root.crt": (crypto.cert_pem(ca_cert), 0o644),
        "client.crt": (crypto.cert_pem(issued.cert), 0o644),
        "client.key": (crypto.key_pem(issued.key), 0o600),
    }
    if fmt == "pk8":
        contents["client.pk8"] = (crypto.key_pk8_der(issued.key), 0o600)
    elif fmt == "p12":
        blob = crypto.pkcs12(
            issued.cert, issued.key, ca_cert, name=issued.record.cn, passphrase=p12_passphrase
        )
        contents["client.p12"] = (blob, 0o600)
    written: list[Path] = []
    try:
        for name in client_file_names(fmt):
            data, mode = contents[name]
            target = out_dir / name
            try:
                atomic_write(target, data, mode=mode, overwrite=overwrite, sync_dir=False)
            except FileExistsError:
                raise InputError(f"{target} already exists; pass --force to overwrite it") from None
            written.append(target)
    finally:
        fsync_dir(out_dir)  # once for every rename above (a batch writes 100s of directories)
    return written
