"""The command's logging (rdsssl.cli.logs): -v/-q levels on a handler of the `rdsssl` logger only,
removed after the run; ISO 8601 timestamps when stderr is not a terminal; the SDK's loggers at
WARNING unless -vv, their debug dumps redacted; fleet progress lines naming their instance."""

from __future__ import annotations

import logging
import re
from datetime import datetime, timezone
from pathlib import Path

import pytest

from rdsssl.cli import App
from rdsssl.cli.fleet_opts import progress_for
from rdsssl.cli.logs import SDK_LOGGERS, redact
from rdsssl.rds.waiters import Progress
from tests.cli.helpers import invoke

STAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d ")


def _app(*, tty: bool) -> App:
    return App(interactive=False, stderr_tty=tty, clock=lambda: datetime.now(timezone.utc))


def test_messages_off_a_terminal_start_with_an_iso_timestamp_the_error_line_does_not(
    ca_dir: Path, tmp_path: Path
) -> None:
    built = invoke("crl", "build", "--ca-dir", ca_dir, "--out", tmp_path / "crl.pem")
    lines = [line for line in built.stderr.splitlines() if line.strip()]
    assert built.exit_code == 0 and lines
    assert all(STAMP.match(line) for line in lines), lines
    stamp = STAMP.match(lines[0])
    assert stamp is not None
    datetime.fromisoformat(stamp.group(0).strip())  # a real ISO 8601 instant
    failed = invoke("crl", "build", "--ca-dir", tmp_path / "nowhere", "--out", tmp_path / "x")
    assert failed.stderr.startswith("rdsssl: error: ")


def test_on_a_terminal_messages_stay_as_they_are(ca_dir: Path, tmp_path: Path) -> None:
    built = invoke(
        "crl", "build", "--ca-dir", ca_dir, "--out", tmp_path / "crl.pem", app=_app(tty=True)
    )
    lines = [line for line in built.stderr.splitlines() if line.strip()]
    assert built.exit_code == 0 and lines
    assert not any(STAMP.match(line) for line in lines), lines


def test_v_shows_the_library_log_the_default_and_q_do_not(ca_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "crl.pem"
    quiet = invoke("crl", "build", "--ca-dir", ca_dir, "--out", out)
    assert "signed CRL number" not in quiet.stderr
    loud = invoke("-v", "crl", "build", "--ca-dir", ca_dir, "--out", out)
    assert loud.exit_code == 0
    assert "rdsssl: INFO: rdsssl.store.crl_signing: signed CRL number 2: 0 entries" in loud.stderr
    silent = invoke("-q", "crl", "build", "--ca-dir", ca_dir, "--out", out)
    assert silent.exit_code == 0 and silent.stderr == ""


def test_the_handler_and_levels_are_put_back_after_the_run(ca_dir: Path) -> None:
    rdsssl_logger = logging.getLogger("rdsssl")
    handlers = list(rdsssl_logger.handlers)
    levels = {n: logging.getLogger(n).level for n in ("rdsssl", *SDK_LOGGERS)}
    seen: dict[str, int] = {}

    def during() -> datetime:  # the command reads the clock while its handler is installed
        seen.update({n: logging.getLogger(n).getEffectiveLevel() for n in ("rdsssl", *SDK_LOGGERS)})
        seen["handlers"] = len(rdsssl_logger.handlers)
        return datetime.now(timezone.utc)

    app = App(interactive=False, clock=during)
    assert invoke("-vv", "ca", "show", "--ca-dir", ca_dir, app=app).exit_code == 0
    assert seen["rdsssl"] == logging.DEBUG and seen["darabonba-core"] == logging.DEBUG
    assert seen["handlers"] == len(handlers) + 1
    app = App(interactive=False, clock=during)
    assert invoke("ca", "show", "--ca-dir", ca_dir, app=app).exit_code == 0
    assert seen["rdsssl"] == logging.WARNING
    assert all(seen[n] == logging.WARNING for n in SDK_LOGGERS)
    assert rdsssl_logger.handlers == handlers
    assert {n: logging.getLogger(n).level for n in levels} == levels


def test_sdk_debug_dumps_lose_their_secrets() -> None:
    dump = (
        "\n> GET /?AccessKeyId=AKID&Action=CreateAccount&AccountPassword=Pa%24%24w0rd-9"
        "&SecurityToken=STS.abc%2Bdef&Signature=q0N%3D&DBInstanceId=pgm-1 HTTP/1.1"
        "\n> x-acs-security-token : STS.abc+def"
        "\n> authorization : acs AKID:c2lnbmF0dXJl"
        "\n> host : rds.aliyuncs.com"
    )
    cleaned = redact(dump)
    for secret in ("Pa%24%24w0rd-9", "STS.abc", "q0N%3D", "c2lnbmF0dXJl"):
        assert secret not in cleaned, cleaned
    assert "AccountPassword=***" in cleaned and "SecurityToken=***" in cleaned
    assert "> x-acs-security-token : ***" in cleaned
    assert "Action=CreateAccount" in cleaned and "DBInstanceId=pgm-1" in cleaned
    assert "> host : rds.aliyuncs.com" in cleaned


def test_an_sdk_record_is_redacted_before_its_handlers_see_it(
    ca_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    invoke("ca", "show", "--ca-dir", ca_dir)  # the filter stays on the SDK's loggers
    caplog.set_level(logging.DEBUG, logger="darabonba-core")
    logging.getLogger("darabonba-core").debug("\n> GET /?Action=X&SecurityToken=%s", "STS.xyz")
    assert "STS.xyz" not in caplog.text and "SecurityToken=***" in caplog.text


@pytest.mark.parametrize("many", [False, True])
def test_fleet_progress_lines_name_their_instance(
    many: bool, capsys: pytest.CaptureFixture[str]
) -> None:
    app = _app(tty=False)
    app.verbosity = 1
    progress_for(app, "pgm-fleet-7", many=many)(Progress("ssl_applied", "Running", 3.0, 2.0))
    err = capsys.readouterr().err
    assert STAMP.match(err) and "pgm-fleet-7: ssl_applied: Running" in err
