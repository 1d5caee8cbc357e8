"""Crash-safe file writing for the CA store and the files rdsssl hands out.

Two rules from certbot: a file holding a secret is *born* with its final mode (``O_CREAT|O_EXCL``
with ``mode``, never ``chmod`` afterwards, so there is no window in which another user can open
it), and a file is never visible half-written (temp file in the same directory, ``fsync``, then
``rename``, then ``fsync`` of the directory so the rename itself survives a power cut). A
directory rdsssl creates is 0700 from birth, parents included (``make_private_dirs``).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
from pathlib import Path

__all__ = [
    "StagedFile",
    "atomic_write",
    "fsync_dir",
    "loose_dir_mode",
    "make_private_dirs",
]


def fsync_dir(path: Path) -> None:
    """Flush a directory entry change (create, rename, unlink) to disk."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def atomic_write(
    path: Path, data: bytes, *, mode: int = 0o644, overwrite: bool = True, sync_dir: bool = True
) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the new one, never a mix.

    The temp file is created with ``O_EXCL`` and ``mode`` (then narrowed by the umask, never
    widened), so a private key is 0600 from its first byte. With ``overwrite=False`` the final step
    is ``link(2)``, which fails when ``path`` exists: "never overwrite" holds even against a file
    created by someone else between a check and the write. Raises ``FileExistsError`` then.

    ``sync_dir=False`` leaves the directory's fsync (the rename surviving a power cut) to the
    caller, who writes several files into one directory and then calls ``fsync_dir`` once; each
    file is still complete (fsynced) before its rename.
    """
    directory = path.parent
    tmp = directory / f".{path.name}.tmp-{secrets.token_hex(4)}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
    try:
        try:
            _write_all(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        if overwrite:
            os.replace(tmp, path)
        else:
            os.link(tmp, path)
            os.unlink(tmp)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    if sync_dir:
        fsync_dir(directory)


def make_private_dirs(path: Path) -> bool:
    """Create ``path`` and every missing parent with mode 0700, whatever the umask; False if
    ``path`` already existed (an existing directory keeps its mode: see ``loose_dir_mode``).

    Each directory rdsssl creates may come to hold a private key, an audit trail or a lock, so
    none of them is ever open to other users, not even for a moment. ``os.mkdir(p, 0o700)``
    cannot create anything wider than 0700 (the umask only removes bits), so the mode is given
    to ``mkdir`` itself; when the umask also removed owner bits (``umask 0277``), an explicit
    ``chmod`` restores exactly 0700 afterwards, which only ever *adds* owner bits. The umask is
    not changed temporarily instead: it is process-wide, and fleet runs write files from
    several threads at once.
    """
    if path.is_dir():
        return False
    missing: list[Path] = []
    for candidate in (path, *path.parents):
        if candidate.is_dir():
            break
        missing.append(candidate)
    created = False
    for directory in reversed(missing):
        try:
            os.mkdir(directory, 0o700)
        except FileExistsError:
            if directory.is_dir():
                continue
            raise
        _force_private(directory)
        fsync_dir(directory.parent)
        created = directory == path
    return created


def _force_private(directory: Path) -> None:
    """0700 on a directory this process just created: a no-op unless the umask took owner
    bits (``lstat``, so a symlink swapped in meanwhile is refused rather than followed)."""
    st = os.lstat(directory)
    if not stat.S_ISDIR(st.st_mode):
        raise NotADirectoryError(f"{directory} changed while being created")
    if stat.S_IMODE(st.st_mode) != 0o700:
        os.chmod(directory, 0o700)


def loose_dir_mode(path: Path) -> int | None:
    """The mode of the existing directory ``path`` when its group or others have any access
    (``mode & 0o077``), else None (also when it does not exist yet: it will be made 0700)."""
    try:
        st = path.stat()
    except OSError:
        return None
    mode = stat.S_IMODE(st.st_mode)
    return mode if stat.S_ISDIR(st.st_mode) and mode & 0o077 else None


class StagedFile:
    """``atomic_write`` in two steps, for a caller that must commit something else in between.

    Creating it makes the temp file next to ``path`` (so a missing or read-only directory fails
    here, before the caller has done anything); ``write`` fills and fsyncs it; ``commit``
    renames it over ``path``. Leaving the ``with`` block without ``commit`` removes it.
    """

    def __init__(self, path: Path, *, mode: int = 0o644) -> None:
        self.path = path
        self._tmp = path.parent / f".{path.name}.tmp-{secrets.token_hex(4)}"
        self._fd: int | None = os.open(
            self._tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode
        )
        self._committed = False

    def write(self, data: bytes) -> None:
        """Write and fsync the whole content (once)."""
        if self._fd is None:
            raise ValueError(f"{self._tmp} was already written")
        fd, self._fd = self._fd, None
        try:
            _write_all(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)

    def commit(self) -> None:
        """Rename the written temp file over ``path``, durably."""
        if self._fd is not None:
            raise ValueError(f"{self._tmp} has not been written")
        os.replace(self._tmp, self.path)
        self._committed = True
        fsync_dir(self.path.parent)

    def __enter__(self) -> StagedFile:
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        if not self._committed:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._tmp)
