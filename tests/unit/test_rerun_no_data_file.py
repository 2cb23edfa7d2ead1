"""``rerun --failed`` of a run with an EMPTY load whose export wrote no data file for the table:
the same export would load the same nothing, so that table is skipped, with the re-export that
loads it, and the others are reloaded. Named, or when it is all there is, it is refused (409).
Over the service, HTTP and the CLI, with the in-memory fakes."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from orchestrator import wiring
from orchestrator.core.errors import ConflictError, ExportFilesGoneError
from orchestrator.core.model import RunState, TableState
from orchestrator.faces import cli
from tests.unit.test_ops_entry_points import FakeWiring, client, env, run_cli
from tests.unit.test_rerun import KEYS, RUN_ID, Ops

__all__ = ["env"]  # a fixture, used by name

LOADED, FAILED, EMPTY = KEYS
NO_FILES = f"No new files found matching s3://b/p/rds2bq-prod-20261127150000/shop/{EMPTY}/*.parquet"
HINT = f'("mode": "export", "run_id": "{RUN_ID}", "tables": ["{EMPTY}"])'
COMMAND = f"`python -m orchestrator rerun {RUN_ID} --export --table {EMPTY}`"


def closed_with_an_empty_load(files_present: bool = False) -> Ops:
    """t0000 loaded, t0001 failed in DTS, t0002's load was EMPTY: the run is PARTIAL."""
    ops = Ops().handed_off()
    ops.w.transfers.empty[ops.table(EMPTY).dts_run] = NO_FILES
    if not files_present:
        ops.exporter.gone.add(f"shop/{EMPTY}")  # the export wrote no data file for it
    ops.finish(LOADED, "SUCCEEDED")
    ops.finish(FAILED, "FAILED", "Parquet column 'amount' has type DECIMAL(40,10)")
    ops.finish(EMPTY, "SUCCEEDED")
    assert ops.table(EMPTY).state is TableState.EMPTY
    assert ops.run().state is RunState.PARTIAL
    return ops


def ledger(ops: Ops) -> tuple[object, object]:
    return dict(ops.w.ledger.runs), {k: dict(v) for k, v in ops.w.ledger.table_docs.items()}


@pytest.fixture
def ops() -> Iterator[Ops]:
    o = closed_with_an_empty_load()
    wiring.install(FakeWiring(o))  # type: ignore[arg-type]
    yield o
    wiring.reset()


# --------------------------------------------------------------------------- the service


def test_failed_skips_the_empty_table_without_data_file_and_reloads_the_others() -> None:
    ops = closed_with_an_empty_load()
    # WHEN every failed table is rerun
    result = ops.rerun(run_id=RUN_ID, failed=True)
    # THEN the failed one is re-transferred and the empty one skipped, with why and the fix
    assert [(t.table, t.action) for t in result.tables] == [(FAILED, "started"), (EMPTY, "skipped")]
    assert result.tables[1].detail == "the export wrote no data file for it: re-export it"
    assert (result.started, result.skipped) == (1, 1)
    assert "1 of 2 table(s)" in result.message and "1 skipped (see the note)" in result.message
    (note,) = result.notes
    assert note.startswith("skipped: the export rds2bq-prod-20261127150000 wrote no data file")
    assert f"for {EMPTY} (its load was EMPTY)" in note and note.endswith(HINT)
    # AND only the failed table got a DTS run; the empty one is as it was
    assert ops.starts() == 4
    assert ops.table(FAILED).state is TableState.STARTED and ops.table(FAILED).attempts == 2
    empty = ops.table(EMPTY)
    assert (empty.state, empty.attempts, empty.error_message) == (TableState.EMPTY, 1, NO_FILES)
    # AND the run closes again when the reload finishes, still PARTIAL (the empty table)
    assert ops.run().state is RunState.TRANSFERRING
    ops.finish(FAILED, "SUCCEEDED")
    assert ops.run().state is RunState.PARTIAL


def test_a_dry_run_says_which_table_it_would_skip_and_changes_nothing() -> None:
    ops = closed_with_an_empty_load()
    before = ledger(ops)
    result = ops.rerun(run_id=RUN_ID, failed=True, dry_run=True)
    assert [(t.table, t.action) for t in result.tables] == [
        (FAILED, "would-start"),
        (EMPTY, "skipped"),
    ]
    assert "would start 1 DTS run(s)" in result.message
    assert "and skip 1 table(s) (see the note)" in result.message
    assert result.notes[0].endswith(HINT)
    assert ledger(ops) == before and ops.starts() == 3


def test_when_the_empty_table_is_all_there_is_to_rerun_it_is_refused_with_the_fix() -> None:
    ops = closed_with_an_empty_load()
    ops.rerun(run_id=RUN_ID, tables=[FAILED])
    ops.finish(FAILED, "SUCCEEDED")
    before = ledger(ops)
    with pytest.raises(ExportFilesGoneError) as refused:
        ops.rerun(run_id=RUN_ID, failed=True)
    message = str(refused.value)
    assert message.startswith(f"nothing to re-transfer in run {RUN_ID}: ")
    assert f"wrote no data file for {EMPTY}" in message and message.endswith(HINT)
    assert ledger(ops) == before and ops.starts() == 4
    with pytest.raises(ExportFilesGoneError, match="nothing to re-transfer"):
        ops.rerun(run_id=RUN_ID, failed=True, dry_run=True)


def test_a_named_empty_table_without_data_file_is_refused_as_asked() -> None:
    ops = closed_with_an_empty_load()
    before = ledger(ops)
    with pytest.raises(ExportFilesGoneError) as refused:
        ops.rerun(run_id=RUN_ID, tables=[EMPTY])
    assert str(refused.value).startswith("re-transfer refused: the export ")
    assert str(refused.value).endswith(HINT)
    # with another table named beside it: the whole request, and it says to leave it out
    with pytest.raises(ExportFilesGoneError, match=r"or name only the other tables$"):
        ops.rerun(run_id=RUN_ID, tables=[FAILED, EMPTY])
    assert ledger(ops) == before and ops.starts() == 3


def test_an_empty_table_whose_files_are_there_is_re_transferred() -> None:
    # "Number of records: 0": files matched but held no row; a re-transfer may load them now
    ops = closed_with_an_empty_load(files_present=True)
    result = ops.rerun(run_id=RUN_ID, failed=True)
    assert [(t.table, t.action) for t in result.tables] == [(FAILED, "started"), (EMPTY, "started")]
    assert result.notes == () and ops.starts() == 5


def test_a_failed_table_whose_files_are_gone_still_refuses_the_whole_request() -> None:
    ops = closed_with_an_empty_load()
    ops.exporter.gone.add(f"shop/{FAILED}")  # deleted, e.g. by a lifecycle rule
    with pytest.raises(ExportFilesGoneError, match=f"files of {FAILED} are no longer in export"):
        ops.rerun(run_id=RUN_ID, failed=True)
    assert ops.starts() == 3 and ops.table(FAILED).state is TableState.FAILED


def test_a_repeat_starts_nothing_twice() -> None:
    ops = closed_with_an_empty_load()
    ops.rerun(run_id=RUN_ID, failed=True)
    # the reload still running: what is left of the failed tables is the empty one, refused
    with pytest.raises(ExportFilesGoneError, match="nothing to re-transfer"):
        ops.rerun(run_id=RUN_ID, failed=True)
    with pytest.raises(ConflictError, match="has not finished yet"):
        ops.rerun(run_id=RUN_ID, tables=[FAILED])
    assert ops.starts() == 4
    # with a request_id, a repeat returns the first answer, whenever it comes
    ops.finish(FAILED, "FAILED", "still broken")
    first = ops.rerun(run_id=RUN_ID, failed=True, request_id="oncall-7")
    again = ops.rerun(run_id=RUN_ID, failed=True, request_id="oncall-7")
    assert first.started == 1 and again.repeated and ops.starts() == 5


# --------------------------------------------------------------------------- HTTP and the CLI


def test_over_http_the_reply_lists_the_skipped_table_and_the_re_export_to_ask_for(
    ops: Ops,
) -> None:
    response = client("rerun").post("/", json={"run_id": RUN_ID, "failed": True})
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert [(t["table"], t["action"]) for t in body["tables"]] == [
        (FAILED, "started"),
        (EMPTY, "skipped"),
    ]
    assert body["tables"][1]["detail"] == "the export wrote no data file for it: re-export it"
    assert body["notes"][0].endswith(HINT)
    # nothing left but the empty table: 409, naming it and the fix
    refused = client("rerun").post("/", json={"run_id": RUN_ID, "failed": True})
    assert refused.status_code == 409
    assert refused.get_json()["error"] == "conflict"
    assert refused.get_json()["message"].endswith(HINT)


def test_the_cli_shows_the_skipped_table_and_the_command_that_re_exports_it(
    env: None, ops: Ops, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_cli(ops, "rerun", RUN_ID, "--failed", "--dry-run") == 0
    out = capsys.readouterr().out
    assert f"  {EMPTY}  skipped        the export wrote no data file for it: re-export it" in out
    assert run_cli(ops, "rerun", RUN_ID, "--failed") == 0
    out = capsys.readouterr().out
    assert f"{FAILED}  started" in out and f"{EMPTY}  skipped" in out
    assert "  note: skipped: the export rds2bq-prod-20261127150000 wrote no data file" in out
    assert out.rstrip().endswith(f"status {RUN_ID} --watch") and COMMAND in out
    assert '"mode"' not in out and '"tables"' not in out
    assert run_cli(ops, "rerun", RUN_ID, "--failed") == 4
    err = capsys.readouterr().err
    assert err.startswith(f"rds2bq: error (refused): nothing to re-transfer in run {RUN_ID}")
    assert err.rstrip().endswith(f"({COMMAND})") and err.count("\n") == 1


def test_the_cli_json_is_the_http_reply(
    env: None, ops: Ops, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_cli(ops, "rerun", RUN_ID, "--failed", "--json") == 0
    body = json.loads(capsys.readouterr().out)
    assert [t["action"] for t in body["tables"]] == ["started", "skipped"]
    assert body["notes"][0].endswith(HINT)


def test_cli_words_name_every_table_of_a_re_export() -> None:
    text = 're-export them ("mode": "export", "run_id": "202611271500", "tables": ["a.b", "a.c"])'
    assert cli.cli_words(text) == (
        "re-export them (`python -m orchestrator rerun 202611271500 --export --table a.b "
        "--table a.c`)"
    )
