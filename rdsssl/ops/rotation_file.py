"""``rotation.json``: where a rotation's state lives (``<old-ca-dir>/rotation.json``, atomic,
0600), the lock two ``rotate ca`` runs share, reading and writing it, and the state a run starts
from (``prepare``: the recorded one, checked against this run's stores and arguments, or a fresh
one). The data and its rules are in ``rotation_state``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

from rdsssl.errors import ConfigError, StoreError, UsageError
from rdsssl.ops.rotation_state import CaRef, RotationState
from rdsssl.pki import crypto
from rdsssl.store.castore import CaStore
from rdsssl.store.fsutil import atomic_write
from rdsssl.store.lock import FileLock, current_command
from rdsssl.store.records import format_time

__all__ = [
    "LOCK_FILE",
    "STATE_FILE",
    "ca_ref",
    "load",
    "prepare",
    "rotation_lock",
    "save",
    "state_path",
]

STATE_FILE = "rotation.json"
LOCK_FILE = ".rotation.lock"


def state_path(ca_dir: Path) -> Path:
    """Where a rotation away from the CA in ``ca_dir`` is recorded."""
    return ca_dir / STATE_FILE


def rotation_lock(ca_dir: Path, *, wait: float = 0.0) -> FileLock:
    """The lock two ``rotate ca`` runs share. Separate from the store's own lock, so issuing or
    revoking in the old store is not blocked for the minutes a rotation waits for restarts."""
    return FileLock(
        ca_dir / LOCK_FILE,
        command=current_command(),
        wait=wait,
        label=f"the CA rotation of {ca_dir}",
    )


def ca_ref(store: CaStore) -> CaRef:
    """How the state file names a store: its directory and its CA's fingerprint."""
    return CaRef(
        dir=str(store.path.absolute()),
        fingerprint=crypto.fingerprint(store.ca_cert),
        subject=crypto.name_of(store.ca_cert),
    )


def prepare(
    state: RotationState | None,
    *,
    old: CaStore,
    new: CaStore,
    instances: Sequence[str],
    out_root: Path | None,
    now: datetime,
) -> RotationState:
    """The state to run with: the recorded one, checked against the stores and arguments of
    this run, or a fresh one (not yet saved) for the first run."""
    old_ref, new_ref = ca_ref(old), ca_ref(new)
    if old_ref.fingerprint == new_ref.fingerprint:
        raise UsageError(f"{new.path} holds the same CA as {old.path}; rotate to a new CA store")
    if state is None:
        if not instances:
            raise UsageError("name the instances to rotate: rdsssl rotate ca ID... --ca-dir ...")
        root = (out_root or Path.cwd()).absolute()
        ids = list(dict.fromkeys(instances))
        return RotationState.start(
            old=old_ref, new=new_ref, instances=ids, out_root=str(root), at=format_time(now)
        )
    if state.old.fingerprint != old_ref.fingerprint:
        renewed = state.old.fingerprint in {v.info.fingerprint for v in old.ca_history()}
        if renewed:
            raise ConfigError(
                f"{state_path(old.path)} records a rotation away from CA "
                f"{state.old.fingerprint[:16]}, which {old.path} has since renewed (rdsssl ca "
                f"renew) to {old_ref.fingerprint[:16]}: the recorded rotation (phase "
                f"{state.phase.value}) is out of date; move {state_path(old.path)} aside "
                "to start a rotation from the renewed CA"
            )
        raise ConfigError(
            f"{state_path(old.path)} records a rotation away from CA {state.old.fingerprint[:16]}"
            f", but {old.path} holds {old_ref.fingerprint[:16]}; restore the original ca.crt"
        )
    if state.new.fingerprint != new_ref.fingerprint:
        raise UsageError(
            f"this rotation goes to {state.new.subject} ({state.new.fingerprint[:16]}) in "
            f"{state.new.dir}, not to the CA in {new.path}; pass that --new-ca-dir or none"
        )
    if instances and set(instances) != set(state.instances):
        raise UsageError(
            f"this rotation covers {' '.join(state.instances)}; name the same instances, or none"
        )
    if out_root is not None and str(out_root.absolute()) != state.out_root:
        raise UsageError(
            f"this rotation writes certificates to {state.out_root}; pass that --out-root or none"
        )
    return state


def load(path: Path) -> RotationState | None:
    """The state in ``path``, or None when no rotation was ever started there."""
    try:
        raw = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise StoreError(f"cannot read {path}: {exc.strerror}") from None
    try:
        return RotationState.from_json(json.loads(raw))
    except (ValueError, KeyError, TypeError) as exc:
        raise StoreError(
            f"{path} is not a rotation state rdsssl can read ({type(exc).__name__}: {exc}); "
            "restore it from a backup, or move it aside to start the rotation over"
        ) from None


def save(path: Path, state: RotationState) -> None:
    """Write the state atomically, private to its owner (it names users and instances)."""
    data = json.dumps(state.to_json(), indent=2, sort_keys=True) + "\n"
    atomic_write(path, data.encode("utf-8"), mode=0o600)
