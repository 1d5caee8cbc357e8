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
from collections.abc import Callable, Iterable
from datetime import datetime, timezone
from typing import Any

__all__ = ["ENVELOPE_KEYS", "SCHEMA_VERSION", "dumps", "envelope", "error_object", "stream"]

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


_BATCH = 500  # list items per write


def _item_compact(item: dict[str, Any]) -> str:
    return dumps(item, compact=True)


def _item_indented(item: dict[str, Any]) -> str:
    return "\n    " + json.dumps(item, indent=2).replace("\n", "\n    ")


def stream(
    head: dict[str, Any],
    key: str,
    items: Iterable[dict[str, Any]],
    *,
    compact: bool,
    write: Callable[[str], None],
) -> int:
    """Write `{**head, key: [*items]}` exactly as `dumps` would, the items as they come;
    returns how many. (json has no incremental writer for one list inside an object, so the
    brackets and separators are written here; each item is `json.dumps`'d.)"""
    if compact:
        opening = dumps(head, compact=True)[:-1] + f",{json.dumps(key)}:["
        item_text, closing = _item_compact, "]}\n"
    else:
        opening = dumps(head, compact=False)[:-2] + f",\n  {json.dumps(key)}: ["
        item_text, closing = _item_indented, "\n  ]\n}\n"
    count, batch = 0, [opening]
    for item in items:
        batch.append(("," if count else "") + item_text(item))
        count += 1
        if len(batch) >= _BATCH:
            write("".join(batch))
            batch = []
    if not count and not compact:
        closing = "]\n}\n"
    write("".join(batch) + closing)
    return count
