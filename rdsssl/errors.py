"""The rdsssl error tree and the exit codes it maps to.

One root (`RdsSslError`), a flat tree under it, and one `ExitCode` enum: every error knows the exit
code a cron job will see, so the CLI maps exceptions to exit codes in exactly one place
(`RdsSslError.exit_code`). `str(error)` is always a sentence a user can act on, and never contains
a secret (private keys, access key secrets, passphrases).
"""

from __future__ import annotations

import enum
from typing import Any


class ExitCode(enum.IntEnum):
    """Process exit codes; documented in the README and relied on by cron wrappers."""

    OK = 0  # success, or nothing to do
    UNEXPECTED = 1  # a bug or an unclassified failure
    USAGE = 2  # bad flags (click's own code)
    BAD_INPUT = 3  # bad local input: PEM, config, CA store
    API_ERROR = 4  # the RDS API refused the call or could not be reached
    WAIT_FAILED = 5  # the wait timed out, or the change failed on the instance
    VERIFICATION_FAILED = 6  # a probe or a read-back did not show what was expected
    LOCK_HELD = 7  # another run holds the lock
    NEEDS_ACTION = 10  # `rdsssl check` found something that needs action
    INTERRUPTED = 130  # SIGINT (Ctrl-C), or "no" at a confirmation prompt
    TERMINATED = 143  # SIGTERM (128 + 15), handled like Ctrl-C


class RdsSslError(Exception):
    """Root of every error rdsssl raises on purpose."""

    exit_code: ExitCode = ExitCode.UNEXPECTED


class UsageError(RdsSslError):
    """A command was called with options that contradict each other."""

    exit_code = ExitCode.USAGE


class InputError(RdsSslError):
    """Bad local input: the user must fix a file, a flag value or the CA store."""

    exit_code = ExitCode.BAD_INPUT


class ConfigError(InputError):
    """A desired-state file, a flag value or missing credentials."""


class CryptoError(InputError):
    """Unparsable PEM, a key that does not match, an expired CA, a bad CSR signature, ..."""


class StoreError(InputError):
    """The CA store is missing, unreadable, foreign-owned, corrupt, or the passphrase is wrong."""


class NotFoundError(InputError):
    """A serial, a user or a file that the command was asked to act on does not exist."""


class LockHeld(StoreError):
    """Another run holds the lock (of the CA store or of an instance)."""

    exit_code = ExitCode.LOCK_HELD


class ApiError(RdsSslError):
    """The RDS OpenAPI answered with an error, keeping the evidence a support ticket needs."""

    exit_code = ExitCode.API_ERROR

    def __init__(
        self,
        message: str,
        *,
        action: str = "",
        code: str = "",
        request_id: str = "",
        http_status: int | None = None,
        retryable: bool = False,
    ) -> None:
        self.action = action
        self.code = code
        self.raw_message = message
        self.request_id = request_id
        self.http_status = http_status
        self.retryable = retryable
        parts = [f"{action}: " if action else "", f"{code}: " if code else "", message]
        if request_id:
            parts.append(f" (RequestId {request_id})")
        super().__init__("".join(parts))


class ApiUnreachable(ApiError):
    """No usable answer: connection refused, DNS, TLS, timeout, or an HTML error page."""


class InstanceNotFound(ApiError):
    """InvalidDBInstanceId.NotFound: the id or the region is wrong."""


class InstanceBusy(ApiError):
    """The instance refuses changes for now (locked, modifying, not Running); retryable."""


class Throttled(ApiError):
    """Throttling.*: too many requests; retryable with backoff."""


class WaiterError(RdsSslError):
    """Waiting for an instance ended without the expected state."""

    exit_code = ExitCode.WAIT_FAILED

    def __init__(
        self,
        message: str,
        *,
        waiter: str = "",
        last_observation: Any = None,
        elapsed: float = 0.0,
    ) -> None:
        self.waiter = waiter
        self.last_observation = last_observation
        self.elapsed = elapsed
        super().__init__(message)


class WaiterTimeout(WaiterError):
    """The instance did not reach the expected state before the timeout."""


class ChangeFailed(WaiterError):
    """The instance reported the change as failed (LastModifyStatus=failed) or went away."""


class VerificationError(RdsSslError):
    """A probe or a read-back did not show what was expected."""

    exit_code = ExitCode.VERIFICATION_FAILED


class LockoutGuard(VerificationError):
    """A change that could lock users out was refused: no successful probe, and no --force."""


class PlanChanged(VerificationError):
    """The instance changed between the plan that was shown and the call: nothing was sent."""


class StalePlan(PlanChanged):
    """A saved plan file no longer matches the instance (or the CA store): nothing was sent."""


class HookFailed(RdsSslError):
    """A renewal hook (pre, deploy or post) exited non-zero; the renewals themselves stay done
    (exit 1, as certbot)."""

    exit_code = ExitCode.UNEXPECTED
