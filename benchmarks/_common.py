"""Small helpers every benchmark shares: timing, running commands, the machine, the table.

Benchmarks print a side-by-side table (markdown, so it pastes straight into RESULTS.md) and never
assert timings: the numbers are for humans comparing against the targets in RESULTS.md. The
machines they run on are shared and noisy, so timings are medians of repeated runs, and
comparisons that matter interleave the two sides so that load hits both alike.
"""

from __future__ import annotations

import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

__all__ = [
    "Row",
    "fmt_ratio",
    "fmt_seconds",
    "machine_description",
    "median",
    "print_table",
    "require_tool",
    "run",
    "time_call",
    "time_command",
]


def median(samples: Sequence[float]) -> float:
    """The median: robust to the odd run slowed down by a neighbour on a shared machine."""
    return statistics.median(samples)


def time_call(fn: Callable[[], object]) -> float:
    """Wall-clock seconds of one call (time.perf_counter: monotonic, highest resolution)."""
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def require_tool(name: str) -> str:
    """Absolute path of a command-line tool, or exit with a one-line error saying what to do."""
    path = shutil.which(name)
    if path is None:
        sys.exit(f"benchmark: '{name}' is not on PATH; install it (e.g. apt-get install {name})")
    return path


def run(args: Sequence[str | Path], *, cwd: Path) -> subprocess.CompletedProcess[bytes]:
    """Run a command, output captured; exit with its stderr if it fails (a broken baseline
    must not silently turn into a fast one)."""
    result = subprocess.run(
        [str(a) for a in args], cwd=cwd, capture_output=True, check=False, timeout=600
    )
    if result.returncode != 0:
        message = result.stderr.decode(errors="replace").strip()
        sys.exit(f"benchmark: {' '.join(map(str, args))} failed ({result.returncode}): {message}")
    return result


def time_command(args: Sequence[str | Path], *, cwd: Path) -> float:
    """Wall-clock seconds of one command, process start included (what a script pays)."""
    start = time.perf_counter()
    run(args, cwd=cwd)
    return time.perf_counter() - start


def fmt_seconds(seconds: float) -> str:
    """Seconds with a unit a human reads at a glance: µs, ms or s, three significant digits."""
    if seconds < 1e-3:
        return f"{seconds * 1e6:.3g} µs"
    if seconds < 1:
        return f"{seconds * 1e3:.3g} ms"
    return f"{seconds:.3g} s"


def fmt_ratio(baseline: float, ours: float) -> str:
    """How many times faster we are (baseline / ours), e.g. '23.4x'."""
    return f"{baseline / ours:.3g}x" if ours > 0 else "inf"


@dataclass(frozen=True)
class Row:
    """One line of a comparison table. `met` is None for informational rows without a target."""

    operation: str
    baseline: str
    ours: str
    ratio: str
    target: str = ""
    met: bool | None = None


def print_table(rows: Sequence[Row], *, baseline: str = "openssl", ours: str = "rdsssl") -> str:
    """Print (and return) a markdown table: operation | baseline | ours | ratio | target | met?"""
    header = ["operation", baseline, ours, "ratio", "target", "met?"]
    cells = [
        [
            r.operation,
            r.baseline,
            r.ours,
            r.ratio,
            r.target,
            {None: "", True: "yes", False: "NO"}[r.met],
        ]
        for r in rows
    ]
    widths = [max(len(line[i]) for line in [header, *cells]) for i in range(len(header))]

    def line(values: Sequence[str]) -> str:
        return "| " + " | ".join(v.ljust(w) for v, w in zip(values, widths, strict=True)) + " |"

    text = "\n".join(
        [line(header), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *map(line, cells)]
    )
    print(text)
    return text


def _command_output(args: Sequence[str]) -> str:
    try:
        return subprocess.run(args, capture_output=True, text=True, check=False).stdout.strip()
    except OSError:
        return "unknown"


def machine_description() -> list[str]:
    """Markdown bullet lines describing where the numbers come from (for RESULTS.md)."""
    model = "unknown"
    for text in _command_output(["lscpu"]).splitlines():
        if text.startswith("Model name:"):
            model = text.split(":", 1)[1].strip()
    try:
        import cryptography

        crypto_version = cryptography.__version__
    except ImportError:  # pragma: no cover - a dependency of rdsssl
        crypto_version = "not installed"
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return [
        f"- date: {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC",
        f"- CPUs (nproc): {_command_output(['nproc'])}; model (lscpu): {model}",
        f"- OS: {platform.platform()}",
        f"- Python {platform.python_version()}; cryptography {crypto_version}",
        f"- {_command_output(['openssl', 'version'])}",
        f"- load average at start: {load}",
    ]
