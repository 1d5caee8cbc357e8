"""Certificate renewal for cron (``cert renew``): what is due, and a crash-safe swap.

Due: per user only the newest unrevoked certificate counts (the last one recorded for the CN),
so a renewal supersedes what it renewed and a re-run right after it finds nothing due. Window:
``before`` (``not_after - now <= D``) or ``at`` (elapsed fraction of the validity ``>= P``; a
row with no known start, from an openssl index.txt, counts as due). The old certificate stays
valid (clients switch at their own pace; revoking needs a CRL upload, i.e. a restart). One that
already ends with the CA is "blocked": re-issuing cannot extend it. Revoke to stop renewing.
One user cannot stop the others: a row whose CN is no valid user name (an old store's, from
before the rule), or whose ``OUT_ROOT/USER`` is a symlink or holds a link rdsssl did not make, is
"skipped" with the reason (the caller warns and exits non-zero), and everyone else is renewed.

Files: ``OUT_ROOT/USER/{root.crt,client.crt,client.key[,client.pk8|.p12]}`` are symlinks to
``current/<name>``; ``current`` is a symlink to a version directory (0700) named by serial and
marked by ``.renewal.json``. A version is written completely where nobody reads yet and goes
live with ONE ``rename(2)`` of ``current``: every name always resolves into one whole version,
so a crash can never pair a new certificate with an old key. The previous version is kept (a
manual rollback is ``ln -sfn SERIAL current``), older ones are pruned. Plain files (from
``cert issue --out``) are first copied into a version that becomes ``current``, then relinked
one by one: no step changes what any name reads.

Crash recovery: the new key is written to ``.pending/client.key`` BEFORE its certificate exists,
then the store signs a CSR for it (recording the certificate first, as always). Client keys never
enter the inventory. So ``finish_interrupted`` completes any killed run without a second
certificate: a ``.pending`` whose key matches a recorded, unrevoked certificate is finished and
published; one whose key matches none (killed before signing) is discarded; a version of the
newest certificate that ``current`` does not select yet is published. With a deploy hook,
``.renewal.json`` says ``"hook": "pending"`` until the hook succeeded: a hook that failed or
never ran (killed) runs again on the next run.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import stat
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from cryptography.x509.oid import NameOID

from rdsssl.errors import ConfigError, CryptoError, InputError, UsageError
from rdsssl.models import CertStatus, KeyType
from rdsssl.ops.hooks import Deployment
from rdsssl.pki import crypto
from rdsssl.store.castore import CaStore
from rdsssl.store.files import check_client_dir, client_file_names, write_client_files
from rdsssl.store.files import user_dir as _user_dir
from rdsssl.store.fsutil import atomic_write, fsync_dir, make_private_dirs
from rdsssl.store.records import CertRecord, IssuedCert

__all__ = [
    "CURRENT",
    "DEFAULT_BEFORE",
    "Renewal",
    "RenewalPlan",
    "RenewalWindow",
    "Skipped",
    "check_key_types",
    "check_user_dir",
    "finish_interrupted",
    "hook_pending",
    "mark_deployed",
    "plan_renewal",
    "renew_due",
    "tls12_skips",
    "user_dirs",
]

DEFAULT_BEFORE = timedelta(days=30)
CURRENT = "current"
_PENDING = ".pending"  # a version being built
_ADOPTING = ".adopting"  # a copy of plain files being made
_META = ".renewal.json"  # marks a directory as a version rdsssl made (pruning needs that)
_ALL_NAMES = ("root.crt", "client.crt", "client.key", "client.pk8", "client.p12")
_BASE_NAMES = ("root.crt", "client.crt", "client.key")


# --- what is due --------------------------------------------------------------------------------


@dataclass(frozen=True)
class RenewalWindow:
    """``before``: due when at most this long is left; ``at``: due when this fraction (0-1] of
    the validity has elapsed. Exactly one applies; neither means ``before=30 days``."""

    before: timedelta | None = None
    at: float | None = None

    def __post_init__(self) -> None:
        if self.before is not None and self.at is not None:
            raise UsageError("--before and --at contradict each other; give one")
        if self.at is not None and not 0 < self.at <= 1:
            raise ConfigError(f"--at {self.at:.0%}: give a percentage above 0 and at most 100")

    def contains(self, record: CertRecord, now: datetime) -> bool:
        """True when ``record`` is inside the window at ``now``."""
        if self.at is None:
            return record.not_after - now <= (self.before or DEFAULT_BEFORE)
        if record.not_before is None:
            return True
        total = (record.not_after - record.not_before).total_seconds()
        return total <= 0 or (now - record.not_before).total_seconds() >= self.at * total

    def check_days(self, days: int) -> None:
        """Refuse a validity that would leave new certificates due at once (renewed each run)."""
        before = self.before or (DEFAULT_BEFORE if self.at is None else None)
        if before is not None and timedelta(days=days) <= before:
            raise ConfigError(
                f"--days {days} is not longer than the --before window ({before.days}d): every "
                "new certificate would be due again at once; raise --days or shorten --before"
            )


@dataclass(frozen=True)
class Skipped:
    """A certificate inside the window that is not renewed, and why (says what to do)."""

    record: CertRecord
    problem: str

    def message(self) -> str:
        """One line naming the serial (the name escaped: it may hold control characters)."""
        return f"skipped certificate {self.record.serial_hex} ({self.record.cn!r}): {self.problem}"

    def to_json(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"serial": self.record.serial_hex, "cn": self.record.cn, "problem": self.problem}


@dataclass(frozen=True)
class RenewalPlan:
    """``due``: to re-issue now. ``blocked``: inside the window but already ending with the CA.
    ``skipped``: inside the window but unusable (bad user name, unsafe output directory)."""

    due: list[CertRecord]
    blocked: list[CertRecord]
    skipped: list[Skipped] = field(default_factory=list)


def _newest(rows: list[CertRecord]) -> dict[str, CertRecord]:
    """Each CN's newest unrevoked row (rows come oldest first, so the last one wins)."""
    newest: dict[str, CertRecord] = {}
    for row in rows:
        if row.status is not CertStatus.REVOKED:
            newest[row.cn] = row
    return newest


def plan_renewal(
    store: CaStore,
    *,
    now: datetime,
    before: timedelta | None = None,
    at: float | None = None,
    user: str | None = None,
    out_root: Path | None = None,
) -> RenewalPlan:
    """Which users need a new certificate: their newest unrevoked one is inside the window.
    With ``out_root``, a user whose ``out_root/USER`` is unsafe is skipped too."""
    window = RenewalWindow(before=before, at=at)
    newest = _newest(store.certificates(user=user))
    inside = sorted((r for r in newest.values() if window.contains(r, now)), key=lambda r: r.cn)
    skipped = [s for s in (_unusable(r, out_root) for r in inside) if s is not None]
    inside = [r for r in inside if r.serial not in {s.record.serial for s in skipped}]
    ca_end = store.ca_cert.not_valid_after_utc
    return RenewalPlan(
        due=[r for r in inside if r.not_after < ca_end],
        blocked=[r for r in inside if r.not_after >= ca_end],
        skipped=skipped,
    )


def _unusable(record: CertRecord, out_root: Path | None) -> Skipped | None:
    """Why ``record`` cannot be renewed (into ``out_root``), or None."""
    try:
        crypto.validate_role_name(record.cn)
    except CryptoError as exc:
        return Skipped(
            record,
            f"{exc}; revoke it to stop renewing it: rdsssl cert revoke --serial "
            f"{record.serial_hex}",
        )
    if out_root is not None:
        try:
            check_user_dir(_user_dir(out_root, record.cn))
        except InputError as exc:
            return Skipped(record, str(exc))
    return None


# --- results ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Renewal:
    """A new certificate put in place (``resumed``: finishing a run that was interrupted).
    ``files`` are the stable names in ``out_dir``; ``version_dir`` holds the bytes."""

    user: str
    old: CertRecord | None
    new: CertRecord
    truncated: bool
    out_dir: Path
    version_dir: Path
    files: tuple[Path, ...]
    resumed: bool = False
    old_serial: str | None = None


def user_dirs(store: CaStore, out_root: Path, *, user: str | None = None) -> dict[str, Path]:
    """``OUT_ROOT/<cn>`` for every CN in the store (CNs that name no directory, and directories
    ``check_user_dir`` refuses, are left out: nothing is finished or deployed through them)."""
    found: dict[str, Path] = {}
    for cn in sorted({r.cn for r in store.certificates(user=user)}):
        with contextlib.suppress(InputError):
            found[cn] = check_user_dir(_user_dir(out_root, cn))
    return found


def check_user_dir(out_dir: Path) -> Path:
    """``out_dir`` unless a link is in the way (``store.check_client_dir``): the directory must
    not be a symlink, and the only links in it are the ones renewal makes (``NAME`` ->
    ``current/NAME``, ``current`` -> a version directory beside it)."""

    def ours(name: str, target: str) -> bool:
        if name == CURRENT:
            plain = "/" not in target and target not in ("", ".", "..")
            return plain and (out_dir / target).is_dir() and not (out_dir / target).is_symlink()
        return target == f"{CURRENT}/{name}"

    check_client_dir(out_dir, (*_ALL_NAMES, CURRENT, _PENDING, _ADOPTING), allowed_link=ours)
    return out_dir


# --- renewing -----------------------------------------------------------------------------------


def renew_due(
    store: CaStore,
    plan: RenewalPlan,
    *,
    now: datetime,
    out_root: Path,
    days: int,
    key_type: KeyType | None = None,
    fmt: str = "pem",
    p12_passphrase: bytes | None = None,
    hook: bool = False,
    allow_tls13_only: bool = False,
) -> list[Renewal]:
    """Renew every certificate of ``plan.due`` into ``out_root/<user>/``, holding the store
    lock for the whole run. The store must be unlocked. ``hook``: mark each new version as
    waiting for its deploy hook. Run ``finish_interrupted`` first (it clears ``.pending``).
    A bad name, an unsafe directory or a key type that fails over TLS 1.2 (unless
    ``allow_tls13_only``) among them is refused before anything is issued."""
    for old in plan.due:
        crypto.validate_role_name(old.cn)
    if not allow_tls13_only:
        check_key_types(plan.due, key_type)
    targets = {old.cn: check_user_dir(_user_dir(out_root, old.cn)) for old in plan.due}
    done: list[Renewal] = []
    with store.locked():
        for old in plan.due:
            out_dir = targets[old.cn]
            chosen = key_type or _key_type_of(old)
            key = crypto.generate_key(chosen)  # slow for RSA: before anything is written
            _stage(out_dir, key, user=old.cn, old_serial=old.serial_hex, hook=hook)
            signed = store.sign_csr(
                _csr(key, old.cn),
                source=f"renewal of {old.cn}",
                user=old.cn,
                days=days,
                now=now,
                allow_tls13_only=allow_tls13_only,
            )
            issued = IssuedCert(signed.record, signed.cert, key, signed.truncated)
            renewal = _complete(store, out_dir, issued, fmt=fmt, p12=p12_passphrase)
            done.append(replace(renewal, old=old))
    return done


def tls12_skips(plan: RenewalPlan, key_type: KeyType | None = None) -> RenewalPlan:
    """`plan` with the users whose renewed key (theirs, or `key_type`) would fail over TLS 1.2
    (`crypto.tls12_key_problem`) moved to `skipped`: one such user must not stop everyone
    else's renewal in a cron run."""
    keep: list[CertRecord] = []
    skipped = list(plan.skipped)
    for row in plan.due:
        problem = crypto.tls12_key_problem(key_type or _key_type_of(row))
        if problem:
            skipped.append(Skipped(row, f"{problem}; renew it with --key-type ec-p256"))
        else:
            keep.append(row)
    return RenewalPlan(due=keep, blocked=plan.blocked, skipped=skipped)


def check_key_types(rows: list[CertRecord], key_type: KeyType | None = None) -> None:
    """CryptoError when a renewed key (theirs, or `key_type`) would fail over TLS 1.2."""
    skipped = tls12_skips(RenewalPlan(due=list(rows), blocked=[]), key_type).skipped
    if skipped:
        raise CryptoError("; ".join(s.message() for s in skipped))


def _key_type_of(record: CertRecord) -> KeyType:
    """The renewed certificate keeps its key type (EC P-256 when unknown)."""
    known = {k.value: k for k in KeyType}
    return known.get(record.key_type, KeyType.EC_P256)


def _csr(key: crypto.PrivateKey, user: str) -> bytes:
    """A CSR for ``key``: the store signs it like any CSR, and the key never leaves disk."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, user)])
    csr = x509.CertificateSigningRequestBuilder().subject_name(name)
    return csr.sign(key, crypto.hash_for(key)).public_bytes(Encoding.PEM)


def _stage(
    out_dir: Path, key: crypto.PrivateKey, *, user: str, old_serial: str, hook: bool
) -> None:
    """``.pending`` with the new key and the renewal's record, before anything is signed."""
    make_private_dirs(out_dir)
    pending = out_dir / _PENDING
    try:
        os.mkdir(pending, 0o700)
    except FileExistsError:
        raise InputError(
            f"{pending} is left over from an interrupted renewal; run rdsssl cert renew again "
            "(it finishes or discards it first)"
        ) from None
    meta = {"user": user, "serial": None, "old_serial": old_serial, "hook": "none"}
    if hook:
        meta["hook"] = "pending"
    _write_meta(pending, meta)
    atomic_write(pending / "client.key", crypto.key_pem(key), mode=0o600)


def _complete(
    store: CaStore, out_dir: Path, issued: IssuedCert, *, fmt: str, p12: bytes | None
) -> Renewal:
    """Write the remaining files into ``.pending``, rename it to its serial, publish it."""
    pending = out_dir / _PENDING
    write_client_files(pending, issued, store.ca_cert, fmt=fmt, overwrite=True, p12_passphrase=p12)
    meta = {**(_read_meta(pending) or {}), "user": issued.record.cn}
    _write_meta(pending, {**meta, "serial": issued.record.serial_hex})
    version = _free_name(out_dir, issued.record.serial_hex)
    os.rename(pending, out_dir / version)
    fsync_dir(out_dir)
    _publish(out_dir, version)
    return _result(store, issued.record, out_dir / version, client_file_names(fmt), meta)


def _result(
    store: CaStore,
    record: CertRecord,
    version_dir: Path,
    names: tuple[str, ...],
    meta: dict[str, Any],
    *,
    resumed: bool = False,
) -> Renewal:
    out_dir = version_dir.parent
    return Renewal(
        user=record.cn,
        old=None,
        new=record,
        truncated=record.not_after >= store.ca_cert.not_valid_after_utc,
        out_dir=out_dir,
        version_dir=version_dir,
        files=tuple(out_dir / n for n in names),
        resumed=resumed,
        old_serial=meta.get("old_serial"),
    )


# --- finishing what a killed run started --------------------------------------------------------


def finish_interrupted(
    store: CaStore,
    *,
    out_root: Path,
    user: str | None = None,
    fmt: str = "pem",
    p12_passphrase: bytes | None = None,
    dry_run: bool = False,
) -> list[Renewal]:
    """Complete renewals a killed run left half done (see the module docstring); under
    ``dry_run`` only report them. Needs the store lock, not the CA key."""
    done: list[Renewal] = []
    rows = store.certificates(user=user)
    newest = _newest(rows)
    with store.locked() if not dry_run else contextlib.nullcontext():
        for cn, out_dir in user_dirs(store, out_root, user=user).items():
            if not out_dir.is_dir():
                continue
            mine = [r for r in rows if r.cn == cn]
            found = _finish_pending(store, out_dir, mine, fmt, p12_passphrase, dry_run)
            if found is None and cn in newest:
                found = _finish_unpublished(store, out_dir, newest[cn], fmt, dry_run)
            if found is not None:
                done.append(found)
    return done


def _finish_pending(
    store: CaStore,
    out_dir: Path,
    rows: list[CertRecord],
    fmt: str,
    p12: bytes | None,
    dry_run: bool,
) -> Renewal | None:
    """``.pending`` of a killed run: finish it if its key was certified, else discard it."""
    pending = out_dir / _PENDING
    if not pending.is_dir():
        return None
    key = _load_key(pending / "client.key")
    record = _record_for_key(rows, key) if key is not None else None
    if key is None or record is None or record.status is CertStatus.REVOKED:
        if not dry_run:  # never signed (or revoked since): nothing can use this key
            shutil.rmtree(pending)
            fsync_dir(out_dir)
        return None
    if dry_run:
        version = out_dir / record.serial_hex
        meta = _read_meta(pending) or {}
        return _result(store, record, version, client_file_names(fmt), meta, resumed=True)
    assert record.cert_der is not None
    cert = x509.load_der_x509_certificate(record.cert_der)
    truncated = record.not_after >= store.ca_cert.not_valid_after_utc
    renewal = _complete(store, out_dir, IssuedCert(record, cert, key, truncated), fmt=fmt, p12=p12)
    return replace(renewal, resumed=True)


def _load_key(path: Path) -> crypto.PrivateKey | None:
    try:
        return crypto.load_private_key(path.read_bytes(), source=str(path), passphrase=None)
    except (OSError, CryptoError):
        return None


def _spki(key: Any) -> bytes:
    data: bytes = key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    return data


def _record_for_key(rows: list[CertRecord], key: crypto.PrivateKey) -> CertRecord | None:
    """The recorded certificate for ``key`` (compared by public key), newest first."""
    wanted = _spki(key.public_key())
    for row in reversed(rows):
        if row.cert_der is not None:
            cert = x509.load_der_x509_certificate(row.cert_der)
            if _spki(cert.public_key()) == wanted:
                return row
    return None


def _finish_unpublished(
    store: CaStore, out_dir: Path, newest: CertRecord, fmt: str, dry_run: bool
) -> Renewal | None:
    """The newest certificate's version exists but is not (fully) live: publish it."""
    versions = [
        d for d in _versions(out_dir) if (_read_meta(d) or {}).get("serial") == newest.serial_hex
        and all((d / n).is_file() for n in _BASE_NAMES)
    ]  # fmt: skip
    if not versions:
        return None
    version = versions[-1]
    if _current(out_dir) == version.name and all(_is_linked(out_dir, n) for n in _BASE_NAMES):
        return None
    if not dry_run:
        _publish(out_dir, version.name)
    names = tuple(n for n in client_file_names(fmt) if (version / n).is_file())
    return _result(store, newest, version, names, _read_meta(version) or {}, resumed=True)


# --- deploy hooks' bookkeeping ------------------------------------------------------------------


def hook_pending(dirs: dict[str, Path]) -> list[Deployment]:
    """Live versions (of the given user directories) whose deploy hook has not succeeded."""
    found: list[Deployment] = []
    for cn, out_dir in dirs.items():
        name = _current(out_dir)
        if name is None:
            continue
        meta = _read_meta(out_dir / name) or {}
        if meta.get("hook") == "pending" and meta.get("user") == cn:
            found.append(
                Deployment(cn, str(meta.get("serial") or ""), meta.get("old_serial"), out_dir,
                           out_dir / name)
            )  # fmt: skip
    return found


def mark_deployed(deployment: Deployment) -> None:
    """Record that the hook succeeded for this version (it will not run again)."""
    meta = _read_meta(deployment.version_dir) or {}
    _write_meta(deployment.version_dir, {**meta, "hook": "done"})


# --- the directory layout -------------------------------------------------------------------------


def _read_meta(version_dir: Path) -> dict[str, Any] | None:
    try:
        data = json.loads((version_dir / _META).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _write_meta(version_dir: Path, meta: dict[str, Any]) -> None:
    atomic_write(version_dir / _META, json.dumps(meta, sort_keys=True).encode(), mode=0o600)


def _current(out_dir: Path) -> str | None:
    """The version ``current`` selects, or None."""
    try:
        return os.readlink(out_dir / CURRENT)
    except OSError:
        return None


def _is_linked(out_dir: Path, name: str) -> bool:
    """``out_dir/name`` is the symlink ``current/name``."""
    try:
        return os.readlink(out_dir / name) == f"{CURRENT}/{name}"
    except OSError:
        return False


def _versions(out_dir: Path) -> list[Path]:
    """Directories rdsssl made (they hold .renewal.json), oldest first."""
    found = [
        d for d in out_dir.iterdir()
        if not d.name.startswith(".") and d.is_dir() and not d.is_symlink()
        and (d / _META).is_file()
    ]  # fmt: skip
    return sorted(found, key=lambda d: (d / _META).stat().st_mtime)


def _free_name(out_dir: Path, base: str) -> str:
    name = base
    while (out_dir / name).exists() or (out_dir / name).is_symlink():
        name = f"{base}.{secrets.token_hex(3)}"
    return name


def _point(path: Path, target: str) -> None:
    """Make ``path`` a symlink to ``target`` in one ``rename(2)`` (readers never miss it)."""
    with contextlib.suppress(OSError):
        if os.readlink(path) == target:
            return
    tmp = path.parent / f".{path.name}.tmp-{secrets.token_hex(4)}"
    os.symlink(target, tmp)
    try:
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _adopt(out_dir: Path) -> None:
    """Move names that are not linked into ``current`` (plain files from ``cert issue``) under
    a version of their own, without changing what any name reads at any moment."""
    stray = [n for n in _ALL_NAMES if (out_dir / n).exists() and not _is_linked(out_dir, n)]
    if not stray:
        return
    staging = out_dir / _ADOPTING
    shutil.rmtree(staging, ignore_errors=True)  # a copy a killed run never finished
    os.mkdir(staging, 0o700)
    for name in _ALL_NAMES:
        source = out_dir / name
        if source.exists():  # what the name reads now, through any link
            mode = stat.S_IMODE(source.stat().st_mode)
            atomic_write(staging / name, source.read_bytes(), mode=mode)
    serial = _serial_of(staging / "client.crt")
    _write_meta(staging, {"user": out_dir.name, "serial": serial, "hook": "none", "adopted": True})
    version = _free_name(out_dir, serial or "adopted")
    os.rename(staging, out_dir / version)
    fsync_dir(out_dir)
    _point(out_dir / CURRENT, version)
    for name in stray:
        if (out_dir / version / name).exists():
            _point(out_dir / name, f"{CURRENT}/{name}")
    fsync_dir(out_dir)


def _serial_of(path: Path) -> str | None:
    try:
        certs = crypto.load_certificates(path.read_bytes(), source=str(path), what="client.crt")
    except (OSError, InputError):
        return None
    return format(certs[0].serial_number, "x") if certs else None


def _publish(out_dir: Path, version: str) -> None:
    """Make ``version`` live: adopt strays, switch ``current``, link the names it has (a name
    it lacks, e.g. client.pk8 after a switch to --format pem, is unlinked), prune."""
    _adopt(out_dir)
    previous = _current(out_dir)
    _point(out_dir / CURRENT, version)
    for name in _ALL_NAMES:
        if (out_dir / version / name).exists():
            _point(out_dir / name, f"{CURRENT}/{name}")
        elif _is_linked(out_dir, name):  # a format this version does not have
            os.unlink(out_dir / name)
    fsync_dir(out_dir)
    keep = {version, previous}
    for old in _versions(out_dir):
        if old.name not in keep:
            shutil.rmtree(old)
    fsync_dir(out_dir)
