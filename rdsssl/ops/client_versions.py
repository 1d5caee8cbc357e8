"""Client files as versions, for cron renewals: a crash-safe publication.

``OUT_ROOT/USER/{root.crt,client.crt,client.key[,client.pk8|.p12]}`` are symlinks to
``current/<name>``; ``current`` is a symlink to a version directory (0700) named by serial and
marked by ``.renewal.json``. A version is written completely where nobody reads yet (``.pending``,
see ``stage``) and goes live with ONE ``rename(2)`` of ``current`` (``publish``): every name
always resolves into one whole version, so a crash can never pair a new certificate with an old
key. The previous version is kept (a manual rollback is ``ln -sfn SERIAL current``), older ones
are pruned. Plain files (from ``cert issue --out``) are first copied into a version that becomes
``current``, then relinked one by one: no step changes what any name reads. With a deploy hook,
``.renewal.json`` says ``"hook": "pending"`` until the hook succeeded (``hook_pending``,
``mark_deployed``).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import stat
from pathlib import Path
from typing import Any

from rdsssl.errors import InputError
from rdsssl.ops import crashpoints
from rdsssl.ops.hooks import Deployment
from rdsssl.pki import crypto
from rdsssl.store.castore import CaStore
from rdsssl.store.files import check_client_dir, user_dir
from rdsssl.store.fsutil import atomic_write, fsync_dir, make_private_dirs

__all__ = [
    "BASE_NAMES",
    "CURRENT",
    "PENDING",
    "check_user_dir",
    "current",
    "free_name",
    "hook_pending",
    "is_linked",
    "mark_deployed",
    "publish",
    "read_meta",
    "stage",
    "user_dirs",
    "versions",
    "write_meta",
]

CURRENT = "current"
PENDING = ".pending"  # a version being built
_ADOPTING = ".adopting"  # a copy of plain files being made
_META = ".renewal.json"  # marks a directory as a version rdsssl made (pruning needs that)
_ALL_NAMES = ("root.crt", "client.crt", "client.key", "client.pk8", "client.p12")
BASE_NAMES = ("root.crt", "client.crt", "client.key")


def user_dirs(store: CaStore, out_root: Path, *, user: str | None = None) -> dict[str, Path]:
    """``OUT_ROOT/<cn>`` for every CN in the store (CNs that name no directory, and directories
    ``check_user_dir`` refuses, are left out: nothing is finished or deployed through them)."""
    found: dict[str, Path] = {}
    for cn in store.users(user=user):
        with contextlib.suppress(InputError):
            found[cn] = check_user_dir(user_dir(out_root, cn))
    return found


def check_user_dir(out_dir: Path) -> Path:
    """``out_dir`` unless a link is in the way (``store.check_client_dir``): the directory must
    not be a symlink, and the only links in it are the ones renewal makes (``NAME`` ->
    ``current/NAME``, ``current`` -> a version directory beside it)."""

    def ours(name: str, target: str) -> bool:
        if name == CURRENT:
            plain = "/" not in target and target not in ("", ".", "..")
            return plain and (out_dir / target).is_dir() and not (out_dir / target).is_symlink()
        return target == f"{CURRENT}/{name}"

    check_client_dir(out_dir, (*_ALL_NAMES, CURRENT, PENDING, _ADOPTING), allowed_link=ours)
    return out_dir


def stage(out_dir: Path, key: crypto.PrivateKey, *, user: str, old_serial: str, hook: bool) -> None:
    """``.pending`` with the new key and the renewal's record, before anything is signed."""
    make_private_dirs(out_dir)
    pending = out_dir / PENDING
    try:
        os.mkdir(pending, 0o700)
    except FileExistsError:
        raise InputError(
            f"{pending} is left over from an interrupted renewal; run rdsssl cert renew again "
            "(it finishes or discards it first)"
        ) from None
    meta = {"user": user, "serial": None, "old_serial": old_serial, "hook": "none"}
    if hook:
        meta["hook"] = "pending"
    write_meta(pending, meta)
    atomic_write(pending / "client.key", crypto.key_pem(key), mode=0o600)


# --- deploy hooks' bookkeeping ------------------------------------------------------------------


def hook_pending(dirs: dict[str, Path]) -> list[Deployment]:
    """Live versions (of the given user directories) whose deploy hook has not succeeded."""
    found: list[Deployment] = []
    for cn, out_dir in dirs.items():
        name = current(out_dir)
        if name is None:
            continue
        meta = read_meta(out_dir / name) or {}
        if meta.get("hook") == "pending" and meta.get("user") == cn:
            found.append(
                Deployment(cn, str(meta.get("serial") or ""), meta.get("old_serial"), out_dir,
                           out_dir / name)
            )  # fmt: skip
    return found


def mark_deployed(deployment: Deployment) -> None:
    """Record that the hook succeeded for this version (it will not run again)."""
    meta = read_meta(deployment.version_dir) or {}
    write_meta(deployment.version_dir, {**meta, "hook": "done"})


# --- the directory layout -------------------------------------------------------------------------


def read_meta(version_dir: Path) -> dict[str, Any] | None:
    try:
        data = json.loads((version_dir / _META).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def write_meta(version_dir: Path, meta: dict[str, Any]) -> None:
    atomic_write(version_dir / _META, json.dumps(meta, sort_keys=True).encode(), mode=0o600)


def current(out_dir: Path) -> str | None:
    """The version ``current`` selects, or None."""
    try:
        return os.readlink(out_dir / CURRENT)
    except OSError:
        return None


def is_linked(out_dir: Path, name: str) -> bool:
    """``out_dir/name`` is the symlink ``current/name``."""
    try:
        return os.readlink(out_dir / name) == f"{CURRENT}/{name}"
    except OSError:
        return False


def versions(out_dir: Path) -> list[Path]:
    """Directories rdsssl made (they hold .renewal.json), oldest first."""
    found = [
        d for d in out_dir.iterdir()
        if not d.name.startswith(".") and d.is_dir() and not d.is_symlink()
        and (d / _META).is_file()
    ]  # fmt: skip
    return sorted(found, key=lambda d: (d / _META).stat().st_mtime)


def free_name(out_dir: Path, base: str) -> str:
    name = base
    while (out_dir / name).exists() or (out_dir / name).is_symlink():
        name = f"{base}.{secrets.token_hex(3)}"
    return name


def _point(path: Path, target: str) -> None:
    """Make ``path`` a symlink to ``target`` in one ``rename(2)`` (readers never miss it)."""
    crashpoints.reached("versions.link")
    with contextlib.suppress(OSError):
        if os.readlink(path) == target:
            return
    tmp = path.parent / f".{path.name}.tmp-{secrets.token_hex(4)}"
    os.symlink(target, tmp)
    try:
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _adopt(out_dir: Path) -> None:
    """Move names that are not linked into ``current`` (plain files from ``cert issue``) under
    a version of their own, without changing what any name reads at any moment."""
    stray = [n for n in _ALL_NAMES if (out_dir / n).exists() and not is_linked(out_dir, n)]
    if not stray:
        return
    staging = out_dir / _ADOPTING
    shutil.rmtree(staging, ignore_errors=True)  # a copy a killed run never finished
    os.mkdir(staging, 0o700)
    for name in _ALL_NAMES:
        source = out_dir / name
        if source.exists():  # what the name reads now, through any link
            mode = stat.S_IMODE(source.stat().st_mode)
            atomic_write(staging / name, source.read_bytes(), mode=mode)
    serial = _serial_of(staging / "client.crt")
    write_meta(staging, {"user": out_dir.name, "serial": serial, "hook": "none", "adopted": True})
    version = free_name(out_dir, serial or "adopted")
    os.rename(staging, out_dir / version)
    fsync_dir(out_dir)
    _point(out_dir / CURRENT, version)
    for name in stray:
        if (out_dir / version / name).exists():
            _point(out_dir / name, f"{CURRENT}/{name}")
    fsync_dir(out_dir)


def _serial_of(path: Path) -> str | None:
    try:
        certs = crypto.load_certificates(path.read_bytes(), source=str(path), what="client.crt")
    except (OSError, InputError):
        return None
    return format(certs[0].serial_number, "x") if certs else None


def publish(out_dir: Path, version: str) -> None:
    """Make ``version`` live: adopt strays, switch ``current``, link the names it has (a name
    it lacks, e.g. client.pk8 after a switch to --format pem, is unlinked), prune."""
    crashpoints.reached("versions.publish")
    _adopt(out_dir)
    previous = current(out_dir)
    _point(out_dir / CURRENT, version)
    for name in _ALL_NAMES:
        if (out_dir / version / name).exists():
            _point(out_dir / name, f"{CURRENT}/{name}")
        elif is_linked(out_dir, name):  # a format this version does not have
            os.unlink(out_dir / name)
    fsync_dir(out_dir)
    keep = {version, previous}
    for old in versions(out_dir):
        if old.name not in keep:
            shutil.rmtree(old)
    fsync_dir(out_dir)
