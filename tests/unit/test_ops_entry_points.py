"""rerun and status through functions-framework's test client, and the CLI in-process, over fakes.

The same cases run on the local stack in tests/integration/test_operations_stack.py; here the
point is the mapping: every refusal to its HTTP status and to its exit code, one line on stderr.
"""

from __future__ import annotations

import json
import sys
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from functions_framework import create_app

from orchestrator import wiring
from orchestrator.config import FIELDS
from orchestrator.faces import cli
from tests.unit.test_config import VALID
from tests.unit.test_rerun import KEYS, RUN_ID, Ops

MAIN = str(Path(__file__).resolve().parents[2] / "main.py")


class FakeWiring:
    def __init__(self, ops: Ops) -> None:
        self.settings = ops.w.settings
        self.service = ops.w.service
        self.reruns = ops.reruns
        from orchestrator.app.status import StatusReader

        self.status = StatusReader(ops.w.ledger, ops.w.clock)


@pytest.fixture
def ops() -> Iterator[Ops]:
    o = Ops().closed_partial()
    wiring.install(FakeWiring(o))  # type: ignore[arg-type]
    yield o
    wiring.reset()


def client(target: str) -> Any:
    return create_app(target, MAIN, "http").test_client()


# --------------------------------------------------------------------------- HTTP


def test_rerun_over_http_re_transfers_the_failed_tables(ops: Ops) -> None:
    response = client("rerun").post("/", json={"run_id": RUN_ID, "failed": True})
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert body["mode"] == "transfer" and body["state"] == "TRANSFERRING"
    assert [(t["table"], t["action"]) for t in body["tables"]] == [
        (KEYS[1], "started"),
        (KEYS[2], "started"),
    ]


@pytest.mark.parametrize(
    ("body", "status", "reason"),
    [
        ({}, 400, "nothing to rerun"),
        ({"run_id": RUN_ID, "tables": ["shop.nope"]}, 400, "unknown table"),
        ({"run_id": RUN_ID, "failed": True, "colour": "red"}, 400, "unknown field(s): colour"),
        ({"run_id": "202601010000", "failed": True}, 404, "not in the ledger"),
        ({"mode": "export", "as_of": "2026-11-01", "tables": [KEYS[0]]}, 200, ""),
    ],
)
def test_rerun_refusals_over_http(ops: Ops, body: dict[str, Any], status: int, reason: str) -> None:
    response = client("rerun").post("/", json=body)
    assert response.status_code == status, response.get_json()
    if reason:
        assert reason in response.get_json()["message"]


def test_files_gone_and_conflicts_are_409_five_exports_503_no_snapshot_404(ops: Ops) -> None:
    ops.exporter.gone.add(f"shop/{KEYS[1]}")
    gone = client("rerun").post("/", json={"run_id": RUN_ID, "tables": [KEYS[1]]})
    assert gone.status_code == 409 and "no longer in export" in gone.get_json()["message"]
    started = client("rerun").post("/", json={"run_id": RUN_ID, "tables": [KEYS[2]]})
    assert started.status_code == 200
    busy = client("rerun").post("/", json={"run_id": RUN_ID, "tables": [KEYS[2]]})
    assert busy.status_code == 409 and "has not finished" in busy.get_json()["message"]
    ops.exporter.other_running = 5
    quota = client("rerun").post("/", json={"mode": "export", "tables": [KEYS[0]]})
    assert quota.status_code == 503 and quota.headers["Retry-After"] == "60"
    ops.exporter.other_running = 0
    ops.w.service.settings = ops.reruns.settings = Ops(RDS2BQ_SOURCE_KIND="db-snapshot").w.settings
    no_snapshot = client("rerun").post("/", json={"as_of": "2026-11-01", "tables": [KEYS[0]]})
    assert no_snapshot.status_code == 404


def test_status_over_http(ops: Ops) -> None:
    one = client("status").get(f"/?run_id={RUN_ID}")
    assert one.status_code == 200
    assert one.get_json()["state"] == "PARTIAL" and len(one.get_json()["tables"]) == 3
    recent = client("status").get("/?limit=5")
    assert [r["run_id"] for r in recent.get_json()["runs"]] == [RUN_ID]
    assert client("status").get("/?run_id=202001010000").status_code == 404
    assert client("status").get("/?run_id=x").status_code == 400


# --------------------------------------------------------------------------- CLI


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tables = tmp_path / "tables.txt"
    tables.write_text("\n".join(KEYS) + "\n")
    for key, value in VALID.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("RDS2BQ_TABLES_FILE", str(tables))


def run_cli(ops: Ops, *argv: str) -> int:
    return cli.main(list(argv), build=lambda _settings: FakeWiring(ops))  # type: ignore[arg-type,return-value]


def test_help_lists_every_command_and_the_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--help"]) == 0
    out = capsys.readouterr().out
    for command in ("start", "poll", "sync", "rerun", "status", "doctor", "demo", "stack"):
        assert f"\n  {command} " in out
    assert "exit codes:" in out and "4  refused" in out
    for field in FIELDS:
        assert field.flag in out and field.env in out


def test_no_command_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main([]) == 2
    assert cli.main(["status", "--bogus"]) == 2
    assert cli.main(["frobnicate"]) == 2


def test_settings_flags_set_the_environment_variables_before_or_after_the_command(
    env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["--s3-bucket", "Not_A_Bucket", "status"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "RDS2BQ_S3_BUCKET='Not_A_Bucket'" in err
    assert cli.main(["status", "--source-kind", "sideways"]) == 2
    assert "RDS2BQ_SOURCE_KIND='sideways'" in capsys.readouterr().err


def test_cli_rerun_and_its_exit_codes(
    env: None, ops: Ops, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_cli(ops, "rerun", RUN_ID, "--failed", "--dry-run") == 0
    assert "DRY RUN (nothing changed)" in capsys.readouterr().out
    assert run_cli(ops, "rerun", RUN_ID, "--failed") == 0
    out = capsys.readouterr().out
    assert f"{KEYS[1]}  started" in out and f"status {RUN_ID} --watch" in out
    assert run_cli(ops, "rerun", RUN_ID, "--table", KEYS[1]) == 4
    err = capsys.readouterr().err
    assert err.startswith("rds2bq: error (refused): re-transfer refused") and err.count("\n") == 1
    assert run_cli(ops, "rerun", RUN_ID, "--table", "shop.nope") == 2
    assert run_cli(ops, "rerun", "202601010000", "--failed") == 4
    ops.exporter.other_running = 5
    capsys.readouterr()
    assert run_cli(ops, "rerun", "--export", "--table", KEYS[0]) == 3, capsys.readouterr().err
    assert "(transient: try again)" in capsys.readouterr().err


def test_cli_rerun_json(env: None, ops: Ops, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli(ops, "rerun", RUN_ID, "--table", f"{KEYS[1]},{KEYS[2]}", "--json") == 0
    body = json.loads(capsys.readouterr().out)
    assert [t["action"] for t in body["tables"]] == ["started", "started"]


def test_cli_status(env: None, ops: Ops, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli(ops, "status", RUN_ID) == 0
    out = capsys.readouterr().out
    assert f"Run {RUN_ID} (daily)  PARTIAL" in out
    assert "DECIMAL(40,10)" in out and "3 tables: 1 loaded, 2 failed" in out
    assert run_cli(ops, "status") == 0
    assert RUN_ID in capsys.readouterr().out
    assert run_cli(ops, "status", RUN_ID, "--json") == 0
    assert json.loads(capsys.readouterr().out)["state"] == "PARTIAL"
    assert run_cli(ops, "status", "202001010000") == 4


def test_cli_status_watch_follows_the_run_until_it_closes(
    env: None, ops: Ops, capsys: pytest.CaptureFixture[str]
) -> None:
    ops.rerun(run_id=RUN_ID, failed=True)
    reads = iter(
        [
            lambda: None,
            lambda: ops.finish(KEYS[1], "SUCCEEDED"),
            lambda: ops.finish(KEYS[2], "SUCCEEDED"),
        ]
    )

    def sleep(_: float) -> None:
        next(reads)()

    code = cli.main(
        ["status", RUN_ID, "--watch", "--interval", "0"],
        build=lambda _s: FakeWiring(ops),  # type: ignore[arg-type,return-value]
        sleep=sleep,
    )
    out = capsys.readouterr().out
    assert code == 0, out
    assert "TRANSFERRING    1/3 tables done" in out and "SUCCEEDED       3/3 tables done" in out
    assert f"Run {RUN_ID} (daily)  SUCCEEDED" in out


def test_cli_status_watch_gives_up_after_its_timeout(
    env: None, ops: Ops, capsys: pytest.CaptureFixture[str]
) -> None:
    ops.rerun(run_id=RUN_ID, failed=True)
    clock = iter(range(0, 1000, 10))
    code = cli.main(
        ["status", RUN_ID, "--watch", "--timeout", "25", "--interval", "10"],
        build=lambda _s: FakeWiring(ops),  # type: ignore[arg-type,return-value]
        sleep=lambda _: None,
        monotonic=lambda: float(next(clock)),
    )
    assert code == 3 and "still TRANSFERRING" in capsys.readouterr().err


def test_cli_status_watch_without_a_run_id_follows_the_latest_run(
    env: None, ops: Ops, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN a re-transfer that reopened the latest run, WHEN watched with no run id
    ops.rerun(run_id=RUN_ID, failed=True)
    clock = iter(range(0, 1000, 10))
    code = cli.main(
        ["status", "--watch", "--timeout", "25", "--interval", "10"],
        build=lambda _s: FakeWiring(ops),  # type: ignore[arg-type,return-value]
        sleep=lambda _: None,
        monotonic=lambda: float(next(clock)),
    )
    # THEN it followed that run (still loading when the watch gave up)
    captured = capsys.readouterr()
    assert code == 3 and f"run {RUN_ID}" in captured.err and "still TRANSFERRING" in captured.err
    assert RUN_ID in captured.out


def test_errors_are_one_line_and_tracebacks_only_with_debug(
    env: None, ops: Ops, capsys: pytest.CaptureFixture[str]
) -> None:
    def broken(_limit: int) -> Any:
        raise RuntimeError("boom\nsecond line")

    ops.w.ledger.recent_runs = broken  # type: ignore[method-assign]
    assert run_cli(ops, "status") == 1
    err = capsys.readouterr().err
    expected = "unexpected RuntimeError: boom second line (--debug shows the traceback)"
    assert err == f"rds2bq: error: {expected}\n"
    assert run_cli(ops, "--debug", "status") == 1
    assert "Traceback (most recent call last)" in capsys.readouterr().err


def test_demo_and_stack_pass_their_arguments_on(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    seen: list[list[str]] = []
    fake = types.ModuleType("devstack.demo")
    fake.main = lambda argv: seen.append(argv) or 0  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "devstack.demo", fake)
    assert cli.main(["demo", "--fast", "x"]) == 0
    assert seen == [["--fast", "x"]]


def test_demo_without_devstack_says_why(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "devstack.stack", None)  # as in a deployment: absent
    monkeypatch.setitem(sys.modules, "devstack", None)
    assert cli.main(["stack"]) == 2
    assert "needs the source checkout" in capsys.readouterr().err


def test_cli_start_json_prints_the_view_status_returns(
    ops: Ops, env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN a daily slot (its run is created and its export started)
    assert run_cli(ops, "start", "--slot", "2026-11-26T15:00:00Z", "--json") == 0
    started = json.loads(capsys.readouterr().out)["run"]

    # THEN the reply is status's view of that run, without the ledger's internals
    assert run_cli(ops, "status", started["run_id"], "--json") == 0
    assert started == json.loads(capsys.readouterr().out)
    for internal in ("handoff_owner", "lease", "outbox"):
        assert internal not in json.dumps(started)
