"""A streamed document is byte for byte what the whole document would print."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rdsssl.cli import jsondoc

pytestmark = pytest.mark.unit

scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=8))
items = st.lists(st.dictionaries(st.text(max_size=6), scalars, max_size=4), max_size=1200)
HEAD: dict[str, Any] = {"schema_version": 1, "ok": True, "exit_code": 0, "ca_dir": "/srv/ca"}


@given(items, st.booleans())
def test_stream_writes_what_dumps_writes(found: list[dict[str, Any]], compact: bool) -> None:
    out: list[str] = []
    count = jsondoc.stream(HEAD, "certificates", iter(found), compact=compact, write=out.append)
    whole = jsondoc.dumps({**HEAD, "certificates": found}, compact=compact) + "\n"
    assert count == len(found) and "".join(out) == whole
    assert json.loads("".join(out))["certificates"] == found
