"""Shared PostgreSQL fixtures for every test area (owned by the emulator-pg helper).

Real servers, few of them: a cluster costs about 0.5 s to create (initdb runs once per test
process and is copied), a reload a few ms, a restart 0.2 s. Start clusters in module- or
session-scoped fixtures and reconfigure them with `apply(...)` between tests.

    @pytest.fixture(scope="module")
    def cluster(pg_cluster_factory, server_pki):
        c = pg_cluster_factory("mytests", ssl=server_pki.config())   # started
        c.create_role("alice", "alice-pw")
        return c                                                      # stopped at session end

    psycopg.connect(host=c.host, port=c.port, dbname="postgres", user="alice",
                    sslmode="verify-full", sslrootcert=str(server_pki.sslrootcert), ...)

A missing PostgreSQL is an error, never a skip.
"""

from __future__ import annotations

import shutil
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from rdsssl.emulator.pg import PgCluster, PgNotFound, PgSslConfig
from rdsssl.emulator.pg_install import find_pg_bin
from rdsssl.emulator.pg_os import make_scratch_dir
from tests.pgtls import ClusterFactory, ServerPki, make_server_pki

# A suite started in the background by a non-interactive shell (`scripts/test &`, some CI
# runners) inherits SIGINT ignored, and so would every `rdsssl` it starts: Python keeps an
# ignored SIGINT ignored, and the tests that press Ctrl-C on a run would wait for nothing. A
# handler here (reset to the default on exec) gives every child the ordinary Ctrl-C.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

# Every test carries the marker of its area, so `scripts/test -m unit` runs in seconds:
# unit (no server, no network), emulator (the emulator and its PostgreSQL), e2e (the CLI
# against the emulator), integration (real PostgreSQL, openssl, cron scripts). `slow` marks the
# modules that make the bulk of the time (see pyproject.toml for the list of markers).
AREAS = {
    "unit": "unit",
    "cli": "unit",
    "emulator": "emulator",
    "e2e": "e2e",
    "integration": "integration",
}
SLOW_MODULES = {
    "test_safety.py",
    "test_rotation.py",
    "test_failures.py",
    "test_procedure_cli.py",
    "test_service_profile_record.py",
    "test_store_crash.py",
    "test_ca_renew.py",
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        area = AREAS.get(item.path.parent.name)
        if area is not None:
            item.add_marker(area)
        if item.path.name in SLOW_MODULES or "pessimistic" in item.name:
            item.add_marker("slow")


@pytest.fixture(scope="session")
def pg_bin() -> Path:
    """The PostgreSQL bin directory (initdb, pg_ctl); fails the test when missing."""
    try:
        return find_pg_bin()
    except PgNotFound as exc:
        pytest.fail(str(exc), pytrace=False)


@pytest.fixture(scope="session")
def pg_base_dir() -> Iterator[Path]:
    """A directory the PostgreSQL OS user can traverse (0711), removed at session end.

    On /dev/shm when it is a roomy tmpfs: copying a data directory there is 20x faster.
    Marked with our pid, so a later run removes it (and stops its servers) if we get SIGKILLed.

    pytest's tmp_path lives under /tmp/pytest-of-root/ (0700) when running as root, which
    the `postgres` user cannot enter; PgCluster copes (it relocates), but clusters made here
    stay where you can find them while the session runs.
    """
    base = make_scratch_dir("rdsssl-pgtest-", user=None)  # 0711 is all the OS user needs
    yield base
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
def pg_cluster_factory(pg_bin: Path, pg_base_dir: Path) -> Iterator[ClusterFactory]:
    """`factory(name="pg", *, ssl=None, port=None) -> PgCluster`, started when `ssl` is given.

    Names are made unique per session; every cluster made is stopped at session end (and,
    should the session crash, by the atexit hook of rdsssl.emulator.pg).
    """
    made: list[PgCluster] = []

    def factory(
        name: str = "pg", *, ssl: PgSslConfig | None = None, port: int | None = None
    ) -> PgCluster:
        cluster = PgCluster(pg_base_dir, name=f"{name}-{len(made)}", port=port, pg_bin=pg_bin)
        made.append(cluster)
        if ssl is not None:
            cluster.start(ssl)
        return cluster

    yield factory
    for cluster in made:
        cluster.stop()


@pytest.fixture(scope="session")
def server_pki(tmp_path_factory: pytest.TempPathFactory) -> ServerPki:
    """A throwaway server CA + server cert (SAN localhost, 127.0.0.1).

    `server_pki.config(client_ca_pem=..., acl=...)` -> PgSslConfig; clients verify the server
    with `sslrootcert=str(server_pki.sslrootcert)` and `sslmode="verify-full"`.
    """
    return make_server_pki(tmp_path_factory.mktemp("server-pki"))


@pytest.fixture(autouse=True, scope="session")
def _private_state_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """rdsssl's state directory (instance locks, default audit log) in a temp dir, never the
    real ~/.local/state of whoever runs the tests; and the service profile of the test
    emulators."""
    import os

    state = tmp_path_factory.mktemp("rdsssl-state")
    profile = state / "emulator-profile.json"
    # The test emulators restart in 0.3 s and lock for 0.2 s (not 3 min / 1 min): a client that
    # knows it polls densely from the start, as it would with a profile recorded on an account.
    profile.write_text(
        '{"format": 1, "name": "test emulator", "restart_seconds": 0.3,'
        ' "acl_lock_seconds": 0.2, "status_lag_seconds": 0, "early_readback_seconds": 0}'
    )
    wanted = {"RDSSSL_STATE_DIR": str(state), "RDSSSL_SERVICE_PROFILE": str(profile)}
    previous = {name: os.environ.get(name) for name in wanted}
    os.environ.update(wanted)
    yield
    for name, value in previous.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
