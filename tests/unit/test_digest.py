"""The run digest (core.digest) and what people read of it: the HELD and MISMATCHED messages,
Slack's run summary, ``status`` and ``status --json``, the price settings."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from orchestrator.app.status import run_view
from orchestrator.config import load_settings
from orchestrator.core.digest import digest
from orchestrator.core.errors import ConfigError
from orchestrator.core.model import Run, RunState, TableRun, TableState
from orchestrator.core.prices import Prices
from orchestrator.core.schema import hold_fix
from orchestrator.faces.http import to_json
from orchestrator.present import slack
from orchestrator.present.slack_blocks import render_text, validate_payload
from orchestrator.present.terminal import status_text
from tests.unit.test_slack_payloads import CONFIG, CTX, DTS_RUN, RUN_TIME, TOKYO, make_run

START = RUN_TIME + timedelta(hours=2, minutes=10)
SNAPSHOT = RUN_TIME - timedelta(hours=1)


def table(key: str, state: TableState = TableState.SUCCEEDED, **changes: object) -> TableRun:
    base = TableRun(
        key=key,
        state=state,
        dts_config=CONFIG,
        dts_run=DTS_RUN,
        started_at=START,
        finished_at=START + timedelta(minutes=2, seconds=5),
        attempts=1,
    )
    return base.with_(**changes)


def held(key: str = "shop.orders", run_id: str = "202611271500") -> TableRun:
    reason = (
        "schema change: column amount changed type: NUMERIC -> STRING; "
        "column note STRING is no longer exported"
    )
    return table(
        key,
        TableState.HELD,
        dts_run="",
        started_at=None,
        finished_at=None,
        attempts=0,
        reason=reason,
        error_message=f"{reason}. Fix: {hold_fix(key, run_id)}",
        export_rows=1200,
        previous_rows=1180,
    )


def mismatched(key: str = "shop.payments") -> TableRun:
    return table(
        key,
        TableState.MISMATCHED,
        export_rows=5000,
        loaded_rows=4990,
        previous_rows=4800,
        error_message="the destination table holds 4,990 rows, the export wrote 5,000",
    )


DAY = [
    table("shop.orders", loaded_rows=1_204_500, export_rows=1_204_500, previous_rows=1_200_000),
    table(
        "shop.users",
        loaded_rows=52_000,
        export_rows=52_000,
        previous_rows=52_010,
        schema_changes=("added column nickname STRING", "widened points INT64 -> NUMERIC"),
    ),
    table("shop.coupons", loaded_rows=40, export_rows=40, previous_rows=None),
    mismatched(),
    held("shop.invoices"),
    table("shop.events", TableState.EMPTY, error_message="No new files found matching s3://..."),
    table("shop.audit", TableState.SKIPPED_BY_EXPORT, reason="column name contains ';'"),
    table("shop.bad", TableState.FAILED, error_message="Access Denied"),
]


def snapshot_run(**changes: object) -> Run:
    run = make_run(
        tables=tuple(t.key for t in DAY),
        snapshot_time=SNAPSHOT,
        source_arn="arn:aws:rds:ap-northeast-1:123456789012:cluster-snapshot:rds:shop-2026-11-27",
        extracted_gb=12.0,
        closed_at=START + timedelta(minutes=5),
    )
    return run.with_(**changes)


# --------------------------------------------------------------------------- the digest


def test_the_digest_lists_problems_in_the_order_an_operator_acts_then_loads_by_rows() -> None:
    d = digest(snapshot_run(), DAY, Prices(0.01, 0.09))

    assert [(t.state.value, t.key) for t in d.problems] == [
        ("EMPTY", "shop.events"),
        ("MISMATCHED", "shop.payments"),
        ("HELD", "shop.invoices"),
        ("FAILED", "shop.bad"),
        ("SKIPPED_BY_EXPORT", "shop.audit"),
    ]
    assert [t.key for t in d.loaded] == ["shop.orders", "shop.users", "shop.coupons"]
    assert [t.change for t in d.loaded] == [4_500, -10, None]
    assert d.loaded[2].is_new and not d.loaded[0].is_new
    assert (d.rows_loaded, d.rows_change, d.new_tables) == (1_256_540, 4_490, 1)
    assert [t.key for t in d.schema_changed] == ["shop.users"]
    assert d.loaded[0].duration_seconds == 125
    assert (d.as_of, d.as_of_basis) == (SNAPSHOT, "snapshot")


def test_the_cost_is_the_exported_gb_at_both_prices_and_says_it_is_a_floor() -> None:
    d = digest(snapshot_run(), DAY, Prices(export_per_gb=0.01, egress_per_gb=0.09))
    assert d.exported_bytes == 12_000_000_000
    assert (d.cost.export_usd, d.cost.egress_usd) == pytest.approx((0.12, 1.08))
    assert d.cost.total_usd == pytest.approx(1.20)
    assert "snapshot's full size" in d.cost.basis and "floor" in d.cost.basis

    cluster = "arn:aws:rds:ap-northeast-1:123456789012:cluster:shop"
    live = digest(snapshot_run(snapshot_time=None, source_arn=cluster), DAY)
    assert (live.as_of, live.as_of_basis) == (
        RUN_TIME + timedelta(minutes=1),
        "live cluster, export start",
    )
    assert "whole cluster" in live.cost.basis
    # AWS gives a live cluster's export the time of its clone: the data's as-of, not a snapshot
    cloned = digest(snapshot_run(source_arn=cluster), DAY)
    assert (cloned.as_of, cloned.as_of_basis) == (SNAPSHOT, "live cluster, as cloned by the export")
    assert "whole cluster" in cloned.cost.basis


def test_a_small_export_is_sized_by_its_tables_and_a_run_without_counts_says_so() -> None:
    tables = [table("shop.a", size_bytes=3_000_000), table("shop.b", size_bytes=1_000_000)]
    d = digest(snapshot_run(extracted_gb=0.0), tables)
    assert d.exported_bytes == 4_000_000
    assert d.rows_loaded is None and d.rows_change is None  # a run from before the row counts


# --------------------------------------------------------------------------- one table's message


def test_a_held_table_says_why_shows_the_difference_and_the_command_and_that_others_go_on() -> None:
    payload = slack.table_failed(CTX, snapshot_run(), held())
    text = render_text(payload)

    assert validate_payload(payload) == []
    assert "shop.orders: held for a schema change" in text
    assert "`column amount changed type: NUMERIC -> STRING`" in text
    assert "`column note STRING is no longer exported`" in text
    assert "```python -m orchestrator rerun 202611271500 --table shop.orders```" in text
    assert "the command below loads it" in text
    assert "other tables load as usual" in text
    assert "Exported rows: 1,200" in text and "Destination rows now: 1,180" in text
    assert "DTS run" not in text  # held before the hand-off: there is none


def test_the_hold_fix_names_the_rerun_flag_the_cli_takes() -> None:
    from orchestrator.faces.cli import build_parser

    args = build_parser().parse_args(["rerun", "202611271500", "--table", "shop.orders"])
    assert args.tables == ["shop.orders"]
    assert "rerun 202611271500 --table shop.orders`" in hold_fix("shop.orders", "202611271500")


def test_a_mismatched_table_shows_both_numbers_and_what_to_do() -> None:
    payload = slack.table_failed(CTX, snapshot_run(), mismatched())
    text = render_text(payload)

    assert validate_payload(payload) == []
    assert "shop.payments: row count mismatch" in text
    assert "Loaded rows: 4,990" in text and "Exported rows: 5,000" in text
    assert "holds *4,990* rows and the export wrote *5,000*" in text
    assert "max_bad_records" in text
    assert "python -m orchestrator rerun 202611271500 --table shop.payments" in text


# --------------------------------------------------------------------------- the run summary


def test_the_run_summary_reads_as_a_report() -> None:
    payload = slack.run_summary(CTX, snapshot_run(), DAY)
    text = render_text(payload)

    assert validate_payload(payload) == []
    failures = text.index("Failures and holds (4)")
    assert failures < text.index("Skipped by the export (1)") < text.index("Loaded (3)")
    order = [text.index(f"*shop.{k}*", failures) for k in ("events", "payments", "invoices", "bad")]
    assert order == sorted(order)
    assert "Rows loaded: 1,256,540 (+4,490 against the previous day), 1 new table" in text
    assert "• shop.orders: 1,204,500 rows (+4,500) · 2m 05s" in text
    assert "• shop.users: 52,000 rows (-10) · 2m 05s" in text
    assert "• shop.coupons: 40 rows (new) · 2m 05s" in text
    assert "Schema changes applied (1)" in text
    assert "added column nickname STRING; widened points INT64 -> NUMERIC" in text
    assert "Data as of: 2026-11-27 23:00 JST (snapshot)" in text
    assert "Exported: 12.0 GB" in text
    assert "Estimated cost: ~1.20 USD (export 0.12 USD + egress 1.08 USD)" in text
    assert "Cost estimate: 12.00 GB exported" in text and "floor" in text


def test_a_summary_of_2000_tables_with_rows_and_schema_changes_stays_in_slack_limits() -> None:
    tables: list[TableRun] = []
    for number in range(2000):
        key = f"shop.t{number:04d}"
        if number < 120:
            tables.append(held(key))
        elif number < 240:
            tables.append(mismatched(key))
        else:
            tables.append(
                table(
                    key,
                    loaded_rows=number * 1000,
                    previous_rows=number * 990,
                    schema_changes=(f"added column c{number} STRING",) if number % 3 == 0 else (),
                )
            )
    payload = slack.run_summary(CTX, snapshot_run(tables=tuple(t.key for t in tables)), tables)
    text = render_text(payload)

    assert validate_payload(payload) == []
    assert len(payload["blocks"]) <= 20
    assert "Failures and holds (240)" in text
    first = text.index("Failures and holds (240)")
    assert text.index("• *shop.t0120* MISMATCHED", first) < text.index("… and 220 more", first)
    assert "Loaded: the 10 largest of 1760" in text
    assert "• shop.t1999: 1,999,000 rows (+19,990)" in text
    assert "Schema changes applied (587)" in text
    assert text.count("more (see `python -m orchestrator status 202611271500`)") >= 3


# --------------------------------------------------------------------------- status


def test_status_json_carries_rows_change_schema_and_the_digest_totals() -> None:
    view = run_view(snapshot_run(state=RunState.PARTIAL), DAY, START, Prices(0.01, 0.09))
    by_table = {t["table"]: t for t in view["tables"]}

    orders = by_table["shop.orders"]
    assert (orders["loaded_rows"], orders["export_rows"], orders["previous_rows"]) == (
        1_204_500,
        1_204_500,
        1_200_000,
    )
    assert orders["change"] == 4_500 and orders["seconds"] == 125
    assert by_table["shop.users"]["schema_changes"] == [
        "added column nickname STRING",
        "widened points INT64 -> NUMERIC",
    ]
    assert by_table["shop.coupons"]["change"] is None
    totals = view["digest"]
    assert totals["rows_loaded"] == 1_256_540 and totals["rows_change"] == 4_490
    assert totals["problems"] == {
        "EMPTY": 1,
        "MISMATCHED": 1,
        "HELD": 1,
        "FAILED": 1,
        "SKIPPED_BY_EXPORT": 1,
    }
    assert totals["cost"]["total"] == pytest.approx(1.2)
    assert totals["as_of_basis"] == "snapshot"
    json.loads(to_json(view))  # JSON-ready
    assert {"counts", "export", "tables", "state"} <= set(view)  # the keys it had stay


def test_status_text_shows_rows_exported_change_and_the_totals() -> None:
    text = status_text(run_view(snapshot_run(), DAY, START, Prices(0.01, 0.09)), TOKYO)

    assert "rows      1,256,540 loaded, +4,490 against the previous day, 1 new table(s)" in text
    assert "cost      ~1.20 USD estimated: export 0.12 USD + egress 1.08 USD for 12.0 GB" in text
    assert "data as of 2026-11-27 23:00 JST (snapshot)" in text
    header = next(line for line in text.splitlines() if "TABLE" in line)
    assert header.split()[5:8] == ["ROWS", "EXPORTED", "CHANGE"]
    orders = next(line for line in text.splitlines() if "shop.orders" in line)
    assert "1,204,500" in orders and "+4,500" in orders
    users = next(line for line in text.splitlines() if "shop.users" in line)
    assert "-10" in users and "added column nickname STRING" in users
    coupons = next(line for line in text.splitlines() if "shop.coupons" in line)
    assert coupons.endswith(" new")
    lines = text.splitlines()
    assert lines.index(next(x for x in lines if "shop.events" in x)) < lines.index(orders)


# --------------------------------------------------------------------------- prices


def test_prices_are_settings_with_defaults_and_are_checked() -> None:
    base = {"RDS2BQ_GCP_PROJECT": "p"}
    settings = load_settings(base, needs={"GCP_PROJECT"})
    assert settings.prices == Prices(0.010, 0.09)
    settings = load_settings(
        {**base, "RDS2BQ_PRICE_EXPORT_PER_GB": "0.02", "RDS2BQ_PRICE_EGRESS_PER_GB": "0.114"},
        needs={"GCP_PROJECT"},
    )
    assert settings.prices == Prices(0.02, 0.114)
    with pytest.raises(ConfigError) as raised:
        load_settings({**base, "RDS2BQ_PRICE_EGRESS_PER_GB": "nan"}, needs={"GCP_PROJECT"})
    assert "RDS2BQ_PRICE_EGRESS_PER_GB='nan' must be a price" in str(raised.value)


def test_times_in_the_digest_are_aware_utc() -> None:
    assert digest(snapshot_run(), DAY).as_of == datetime(2026, 11, 27, 14, 0, tzinfo=UTC)
