"""The CLI's errors help: its own words (flags, not JSON fields), the run-id message for every
malformed run id, a closed pipe and Ctrl-C as Unix tools take them, read-only commands that need
only the ledger's settings, and a connection failure that names the endpoint to check."""

from __future__ import annotations

import io
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from orchestrator.core.errors import TransientError
from orchestrator.core.keys import run_time_of
from orchestrator.faces import cli
from tests.unit.test_ops_entry_points import FakeWiring, client, env, ops, run_cli
from tests.unit.test_rerun import KEYS, RUN_ID, Ops
from tests.unit.test_service import SLOT

__all__ = ["env", "ops"]  # fixtures, used by name

ROOT = Path(__file__).resolve().parents[2]
HTTP_WORDS = ('"mode"', '"failed"', '"tables"', '"force"', "as_of", "run_id", "request_id")


# --------------------------------------------------------------------------- the CLI's words


@pytest.mark.parametrize(
    ("argv", "code", "expected"),
    [
        (["rerun"], 2, "name a RUN_ID to re-transfer its tables, or use --export for a new export"),
        ([RUN_ID], 2, f"name the tables of run {RUN_ID} to re-transfer (--table TABLE) or use "),
        ([RUN_ID, "--failed", "--table", KEYS[1]], 2, "use either --table or --failed, not both"),
        (["--export", "--failed"], 2, "--failed needs the RUN_ID whose failed tables to rerun"),
        (["--as-of", "2026-13-01"], 2, "--as-of '2026-13-01' is not a date YYYY-MM-DD"),
        (["--as-of", "2999-01-01", "--table", KEYS[0]], 2, "--as-of 2999-01-01 is in the future"),
        ([RUN_ID, "--failed", "--request-id", "a b"], 2, "--request-id must be 1-128 characters"),
    ],
)
def test_rerun_errors_name_the_flags_not_the_json_fields(
    env: None,
    ops: Ops,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    code: int,
    expected: str,
) -> None:
    argv = argv if argv[:1] == ["rerun"] else ["rerun", *argv]
    assert run_cli(ops, *argv) == code
    err = capsys.readouterr().err
    assert expected in err, err
    assert not any(word in err for word in HTTP_WORDS), err


def test_refusals_name_the_flags_that_help(env: None, capsys: pytest.CaptureFixture[str]) -> None:
    ops = Ops()
    ops.w.service.start_export(SLOT)
    ops.w.complete(KEYS[:2], {KEYS[2]: "a column name contains a space"})
    ops.w.service.poll()
    ops.w.clock.advance(minutes=5)
    ops.w.service.poll()
    for key in KEYS[:2]:
        ops.finish(key, "SUCCEEDED")
    assert run_cli(ops, "rerun", RUN_ID, "--table", KEYS[2]) == 4
    err = capsys.readouterr().err
    assert "re-export it instead (--export)" in err, err
    assert not any(word in err for word in HTTP_WORDS), err


def test_a_run_without_an_export_names_the_command_to_re_export_it() -> None:
    text = 're-export instead: "mode": "export", "run_id": "202611271500"'
    assert cli.cli_words(text) == (
        "re-export instead: `python -m orchestrator rerun 202611271500 --export`"
    )
    text = '(send "force": true if that is what you want)'
    assert cli.cli_words(text) == "(use --force if that is what you want)"


def test_over_http_the_same_errors_keep_the_field_names(ops: Ops) -> None:
    response = client("rerun").post("/", json={"run_id": RUN_ID})
    assert response.status_code == 400
    assert '"tables": [...]' in response.get_json()["message"]
    assert '"failed": true' in response.get_json()["message"]


def test_cli_words_leaves_other_text_alone() -> None:
    text = "unknown table(s) for run 202611271500: shop.nope (its tables: shop.failed_orders)"
    assert cli.cli_words(text) == text


# --------------------------------------------------------------------------- run ids


@pytest.mark.parametrize(
    "run_id", ["202613010000", "202611310000", "202611282460", "2026112800009", "x", "2026-11-28"]
)
def test_every_malformed_run_id_gets_the_run_id_message(run_id: str) -> None:
    with pytest.raises(ValueError, match="is not a run id") as caught:
        run_time_of(run_id)
    assert "unconverted" not in str(caught.value) and "does not match" not in str(caught.value)


@pytest.mark.parametrize("run_id", ["202613010000", "202611311209"])
def test_an_impossible_date_is_a_run_id_error_on_the_cli_and_over_http(
    env: None, ops: Ops, capsys: pytest.CaptureFixture[str], run_id: str
) -> None:
    expected = (
        f"'{run_id}' is not a run id (YYYYMMDDHHMM for a daily run, YYYYMMDDHHMMSS for a "
        "re-export; UTC)"
    )
    assert run_cli(ops, "status", run_id) == 2
    assert capsys.readouterr().err == f"rds2bq: error: {expected}\n"
    assert run_cli(ops, "rerun", run_id, "--failed") == 2
    assert capsys.readouterr().err == f"rds2bq: error: {expected}\n"
    status = client("status").get(f"/?run_id={run_id}")
    assert status.status_code == 400 and status.get_json()["message"] == expected
    rerun = client("rerun").post("/", json={"run_id": run_id, "failed": True})
    assert rerun.status_code == 400 and rerun.get_json()["message"] == expected


# --------------------------------------------------------------------------- pipe, Ctrl-C


class ClosedPipe(io.StringIO):
    """stdout whose reader has gone (``| head -2`` once it has its two lines)."""

    def write(self, text: str) -> int:
        raise BrokenPipeError(32, "Broken pipe")


def test_a_closed_pipe_ends_quietly_with_sigpipes_code(
    env: None, ops: Ops, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(sys, "stdout", ClosedPipe())
    assert run_cli(ops, "status", RUN_ID, "--json") == 141
    assert capsys.readouterr().err == ""


PIPED_STATUS = """
import sys
from orchestrator.faces import cli
from tests.unit.test_ops_entry_points import FakeWiring
from tests.unit.test_rerun import Ops
from tests.unit.test_service import names
ops = Ops(names(1500)).handed_off()  # a reply far larger than a pipe's buffer
sys.exit(cli.main(["status", "202611271500", "--json"], build=lambda _s: FakeWiring(ops)))
"""


def test_status_json_into_head_ends_like_a_unix_tool() -> None:
    done = subprocess.run(
        ["bash", "-o", "pipefail", "-c", f'"{sys.executable}" -c "$0" | head -2', PIPED_STATUS],
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", "RDS2BQ_GCP_PROJECT": "acme"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.stdout == '{\n  "run_id": "202611271500",\n'
    assert done.stderr == "" and done.returncode == 141, done.stderr


def test_ctrl_c_in_watch_ends_the_progress_line_first(
    env: None, ops: Ops, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    ops.rerun(run_id=RUN_ID, failed=True)
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)

    def interrupted(_: float) -> None:
        raise KeyboardInterrupt

    code = cli.main(
        ["status", RUN_ID, "--watch"],
        build=lambda _s: FakeWiring(ops),  # type: ignore[arg-type,return-value]
        sleep=interrupted,
    )
    captured = capsys.readouterr()
    assert code == 130
    assert captured.out.startswith("\r\033[K") and captured.out.endswith("\n"), captured.out
    assert captured.err == "rds2bq: interrupted\n"


# --------------------------------------------------------------------------- read-only settings


def test_status_needs_only_the_ledgers_settings(
    ops: Ops, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)  # no tables.txt here
    for name in list(cli.os.environ):
        if name.startswith("RDS2BQ_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("RDS2BQ_GCP_PROJECT", "acme")
    assert run_cli(ops, "status", RUN_ID) == 0, capsys.readouterr().err
    assert f"Run {RUN_ID}" in capsys.readouterr().out
    # A command that exports still asks for everything it needs, every key named.
    assert run_cli(ops, "rerun", "--export", "--table", KEYS[0]) == 2
    err = capsys.readouterr().err
    for key in ("RDS2BQ_KMS_KEY_ID", "RDS2BQ_EXPORT_ROLE_ARN", "RDS2BQ_S3_BUCKET"):
        assert key in err
    # A value that is given is still checked.
    monkeypatch.setenv("RDS2BQ_S3_BUCKET", "Not_A_Bucket")
    assert run_cli(ops, "status", RUN_ID) == 2
    assert "RDS2BQ_S3_BUCKET='Not_A_Bucket'" in capsys.readouterr().err


# --------------------------------------------------------------------------- unreachable


def test_an_unreachable_endpoint_is_named_with_the_setting_to_check(
    env: None, ops: Ops, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("FIRESTORE_EMULATOR_HOST", "127.0.0.1:8911")

    def refused(_limit: int) -> Any:
        try:
            raise ConnectionRefusedError(111, "Connection refused")
        except ConnectionRefusedError as exc:
            raise TransientError("Firestore query recent runs: UNAVAILABLE") from exc

    ops.w.ledger.recent_runs = refused  # type: ignore[method-assign]
    assert run_cli(ops, "status") == 3
    err = capsys.readouterr().err
    assert err == (
        "rds2bq: error (unreachable): cannot connect to Firestore at 127.0.0.1:8911 "
        "(FIRESTORE_EMULATOR_HOST): check that it is running and that the setting points at it "
        "(--debug shows the details)\n"
    )
    # Anything else transient still says to try again.
    ops.w.ledger.recent_runs = lambda _l: (_ for _ in ()).throw(  # type: ignore[method-assign]
        TransientError("Firestore query recent runs: still contended after 25 tries")
    )
    assert run_cli(ops, "status") == 3
    assert "(transient: try again)" in capsys.readouterr().err


def test_the_real_ledger_on_a_closed_port_names_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed again when the block ends: nobody listens
    monkeypatch.setenv("FIRESTORE_EMULATOR_HOST", f"127.0.0.1:{port}")
    monkeypatch.setenv("RDS2BQ_GCP_PROJECT", "acme")
    assert cli.main(["status"]) == 3
    err = capsys.readouterr().err
    assert err.startswith(
        f"rds2bq: error (unreachable): cannot connect to Firestore at 127.0.0.1:{port} "
        "(FIRESTORE_EMULATOR_HOST): check that it is running"
    ), err
