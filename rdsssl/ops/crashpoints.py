"""Named crash points: the documented seam through which tests kill a run half-way.

The crash-safe flows (``cert renew``'s publication of client files, ``rotate ca``'s reissue)
call ``reached(name)`` at the moments where a kill matters; the names and what each moment
means are listed in docs/ARCHITECTURE.md ("Seams for tests"). Production code never acts on
them. Tests use one of two ways in:

- in the same process, ``with at(name, action):`` runs ``action()`` each time ``name`` is
  reached (it may count, raise to stand for the kill, or let the run go on);
- in a subprocess worker, the environment variable ``RDSSSL_CRASH_AT=name`` (or ``name:N`` for
  the N-th time) makes the process SIGKILL itself there, as a power cut or ``kill -9`` would.

``RDSSSL_CRASH_AT`` is for tests only. It is read once, when this module is imported; with it
unset and no ``at`` active, ``reached`` is one truth test of an empty dict and returns.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager

__all__ = ["ENV", "POINTS", "at", "reached"]

ENV = "RDSSSL_CRASH_AT"

POINTS = frozenset(
    {
        "renew.key-staged",
        "renew.signed",
        "versions.publish",
        "versions.link",
        "reissue.live",
    }
)

Action = Callable[[], None]
_actions: dict[str, Action] = {}


def _from_environment(value: str | None) -> None:
    """Arm the point named in ``RDSSSL_CRASH_AT`` (``name`` or ``name:N``) to SIGKILL."""
    if not value:
        return
    name, _, nth = value.partition(":")
    _check(name)
    remaining = [int(nth) if nth else 1]

    def kill() -> None:
        remaining[0] -= 1
        if remaining[0] == 0:
            os.kill(os.getpid(), signal.SIGKILL)

    _actions[name] = kill


def _check(name: str) -> None:
    if name not in POINTS:
        raise ValueError(f"unknown crash point {name!r}; known: {', '.join(sorted(POINTS))}")


def reached(name: str) -> None:
    """The run is at crash point ``name``: act if a test armed it, else return at once."""
    if _actions:
        action = _actions.get(name)
        if action is not None:
            action()


@contextmanager
def at(name: str, action: Action) -> Iterator[None]:
    """Run ``action()`` each time crash point ``name`` is reached inside the block."""
    _check(name)
    before = _actions.get(name)
    _actions[name] = action
    try:
        yield
    finally:
        if before is None:
            del _actions[name]
        else:
            _actions[name] = before


_from_environment(os.environ.get(ENV))
