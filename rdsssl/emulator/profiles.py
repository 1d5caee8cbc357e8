"""Service profiles: how the emulator answers where the real RDS API is undocumented.

Every test of rdsssl runs against the emulator, so wherever the emulator settles an unknown
of the real service by fiat the tests prove nothing about production. A profile names one
answer to each unknown (docs/aliyun-rds-ssl-api.md, "Review of the emulator"):

- `documented` (the default): what the documentation says, and today's helpful answer
  where it says nothing (no status lag, multi-CA bundles accepted, ACL-only changes reload).
- `pessimistic`: every plausible unhelpful answer at once (the change shows late, then early,
  bundles refused, the other busy code, ACL changes restart, an 8 KB URL limit, CRLF PEMs
  read back normalised, SSL must be turned on alone before the client CA, and re-sending
  SSLEnabled=1 does not renew the cloud certificate). A client correct under both is correct
  under any mix of them.
- a file recorded on a real account (`rdsssl service-profile record` writes it): the format
  below, version 1. Missing optional keys take the documented answer; unknown keys are
  refused, so a typo cannot silently fall back to a default.

    {"format": 1, "name": "...", "region": "cn-hangzhou", "engine_version": "15.0",
     "recorded_at": "2026-12-04T10:00:00Z", "multi_ca_bundle": false,
     "acl_change_restarts": true, "busy_error": {"code": "InvalideStatus.Format",
     "http_status": 400}, "not_found_http_status": 400, "url_limit_bytes": 8192,
     "tls_max_version": "TLSv1.2", "status_lag_seconds": 3.0,
     "early_readback_seconds": 2.0, "restart_seconds": 180.0, "acl_lock_seconds": 60.0,
     "acl_without_ca": "prefer", "crlf_pem_readback": "normalized",
     "one_call_ssl_setup": false, "ssl_enable_renews": false,
     "sequences": {"ca_change": [...], "acl_change": [...]}}

`ssl_enable_renews` false is the pessimistic answer because it fails silently: the renewal
call is accepted, restarts the instance and ends `success`, with the old certificate still
served. A client that does not compare the certificate before and after reports a renewal
that never happened (an unexpected renewal, the other answer, keeps verify-full clients
working: same cloud CA, same name).

The two built-ins are written in the same format and parsed by the same code, so they
cannot drift from what a file can say. `region`, `engine_version`, `recorded_at` and
`sequences` are informational: kept and shown, never acted on.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rdsssl.emulator.errors import CATALOGUE
from rdsssl.emulator.faults import Switches, check_switch, error_code, http_status, seconds

__all__ = [
    "BUILTIN_PROFILES",
    "DOCUMENTED",
    "FORMAT",
    "PESSIMISTIC",
    "BusyError",
    "Profile",
    "load_profile",
    "parse_profile",
]

FORMAT = 1


@dataclass(frozen=True)
class BusyError:
    """What ModifyDBInstanceSSL answers while the instance is busy."""

    code: str
    http_status: int


@dataclass(frozen=True)
class Profile:
    """One answer to every unknown of the real service; `switches()` puts it into force."""

    name: str
    multi_ca_bundle: bool
    acl_change_restarts: bool
    busy_error: BusyError
    not_found_http_status: int
    url_limit_bytes: int | None
    tls_max_version: str | None
    status_lag_seconds: float
    early_readback_seconds: float
    acl_without_ca: str
    crlf_pem_readback: str
    one_call_ssl_setup: bool
    ssl_enable_renews: bool
    restart_seconds: float | None = None  # a CA/CRL change's length; None: the caller's
    acl_lock_seconds: float | None = None  # an ACL-only change's length; None: the caller's
    region: str | None = None
    engine_version: str | None = None
    recorded_at: str | None = None
    sequences: Mapping[str, Any] = field(default_factory=dict)

    def switches(self) -> Switches:
        """A fresh `Switches` with this profile's answers (the others at their defaults).

        A busy status equal to the code's catalogued one is left implicit (None), so that
        setting only `busy_code` later (control route) brings that code's own status along.
        """
        busy = self.busy_error
        catalogued = CATALOGUE.get(busy.code, (None, ""))[0]
        return Switches(
            multi_ca_bundle=self.multi_ca_bundle,
            restart_on_acl_change=self.acl_change_restarts,
            status_lag_seconds=self.status_lag_seconds,
            early_readback_seconds=self.early_readback_seconds,
            busy_code=busy.code,
            busy_http_status=None if busy.http_status == catalogued else busy.http_status,
            not_found_http_status=self.not_found_http_status,
            url_limit=self.url_limit_bytes,
            tls_max_version=self.tls_max_version,
            acl_without_ca=self.acl_without_ca,
            crlf_pem_readback=self.crlf_pem_readback,
            one_call_ssl_setup=self.one_call_ssl_setup,
            ssl_enable_renews=self.ssl_enable_renews,
        )

    def timings(
        self,
        restart_seconds: float | None,
        acl_lock_seconds: float | None,
        *,
        defaults: tuple[float, float],
    ) -> tuple[float, float]:
        """(restart, ACL lock) seconds: explicit values win, then this profile's, then
        `defaults`."""
        restart = restart_seconds if restart_seconds is not None else self.restart_seconds
        acl_lock = acl_lock_seconds if acl_lock_seconds is not None else self.acl_lock_seconds
        return (
            defaults[0] if restart is None else restart,
            defaults[1] if acl_lock is None else acl_lock,
        )

    def to_json(self) -> dict[str, Any]:
        """The profile in the file format (`parse_profile` reads it back equal)."""
        return {
            "format": FORMAT,
            "name": self.name,
            "region": self.region,
            "engine_version": self.engine_version,
            "recorded_at": self.recorded_at,
            "multi_ca_bundle": self.multi_ca_bundle,
            "acl_change_restarts": self.acl_change_restarts,
            "busy_error": {
                "code": self.busy_error.code,
                "http_status": self.busy_error.http_status,
            },
            "not_found_http_status": self.not_found_http_status,
            "url_limit_bytes": self.url_limit_bytes,
            "tls_max_version": self.tls_max_version,
            "status_lag_seconds": self.status_lag_seconds,
            "early_readback_seconds": self.early_readback_seconds,
            "restart_seconds": self.restart_seconds,
            "acl_lock_seconds": self.acl_lock_seconds,
            "acl_without_ca": self.acl_without_ca,
            "crlf_pem_readback": self.crlf_pem_readback,
            "one_call_ssl_setup": self.one_call_ssl_setup,
            "ssl_enable_renews": self.ssl_enable_renews,
            "sequences": {k: list(v) for k, v in self.sequences.items()},
        }


# -- parsing ---------------------------------------------------------------------------------

Check = Callable[[str, Any], Any]


def _switch(name: str) -> Check:
    """The check of switch `name`, reporting errors under the profile's key."""
    return lambda key, value: check_switch(name, value, label=key)


def _optional_seconds(key: str, value: Any) -> float | None:
    return None if value is None else seconds(key, value)


def _optional_text(key: str, value: Any) -> str | None:
    if value is not None and not isinstance(value, str):
        raise ValueError(f"{key}: expected a string or null, not {value!r}")
    return value


def _name(key: str, value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{key}: expected a non-empty string, not {value!r}")
    return value


def _busy_error(key: str, value: Any) -> BusyError:
    if not isinstance(value, Mapping):
        raise ValueError(f"{key}: expected an object {{code, http_status}}, not {value!r}")
    unknown = sorted(set(value) - {"code", "http_status"})
    if unknown:
        raise ValueError(f"{key}: unknown key {unknown[0]!r}; expected code and http_status")
    missing = sorted({"code", "http_status"} - set(value))
    if missing:
        raise ValueError(f"{key}: missing {missing[0]!r}")
    code = error_code(f"{key}.code", value["code"])
    return BusyError(code, http_status(f"{key}.http_status", value["http_status"]))


def _sequences(key: str, value: Any) -> dict[str, list[Any]]:
    if not isinstance(value, Mapping) or not all(
        isinstance(k, str) and isinstance(v, list) for k, v in value.items()
    ):
        raise ValueError(f'{key}: expected an object of lists, e.g. {{"ca_change": [...]}}')
    return {k: list(v) for k, v in value.items()}


# key -> check; the order is the order of the file format
_KEYS: dict[str, Check | None] = {
    "format": None,  # checked first, on its own
    "name": _name,
    "region": _optional_text,
    "engine_version": _optional_text,
    "recorded_at": _optional_text,
    "multi_ca_bundle": _switch("multi_ca_bundle"),
    "acl_change_restarts": _switch("restart_on_acl_change"),
    "busy_error": _busy_error,
    "not_found_http_status": _switch("not_found_http_status"),
    "url_limit_bytes": _switch("url_limit"),
    "tls_max_version": _switch("tls_max_version"),
    "status_lag_seconds": _switch("status_lag_seconds"),
    "early_readback_seconds": _switch("early_readback_seconds"),
    "restart_seconds": _optional_seconds,
    "acl_lock_seconds": _optional_seconds,
    "acl_without_ca": _switch("acl_without_ca"),
    "crlf_pem_readback": _switch("crlf_pem_readback"),
    "one_call_ssl_setup": _switch("one_call_ssl_setup"),
    "ssl_enable_renews": _switch("ssl_enable_renews"),
    "sequences": _sequences,
}

# The documented answers, in the file format: what every missing optional key means.
_DOCUMENTED_DOC: dict[str, Any] = {
    "format": FORMAT,
    "name": "documented",
    "multi_ca_bundle": True,
    "acl_change_restarts": False,
    "busy_error": {"code": "IncorrectDBInstanceState", "http_status": 403},
    "not_found_http_status": 400,
    "url_limit_bytes": None,
    "tls_max_version": "TLSv1.2",
    "status_lag_seconds": 0.0,
    "early_readback_seconds": 0.0,
    "acl_without_ca": "prefer",
    "crlf_pem_readback": "exact",
    "one_call_ssl_setup": True,  # Terraform's acceptance test sends it all in one call
    "ssl_enable_renews": True,  # Terraform's "Update" re-sends SSLEnabled=1 to renew
}
_PESSIMISTIC_DOC: dict[str, Any] = {
    **_DOCUMENTED_DOC,
    "name": "pessimistic",
    "multi_ca_bundle": False,
    "acl_change_restarts": True,
    "busy_error": {"code": "InvalideStatus.Format", "http_status": 400},
    "url_limit_bytes": 8192,  # the Tengine/nginx default request-line buffer
    "status_lag_seconds": 3.0,
    "early_readback_seconds": 2.0,
    "crlf_pem_readback": "normalized",
    "one_call_ssl_setup": False,
    "ssl_enable_renews": False,  # the silent failure (module docstring)
}


def parse_profile(doc: Any, *, default_name: str = "recorded") -> Profile:
    """A profile from its JSON document; ValueError naming the offending key."""
    if not isinstance(doc, Mapping):
        raise ValueError("a profile is a JSON object")
    unknown = [k for k in doc if k not in _KEYS]
    if unknown:
        raise ValueError(f"unknown key {unknown[0]!r} in the profile; known: {', '.join(_KEYS)}")
    if "format" not in doc:
        raise ValueError(f"format: missing; this emulator reads format {FORMAT}")
    if isinstance(doc["format"], bool) or doc["format"] != FORMAT:
        raise ValueError(f"format: {doc['format']!r} is not supported; expected {FORMAT}")
    merged = {**_DOCUMENTED_DOC, "name": default_name, **doc}
    values = {k: check(k, merged[k]) for k, check in _KEYS.items() if check and k in merged}
    return Profile(**values)


DOCUMENTED = parse_profile(_DOCUMENTED_DOC)
PESSIMISTIC = parse_profile(_PESSIMISTIC_DOC)
BUILTIN_PROFILES: dict[str, Profile] = {p.name: p for p in (DOCUMENTED, PESSIMISTIC)}


def load_profile(spec: str | Path | Profile) -> Profile:
    """A built-in by name, a profile file by path, or `spec` itself if already loaded.

    ValueError (never OSError) for a missing, unreadable or invalid file, naming it.
    """
    if isinstance(spec, Profile):
        return spec
    if isinstance(spec, str) and spec in BUILTIN_PROFILES:
        return BUILTIN_PROFILES[spec]
    path = Path(spec)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ValueError(
            f"profile {str(spec)!r}: no such file, and not a built-in profile "
            f"({', '.join(BUILTIN_PROFILES)})"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"profile {str(path)!r}: cannot read it: {exc}") from None
    try:
        doc = json.loads(text)
    except ValueError as exc:
        raise ValueError(f"profile {str(path)!r}: not JSON: {exc}") from None
    try:
        return parse_profile(doc, default_name=path.stem)
    except ValueError as exc:
        raise ValueError(f"profile {str(path)!r}: {exc}") from None
