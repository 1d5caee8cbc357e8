"""The import boundaries of SPEC section 1, checked by parsing every module (no imports run).

A new dependency between layers then shows up as a one-line change to these rules instead of
as quiet drift: the emulator must not inherit the client's bugs, the SDK stays behind api.py,
and the pure crypto modules stay free of I/O layers.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "rdsssl"
SDK_PREFIXES = ("alibabacloud", "Tea", "darabonba")


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "rdsssl":  # `from rdsssl import crypto` names a module
                names.update(f"rdsssl.{alias.name}" for alias in node.names)
            else:
                names.add(node.module)
    return names


def _modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def _rel(path: Path) -> str:
    return str(path.relative_to(PACKAGE.parent))


@pytest.mark.parametrize("path", _modules(), ids=_rel)
def test_only_api_imports_the_sdk(path: Path) -> None:
    sdk = {m for m in _imports(path) if m.startswith(SDK_PREFIXES)}
    if path.name == "api.py" and path.parent == PACKAGE:
        assert sdk, "api.py is where the SDK is used"
    else:
        assert not sdk, f"{_rel(path)} imports the SDK ({sorted(sdk)}); go through rdsssl.rds.api"


@pytest.mark.parametrize("path", sorted((PACKAGE / "emulator").glob("*.py")), ids=_rel)
def test_emulator_imports_nothing_from_the_client_side(path: Path) -> None:
    client = {
        m for m in _imports(path) if m.startswith("rdsssl") and not m.startswith("rdsssl.emulator")
    }
    assert not client, f"{_rel(path)} imports {sorted(client)}"


@pytest.mark.parametrize("path", _modules(), ids=_rel)
def test_psycopg_only_in_probe_and_the_emulator_pg_layer(path: Path) -> None:
    uses = {m for m in _imports(path) if m.split(".")[0] == "psycopg"}
    allowed = path.name == "probe.py" or (
        path.parent.name == "emulator" and path.name.startswith("pg")
    )
    assert allowed or not uses, f"{_rel(path)} imports psycopg"


@pytest.mark.parametrize("name", ["crypto.py", "crypto_pem.py", "crl_der.py", "crypto_pkcs8.py"])
def test_crypto_is_pure(name: str) -> None:
    path = PACKAGE / name
    forbidden = {"os", "pathlib", "sqlite3", "socket", "subprocess", "time", "shutil"}
    rdsssl_ok = {
        "rdsssl.models",
        "rdsssl.errors",
        "rdsssl.pki.pem",
        "rdsssl.pki.crl_der",
        "rdsssl.pki.pkcs8",
    }
    for module in _imports(path):
        assert module.split(".")[0] not in forbidden, f"{name} imports {module} (I/O or clock)"
        if module.startswith("rdsssl"):
            assert module in rdsssl_ok, f"{name} imports {module}"


def test_crl_policy_is_pure() -> None:
    """The CRL policy judges objects it is given: no I/O, no clock, only the crypto layer."""
    forbidden = {"os", "pathlib", "sqlite3", "socket", "subprocess", "time", "shutil"}
    rdsssl_ok = {"rdsssl.pki.crypto", "rdsssl.errors"}
    imports = _imports(PACKAGE / "crl_policy.py")
    assert "rdsssl.pki.crypto" in imports
    for module in imports:
        assert module.split(".")[0] not in forbidden, f"crl_policy.py imports {module}"
        if module.startswith("rdsssl"):
            assert module in rdsssl_ok, f"crl_policy.py imports {module}"
    tree = ast.parse((PACKAGE / "crl_policy.py").read_text())
    clock = {"now", "utcnow", "today", "monotonic"}
    calls = {
        node.func.attr
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
    }
    assert not calls & clock, f"crl_policy.py reads the clock ({sorted(calls & clock)})"
