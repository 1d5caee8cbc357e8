"""The `rdsssl` package surface: every public exception exported (lazy table, TYPE_CHECKING block
and `__all__` in step), `__version__` from the installed distribution, and `AliyunRdsApi` as a
context manager."""

from __future__ import annotations

import ast
import importlib.metadata
import inspect
from pathlib import Path

import pytest

import rdsssl
from rdsssl import errors
from rdsssl.errors import UsageError
from rdsssl.rds.api import AliyunRdsApi
from rdsssl.rds.settings import ApiSettings

from .test_api_errors import ENDPOINT


def _error_classes() -> set[str]:
    return {
        name
        for name, obj in vars(errors).items()
        if inspect.isclass(obj) and obj.__module__ == errors.__name__ and not name.startswith("_")
    }


def _type_checking_names() -> set[str]:
    """The names imported under `if TYPE_CHECKING:` in rdsssl/__init__.py."""
    tree = ast.parse(Path(rdsssl.__file__).read_text())
    found: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING":
            for stmt in node.body:
                if isinstance(stmt, ast.ImportFrom):
                    found.update(alias.asname or alias.name for alias in stmt.names)
    return found


def test_every_class_of_errors_py_is_exported() -> None:
    classes = _error_classes()
    assert {"RdsSslError", "HookFailed", "LockoutGuard", "ExitCode"} <= classes
    missing = classes - set(rdsssl.__all__)
    assert not missing, f"add to rdsssl.__all__, _LAZY and the TYPE_CHECKING block: {missing}"
    for name in classes:
        assert getattr(rdsssl, name) is getattr(errors, name)


def test_the_lazy_table_the_type_checking_block_and_all_agree() -> None:
    lazy = set(rdsssl._LAZY)
    assert _type_checking_names() == lazy
    assert set(rdsssl.__all__) == lazy | {"__version__"}
    assert len(rdsssl.__all__) == len(set(rdsssl.__all__))


def test_version_is_the_installed_distributions() -> None:
    assert rdsssl.__version__ == importlib.metadata.version("rdsssl")


def test_version_without_an_installed_distribution(monkeypatch: pytest.MonkeyPatch) -> None:
    def missing(name: str) -> str:
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "version", missing)
    assert rdsssl._version() == "0+unknown"


def test_the_adapter_is_a_context_manager_and_close_is_idempotent(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ALIBABA_CLOUD_ACCESS_KEY_ID", "AKID")
    monkeypatch.setenv("ALIBABA_CLOUD_ACCESS_KEY_SECRET", "secret")
    with AliyunRdsApi(ApiSettings(endpoint=ENDPOINT)) as api:
        assert not api.closed
    assert api.closed
    api.close()  # again: nothing happens
    assert api.closed
    with pytest.raises(UsageError, match="DescribeDBInstanceSSL: this AliyunRdsApi was closed"):
        api.describe_ssl("pgm-1")


def test_the_adapter_closes_when_the_block_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ALIBABA_CLOUD_ACCESS_KEY_ID", "AKID")
    monkeypatch.setenv("ALIBABA_CLOUD_ACCESS_KEY_SECRET", "secret")
    with pytest.raises(KeyError), AliyunRdsApi(ApiSettings(endpoint=ENDPOINT)) as api:
        raise KeyError("boom")
    assert api.closed
