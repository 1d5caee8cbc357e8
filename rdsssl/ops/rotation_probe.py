"""The probes of a rotation: ``verify`` (a login with a NEW certificate must succeed on every
instance, exit 6 if not) and the lockout guard's proofs for the steps that drop a CA (retire
probes with a new certificate; rollback only with one the operator names)."""

from __future__ import annotations

from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature

from rdsssl.errors import InputError, UsageError, VerificationError
from rdsssl.ops import guard
from rdsssl.ops.rotation_context import Context, Event
from rdsssl.ops.rotation_state import Step, StepRecord
from rdsssl.pki import crypto
from rdsssl.store.files import user_dir

__all__ = ["given_cert_guard", "new_cert_guard", "verify"]


def _issued_by(path: Path, ca: x509.Certificate) -> None:
    """InputError unless the certificate in ``path`` was signed by ``ca``."""
    try:
        cert = crypto.load_certificates(path.read_bytes(), source=str(path), what="a cert")[0]
        cert.verify_directly_issued_by(ca)
    except (OSError, ValueError, TypeError, InvalidSignature):
        raise InputError(
            f"{path} is not a certificate from the new CA ({crypto.name_of(ca)}): verify must "
            "prove that a NEW certificate works"
        ) from None


def _probe_files(ctx: Context) -> tuple[str, Path, Path]:
    """The user and the NEW certificate to probe with."""
    opts = ctx.options
    if opts.probe_user is None:
        raise UsageError(
            "verify needs a user to probe as: --probe-user USER (a user reissued in this "
            "rotation; add --probe-password-env VAR when the ACL wants a password)"
        )
    if (opts.probe_cert is None) != (opts.probe_key is None):
        raise UsageError("--probe-cert and --probe-key go together")
    if opts.probe_cert is not None and opts.probe_key is not None:
        _issued_by(opts.probe_cert, ctx.new.ca_cert)
        return opts.probe_user, opts.probe_cert, opts.probe_key
    record = ctx.state.users.get(opts.probe_user)
    if record is None or not record.done:
        done = sorted(u for u, r in ctx.state.users.items() if r.done)
        raise UsageError(
            f"no certificate was reissued for {opts.probe_user!r} in this rotation (reissued:"
            f" {', '.join(done) or 'none yet'}); probe as one of them, or pass "
            "--probe-cert/--probe-key with a certificate from the new CA"
        )
    folder = user_dir(Path(ctx.state.out_root), opts.probe_user)
    return opts.probe_user, folder / "client.crt", folder / "client.key"


def new_cert_guard(ctx: Context, iid: str) -> guard.Proof | None:
    """Retire drops the old CA: the lockout guard probes with a new certificate."""
    if ctx.options.probe_user is None:
        return None  # apply refuses unless --force: dropping a CA needs a proof
    user, cert, key = _probe_files(ctx)
    return guard.Proof(user, cert, key, lambda: ctx.probe(iid, user, cert, key))


def given_cert_guard(ctx: Context, iid: str) -> guard.Proof | None:
    """Rollback drops the new CA: only a certificate the operator names proves anything."""
    opts = ctx.options
    if opts.probe_user is None or opts.probe_cert is None or opts.probe_key is None:
        return None
    user, cert, key = opts.probe_user, opts.probe_cert, opts.probe_key
    return guard.Proof(user, cert, key, lambda: ctx.probe(iid, user, cert, key))


def verify(ctx: Context) -> bool:
    """Probe every instance with a new certificate; VerificationError naming the failures."""
    if ctx.options.dry_run:
        who = ctx.options.probe_user or "(needs --probe-user)"
        for iid in ctx.state.instances:
            ctx.emit(Event(Step.VERIFY, "would-probe", instance=iid, user=who))
        return True
    user, cert, key = _probe_files(ctx)
    failures: list[str] = []
    for iid in ctx.state.instances:
        if ctx.state.instance_done(iid, Step.VERIFY):
            ctx.emit(Event(Step.VERIFY, "unchanged", instance=iid, detail="verified before"))
            continue
        result = ctx.probe(iid, user, cert, key)
        outcome = "ok" if result.ok else "failed"
        detail = f"{result.outcome.value}: {result.detail}"
        ctx.state.mark(iid, Step.VERIFY, StepRecord(ctx.at(), outcome, detail=detail))
        ctx.save()
        ctx.emit(Event(Step.VERIFY, outcome, instance=iid, user=user, detail=detail))
        if not result.ok:
            hint = f"; {result.hint}" if result.hint else ""
            failures.append(f"{iid}: {detail}{hint}")
    if failures:
        raise VerificationError(
            f"the probe as {user} with its new certificate failed on {len(failures)} "
            f"instance(s): {' | '.join(failures)}. Nothing was retired and old certificates "
            "keep working; fix this and run rotate ca again"
        )
    return True
