"""`rdsssl emulator serve` as users run it: a subprocess, its output, and a clean stop."""

from __future__ import annotations

import http.client
import json
import queue
import shlex
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import pytest
from alibabacloud_rds20140815 import models as rds
from alibabacloud_rds20140815.client import Client
from alibabacloud_tea_openapi.models import Config

from rdsssl.rds import service_profile

TIMEOUT = 60.0


class Server:
    """A serve subprocess whose stdout lines arrive on a queue (no blocking reads in tests)."""

    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        self.lines: queue.Queue[str] = queue.Queue()
        assert self.proc.stdout is not None
        threading.Thread(target=self._pump, args=(self.proc.stdout,), daemon=True).start()

    def _pump(self, stream: IO[str]) -> None:
        for line in stream:
            self.lines.put(line)

    def read_lines(self, n: int) -> list[str]:
        try:
            return [self.lines.get(timeout=TIMEOUT).rstrip("\n") for _ in range(n)]
        except queue.Empty:
            self.proc.terminate()
            stderr = self.proc.communicate(timeout=TIMEOUT)[1]
            raise AssertionError(f"no output; stderr: {stderr}") from None

    def read_until(self, last: str) -> str:
        lines: list[str] = []
        while not lines or lines[-1] != last:
            lines += self.read_lines(1)
        return "\n".join(lines)

    def stop(self, sig: int) -> int:
        self.proc.send_signal(sig)
        return self.proc.wait(timeout=TIMEOUT)

    def close(self) -> None:
        """SIGTERM first (so PostgreSQL is stopped), SIGKILL only as a last resort."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()


@pytest.fixture
def servers() -> Iterator[list[Server]]:
    started: list[Server] = []
    yield started
    for server in started:
        server.close()


def _postmasters(instance_id: str) -> list[str]:
    out = subprocess.run(["pgrep", "-af", f"{instance_id}/data"], capture_output=True, text=True)
    return [ln for ln in out.stdout.splitlines() if "postgres" in ln and "pgrep" not in ln]


def test_serve_env_exports_work_and_sigterm_stops_postgresql(
    servers: list[Server], tmp_path: Path
) -> None:
    env_file = tmp_path / "emulator.env"
    server = Server(
        "-m", "rdsssl", "emulator", "serve", "--env", "--env-file", str(env_file),
        "--restart-seconds", "0.2", "--acl-lock-seconds", "0.1",
    )  # fmt: skip
    servers.append(server)
    lines = server.read_lines(8)
    exports = dict(shlex.split(ln.removeprefix("export "))[0].split("=", 1) for ln in lines)
    assert all(ln.startswith("export ") for ln in lines)
    assert exports["ALIBABA_CLOUD_REGION_ID"] == "cn-hangzhou"
    assert exports["RDSSSL_EMULATOR_PROFILE"] == "documented"
    profile = service_profile.load(Path(exports["RDSSSL_SERVICE_PROFILE"]))  # the client reads it
    assert (profile.restart_seconds, profile.acl_lock_seconds) == (0.2, 0.1)
    assert profile.status_lag_seconds == 0 and profile.name == "documented"
    assert exports["RDSSSL_ENDPOINT"].startswith("http://127.0.0.1:")
    assert env_file.read_text() == "\n".join(lines) + "\n"
    [instance_id] = exports["RDSSSL_EMULATOR_INSTANCES"].split()

    client = Client(
        Config(
            access_key_id=exports["ALIBABA_CLOUD_ACCESS_KEY_ID"],
            access_key_secret=exports["ALIBABA_CLOUD_ACCESS_KEY_SECRET"],
            endpoint=exports["RDSSSL_ENDPOINT"].removeprefix("http://"),
            protocol="http",
            region_id=exports["ALIBABA_CLOUD_REGION_ID"],
        )
    )
    body = client.describe_dbinstances(rds.DescribeDBInstancesRequest(region_id="cn-hangzhou")).body
    assert [i.dbinstance_id for i in body.items.dbinstance] == [instance_id]
    assert _postmasters(instance_id), "the instance's PostgreSQL should be running"

    assert server.stop(signal.SIGTERM) == 0
    assert _postmasters(instance_id) == []
    assert not env_file.exists()


def test_python_m_emulator_json_with_state_only_instances(servers: list[Server]) -> None:
    server = Server("-m", "rdsssl.emulator", "--backend", "none", "--instances", "3", "--json")
    servers.append(server)
    doc = json.loads(server.read_until("}"))
    assert doc["ok"] is True and doc["backend"] == "none"
    assert len(doc["instances"]) == 3
    assert {i["engine_version"] for i in doc["instances"]} == {"15.0"}
    assert doc["server_ca_url"] == f"{doc['endpoint']}/_emulator/server-ca.pem"
    assert server.stop(signal.SIGINT) == 0


def test_serve_no_ssl_creates_instances_with_ssl_off(servers: list[Server]) -> None:
    server = Server(
        "-m", "rdsssl", "emulator", "serve", "--backend", "none", "--instances", "2", "--no-ssl",
        "--json",
    )  # fmt: skip
    servers.append(server)
    doc = json.loads(server.read_until("}"))
    assert [i["ssl"] for i in doc["instances"]] == ["off", "off"]
    conn = http.client.HTTPConnection(doc["endpoint"].removeprefix("http://"), timeout=10)
    conn.request("GET", "/_emulator/instances")
    listed = json.loads(conn.getresponse().read())["instances"]
    conn.close()
    assert {i["SSLEnabled"] for i in listed} == {"off"}
    assert server.stop(signal.SIGTERM) == 0


def test_a_taken_port_is_a_clear_error(capsys: pytest.CaptureFixture[str]) -> None:
    from rdsssl.cli import run
    from rdsssl.emulator.server import Emulator

    with Emulator(instances=0, backend="none") as taken:
        code = run(["emulator", "serve", "--backend", "none", "--port", str(taken.port)])
    assert code == 3
    assert f"cannot serve on 127.0.0.1:{taken.port}" in capsys.readouterr().err


def test_serve_profile_pessimistic_json_reports_it(servers: list[Server]) -> None:
    server = Server(
        "-m", "rdsssl", "emulator", "serve", "--backend", "none", "--profile", "pessimistic",
        "--acl-lock-seconds", "7", "--json",
    )  # fmt: skip
    servers.append(server)
    doc = json.loads(server.read_until("}"))
    assert (doc["ok"], doc["profile"]) == (True, "pessimistic")
    assert (doc["restart_seconds"], doc["acl_lock_seconds"]) == (180.0, 7.0)
    host_port = doc["endpoint"].removeprefix("http://")
    conn = http.client.HTTPConnection(host_port, timeout=10)
    conn.request("GET", "/_emulator/faults")
    faults = json.loads(conn.getresponse().read())
    conn.close()
    assert faults["profile"] == "pessimistic"
    assert faults["switches"]["busy_code"] == "InvalideStatus.Format"
    assert server.stop(signal.SIGTERM) == 0


def test_serve_with_a_bad_profile_file_is_exit_3(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from rdsssl.cli import run
    from rdsssl.emulator.__main__ import main

    bad = tmp_path / "typo.json"
    bad.write_text(json.dumps({"format": 1, "multi_ca_bundel": False}))
    assert run(["emulator", "serve", "--backend", "none", "--profile", str(bad)]) == 3
    err = capsys.readouterr().err
    assert "unknown key 'multi_ca_bundel'" in err and str(bad) in err
    assert run(["emulator", "serve", "--backend", "none", "--profile", "optimistic"]) == 3
    assert "not a built-in profile (documented, pessimistic)" in capsys.readouterr().err
    assert main(["serve", "--backend", "none", "--profile", str(bad)]) == 3
    assert "unknown key 'multi_ca_bundel'" in capsys.readouterr().err
