"""A certificate to prove access with (the lockout guard's proof, the probe after a change, a
revoked certificate that must be refused), and the one way such a probe runs.

The password is named by an environment variable and read only when the probe runs, so it never
sits in an options object, a log line or a child process's arguments.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path

from rdsssl.errors import ConfigError, UsageError
from rdsssl.ops.probe import ProbeResult, probe_instance
from rdsssl.rds.protocol import RdsApi

__all__ = ["ProbeOptions", "run_probe"]


@dataclass(frozen=True)
class ProbeOptions:
    """A certificate to prove access with (lockout guard, post-change verification)."""

    user: str | None
    cert: Path | None
    key: Path | None
    root_cert: Path | None
    password_env: str | None

    @property
    def given(self) -> bool:
        """True when a probe user was named."""
        return self.user is not None

    def password(self) -> str | None:
        """The password from the named environment variable (never from a flag)."""
        if not self.password_env:
            return None
        value = os.environ.get(self.password_env)
        if value is None:
            raise ConfigError(f"environment variable {self.password_env} is not set")
        return value

    def without_password(self) -> ProbeOptions:
        """The same certificate, no password (what a certificate-only login under ACL `cert`
        must manage)."""
        return replace(self, password_env=None)


def run_probe(
    api: RdsApi, instance_id: str, opts: ProbeOptions, *, sslmode: str = "verify-full"
) -> ProbeResult:
    """Probe `instance_id` as `opts.user` with its certificate (`probe.probe_instance`)."""
    if opts.user is None:
        raise UsageError("a probe needs a user (--probe-user / --user)")
    return probe_instance(
        api,
        instance_id,
        user=opts.user,
        cert=opts.cert,
        key=opts.key,
        root_cert=opts.root_cert,
        password=opts.password(),
        sslmode=sslmode,
    )
