"""core.schema: what BigQuery makes of an export's columns, and which changes a load may make."""

from __future__ import annotations

import pytest

from orchestrator.core.schema import (
    Column,
    bigquery_type,
    decimal_type,
    hold_fix,
    plan,
    standard_type,
)


@pytest.mark.parametrize(
    ("arrow", "bigquery"),
    [
        ("int32", "INT64"),
        ("int64", "INT64"),
        ("uint8", "INT64"),
        ("bool", "BOOL"),
        ("double", "FLOAT64"),
        ("float", "FLOAT64"),
        ("string", "STRING"),
        ("large_string", "STRING"),
        ("binary", "BYTES"),
        ("fixed_size_binary[16]", "BYTES"),
        ("date32[day]", "DATE"),
        ("timestamp[us, tz=UTC]", "TIMESTAMP"),
        ("timestamp[ms]", "DATETIME"),
        ("time64[us]", "TIME"),
        ("decimal128(12, 2)", "NUMERIC"),
        ("decimal128(20, 0)", "NUMERIC"),  # BIGINT UNSIGNED, as RDS exports it
        ("decimal128(38, 10)", "BIGNUMERIC"),  # scale over NUMERIC's 9
        ("decimal256(76, 38)", "BIGNUMERIC"),
        ("something_new", "STRING"),
    ],
)
def test_parquet_types_load_as_bigquery_types(arrow: str, bigquery: str) -> None:
    assert bigquery_type(arrow) == bigquery


@pytest.mark.parametrize(
    ("precision", "scale", "expected"),
    [
        (29, 0, "NUMERIC"),
        (38, 9, "NUMERIC"),
        (30, 0, "BIGNUMERIC"),  # 30 integer digits: over NUMERIC's 29
        (38, 10, "BIGNUMERIC"),
        (38, 38, "BIGNUMERIC"),
        (77, 38, "STRING"),  # 39 integer digits: over BIGNUMERIC's 38
        (40, 39, "STRING"),  # scale over BIGNUMERIC's 38
    ],
)
def test_decimals_take_the_first_target_type_that_holds_them(
    precision: int, scale: int, expected: str
) -> None:
    assert decimal_type(precision, scale) == expected


def test_legacy_type_names_compare_as_standard_ones() -> None:
    assert [standard_type(t) for t in ("INTEGER", "float", "BOOLEAN", "STRING")] == [
        "INT64",
        "FLOAT64",
        "BOOL",
        "STRING",
    ]
    assert not plan([Column("id", "INT64")], [Column("ID", "INTEGER")]).changes


def test_a_new_column_is_added_and_nothing_is_held() -> None:
    result = plan(
        [Column("id", "INT64"), Column("note", "STRING")],
        [Column("id", "INTEGER")],
    )
    assert result.added == (Column("note", "STRING"),)
    assert not result.holds
    assert result.changes == ("added column note STRING",)


def test_a_table_without_a_schema_takes_every_exported_column() -> None:
    exported = [Column("id", "INT64"), Column("name", "STRING")]
    result = plan(exported, [])
    assert result.added == tuple(exported) and not result.holds


def test_a_widened_type_is_left_to_the_load() -> None:
    result = plan([Column("amount", "BIGNUMERIC")], [Column("amount", "NUMERIC")])
    assert not result.holds and not result.added
    assert result.changes == ("widened amount NUMERIC -> BIGNUMERIC",)


@pytest.mark.parametrize(
    ("exported", "destination", "words"),
    [
        ([Column("amount", "NUMERIC")], [Column("amount", "BIGNUMERIC")], "BIGNUMERIC -> NUMERIC"),
        ([Column("amount", "INT64")], [Column("amount", "FLOAT")], "FLOAT64 -> INT64"),
        (
            [Column("code", "INT64", "int64")],
            [Column("code", "STRING")],
            "STRING -> INT64 (exported as int64)",
        ),
        ([Column("id", "INT64")], [Column("id", "INT64"), Column("gone", "STRING")], "gone"),
    ],
)
def test_a_change_a_load_cannot_make_in_place_holds_the_table(
    exported: list[Column], destination: list[Column], words: str
) -> None:
    result = plan(exported, destination)
    assert result.holds
    assert any(words in c for c in result.conflicts)


def test_the_fix_names_the_rerun_that_accepts_the_change() -> None:
    fix = hold_fix("shop.orders", "202611271500")
    assert "python -m orchestrator rerun 202611271500 --table shop.orders" in fix
    assert "revert" in fix


def test_a_fingerprint_follows_the_columns_and_not_their_order() -> None:
    from orchestrator.core.schema import fingerprint

    a, b = Column("id", "INT64", "int64"), Column("name", "STRING", "string")
    assert fingerprint((a, b)) == fingerprint((b, a)) != ""
    assert fingerprint(()) == ""
    assert fingerprint((a, b)) != fingerprint((a,))
    assert fingerprint((a, b)) != fingerprint((a, Column("name", "INT64", "int64")))
    assert fingerprint((a,)) != fingerprint((Column("id", "INT64", "decimal128(20, 0)"),))
