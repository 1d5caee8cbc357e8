"""The JSON contract (docs/json-output.md) as a check every CLI test's document goes through:
the JSON Schema shipped in the package (envelope, error object, per-instance entry), plus the
rules a schema cannot say - every `error` anywhere is an error object, and `certificates` is
a list wherever it appears."""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any

from jsonschema import Draft202012Validator

__all__ = ["check_document", "schema"]


@cache
def schema() -> dict[str, Any]:
    text = resources.files("rdsssl.cli").joinpath("output-schema-v1.json").read_text()
    doc: dict[str, Any] = json.loads(text)
    Draft202012Validator.check_schema(doc)
    return doc


class _ErrorValidator:
    def validate(self, value: Any) -> None:
        only = {"$defs": schema()["$defs"], "$ref": "#/$defs/error"}
        Draft202012Validator(only).validate(value)


_ERROR = _ErrorValidator()


def _walk(node: Any, path: str) -> None:
    if isinstance(node, dict):
        for key, value in node.items():
            where = f"{path}.{key}"
            if key == "error" and value is not None:
                _ERROR.validate(value)
            if key == "certificates":
                assert isinstance(value, list), f"{where} is not a list"
            _walk(value, where)
    elif isinstance(node, list):
        for n, item in enumerate(node):
            _walk(item, f"{path}[{n}]")


def check_document(doc: Any, exit_code: int) -> None:
    """AssertionError / ValidationError unless `doc` keeps the contract for `exit_code`."""
    Draft202012Validator(schema()).validate(doc)
    assert doc["exit_code"] == exit_code, (doc["exit_code"], exit_code)
    _walk(doc, "$")
