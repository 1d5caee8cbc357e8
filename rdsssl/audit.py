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

from rdsssl.fsutil import make_private_dirs

ENV_AUDIT_LOG = "RDSSSL_AUDIT_LOG"


def default_path() -> Path:
    """`$RDSSSL_AUDIT_LOG`, else `$XDG_STATE_HOME/rdsssl/audit.jsonl` (~/.local/state/...)."""
    explicit = os.environ.get(ENV_AUDIT_LOG)
    if explicit:
        return Path(explicit)
    state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state) / "rdsssl" / "audit.jsonl"


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
    ) -> None:
        """Append one line: time, instance, action, request id, fingerprints before and
        after, outcome (ok / failed / timeout / dry-run ...), and a short detail."""
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
        data = (json.dumps(line, sort_keys=True) + "\n").encode()
        make_private_dirs(self.path.parent)  # 0700, parents too, whatever the umask
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)


def read(path: Path) -> list[dict[str, Any]]:
    """All records of an audit log (for `check`, tests and people)."""
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
