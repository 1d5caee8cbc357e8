"""`python -m rdsssl.emulator [options]`: the same as `rdsssl emulator serve [options]`.

Kept free of click and of the rdsssl CLI so the emulator runs even when the client side does
not import (the emulator must not inherit the client's bugs).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rdsssl.emulator.serve import ServeOptions, serve


def main(argv: list[str] | None = None) -> int:
    """Parse the `serve` options and run until SIGINT/SIGTERM."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["serve"]:
        args = args[1:]
    p = argparse.ArgumentParser(prog="python -m rdsssl.emulator", description=__doc__)
    p.add_argument("--port", type=int, default=0, help="port to bind on 127.0.0.1 (0: any)")
    p.add_argument("--instances", type=int, default=1)
    p.add_argument(
        "--restart-seconds", type=float, help="default: the profile's, else 180 (production)"
    )
    p.add_argument(
        "--acl-lock-seconds", type=float, help="default: the profile's, else 60 (production)"
    )
    p.add_argument(
        "--profile",
        default="documented",
        metavar="documented|pessimistic|FILE",
        help="answers to the unknowns of the real service (default: documented)",
    )
    p.add_argument("--state-dir", type=Path)
    p.add_argument("--backend", choices=("pg", "none"), default="pg")
    p.add_argument("--env", action="store_true", help="print shell export lines")
    p.add_argument("--env-file", type=Path, help="also write the export lines to this file")
    p.add_argument("--engine-version", help="EngineVersion to report, e.g. 11.0")
    p.add_argument("--access-key-id")
    p.add_argument("--access-key-secret")
    p.add_argument(
        "--no-ssl", dest="ssl", action="store_false", help="create the instances with SSL off"
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true", help="print one JSON document")
    ns = p.parse_args(args)
    try:
        return serve(ServeOptions(**vars(ns)))
    except ValueError as exc:  # a bad profile file or option value: nothing was started
        print(f"{p.prog}: error: {exc}", file=sys.stderr)
        return 3


if __name__ == "__main__":
    sys.exit(main())
