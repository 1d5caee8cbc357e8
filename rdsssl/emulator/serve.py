"""Run an emulator in the foreground until SIGINT/SIGTERM (`rdsssl emulator serve`).

Shared by the click command (rdsssl/cli/emulator.py) and `python -m rdsssl.emulator`, so
both print the same thing. The key pair printed is the emulator's own, made up for this
run: printing it is the point, so that the SDK and rdsssl can be pointed at the emulator.
"""

from __future__ import annotations

import json
import logging
import os
import shlex
import signal
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any, TextIO

from rdsssl.emulator.profiles import load_profile
from rdsssl.emulator.server import DEFAULT_REGION, Emulator

__all__ = ["ServeOptions", "describe", "env_lines", "serve"]


PRODUCTION_TIMINGS = (180.0, 60.0)  # restart, ACL lock (docs §1.4)


@dataclass(frozen=True)
class ServeOptions:
    """Everything `serve` takes; defaults mimic production timings (docs §1.4).

    `restart_seconds` / `acl_lock_seconds`: None means the profile's recorded length, else
    the production one; an explicit value always wins.
    """

    port: int = 0
    instances: int = 1
    restart_seconds: float | None = None
    acl_lock_seconds: float | None = None
    state_dir: Path | None = None
    backend: str = "pg"
    env: bool = False
    env_file: Path | None = None
    engine_version: str | None = None
    access_key_id: str | None = None
    access_key_secret: str | None = None
    seed: int = 0
    json: bool = False
    profile: str = "documented"  # a built-in name or a profile file
    ssl: bool = True  # False: instances start with SSL off, as new RDS instances do


def describe(emu: Emulator) -> dict[str, Any]:
    """The facts a user or script needs, as one JSON-ready document."""
    instances = []
    for instance_id in emu.instance_ids:
        inst = emu.instance(instance_id)
        instances.append(
            {
                "id": inst.id,
                "host": inst.host,
                "port": inst.port,
                "connection_string": inst.connection_string,
                "engine_version": inst.engine_version,
                "region": inst.region,
                "ssl": "on" if inst.ssl.enabled else "off",
            }
        )
    return {
        "endpoint": emu.endpoint,
        "access_key_id": emu.access_key_id,
        "access_key_secret": emu.access_key_secret,
        "region": emu.region,
        "server_ca_url": emu.server_ca_url,
        "backend": emu.backend,
        "profile": emu.profile.name,
        "service_profile": str(emu.service_profile_file),
        "restart_seconds": emu.state.restart_seconds,
        "acl_lock_seconds": emu.state.acl_lock_seconds,
        "instances": instances,
    }


def env_lines(emu: Emulator) -> list[str]:
    """`export` lines a POSIX shell can eval to point rdsssl and the SDK at `emu`."""
    values = {
        "RDSSSL_ENDPOINT": emu.endpoint,
        "ALIBABA_CLOUD_ACCESS_KEY_ID": emu.access_key_id,
        "ALIBABA_CLOUD_ACCESS_KEY_SECRET": emu.access_key_secret,
        "ALIBABA_CLOUD_REGION_ID": emu.region or DEFAULT_REGION,
        "RDSSSL_EMULATOR_INSTANCES": " ".join(emu.instance_ids),
        "RDSSSL_EMULATOR_SERVER_CA_URL": emu.server_ca_url,
        "RDSSSL_EMULATOR_PROFILE": emu.profile.name,
        "RDSSSL_SERVICE_PROFILE": str(emu.service_profile_file),
    }
    return [f"export {k}={shlex.quote(v)}" for k, v in values.items()]


def _human(doc: dict[str, Any]) -> str:
    lines = [
        f"rdsssl emulator listening on {doc['endpoint']}",
        f"  AccessKeyId:      {doc['access_key_id']}",
        f"  AccessKeySecret:  {doc['access_key_secret']}   (the emulator's own, fake)",
        f"  Region:           {doc['region']}",
        f"  Server CA:        {doc['server_ca_url']}",
        f"  Profile:          {doc['profile']} (restart {doc['restart_seconds']:g} s,"
        f" ACL lock {doc['acl_lock_seconds']:g} s)",
        f"  Instances ({len(doc['instances'])}, backend {doc['backend']}):",
    ]
    for i in doc["instances"]:
        where = f"{i['host']}:{i['port']}" if doc["backend"] == "pg" else "(state only)"
        ssl = "" if i["ssl"] == "on" else "  (SSL off)"
        lines.append(f"    {i['id']}  {where}  PostgreSQL {i['engine_version']}{ssl}")
    lines.append("Stop with Ctrl+C (SIGINT) or SIGTERM; every PostgreSQL started is stopped.")
    return "\n".join(lines)


def _write_env_file(path: Path, lines: list[str]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write("\n".join(lines) + "\n")
    os.replace(tmp, path)  # appears complete: scripts may poll for it as "ready"


def serve(
    opts: ServeOptions,
    *,
    out: TextIO | None = None,
    err: TextIO | None = None,
    stop: threading.Event | None = None,
) -> int:
    """Start, print, wait for a signal (or `stop`), stop everything; returns the exit code.

    A profile that does not load is a ValueError before anything starts.
    """
    out, err = out or sys.stdout, err or sys.stderr
    profile = load_profile(opts.profile)
    restart_seconds, acl_lock_seconds = profile.timings(
        opts.restart_seconds, opts.acl_lock_seconds, defaults=PRODUCTION_TIMINGS
    )
    stop = stop or threading.Event()
    previous: dict[signal.Signals, Any] = {}

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    handler = logging.StreamHandler(err)  # state transitions, for people watching a rehearsal
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
    logger = logging.getLogger("rdsssl.emulator")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, on_signal)
    try:
        with Emulator(
            instances=opts.instances,
            backend=opts.backend,
            restart_seconds=restart_seconds,
            acl_lock_seconds=acl_lock_seconds,
            state_dir=opts.state_dir,
            access_key_id=opts.access_key_id,
            access_key_secret=opts.access_key_secret,
            seed=opts.seed,
            engine_version=opts.engine_version,
            port=opts.port,
            profile=profile,
            ssl=opts.ssl,
        ) as emu:
            doc = describe(emu)
            lines = env_lines(emu)
            if opts.env_file is not None:
                _write_env_file(opts.env_file, lines)
            if opts.json:
                print(json.dumps({"ok": True, **doc}, indent=2), file=out, flush=True)
            elif opts.env:
                print("\n".join(lines), file=out, flush=True)
                print(_human(doc), file=err, flush=True)
            else:
                print(_human(doc), file=out, flush=True)
            while not stop.wait(0.2):
                pass
            print("rdsssl emulator: stopping", file=err, flush=True)
    finally:
        logger.removeHandler(handler)
        for sig, previous_handler in previous.items():
            signal.signal(sig, previous_handler)
        if opts.env_file is not None:
            opts.env_file.unlink(missing_ok=True)
    return 0
