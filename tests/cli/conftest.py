"""Fixtures for the CLI tests: ready-made CA stores (helpers live in tests/cli/helpers.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.cli.helpers import invoke


@pytest.fixture
def ca_dir(tmp_path: Path) -> Path:
    """An unencrypted CA store (CN=root-ca1) in tmp_path/ca."""
    path = tmp_path / "ca"
    result = invoke("ca", "init", "--ca-dir", path, "--cn", "root-ca1", "--no-passphrase")
    assert result.exit_code == 0, result.stderr
    return path


@pytest.fixture
def enc_ca_dir(tmp_path: Path) -> Path:
    """A CA store whose key is encrypted with the passphrase 'correct horse'."""
    path = tmp_path / "enc-ca"
    result = invoke("ca", "init", "--ca-dir", path, env={"RDSSSL_CA_PASSPHRASE": "correct horse"})
    assert result.exit_code == 0, result.stderr
    return path
