"""Reading a plan file (`rdsssl apply plan.json`): every field checked, the checksum and the
format version verified, a private key refused; anything wrong is an `InputError` (exit 3).
The format and the writing side are `rdsssl.ops.plan_file`."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from rdsssl.errors import InputError, RdsSslError
from rdsssl.models import AclMode, SslModifyRequest
from rdsssl.ops.plan import Change, Effect, PlanWarning
from rdsssl.ops.plan_file import (
    FORMAT,
    PRIVATE_KEY_MARK,
    TIME_FORMAT,
    VERSION,
    PlanFile,
    PlannedInstance,
    StoreCrl,
    checksum,
)
from rdsssl.pki import crypto

__all__ = ["read"]


class _Bad(Exception):
    """A field of the plan file is missing or of the wrong kind (turned into InputError)."""


def _get(doc: Any, key: str, kind: type | tuple[type, ...], *, optional: bool = False) -> Any:
    if not isinstance(doc, dict) or key not in doc:
        raise _Bad(f"missing {key!r}")
    value = doc[key]
    if value is None and optional:
        return None
    if not isinstance(value, kind) or (isinstance(value, bool) and bool not in _kinds(kind)):
        raise _Bad(f"{key!r} has the wrong type")
    return value


def _kinds(kind: type | tuple[type, ...]) -> tuple[type, ...]:
    return kind if isinstance(kind, tuple) else (kind,)


def _acl(value: str | None) -> AclMode | None:
    return None if value is None else AclMode(value)


def _pem(value: str | None, what: str) -> str | None:
    if value is not None:
        crypto.pem_fingerprints(value.encode("utf-8"), source=what)  # refuses a private key
    return value


def _request(doc: Any, instance_id: str) -> SslModifyRequest | None:
    if doc is None:
        return None
    return SslModifyRequest(
        instance_id=instance_id,
        connection_string=_get(doc, "connection_string", str),
        client_ca_enabled=_get(doc, "client_ca_enabled", bool, optional=True),
        client_ca_pem=_pem(_get(doc, "client_ca_pem", str, optional=True), "the planned CA"),
        crl_enabled=_get(doc, "crl_enabled", bool, optional=True),
        crl_pem=_pem(_get(doc, "crl_pem", str, optional=True), "the planned CRL"),
        acl=_acl(_get(doc, "acl", str, optional=True)),
        replication_acl=_acl(_get(doc, "replication_acl", str, optional=True)),
    )


def _store_crl(doc: Any) -> StoreCrl | None:
    if doc is None:
        return None
    return StoreCrl(
        ca_dir=Path(_get(doc, "ca_dir", str)),
        ca_fingerprints=tuple(str(f) for f in _get(doc, "ca_fingerprints", list)),
        revoked=frozenset(int(str(s), 16) for s in _get(doc, "revoked", list)),
        days=_get(doc, "days", int),
        min_remaining=timedelta(seconds=_get(doc, "min_remaining_seconds", int)),
    )


def _change(doc: Any) -> Change:
    return Change(
        field=_get(doc, "field", str),
        before=_get(doc, "before", str),
        after=_get(doc, "after", str),
        effect=Effect(_get(doc, "effect", str)),
        code=_get(doc, "code", str),
        reason=_get(doc, "reason", str),
    )


def _instance(doc: Any) -> PlannedInstance:
    iid = _get(doc, "instance", str)
    request = _request(_get(doc, "request", dict, optional=True), iid)
    crl = _store_crl(_get(doc, "crl_from_store", dict, optional=True))
    changes = tuple(_change(c) for c in _get(doc, "changes", list))
    if bool(changes) != (request is not None) or (crl is not None and request is None):
        raise _Bad(f"{iid}: the changes and the request do not go together")
    if request is not None and request.crl_pem is not None and crl is not None:
        raise _Bad(f"{iid}: both a CRL and a CRL from a store")
    warnings = tuple(
        PlanWarning(_get(w, "code", str), _get(w, "message", str))
        for w in _get(doc, "warnings", list)
    )
    return PlannedInstance(
        instance_id=iid,
        source=_get(doc, "source", str),
        region=_get(doc, "region", str, optional=True),
        before=dict(_get(doc, "before", dict)),
        connection_string=_get(doc, "connection_string", str),
        changes=changes,
        request=request,
        crl=crl,
        warnings=warnings,
        guard=_get(doc, "guard", str, optional=True),
    )


def read(path: Path) -> PlanFile:
    """Load and check a plan file; anything garbled, tampered with, of another format or
    version, or holding a private key is an `InputError` (exit 3)."""
    again = "run rdsssl plan --out again"
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise InputError(f"{path}: cannot read the plan file ({exc.strerror})") from None
    except UnicodeDecodeError:
        raise InputError(f"{path}: not a plan file (not UTF-8 text); {again}") from None
    if PRIVATE_KEY_MARK in text:
        raise InputError(f"{path}: holds a private key; a plan file never does: delete it")
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}: not a plan file (bad JSON: {exc.msg}); {again}") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise InputError(f"{path}: not an rdsssl plan file (no format {FORMAT!r})")
    if doc.get("version") != VERSION:
        raise InputError(
            f"{path}: plan file version {doc.get('version')!r}; this rdsssl reads version "
            f"{VERSION}: {again}"
        )
    body = {k: v for k, v in doc.items() if k != "checksum"}
    if doc.get("checksum") != checksum(body):
        raise InputError(
            f"{path}: the checksum does not match: the file was changed or damaged after "
            f"rdsssl plan wrote it; nothing was applied: {again}"
        )
    try:
        created = datetime.strptime(_get(doc, "created", str), TIME_FORMAT)
        source = _get(doc, "source", dict)
        instances = tuple(_instance(i) for i in _get(doc, "instances", list))
        ids = [i.instance_id for i in instances]
        if len(set(ids)) != len(ids):
            raise _Bad("an instance is listed twice")
        return PlanFile(
            created=created.replace(tzinfo=timezone.utc),
            source=Path(_get(source, "path", str)),
            source_sha256=_get(source, "sha256", str),
            instances=instances,
        )
    except (_Bad, ValueError, TypeError) as exc:
        raise InputError(f"{path}: a malformed plan file ({exc}); {again}") from None
    except RdsSslError as exc:
        raise InputError(f"{path}: a malformed plan file ({exc}); {again}") from None
