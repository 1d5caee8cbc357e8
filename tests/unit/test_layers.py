"""The layer table of docs/ARCHITECTURE.md, checked over the AST of every module (no imports
run). A new dependency between layers shows up as a one-line change to `ALLOWED`, not as quiet
drift: the emulator never inherits the client's bugs, the SDK stays behind `rdsssl.rds.api`,
psycopg behind the probe, and the PKI layer stays pure (bytes and objects in, no I/O, no clock).
"""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "rdsssl"
SDK_PREFIXES = ("alibabacloud", "Tea", "darabonba")
IO_MODULES = {"os", "pathlib", "sqlite3", "socket", "subprocess", "time", "shutil"}

# layer -> the rdsssl layers its modules may import (besides itself). A layer is a package
# under rdsssl/ or one of the top-level modules.
BASE = {"rdsssl.errors", "rdsssl.models"}
ALLOWED: dict[str, set[str]] = {
    "rdsssl.errors": set(),
    "rdsssl.models": set(),
    "rdsssl.pki": BASE,
    "rdsssl.store": BASE | {"rdsssl.pki"},
    "rdsssl.rds": BASE,
    "rdsssl.ops": BASE | {"rdsssl.pki", "rdsssl.store", "rdsssl.rds"},
    "rdsssl.cli": BASE
    | {"rdsssl", "rdsssl.ops", "rdsssl.pki", "rdsssl.store", "rdsssl.rds"}
    | {"rdsssl.emulator"},  # `rdsssl emulator serve`
    "rdsssl.emulator": set(),
    "rdsssl": BASE | {"rdsssl.ops", "rdsssl.pki", "rdsssl.store", "rdsssl.rds"},  # public API
    "rdsssl.__main__": {"rdsssl.cli"},
}
# Single edges outside the table, each with its reason.
EXCEPTIONS: dict[str, set[str]] = {
    # a recorded profile is written in the emulator's profile format, parsed by the same code
    "rdsssl.ops.profile_recorder": {"rdsssl.emulator"},
}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _layer(module: str) -> str:
    parts = module.split(".")
    if len(parts) == 1:
        return "rdsssl"
    candidate = ".".join(parts[:2])
    return candidate if candidate in ALLOWED else "rdsssl"


@cache
def _imports(path: Path) -> frozenset[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "rdsssl":  # `from rdsssl import __version__`
                names.add("rdsssl")
            else:
                names.add(node.module)
    return frozenset(names)


def _modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def _rel(path: Path) -> str:
    return str(path.relative_to(PACKAGE.parent))


def test_every_module_belongs_to_a_layer_of_the_table() -> None:
    top = {p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    assert {f"rdsssl.{name}" for name in top} <= set(ALLOWED)
    loose = {p.stem for p in PACKAGE.glob("*.py")} - {"__init__", "__main__", "errors", "models"}
    assert not loose, f"modules outside the layers: {sorted(loose)}"


@pytest.mark.parametrize("path", _modules(), ids=_rel)
def test_imports_follow_the_layer_table(path: Path) -> None:
    module = _module_name(path)
    layer = _layer(module)
    allowed = ALLOWED[layer] | {layer} | EXCEPTIONS.get(module, set())
    for imported in _imports(path):
        if imported.split(".")[0] != "rdsssl":
            continue
        target = _layer(imported)
        assert target in allowed, f"{module} ({layer}) imports {imported} ({target})"


@pytest.mark.parametrize("path", _modules(), ids=_rel)
def test_only_the_sdk_adapter_imports_the_sdk(path: Path) -> None:
    sdk = {m for m in _imports(path) if m.startswith(SDK_PREFIXES)}
    if _module_name(path) == "rdsssl.rds.api":
        assert sdk, "rdsssl/rds/api.py is where the SDK is used"
    else:
        assert not sdk, f"{_rel(path)} imports the SDK ({sorted(sdk)}); go through rdsssl.rds.api"


@pytest.mark.parametrize("path", _modules(), ids=_rel)
def test_psycopg_only_in_the_probe_and_the_emulator_pg_layer(path: Path) -> None:
    uses = {m for m in _imports(path) if m.split(".")[0] == "psycopg"}
    allowed = _module_name(path) == "rdsssl.ops.probe" or (
        path.parent.name == "emulator" and path.name.startswith("pg")
    )
    assert allowed or not uses, f"{_rel(path)} imports psycopg"


@pytest.mark.parametrize("path", sorted((PACKAGE / "pki").glob("*.py")), ids=_rel)
def test_the_pki_layer_is_pure(path: Path) -> None:
    """Keys, certificates and CRLs from bytes and objects: no files, sockets, database or clock
    (`now` is always passed in)."""
    for module in _imports(path):
        assert module.split(".")[0] not in IO_MODULES, f"{_rel(path)} imports {module}"
    tree = ast.parse(path.read_text())
    clock = {"now", "utcnow", "today", "monotonic"}
    calls = {
        node.func.attr
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
    }
    assert not calls & clock, f"{_rel(path)} reads the clock ({sorted(calls & clock)})"


def test_the_table_catches_a_violation(tmp_path: Path) -> None:
    """The checker itself: a pki module importing the store is reported."""
    bad = tmp_path / "bad.py"
    bad.write_text("from rdsssl.store.castore import CaStore\nimport rdsssl.rds.api\n")
    targets = {_layer(m) for m in _imports(bad) if m.startswith("rdsssl")}
    assert targets == {"rdsssl.store", "rdsssl.rds"}
    assert not targets <= ALLOWED["rdsssl.pki"] | {"rdsssl.pki"}
