"""Helpers for the CA rotation end-to-end tests: two CA stores with client files, an instance
configured with the old CA as a runbook would leave it, probes as a client would make them,
Modify calls counted from the emulator's request log, and the CLI run in-process or as a
subprocess that a test can SIGKILL at a chosen moment."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from rdsssl.emulator.server import Emulator
from rdsssl.models import AclMode, KeyType
from rdsssl.ops.apply import ApplyOptions, apply
from rdsssl.ops.plan import DesiredSsl
from rdsssl.ops.probe import ProbeOutcome, ProbeTarget, probe
from rdsssl.pki import crypto
from rdsssl.rds.api import AliyunRdsApi
from rdsssl.rds.settings import ApiSettings
from rdsssl.store.castore import CaStore
from rdsssl.store.files import write_client_files
from tests.cli.helpers import Result, invoke

PASSWORDS = {"alice": "Alice-pass-1", "bob": "Bob-pass-22"}
OLD_PASSPHRASE = "old-ca-passphrase"
NEW_PASSPHRASE = "new-ca-passphrase"
PW_VAR = "ROTATION_TEST_PW_ALICE"
REPO = Path(__file__).resolve().parents[2]


def now() -> datetime:
    return datetime.now(timezone.utc)


@dataclass(frozen=True)
class Pki:
    """The old and new CA stores, the rotation's --out-root, and hand-made client files."""

    old: Path
    new: Path
    out: Path
    clients: Path

    def client(self, name: str) -> Path:
        """clients/<name>: client.crt, client.key, root.crt."""
        return self.clients / name


def make_store(path: Path, cn: str, passphrase: str) -> None:
    CaStore.init(
        path, cn=cn, key_type=KeyType.EC_P256, days=3650, passphrase=passphrase.encode(), now=now()
    ).close()


def issue(
    store_dir: Path,
    passphrase: str,
    user: str,
    out_dir: Path,
    key_type: KeyType = KeyType.EC_P256,
) -> int:
    """A certificate for `user` from the store, written to `out_dir`; returns its serial."""
    with CaStore.open(store_dir) as store:
        store.unlock(passphrase.encode())
        issued = store.issue(user=user, key_type=key_type, days=365, now=now())
        write_client_files(out_dir, issued, store.ca_cert)
        return issued.record.serial


def make_pki(tmp: Path, *, slow_users: tuple[str, ...] = ()) -> Pki:
    """Old store (CN=old-ca) with alice and bob (and `slow_users`, RSA-3072, whose reissue
    takes long enough to be interrupted); new store (CN=new-ca) with an early certificate
    for alice in clients/new-alice."""
    pki = Pki(tmp / "ca", tmp / "ca2", tmp / "out", tmp / "clients")
    make_store(pki.old, "old-ca", OLD_PASSPHRASE)
    make_store(pki.new, "new-ca", NEW_PASSPHRASE)
    for user in PASSWORDS:
        issue(pki.old, OLD_PASSPHRASE, user, pki.client(f"old-{user}"))
    for user in slow_users:
        issue(pki.old, OLD_PASSPHRASE, user, pki.client(f"old-{user}"), KeyType.RSA_3072)
    issue(pki.new, NEW_PASSPHRASE, "alice", pki.client("new-alice"))
    return pki


def make_api(emu: Emulator) -> AliyunRdsApi:
    """The SDK adapter pointed at the emulator (credentials from the environment)."""
    return AliyunRdsApi(ApiSettings(region=emu.region, endpoint=emu.endpoint))


def configure_old_ca(api: AliyunRdsApi, iid: str, pki: Pki) -> None:
    """What a runbook leaves: the old CA, its CRL and ACL verify-full, in one change."""
    with CaStore.open(pki.old) as store:
        store.unlock(OLD_PASSPHRASE.encode())
        crl = store.build_crl(now=now()).pem.decode()
        ca = crypto.cert_pem(store.ca_cert).decode()
    desired = DesiredSsl(client_ca_pem=ca, crl=crl, acl=AclMode.VERIFY_FULL)
    apply(api, iid, desired, ApplyOptions(force=True, timeout=60))


def client_outcome(emu: Emulator, iid: str, folder: Path, root: Path, user: str = "alice") -> str:
    """Connect as a client holding the files in `folder` would: the probe's outcome."""
    inst = emu.instance(iid)
    target = ProbeTarget(host=inst.connection_string, port=inst.port, hostaddr=inst.host)
    result = probe(
        target,
        user=user,
        cert=folder / "client.crt",
        key=folder / "client.key",
        root_cert=root,
        password=PASSWORDS[user],
    )
    return result.outcome.value


OK = ProbeOutcome.OK.value
UNKNOWN_CA = ProbeOutcome.UNKNOWN_CA.value


def modify_calls(emu: Emulator, iid: str, outcome: str = "ok") -> int:
    """ModifyDBInstanceSSL calls for `iid` that ended with `outcome` (since the last reset)."""
    return sum(
        1
        for r in emu.requests
        if r.action == "ModifyDBInstanceSSL" and r.instance_id == iid and r.outcome == outcome
    )


def client_ca_fingerprints(api: AliyunRdsApi, iid: str) -> set[str]:
    pem = api.describe_ssl(iid).client_ca_pem or ""
    return set(crypto.pem_fingerprints(pem.encode(), source="read-back")) if pem else set()


def ca_fingerprint(store_dir: Path) -> str:
    with CaStore.open(store_dir) as store:
        return crypto.fingerprint(store.ca_cert)


def cli_env(emu: Emulator, tmp: Path) -> dict[str, str]:
    """What a cron job would export to run rdsssl against the emulator."""
    return {
        "RDSSSL_ENDPOINT": emu.endpoint,
        "ALIBABA_CLOUD_ACCESS_KEY_ID": emu.access_key_id,
        "ALIBABA_CLOUD_ACCESS_KEY_SECRET": emu.access_key_secret,
        "ALIBABA_CLOUD_REGION_ID": emu.region,
        "RDSSSL_CA_PASSPHRASE": OLD_PASSPHRASE,
        "RDSSSL_NEW_CA_PASSPHRASE": NEW_PASSPHRASE,
        "RDSSSL_AUDIT_LOG": str(tmp / "audit.jsonl"),
        PW_VAR: PASSWORDS["alice"],
    }


PROBE_ARGS = ["--probe-user", "alice", "--probe-password-env", PW_VAR]


def start_args(pki: Pki, *ids: str) -> list[str]:
    """`rotate ca` arguments of a first run (later runs may leave most of them out)."""
    return [
        *ids,
        *("--ca-dir", str(pki.old), "--new-ca-dir", str(pki.new), "--out-root", str(pki.out)),
        *PROBE_ARGS,
        "--yes",
    ]


def later_args(pki: Pki) -> list[str]:
    """`rotate ca` arguments of a later run: the rest comes from rotation.json."""
    return ["--ca-dir", str(pki.old), *PROBE_ARGS, "--yes"]


def serial_of(folder: Path) -> int:
    """The serial of folder/client.crt, after checking that client.key matches it."""
    cert = crypto.load_certificates((folder / "client.crt").read_bytes(), source="crt")[0]
    key = crypto.load_private_key((folder / "client.key").read_bytes(), source="k", passphrase=None)
    crypto.check_key_matches(cert, key, source="client.key")
    return cert.serial_number


def rdsssl(env: dict[str, str], *args: str | Path) -> Result:
    """`rdsssl ARGS` in-process with `env`."""
    return invoke(*args, env=env)


def read_state(pki: Pki) -> dict[str, Any]:
    """rotation.json as a dict ({} when missing)."""
    path = pki.old / "rotation.json"
    return json.loads(path.read_text()) if path.exists() else {}


def kill_when(
    env: dict[str, str], args: list[str], ready: Callable[[], bool], *, timeout: float = 60.0
) -> None:
    """Run `python -m rdsssl ARGS` and SIGKILL it as soon as `ready()` holds. Fails the test
    when the run ends (or the timeout passes) first."""
    full_env = {**os.environ, **env}
    proc = subprocess.Popen(
        [sys.executable, "-m", "rdsssl", *args],
        env=full_env,
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + timeout
    try:
        while not ready():
            if proc.poll() is not None:
                out, err = proc.communicate()
                raise AssertionError(f"the run ended (exit {proc.returncode}) first: {err}{out}")
            if time.monotonic() > deadline:
                raise AssertionError("the moment to kill the run never came")
            time.sleep(0.005)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()
    assert proc.returncode == -signal.SIGKILL
