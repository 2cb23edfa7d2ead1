"""slack.py: every message kind inside Slack's limits, escaped, readable, in local time."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from orchestrator.adapters.pubsub import encode_message
from orchestrator.core.events import (
    Event,
    ExportFailed,
    ExportLate,
    ExportStarted,
    HandoffDone,
    RunClosed,
    SkippedTable,
    TableFailed,
    TablesSkipped,
)
from orchestrator.core.model import EventKind, Run, RunState, TableRun, TableState
from orchestrator.core.notifications import (
    PubsubMessage,
    TransferRunFinished,
    message_from_push,
    parse_message,
)
from orchestrator.present import formatting, slack, slack_blocks, slack_notices
from orchestrator.present.slack_blocks import render_text, validate_payload
from orchestrator.present.slack_context import SlackContext

TOKYO = ZoneInfo("Asia/Tokyo")
CTX = SlackContext(TOKYO, "rds2bq-test", "asia-northeast1", "rds_shop", "prod")
RUN_TIME = datetime(2026, 11, 27, 15, 0, tzinfo=UTC)  # 2026-11-28 00:00 in Tokyo
CONFIG = "projects/rds2bq-test/locations/asia-northeast1/transferConfigs/cfg-orders"
DTS_RUN = CONFIG + "/runs/run-1"
HOSTILE = "<!channel> & <https://evil.example|click here> *bold* `tick` ```fence```"
EVENTS = Path(__file__).resolve().parents[1] / "events"
Builder = Callable[[], dict[str, Any]]


def make_run(**changes: Any) -> Run:
    run = Run(
        run_id="202611271500",
        run_time=RUN_TIME,
        kind="daily",
        export_task_id="rds2bq-prod-202611271500",
        tables=("shop.orders", "shop.users", "shop.bad"),
        state=RunState.PARTIAL,
        source_arn="arn:aws:rds:ap-northeast-1:123456789012:cluster:shop-aurora",
        export_status="COMPLETE",
        percent=100,
        extracted_gb=12.5,
        export_started_at=RUN_TIME + timedelta(minutes=1),
        export_completed_at=RUN_TIME + timedelta(hours=2, minutes=3),
    )
    return run.with_(**changes)


def failed_table(
    key: str = "shop.orders", message: str = "Access Denied", **changes: Any
) -> TableRun:
    table = TableRun(
        key=key,
        state=TableState.FAILED,
        dts_config=CONFIG,
        dts_run=DTS_RUN,
        error_code=9,
        error_message=message,
        started_at=RUN_TIME + timedelta(hours=2, minutes=10),
        finished_at=RUN_TIME + timedelta(hours=2, minutes=14, seconds=38),
    )
    return table.with_(**changes)


def loaded(key: str) -> TableRun:
    return TableRun(
        key=key,
        state=TableState.SUCCEEDED,
        dts_run=DTS_RUN,
        finished_at=RUN_TIME + timedelta(hours=3, minutes=30),
    )


def skipped(key: str, reason: str = "column name contains a space") -> TableRun:
    return TableRun(key=key, state=TableState.SKIPPED_BY_EXPORT, reason=reason)


def note() -> TransferRunFinished:
    body = json.loads((EVENTS / "dts_run_failed.json").read_text())
    parsed = parse_message(message_from_push(body))
    assert isinstance(parsed, TransferRunFinished)
    return parsed


def texts(payload: dict[str, Any]) -> str:
    return json.dumps(payload, ensure_ascii=False)


SMALL_TABLES = [loaded("shop.users"), failed_table(), skipped("shop.bad")]
KINDS: dict[str, Builder] = {
    "table_failed": lambda: slack.table_failed(CTX, make_run(), failed_table()),
    "table_cancelled": lambda: slack.table_failed(
        CTX, make_run(), failed_table(state=TableState.CANCELLED, error_message="")
    ),
    "run_summary_succeeded": lambda: slack.run_summary(
        CTX, make_run(state=RunState.SUCCEEDED), [loaded("shop.users")]
    ),
    "run_summary_partial": lambda: slack.run_summary(CTX, make_run(), SMALL_TABLES),
    "run_summary_failed": lambda: slack.run_summary(
        CTX, make_run(state=RunState.FAILED, failure_cause="nothing exported"), [skipped("a.b")]
    ),
    "tables_skipped": lambda: slack.tables_skipped(CTX, make_run(), [skipped("shop.bad")]),
    "export_failed": lambda: slack.export_failed(
        CTX, make_run(export_status="FAILED", failure_cause="S3 bucket not found")
    ),
    "export_canceled": lambda: slack.export_failed(
        CTX, make_run(export_status="CANCELED", failure_cause="")
    ),
    "export_not_started": lambda: slack.export_failed(
        CTX, make_run(export_status="NOT_STARTED", failure_cause="AccessDenied: kms:CreateGrant")
    ),
    "export_late": lambda: slack.export_late(
        CTX, make_run(export_status="IN_PROGRESS", percent=40), RUN_TIME + timedelta(hours=6), 360
    ),
    "export_started": lambda: slack.export_started(CTX, make_run(state=RunState.EXPORTING)),
    "handoff_done": lambda: slack.handoff_done(
        CTX,
        make_run(state=RunState.TRANSFERRING),
        [
            TableRun("shop.users", TableState.STARTED, dts_run=DTS_RUN),
            failed_table("shop.orders", "Config not found", dts_run=""),
            skipped("shop.bad"),
        ],
    ),
    "unknown_run": lambda: slack_notices.unknown_run(CTX, note()),
    "run_summary_retransfer": lambda: slack.run_summary(
        CTX, *retransferred_run(TableState.SUCCEEDED)
    ),
}


def retransferred_run(state: TableState, message: str = "") -> tuple[Run, list[TableRun]]:
    """The PARTIAL run of SMALL_TABLES after shop.orders was re-transferred and finished."""
    handed_off = RUN_TIME + timedelta(hours=2, minutes=5)
    again = failed_table(
        state=state,
        error_message=message,
        attempts=2,
        started_at=RUN_TIME + timedelta(hours=5),
        finished_at=RUN_TIME + timedelta(hours=5, minutes=3),
    )
    run = make_run(state=RunState.PARTIAL, handed_off_at=handed_off)
    first = [loaded("shop.users").with_(attempts=1), skipped("shop.bad")]
    return run, [*first, again]


# --------------------------------------------------------------------------- every kind


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_every_kind_is_valid_and_has_a_short_fallback(kind: str) -> None:
    payload = KINDS[kind]()

    assert validate_payload(payload) == []
    assert 0 < len(payload["text"]) <= slack_blocks.FALLBACK_LIMIT
    assert payload["blocks"][0]["type"] == "header"
    assert render_text(payload).strip()


def test_table_failure_shows_what_happened_and_where_to_look() -> None:
    payload = slack.table_failed(CTX, make_run(snapshot_time=RUN_TIME), failed_table())
    body = texts(payload)
    text = render_text(payload)

    assert "shop.orders: load failed" in payload["blocks"][0]["text"]["text"]
    assert "Access Denied" in body
    assert (
        "https://console.cloud.google.com/bigquery/transfers/locations/asia-northeast1/configs/"
        "cfg-orders/runs/run-1?project=rds2bq-test"
    ) in body
    assert (
        "https://console.cloud.google.com/bigquery?project=rds2bq-test&p=rds2bq-test&d=rds_shop"
        "&t=shop__orders&page=table"
    ) in body
    assert "Data as of: 2026-11-28 00:00 JST" in text
    assert "Duration: 4m 38s" in text
    assert "FAILED" in payload["text"] and "shop.orders" in payload["text"]


def test_export_failure_carries_aws_failure_cause() -> None:
    run = make_run(export_status="FAILED", failure_cause="The IAM role lacks s3:PutObject")
    payload = slack.export_failed(CTX, run)

    assert "The IAM role lacks s3:PutObject" in render_text(payload)
    assert "FailureCause" in render_text(payload)
    assert "Export failed" in payload["blocks"][0]["text"]["text"]


def test_skipped_tables_list_aws_reasons() -> None:
    tables = [skipped("shop.weird", "column name contains a space"), skipped("shop.t2", "")]
    text = render_text(slack.tables_skipped(CTX, make_run(), tables))

    assert "shop.weird: `column name contains a space`" in text
    assert "shop.t2: `no reason given`" in text
    assert "2 tables skipped by the export" in text


def test_unknown_run_message_holds_no_secret() -> None:
    payload = slack_notices.unknown_run(CTX, note())

    assert "CANARY" not in texts(payload)
    assert "did not start" in payload["blocks"][0]["text"]["text"]


# --------------------------------------------------------------------------- a huge run


def huge_run() -> tuple[Run, list[TableRun]]:
    tables: list[TableRun] = []
    for number in range(2000):
        key = f"shop.t{number:04d}"
        if number < 250:
            message = (
                f"Failed to read s3://acme/rds2bq/shop/{key}/part-{number}.parquet: schema mismatch"
            )
            tables.append(failed_table(key, message, dts_run=f"{CONFIG}/runs/r{number}"))
        elif number < 300:
            tables.append(
                failed_table(key, "Transfer run was cancelled", state=TableState.CANCELLED)
            )
        elif number < 320:
            tables.append(skipped(key))
        else:
            tables.append(loaded(key))
    run = make_run(tables=tuple(t.key for t in tables))
    return run, tables


def test_summary_of_2000_tables_with_300_failures_is_one_valid_readable_message() -> None:
    # GIVEN a run of 2,000 tables: 250 failed, 50 cancelled, 20 skipped, 1,680 loaded
    run, tables = huge_run()

    # WHEN summarised
    payload = slack.run_summary(CTX, run, tables)
    text = render_text(payload)

    # THEN one payload within every limit, with the first failures and a pointer to the rest
    assert validate_payload(payload) == []
    assert len(payload["blocks"]) <= 15
    assert "Loaded: 1680 of 2000" in text
    assert "Failed: 300" in text
    assert "Skipped by the export: 20" in text
    assert "*Failures and holds (300)*" in texts(payload)
    assert "• *shop.t0000* FAILED · DTS run (" in text  # failed before cancelled, then by name
    assert "schema mismatch" in text
    assert "… and 280 more (see `python -m orchestrator status 202611271500`)" in text
    assert text.index("Failures and holds (300)") < text.index("Skipped by the export (20)")
    assert "Export start → last load: 3h 29m" in text
    assert payload["text"] == (
        "rds2bq prod: run 202611271500 PARTIAL: 1680 loaded, 300 failed, 20 skipped"
    )


def test_summary_stays_valid_when_every_message_is_enormous() -> None:
    run, tables = huge_run()
    tables = [
        t.with_(error_message=HOSTILE * 500) if t.state is TableState.FAILED else t for t in tables
    ]

    payload = slack.run_summary(CTX, run, tables, failures_shown=50)

    assert validate_payload(payload) == []
    assert "more (see `python -m orchestrator status 202611271500`)" in render_text(payload)
    assert "<!channel>" not in texts(payload)


def test_single_enormous_error_is_clipped_not_rejected() -> None:
    payload = slack.table_failed(CTX, make_run(), failed_table(message="x&<>" * 20_000))

    assert validate_payload(payload) == []
    section = payload["blocks"][2]["text"]["text"]
    assert "…```" in section
    assert "&am…" not in section and "&l…" not in section  # never cut inside an entity


# --------------------------------------------------------------------------- escaping


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param(
            lambda: slack.table_failed(CTX, make_run(), failed_table(message=HOSTILE)), id="table"
        ),
        pytest.param(
            lambda: slack.run_summary(CTX, make_run(), [failed_table(message=HOSTILE)]),
            id="summary",
        ),
        pytest.param(
            lambda: slack.export_failed(
                CTX, make_run(export_status="FAILED", failure_cause=HOSTILE)
            ),
            id="export",
        ),
        pytest.param(
            lambda: slack.tables_skipped(CTX, make_run(), [skipped("shop.x", HOSTILE)]),
            id="skipped",
        ),
    ],
)
def test_vendor_text_cannot_mention_or_link(payload: Builder) -> None:
    built = payload()
    body = json.dumps(built["blocks"], ensure_ascii=False)

    assert "<!channel>" not in body and "<!channel>" not in built["text"]
    assert "<https://evil.example" not in body
    assert "&lt;!channel&gt; &amp; &lt;https://evil.example|click here&gt;" in body
    assert "```fence```" not in body  # a fence inside the text cannot close ours
    assert validate_payload(built) == []
    assert "<!channel> & <https://evil.example|click here>" in render_text(built)


def test_escape_and_clip() -> None:
    assert slack_blocks.escape("a & b < c > d") == "a &amp; b &lt; c &gt; d"
    assert slack_blocks.clip("&amp;&amp;&amp;", 8) == "&amp;…"
    assert slack_blocks.clip("abcdef", 4) == "abc…"
    assert slack_blocks.clip("abc", 4) == "abc"


# --------------------------------------------------------------------------- time zone


@pytest.mark.parametrize(
    ("utc", "shown"),
    [
        (datetime(2026, 11, 27, 14, 59, tzinfo=UTC), "2026-11-27 23:59 JST"),
        (datetime(2026, 11, 27, 15, 0, tzinfo=UTC), "2026-11-28 00:00 JST"),
        (datetime(2026, 11, 27, 15, 1, tzinfo=UTC), "2026-11-28 00:01 JST"),
        (datetime(2026, 12, 31, 15, 0, tzinfo=UTC), "2027-01-01 00:00 JST"),
    ],
)
def test_times_around_tokyo_midnight(utc: datetime, shown: str) -> None:
    run = make_run(run_time=utc, run_id=utc.strftime("%Y%m%d%H%M"), snapshot_time=utc)

    summary = slack.run_summary(CTX, run, [loaded("shop.users")])
    failure = render_text(slack.table_failed(CTX, run, failed_table()))

    assert shown in summary["blocks"][0]["text"]["text"]
    assert f"Data as of: {shown}" in failure
    # Each time carries its zone; the footer no longer repeats it (issue 14).
    assert f"Run: `{run.run_id}` ({shown})" in failure and "times in" not in failure


def test_zone_without_a_letter_abbreviation_shows_its_key() -> None:
    assert formatting.format_time(RUN_TIME, ZoneInfo("America/Sao_Paulo")) == (
        "2026-11-27 12:00 America/Sao_Paulo"
    )
    assert formatting.format_time(RUN_TIME, ZoneInfo("UTC")) == "2026-11-27 15:00 UTC"


@pytest.mark.parametrize(
    ("delta", "shown"),
    [
        (timedelta(seconds=5), "5s"),
        (timedelta(minutes=4, seconds=38), "4m 38s"),
        (timedelta(hours=3, minutes=5), "3h 05m"),
        (timedelta(days=1, hours=2, minutes=3), "1d 2h 03m"),
        (timedelta(seconds=-1), "—"),
        (None, "—"),
    ],
)
def test_durations(delta: timedelta | None, shown: str) -> None:
    assert formatting.format_duration(delta) == shown


# --------------------------------------------------------------------------- events


EVENT_AT = RUN_TIME + timedelta(hours=6)


@pytest.mark.parametrize(
    ("event", "expect"),
    [
        (ExportStarted("202611271500", EVENT_AT, tables=3), "Export started"),
        (
            ExportFailed(
                "202611271500", EVENT_AT, status="CANCELED", failure_cause="Canceled by operator"
            ),
            "Canceled by operator",
        ),
        (
            ExportLate("202611271500", EVENT_AT, deadline_minutes=360, percent=40),
            "Deadline: 6h 00m",
        ),
        (
            TablesSkipped(
                "202611271500",
                EVENT_AT,
                tables=(SkippedTable("shop.bad", "slash in name"),),
                warning="",
            ),
            "shop.bad: `slash in name`",
        ),
        (HandoffDone("202611271500", EVENT_AT, started=1), "Transfers started"),
        (
            TableFailed(
                "202611271500",
                EVENT_AT,
                table="shop.gone",
                state=TableState.FAILED,
                error_code=5,
                error_message="No such table",
                dts_run=DTS_RUN,
                started_at=RUN_TIME,
                finished_at=RUN_TIME + timedelta(minutes=2),
            ),
            "No such table",
        ),
        (RunClosed("202611271500", EVENT_AT, state=RunState.PARTIAL), "Failures and holds (1)"),
    ],
)
def test_events_render_after_a_trip_through_pubsub_encoding(event: Event, expect: str) -> None:
    # GIVEN an event as the machine emits it, encoded and parsed back as the notify path sees it
    parsed = parse_message(PubsubMessage(*encode_message(event)))
    assert isinstance(parsed, Event)
    assert parsed == event  # typed fields come back typed (datetimes as datetimes)

    # WHEN rendered with the run and its tables
    payload = slack.for_event(CTX, parsed, make_run(), SMALL_TABLES)

    # THEN valid, and it says what happened
    assert validate_payload(payload) == []
    assert expect in render_text(payload)


def test_table_failed_event_for_a_table_the_caller_has_uses_the_ledger_copy() -> None:
    event = TableFailed("202611271500", RUN_TIME, table="shop.orders")

    text = render_text(slack.for_event(CTX, event, make_run(), SMALL_TABLES))

    assert "Access Denied" in text


# --------------------------------------------------------------------------- validation


def valid() -> dict[str, Any]:
    return slack.table_failed(CTX, make_run(), failed_table())


def section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text}}


@pytest.mark.parametrize(
    ("mutate", "problem"),
    [
        (lambda p: p.update(blocks=[section("x")] * 51), "51 blocks > 50"),
        (lambda p: p.update(text=""), "fallback text is required"),
        (lambda p: p.pop("text"), "fallback text is required"),
        (lambda p: p.update(text="x" * 40_001), "40001 characters > 40000"),
        (lambda p: p["blocks"].append(section("x" * 3001)), "3001 characters > 3000"),
        (lambda p: p["blocks"].append(section("")), "empty"),
        (
            lambda p: p["blocks"].append(
                {"type": "header", "text": {"type": "plain_text", "text": "h" * 151}}
            ),
            "151 characters > 150",
        ),
        (
            lambda p: p["blocks"].append(
                {"type": "header", "text": {"type": "mrkdwn", "text": "*h*"}}
            ),
            "is not one of ('plain_text',)",
        ),
        (
            lambda p: p["blocks"].append(
                {"type": "section", "fields": [{"type": "mrkdwn", "text": "f"}] * 11}
            ),
            "more than 10 fields",
        ),
        (
            lambda p: p["blocks"].append(
                {"type": "section", "fields": [{"type": "mrkdwn", "text": "f" * 2001}]}
            ),
            "2001 characters > 2000",
        ),
        (
            lambda p: p["blocks"].append(
                {"type": "context", "elements": [{"type": "mrkdwn", "text": "c"}] * 11}
            ),
            "1 to 10 elements",
        ),
        (lambda p: p["blocks"].append({"type": "section"}), "needs text or fields"),
        (lambda p: p["blocks"].append({"type": "video"}), "'video' is not one of"),
        (lambda p: p["blocks"].extend([section("y" * 2900)] * 5), "msg_blocks_too_long"),
    ],
)
def test_validate_payload_reports_each_limit(
    mutate: Callable[[dict[str, Any]], object], problem: str
) -> None:
    payload = valid()
    mutate(payload)

    problems = validate_payload(payload)

    assert any(problem in p for p in problems), problems


def test_render_text_for_the_terminal() -> None:
    payload = {
        "text": "fallback",
        "blocks": [
            {"type": "header", "text": {"type": "plain_text", "text": "Title"}},
            section("see <https://x.example/a?b=1&c=2|the page> &amp; <https://bare.example>"),
            {"type": "section", "fields": [{"type": "mrkdwn", "text": "*Label*\nvalue"}]},
            {"type": "divider"},
            {
                "type": "context",
                "elements": [{"type": "mrkdwn", "text": "a"}, {"type": "mrkdwn", "text": "b"}],
            },
        ],
    }

    assert render_text(payload).splitlines() == [
        "Title",
        "=======",
        "see the page (https://x.example/a?b=1&c=2) & https://bare.example",
        "  Label: value",
        "-" * 40,
        "  a · b",
    ]
    assert render_text({"text": "only &lt;text&gt;"}) == "only <text>"


# --------------------------------------------------------------------------- issue 14


def test_a_retransfer_summary_names_the_run_what_it_reloaded_and_the_result() -> None:
    first = render_text(slack.run_summary(CTX, make_run(handed_off_at=RUN_TIME), SMALL_TABLES))
    payload = slack.run_summary(CTX, *retransferred_run(TableState.SUCCEEDED))
    text = render_text(payload)
    title = text.splitlines()[0]
    assert title != first.splitlines()[0]
    assert "Re-transfer of run 202611271500: reloaded, run PARTIAL" in title
    assert "Reloaded: 1 of 1" in text and "From export: `rds2bq-prod-202611271500`" in text
    assert "• *shop.orders* (attempt 2): SUCCEEDED" in text
    assert "Run now: *PARTIAL*: 2 of 3 loaded" in text
    assert payload["text"].startswith("rds2bq prod: re-transfer of run 202611271500: shop.orders")


def test_a_retransfer_that_failed_again_says_so_with_dts_message() -> None:
    run, tables = retransferred_run(TableState.FAILED, "Parquet column 'amount' is DECIMAL")
    text = render_text(slack.run_summary(CTX, run, tables))
    assert "Re-transfer of run 202611271500: 0 of 1 reloaded" in text.splitlines()[0]
    assert "*shop.orders* (attempt 2): FAILED: `Parquet column 'amount' is DECIMAL`" in text


def test_a_retransfer_summary_names_the_tables_it_left_not_loaded() -> None:
    # GIVEN a re-transfer of shop.orders that left shop.coupons EMPTY (its export holds no file)
    run, tables = retransferred_run(TableState.SUCCEEDED)
    coupons = TableRun(
        "shop.coupons",
        TableState.EMPTY,
        error_message="No new files found matching s3://b/x/shop.coupons/*.parquet",
    )
    text = render_text(slack.run_summary(CTX, run, [*tables, coupons]))
    # THEN the summary says which table still keeps the run from being whole, and why
    assert "*Still not loaded, not in this re-transfer (1)*" in text
    assert "*shop.coupons* EMPTY" in text and "No new files found matching" in text
    # and a re-transfer that left nothing behind has no such section
    assert "Still not loaded" not in render_text(slack.run_summary(CTX, run, tables))


def test_the_retransfer_summary_through_notify() -> None:
    from tests.unit.test_rerun import KEYS, RUN_ID, Ops

    ops = Ops()

    def summaries() -> list[str]:
        # notify turns each RUN_CLOSED event, as Pub/Sub delivers it, into its Slack message
        for number, event in enumerate(ops.w.events.events):
            if event.kind is EventKind.RUN_CLOSED:
                data, attributes = encode_message(event)
                ops.notify.handle(PubsubMessage(data, attributes, f"closed-{number}", event.at))
        texts = [render_text(p) for p in ops.slack.payloads]
        return [t for t in texts if "load failed" not in t.splitlines()[0]]

    # GIVEN a PARTIAL run, summarised
    ops.closed_partial()
    first = summaries()
    # WHEN a failed table is re-transferred and loads
    ops.rerun(run_id=RUN_ID, tables=[KEYS[1]])
    ops.finish(KEYS[1], "SUCCEEDED")
    # THEN the second summary is the re-transfer's: which run, what it reloaded, the result
    second = summaries()[len(first) :]
    assert [s.splitlines()[0] for s in first] == ["⚠️ Run 2026-11-28 00:00 JST: PARTIAL"]
    assert [s.splitlines()[0] for s in second] == [
        f"🔁 Re-transfer of run {RUN_ID}: reloaded, run PARTIAL"
    ]
    assert f"• *{KEYS[1]}* (attempt 2): SUCCEEDED" in second[0]
    # the other failed table was not reloaded: it is not in the list of what was, but named as
    # still not loaded
    reloaded, _, left = second[0].partition("Still not loaded, not in this re-transfer (1)")
    assert KEYS[2] not in reloaded and f"*{KEYS[2]}* FAILED" in left


def test_a_re_export_summary_names_the_run_it_stands_in_for() -> None:
    run = make_run(kind="rerun", parent_run_id="202611201500", state=RunState.SUCCEEDED)
    title = render_text(slack.run_summary(CTX, run, [loaded("shop.users")])).splitlines()[0]
    assert title == "✅ Re-export of run 202611201500 (2026-11-28 00:00 JST): SUCCEEDED"


@pytest.mark.parametrize(
    ("code", "name"), [(3, "INVALID_ARGUMENT (3)"), (7, "PERMISSION_DENIED (7)"), (99, "code 99")]
)
def test_error_codes_are_named(code: int, name: str) -> None:
    text = render_text(slack.table_failed(CTX, make_run(), failed_table(error_code=code)))
    assert f"error code {name}" in text


@pytest.mark.parametrize(
    ("size", "shown"),
    [
        (0, "0 B"),
        (999, "999 B"),
        (3_221_225, "3.2 MB"),
        (12e9, "12.0 GB"),
        (450e9, "450 GB"),
        (2.5e12, "2.5 TB"),
    ],
)
def test_sizes_in_readable_units(size: float, shown: str) -> None:
    assert formatting.format_size(size) == shown


def test_a_small_export_shows_the_tables_sizes_not_0_gb() -> None:
    tables = [
        TableRun("shop.users", TableState.STARTED, dts_run=DTS_RUN, size_bytes=3_221_225),
        TableRun("shop.orders", TableState.STARTED, dts_run=DTS_RUN, size_bytes=1_000_000),
    ]
    small = render_text(slack.handoff_done(CTX, make_run(extracted_gb=0.0), tables))
    assert "Exported: 4.2 MB" in small and "0.0 GB" not in small
    big = render_text(slack.handoff_done(CTX, make_run(extracted_gb=12.0), tables))
    assert "Exported: 12.0 GB" in big


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_the_footer_carries_only_what_the_body_does_not(kind: str) -> None:
    payload = KINDS[kind]()
    blocks = payload["blocks"]
    footer = (
        " ".join(e["text"] for e in blocks[-1]["elements"])
        if blocks[-1]["type"] == "context"
        else ""
    )
    body = json.dumps(blocks[:-1], ensure_ascii=False)
    assert "times in" not in footer
    for part in footer.split(" · "):
        if part.startswith(("run `", "export `")):
            shown = "`" + part.split("`")[1] + "`"
            assert shown not in body, (kind, part)
