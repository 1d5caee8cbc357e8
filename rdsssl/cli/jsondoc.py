"""The envelope of every ``--json`` document (the contract is in docs/json-output.md).

Every document is one JSON object whose first keys are the envelope:

- ``schema_version``: an integer, raised only when a key changes meaning or disappears
  (adding keys is not a change of version);
- ``generated_at``: when the document was written, ISO 8601 UTC (``2026-12-04T17:00:00Z``);
- ``command``: the command that wrote it (``rdsssl cert list``);
- ``ok``: ``exit_code == 0``; ``exit_code``: the process's exit code.

A failure adds ``error`` = ``{"type", "message", "exit_code"}``; every error object anywhere in
a document has that shape. A command whose result covers several instances lists them under
``instances``, each with the per-instance envelope ``instance``, ``ok``, ``exit_code``,
``elapsed`` and ``error`` on failure (``instance_json``).
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any

__all__ = ["ENVELOPE_KEYS", "SCHEMA_VERSION", "dumps", "envelope", "error_object"]

SCHEMA_VERSION = 1
ENVELOPE_KEYS = frozenset({"schema_version", "generated_at", "command", "ok", "exit_code"})


def envelope(
    data: dict[str, Any], *, exit_code: int, now: datetime, command: str
) -> dict[str, Any]:
    """`data` under the envelope (envelope keys first, so `head -c` shows them)."""
    stamp = now.astimezone(timezone.utc).replace(microsecond=0).isoformat()
    return {
        "schema_version": SCHEMA_VERSION,
        "generated_at": stamp.replace("+00:00", "Z"),
        "command": command,
        "ok": exit_code == 0,
        "exit_code": exit_code,
        **data,
    }


def error_object(type_name: str, message: str, exit_code: int) -> dict[str, Any]:
    """The one shape of an error in any document: a one-line message."""
    return {"type": type_name, "message": " ".join(message.split()), "exit_code": exit_code}


def dumps(document: dict[str, Any], *, compact: bool) -> str:
    """Indented for people, or one line (`--json-lines`) for logs."""
    if compact:
        return json.dumps(document, separators=(",", ":"))
    return json.dumps(document, indent=2)
