"""An exclusive, self-describing lock file, so two cron runs never mutate the same state at once.

``fcntl.flock`` on ``<dir>/.lock``: the kernel drops the lock when its holder dies (even by
SIGKILL), so there is never a stale lock to clean up by hand. While held, the file records who
holds it (pid, host, command, since) so the error a second run gets says whom to wait for.
The holder clears the record before unlocking, which keeps the file's bytes unchanged by a run.

A lock file may sit in a directory other users can write to (an OUT_ROOT, a shared state dir),
so ``open_lock_file`` is the one way rdsssl opens one: ``O_NOFOLLOW`` (a symlink planted at the
lock path is refused, never followed to a file it would then truncate), ``O_NONBLOCK`` (a FIFO
cannot hang the open), ``O_CLOEXEC`` (hooks and other children do not inherit the lock), and
then ``fstat`` of what was opened: it must be a regular file, owned by the effective user, with
one link. Only such a file is ever written to; anything else is a StoreError saying what to
remove.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import socket
import stat
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from types import TracebackType

from rdsssl.errors import LockHeld, StoreError

__all__ = ["LOCK_NAME", "FileLock", "describe_holder", "open_lock_file"]

LOCK_NAME = ".lock"
_POLL_SECONDS = 0.05


def open_lock_file(path: Path) -> int:
    """Open (creating it 0600 if missing) the lock file ``path``; StoreError unless it is a
    regular file of ours with one link. The caller owns the returned descriptor."""
    flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    try:
        fd = os.open(path, flags, 0o600)
    except OSError as exc:
        if exc.errno == errno.ELOOP:  # O_NOFOLLOW met a symlink (dangling ones too)
            raise StoreError(_refusal(path, "is a symbolic link")) from None
        if exc.errno == errno.EISDIR:
            raise StoreError(_refusal(path, "is a directory")) from None
        raise StoreError(f"cannot open the lock file {path}: {exc.strerror}") from None
    try:
        _check_lock_file(path, os.fstat(fd))
    except BaseException:
        os.close(fd)
        raise
    return fd


def _check_lock_file(path: Path, st: os.stat_result) -> None:
    me = os.geteuid()
    if not stat.S_ISREG(st.st_mode):
        raise StoreError(_refusal(path, "is not a regular file"))
    if st.st_uid != me:
        raise StoreError(
            f"refusing the lock file {path}: it is owned by uid {st.st_uid}, not by you "
            f"(uid {me}); run rdsssl as the owner of {path.parent}, or remove the file "
            f"(rm {path}) if you do not know who made it"
        )
    if st.st_nlink != 1:
        raise StoreError(_refusal(path, f"has {st.st_nlink} hard links (another name for it)"))


def _refusal(path: Path, what: str) -> str:
    return (
        f"refusing the lock file {path}: it {what}; rdsssl only locks a plain file of its own. "
        f"Remove it (rm {path}) and make sure nobody else can write to {path.parent}"
    )


def describe_holder(raw: bytes) -> str:
    """Render the record a holder wrote ("pid 42 on host db1 since ...: rdsssl cert issue")."""
    try:
        info = json.loads(raw.decode())
        return f"pid {info['pid']} on {info['host']} since {info['since']} ({info['command']})"
    except (ValueError, KeyError, TypeError, UnicodeDecodeError):
        return "another process (it has not recorded its details yet)"


class FileLock:
    """``with FileLock(path, command=..., wait=5): ...`` - exclusive, re-entrant per object.

    ``wait`` is how many seconds to keep trying before raising ``LockHeld``; 0 fails at once.
    ``label`` names the thing locked in messages (e.g. "CA store /srv/ca").
    """

    def __init__(self, path: Path, *, command: str, wait: float = 0.0, label: str = "") -> None:
        self.path = path
        self.command = command
        self.wait = wait
        self.label = label or str(path.parent)
        self._fd: int | None = None
        self._depth = 0

    @property
    def held(self) -> bool:
        """True while this object holds the lock."""
        return self._fd is not None

    def acquire(self) -> None:
        """Take the lock (re-entrant), waiting up to ``self.wait`` seconds; LockHeld otherwise."""
        if self._fd is not None:
            self._depth += 1
            return
        fd = open_lock_file(self.path)
        deadline = time.monotonic() + max(self.wait, 0.0)
        try:
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        holder = describe_holder(os.pread(fd, 4096, 0))
                        waited = f" after waiting {self.wait:g}s" if self.wait > 0 else ""
                        raise LockHeld(
                            f"{self.label} is locked by {holder}{waited}; wait for it to finish"
                            " or pass --wait-lock SECONDS"
                        ) from None
                    time.sleep(_POLL_SECONDS)
            record = {
                "pid": os.getpid(),
                "host": socket.gethostname(),
                "command": self.command,
                "since": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            }
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps(record).encode(), 0)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        self._depth = 1

    def release(self) -> None:
        """Undo one ``acquire``; the last one clears the record and unlocks."""
        if self._fd is None:
            return
        self._depth -= 1
        if self._depth > 0:
            return
        fd, self._fd = self._fd, None
        try:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    def __enter__(self) -> FileLock:
        self.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()


def current_command() -> str:
    """The command line of this process, shortened, for the lock record."""
    text = " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]) if sys.argv else "python"
    return text if len(text) <= 200 else text[:197] + "..."
