"""Emulator fixtures: one state-only emulator per module for the API tests, reset per test.

The API emulator uses long delays (restart 100 s, ACL lock 50 s) and moves its clock with
`emu.clock.advance(...)`, so "still SSL_MODIFYING" and "done" are both observed
deterministically and instantly. The real-PostgreSQL procedure has its own module fixture.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from alibabacloud_rds20140815.client import Client

from rdsssl.emulator.server import Emulator
from tests.emulator.sdk import make_client
from tests.pgtls import KeyPair, make_ca

RESTART_SECONDS = 100.0
ACL_LOCK_SECONDS = 50.0


@pytest.fixture(scope="module")
def api_emu() -> Iterator[Emulator]:
    """Three state-only instances in cn-hangzhou; more are added by tests that need them."""
    with Emulator(
        instances=3,
        backend="none",
        restart_seconds=RESTART_SECONDS,
        acl_lock_seconds=ACL_LOCK_SECONDS,
        seed=7,
    ) as emu:
        yield emu


@pytest.fixture
def emu(api_emu: Emulator) -> Iterator[Emulator]:
    """The module's emulator, reset before each test (SSL blocks, faults, log, clock)."""
    api_emu.reset()
    yield api_emu


@pytest.fixture
def client(emu: Emulator) -> Client:
    """An SDK client with the emulator's key pair."""
    return make_client(emu)


@pytest.fixture
def iid(emu: Emulator) -> str:
    """The first instance's id."""
    return emu.instance_ids[0]


@pytest.fixture
def conn_str(emu: Emulator, iid: str) -> str:
    """The first instance's internal connection string."""
    return emu.instance(iid).connection_string


@pytest.fixture(scope="session")
def client_ca() -> KeyPair:
    """A client CA made with cryptography (the openssl CLI one is in test_procedure)."""
    return make_ca("emulator-test-client-ca")
