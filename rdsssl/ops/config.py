"""The desired-state file (`rdsssl.toml`): load, merge defaults, validate.

```toml
rate = 10                       # optional: API calls per second of the whole run (--rate wins)

[defaults]                      # applies to every instance unless overridden
region = "cn-hangzhou"
ca_dir = "ca"                   # or ca_bundle = "bundle.pem" (not both)
crl = true                      # needs ca_dir: the CRL is built from the CA store
acl = "verify-full"             # cert | prefer | verify-ca | verify-full
replication_acl = "verify-full"

ssl = "cloud"                   # optional: cloud | custom (unset: server SSL left as it is)
# server_ca_dir = "server-ca"   # the server CA store that ssl = "custom" issues from

[[instances]]
id = "pgm-bp1example"           # or: tags = { env = "prod" }
acl = "cert"                    # any [defaults] key can be overridden
```

Rules: unknown keys and bad values are `ConfigError`s naming the file, the entry
(`defaults`, or `instances[N]` counted from 1 as they appear in the file, with the id or tags
when known) and the key. Relative paths resolve against the file's directory. An instance
that sets `ca_dir` or `ca_bundle` replaces the default's CA source (whichever it was); within
one table the two are mutually exclusive, and every instance must end up with exactly one.
Whether the paths exist is checked when they are used (opening the store), not here.

Server SSL (`ssl`, `server_ca_dir`: `_ssl_values`, `_check_ssl`) is opt-in: without `ssl` an
instance's server SSL is never touched, as before the key existed. `ssl = "custom"` needs a
`server_ca_dir` (here or in [defaults]), which must be a store of its own, not the client CA's
`ca_dir` (one CA for both would let a client certificate's key pass for the server). An
instance that sets `server_ca_dir` itself must mean `ssl = "custom"`; one in [defaults] only
serves the instances that do.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from rdsssl.errors import ConfigError
from rdsssl.models import AclMode, DesiredState, InstanceSpec
from rdsssl.rds.service_profile import RATE_RANGE, valid_rate

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10 needs the `tomli` backport (same API)
    import tomli as tomllib  # type: ignore[import-not-found,unused-ignore]

DEFAULT_KEYS = frozenset({"region", "ca_dir", "ca_bundle", "crl", "acl", "replication_acl"})
INSTANCE_KEYS = DEFAULT_KEYS | {"id", "tags"}
TOP_KEYS = frozenset({"rate", "defaults", "instances"})
_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_ACLS = ", ".join(mode.value for mode in AclMode)
SSL_KEYS = frozenset({"ssl", "server_ca_dir"})  # server SSL, in [defaults] and [[instances]]
SSL_MODES = ("cloud", "custom")


def load_desired_state(path: Path) -> DesiredState:
    """Read and validate a desired-state file; every problem is a one-line `ConfigError`."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the desired-state file ({exc.strerror})") from None
    try:
        doc = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text; save it as UTF-8") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None
    return parse_desired_state(doc, path)


def parse_desired_state(doc: Mapping[str, Any], path: Path) -> DesiredState:
    """Validate an already parsed document; `path` names it and anchors relative paths."""
    base = path.resolve().parent
    _unknown(doc, TOP_KEYS, str(path), "top level")
    defaults = doc.get("defaults", {})
    if not isinstance(defaults, Mapping):
        raise ConfigError(f"{path}: [defaults] must be a table")
    _unknown(defaults, DEFAULT_KEYS | SSL_KEYS, str(path), "defaults")
    base_values = _values(defaults, f"{path}: defaults", base)
    base_values.update(_ssl_values(defaults, f"{path}: defaults", base))
    entries = doc.get("instances")
    if not isinstance(entries, list) or not entries:
        raise ConfigError(
            f"{path}: no [[instances]]: add at least one [[instances]] table with an id or tags"
        )
    specs: list[InstanceSpec] = []
    seen_ids: dict[str, str] = {}
    for number, entry in enumerate(entries, start=1):
        where = f"{path}: instances[{number}]"
        if not isinstance(entry, Mapping):
            raise ConfigError(f"{where}: must be a table ([[instances]])")
        where += _label(entry)
        _unknown(entry, INSTANCE_KEYS | SSL_KEYS, where, None)
        spec = _instance(entry, base_values, where, base)
        if spec.id is not None:
            if spec.id in seen_ids:
                raise ConfigError(f"{where}: id {spec.id!r} is already used by {seen_ids[spec.id]}")
            seen_ids[spec.id] = f"instances[{number}]"
        specs.append(spec)
    return DesiredState(path=path, instances=tuple(specs), rate=_rate(doc, path))


def _rate(doc: Mapping[str, Any], path: Path) -> float | None:
    """The top-level `rate` (API calls per second of a run over this file), if set."""
    if "rate" not in doc:
        return None
    value = doc["rate"]
    if not valid_rate(value):
        raise ConfigError(f"{path}: rate must be {RATE_RANGE}, not {value!r}")
    return float(value)


def _label(entry: Mapping[str, Any]) -> str:
    """` (id pgm-x)` / ` (tags env=prod)` to help find the entry; empty when unusable."""
    ident, tags = entry.get("id"), entry.get("tags")
    if isinstance(ident, str) and ident:
        return f" (id {ident})"
    if isinstance(tags, Mapping) and tags:
        return " (tags " + ",".join(f"{k}={v}" for k, v in tags.items()) + ")"
    return ""


def _unknown(
    table: Mapping[str, Any], allowed: frozenset[str], where: str, section: str | None
) -> None:
    for key in table:
        if key == "rate" and key not in allowed:
            raise ConfigError(
                f"{where}: " + (f"{section}: " if section else "") + "rate is the budget of the "
                "whole run, not of an instance: set it at the top level, before [defaults]"
            )
        if key not in allowed:
            place = f"{where}: " + (f"{section}: " if section else "")
            raise ConfigError(f"{place}unknown key {key!r} (allowed: {', '.join(sorted(allowed))})")


def _values(table: Mapping[str, Any], where: str, base: Path) -> dict[str, Any]:
    """Type-check and convert the keys shared by [defaults] and [[instances]]."""
    if "ca_dir" in table and "ca_bundle" in table:
        raise ConfigError(
            f"{where}: ca_dir and ca_bundle are mutually exclusive: keep one "
            "(a CA store, or a PEM bundle of CA certificates)"
        )
    out: dict[str, Any] = {}
    for key in ("region",):
        if key in table:
            out[key] = _string(table[key], key, where)
    for key in ("ca_dir", "ca_bundle"):
        if key in table:
            out[key] = _path(_string(table[key], key, where), base)
    if "crl" in table:
        if not isinstance(table["crl"], bool):
            raise ConfigError(f"{where}: crl must be true or false, not {table['crl']!r}")
        out["crl"] = table["crl"]
    for key in ("acl", "replication_acl"):
        if key in table:
            value = _string(table[key], key, where)
            try:
                out[key] = AclMode(value)
            except ValueError:
                raise ConfigError(f"{where}: {key} = {value!r} is not one of {_ACLS}") from None
    return out


def _instance(
    entry: Mapping[str, Any], defaults: Mapping[str, Any], where: str, base: Path
) -> InstanceSpec:
    has_id, has_tags = "id" in entry, "tags" in entry
    if has_id == has_tags:
        raise ConfigError(
            f"{where}: set exactly one of id (one instance) or tags (a table selecting instances)"
        )
    ident: str | None = None
    tags: dict[str, str] | None = None
    if has_id:
        ident = _string(entry["id"], "id", where)
        if not _ID_RE.match(ident):
            raise ConfigError(f"{where}: id {ident!r} is not an RDS instance id (e.g. pgm-bp1...)")
    else:
        raw_tags = entry["tags"]
        if not isinstance(raw_tags, Mapping) or not raw_tags:
            raise ConfigError(
                f'{where}: tags must be a non-empty table, e.g. tags = {{ env = "prod" }}'
            )
        tags = {}
        for key, value in raw_tags.items():
            if not isinstance(value, str) or not value or not key:
                raise ConfigError(f"{where}: tags.{key} must be a non-empty string")
            tags[key] = value
    own = _values(entry, where, base)
    own.update(_ssl_values(entry, where, base))
    merged = {**defaults, **own}
    if "ca_dir" in own or "ca_bundle" in own:  # the instance's CA source replaces the default's
        for key in ("ca_dir", "ca_bundle"):
            if key not in own:
                merged.pop(key, None)
    if "ca_dir" not in merged and "ca_bundle" not in merged:
        raise ConfigError(
            f"{where}: no CA: set ca_dir (a CA store) or ca_bundle (a PEM file), "
            "here or in [defaults]"
        )
    crl = bool(merged.get("crl", False))
    if crl and "ca_dir" not in merged:
        raise ConfigError(
            f"{where}: crl = true needs ca_dir (the CRL is built from the CA store); "
            "with ca_bundle set crl = false"
        )
    _check_ssl(own, merged, where)
    return InstanceSpec(
        id=ident,
        tags=tags,
        region=merged.get("region"),
        ca_dir=merged.get("ca_dir"),
        ca_bundle=merged.get("ca_bundle"),
        crl=crl,
        acl=merged.get("acl"),
        replication_acl=merged.get("replication_acl"),
        source=where,
        ssl=merged.get("ssl"),
        server_ca_dir=merged.get("server_ca_dir"),
    )


def _ssl_values(table: Mapping[str, Any], where: str, base: Path) -> dict[str, Any]:
    """Type-check the server SSL keys of one table (`ssl`, `server_ca_dir`)."""
    out: dict[str, Any] = {}
    if "ssl" in table:
        value = _string(table["ssl"], "ssl", where)
        if value not in SSL_MODES:
            raise ConfigError(
                f'{where}: ssl = {value!r} is not one of {", ".join(SSL_MODES)} ("cloud": the '
                'RDS cloud certificate; "custom": a certificate from server_ca_dir)'
            )
        out["ssl"] = value
    if "server_ca_dir" in table:
        out["server_ca_dir"] = _path(_string(table["server_ca_dir"], "server_ca_dir", where), base)
    return out


def _check_ssl(own: Mapping[str, Any], merged: Mapping[str, Any], where: str) -> None:
    """The server SSL rules on one instance once defaults are merged (module docstring)."""
    mode = merged.get("ssl")
    server_ca: Path | None = merged.get("server_ca_dir")
    if mode == "custom" and server_ca is None:
        raise ConfigError(
            f'{where}: ssl = "custom" needs server_ca_dir, the server CA store its certificate '
            "is issued from (rdsssl ca init --ca-dir server-ca --cn my-db-server-ca), here or "
            "in [defaults]"
        )
    if "server_ca_dir" in own and mode != "custom":
        raise ConfigError(
            f'{where}: server_ca_dir is only used with ssl = "custom" (ssl is '
            f'{mode!r}): set ssl = "custom" or drop server_ca_dir'
        )
    client_ca: Path | None = merged.get("ca_dir")
    if mode == "custom" and server_ca and client_ca and _same_dir(server_ca, client_ca):
        raise ConfigError(
            f"{where}: server_ca_dir and ca_dir are the same store ({server_ca}): the server "
            "CA must be a store of its own (rdsssl ca init --ca-dir server-ca ...)"
        )


def _same_dir(a: Path, b: Path) -> bool:
    return a.resolve() == b.resolve()


def _string(value: object, key: str, where: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{where}: {key} must be a non-empty string, not {value!r}")
    return value.strip()


def _path(value: str, base: Path) -> Path:
    path = Path(value).expanduser()
    return path if path.is_absolute() else base / path
