"""Plan files (`rdsssl.ops.plan_file`) without a cloud: what is written reads back the same,
anything edited, garbled or holding a private key is refused (exit 3), a changed instance is a
stale plan (exit 6), and a loaded entry asks `apply` for exactly the recorded fields."""

from __future__ import annotations

import json
import stat
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from rdsssl.errors import ExitCode, InputError, StalePlan
from rdsssl.models import AclMode, KeyType, SslModifyRequest
from rdsssl.ops import plan_file, plan_file_read
from rdsssl.ops.desired import DesiredBuilder
from rdsssl.ops.plan import DesiredSsl, fingerprints, plan, same_plan
from rdsssl.pki import crypto

from .conftest import cached_key, make_pki
from .fakes import ssl_state

NOW = datetime(2030, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
CA = make_pki(KeyType.EC_P256, cn="root-ca1")
PEM = crypto.cert_pem(CA.cert).decode()
BEFORE = ssl_state(acl=AclMode.PREFER)


def _saved(tmp_path: Path) -> tuple[Path, plan_file.PlanFile]:
    desired = DesiredSsl(client_ca_pem=PEM, acl=AclMode.VERIFY_CA)
    the_plan = plan(desired, BEFORE, instance_id="pgm-x", now=NOW)
    item = plan_file.PlannedInstance(
        instance_id="pgm-x",
        source="rdsssl.toml: instances[0] (id pgm-x)",
        region="cn-hangzhou",
        before=fingerprints(BEFORE),
        connection_string=BEFORE.connection_string,
        changes=the_plan.changes,
        request=the_plan.request,
    )
    saved = plan_file.PlanFile(NOW, tmp_path / "rdsssl.toml", "ab" * 32, (item,))
    path = tmp_path / "plan.json"
    plan_file.write(path, saved)
    return path, saved


def test_a_written_plan_reads_back_the_same_and_is_private(tmp_path: Path) -> None:
    path, saved = _saved(tmp_path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert plan_file_read.read(path) == saved
    doc = json.loads(path.read_text())
    assert doc["instances"][0]["effect"] == "restart" and doc["instances"][0]["restarts"]


@pytest.mark.parametrize(
    "edit",
    [
        lambda d: d["instances"][0]["request"].update(acl="cert"),
        lambda d: d["instances"][0]["before"].update(acl="cert"),
        lambda d: d.update(version=2),
        lambda d: d.update(format="terraform"),
        lambda d: d.pop("checksum"),
    ],
    ids=["request", "before", "version", "format", "no-checksum"],
)
def test_an_edited_plan_file_is_bad_input(tmp_path: Path, edit: object) -> None:
    path, _ = _saved(tmp_path)
    doc = json.loads(path.read_text())
    edit(doc)  # type: ignore[operator]
    path.write_text(json.dumps(doc))
    with pytest.raises(InputError) as caught:
        plan_file_read.read(path)
    assert caught.value.exit_code == ExitCode.BAD_INPUT


def test_garbage_and_private_keys_are_refused(tmp_path: Path) -> None:
    path, _ = _saved(tmp_path)
    key_pem = crypto.key_pem(cached_key(KeyType.EC_P256, "leaf")).decode()
    doc = json.loads(path.read_text())
    doc["instances"][0]["request"]["client_ca_pem"] = PEM + key_pem
    body = {k: v for k, v in doc.items() if k != "checksum"}
    doc["checksum"] = plan_file.checksum(body)  # even with a matching checksum
    path.write_text(json.dumps(doc))
    with pytest.raises(InputError, match="private key"):
        plan_file_read.read(path)
    path.write_bytes(b"\xff\xfe not json")
    with pytest.raises(InputError, match="not a plan file"):
        plan_file_read.read(path)
    with pytest.raises(InputError, match="cannot read"):
        plan_file_read.read(tmp_path / "missing.json")


def test_a_changed_instance_is_a_stale_plan(tmp_path: Path) -> None:
    path, _ = _saved(tmp_path)
    (item,) = plan_file_read.read(path).instances
    plan_file.check_current(item, BEFORE)  # unchanged: no error
    for changed in (
        ssl_state(acl=AclMode.CERT),
        ssl_state(acl=AclMode.PREFER, client_ca_pem=PEM),
        ssl_state(acl=AclMode.PREFER, connection_string="pgm-x-other.pg.rds.aliyuncs.com"),
    ):
        with pytest.raises(StalePlan, match="stale plan: pgm-x changed") as caught:
            plan_file.check_current(item, changed)
        assert caught.value.exit_code == ExitCode.VERIFICATION_FAILED


def test_a_loaded_entry_asks_for_exactly_the_recorded_fields(tmp_path: Path) -> None:
    path, _ = _saved(tmp_path)
    (item,) = plan_file_read.read(path).instances
    desired, expected = plan_file.to_apply(item, DesiredBuilder(now=NOW))
    replanned = plan(desired, BEFORE, instance_id="pgm-x", now=NOW + timedelta(hours=1))
    assert same_plan(replanned, expected) and replanned.request == expected.request
    assert expected.request == SslModifyRequest(
        instance_id="pgm-x",
        connection_string=BEFORE.connection_string,
        client_ca_enabled=True,
        client_ca_pem=PEM,
        acl=AclMode.VERIFY_CA,
    )
