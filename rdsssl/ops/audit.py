"""The append-only audit log: one JSON line per mutating action, fsynced before we move on.

Cron runs leave no terminal behind, so "what did rdsssl change on pgm-x last night, and with
which request id?" must be answerable from a file. Each line is written with a single
`os.write` on an O_APPEND descriptor (atomic for lines this size on local filesystems, so
concurrent fleet workers never interleave) and fsynced. Lines hold fingerprints, never PEM
text, keys or credentials.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from rdsssl.errors import InputError
from rdsssl.store.fsutil import make_private_dirs
from rdsssl.store.paths import state_dir

ENV_AUDIT_LOG = "RDSSSL_AUDIT_LOG"

# instance -> request id of a change sent, not yet confirmed. Each use is ONE dict operation,
# atomic under the GIL, and deliberately lock-free: an interrupt landing inside a `with lock:`
# can leave the lock held, and the interrupt's own audit line would then wait on it forever.
_UNCONFIRMED: dict[str, str] = {}


def default_path() -> Path:
    """`$RDSSSL_AUDIT_LOG`, else `audit.jsonl` in rdsssl's state directory
    (`rdsssl.store.paths`)."""
    explicit = os.environ.get(ENV_AUDIT_LOG)
    if explicit:
        return Path(explicit)
    return state_dir() / "audit.jsonl"


def unconfirmed() -> dict[str, str]:
    """Changes this process sent and has not seen through (instance -> request id): what an
    interrupted run must tell the operator to confirm by running again."""
    return _UNCONFIRMED.copy()


def forget_unconfirmed() -> None:
    """Start a new run's bookkeeping (the CLI calls it once per command it runs)."""
    _UNCONFIRMED.clear()


def _mark(instance: str, request_id: str | None, outcome: str) -> None:
    if outcome in ("sent", "interrupted"):
        _UNCONFIRMED[instance] = request_id or ""
    else:
        _UNCONFIRMED.pop(instance, None)


@dataclass(frozen=True)
class AuditLog:
    """Where audit lines go. `AuditLog.disabled()` for callers that opt out explicitly."""

    path: Path | None

    @classmethod
    def default(cls) -> AuditLog:
        """The log at `default_path()`."""
        return cls(default_path())

    @classmethod
    def disabled(cls) -> AuditLog:
        """A log that records nothing (library users who keep their own records)."""
        return cls(None)

    def pending(self, instance: str) -> dict[str, Any] | None:
        """The last line about `instance` when it records a change sent and never confirmed
        (`sent`, or `interrupted`), else None. Reads only the end of the log."""
        if self.path is None:
            return None
        try:
            with open(self.path, "rb") as f:
                f.seek(0, os.SEEK_END)
                size = f.tell()
                f.seek(max(0, size - _TAIL))
                tail = f.read()
        except (FileNotFoundError, NotADirectoryError):
            return None  # no log yet: nothing pending (a log that cannot be written is refused
            # before any change, by check_writable)
        except OSError as exc:
            raise InputError(f"cannot read the audit log {self.path}: {exc.strerror}") from None
        for raw in reversed(tail.splitlines()):
            try:
                line = json.loads(raw)
            except ValueError:
                continue  # the first, cut line of the tail, or a damaged one
            if isinstance(line, dict) and line.get("instance") == instance:
                return line if line.get("outcome") in ("sent", "interrupted") else None
        return None

    def check_writable(self) -> None:
        """InputError (exit 3) unless a line can be appended: checked before any mutating call,
        so a change is never made that the log cannot record."""
        if self.path is None:
            return
        try:
            make_private_dirs(self.path.parent)  # 0700, parents too
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
            os.close(fd)
        except OSError as exc:
            raise InputError(
                f"the audit log {self.path} is not writable ({exc.strerror}): fix its directory "
                "or choose another file with --audit-log / RDSSSL_AUDIT_LOG; nothing was sent"
            ) from None

    def record(
        self,
        *,
        instance: str,
        action: str,
        outcome: str,
        request_id: str | None = None,
        before: dict[str, Any] | None = None,
        after: dict[str, Any] | None = None,
        detail: str = "",
        now: datetime | None = None,
        target: dict[str, Any] | None = None,
    ) -> None:
        """Append one line: time, instance, action, request id, fingerprints before and
        after, outcome (sent / ok / failed / timeout / interrupted ...), and a short detail.
        A `sent` line is written as soon as the call returns; its outcome line follows."""
        _mark(instance, request_id, outcome)
        if self.path is None:
            return
        line = {
            "time": (now or datetime.now(timezone.utc)).isoformat(timespec="seconds"),
            "instance": instance,
            "action": action,
            "request_id": request_id,
            "before": before or {},
            "after": after or {},
            "outcome": outcome,
            "detail": detail,
        }
        if target is not None:
            line["target"] = target  # what a `sent` change should read back as
        data = (json.dumps(line, sort_keys=True) + "\n").encode()
        make_private_dirs(self.path.parent)  # 0700, parents too
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)


_TAIL = 256 * 1024  # how much of the log `pending` reads: the latest lines are what it needs


def read(path: Path) -> list[dict[str, Any]]:
    """All records of an audit log (for `check`, tests and people)."""
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
