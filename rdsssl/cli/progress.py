"""Waiting progress on a terminal: one live line per instance (rich's `Live`), redrawn in
place, with every message printed above it; plain timestamped log lines when stderr is not a
terminal (cron mail, CI logs, pipes).

The board belongs to the `App` (one per command): messages printed while it is live go through
its console, so a message never lands in the middle of a progress line, and `App.finish` /
`fail` / `interrupted` stop it, so the cursor is always given back. Tested under a
pseudo-terminal with a terminal emulator (tests/cli/test_progress_tty.py).
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.console import Console
    from rich.live import Live

    from rdsssl.rds.waiters import Progress

__all__ = ["ProgressBoard", "line_for"]


def line_for(p: Progress) -> str:
    """One progress sentence (without the instance)."""
    return f"{p.waiter}: {p.status} - {p.elapsed:.0f}s elapsed, next check in {p.next_delay:.0f}s"


class ProgressBoard:
    """The live lines of one command: `update(key, text)` sets a line, `close()` erases them
    and stops redrawing (what happened is in the messages printed above them). Thread-safe:
    fleet workers report from their own threads."""

    def __init__(self) -> None:
        from rich.console import Console

        self.console: Console = Console(stderr=True, highlight=False, markup=False, emoji=False)
        self._lines: dict[str, str] = {}
        self._live: Live | None = None
        self._lock = threading.Lock()

    def _render(self) -> object:
        from rich.text import Text

        return Text("\n".join(self._lines.values()))

    def update(self, key: str, text: str) -> None:
        with self._lock:
            self._lines[key] = text
            if self._live is None:
                from rich.live import Live

                self._live = Live(
                    self._render(),  # type: ignore[arg-type]
                    console=self.console,
                    refresh_per_second=4,
                    transient=True,  # progress is ephemeral; the messages stay
                    redirect_stdout=False,
                    redirect_stderr=False,
                )
                self._live.start()
                self._live.refresh()  # the first line now, not at the next tick
            else:
                self._live.update(self._render(), refresh=True)  # type: ignore[arg-type]

    @property
    def live(self) -> bool:
        return self._live is not None

    def say(self, message: str) -> None:
        """A message above the live lines."""
        with self._lock:
            self.console.print(message, markup=False, highlight=False, soft_wrap=True)

    def close(self) -> None:
        with self._lock:
            if self._live is not None:
                self._live.stop()
                self._live = None
            self._lines.clear()
