"""The README keeps its promises: the two commands first, and every setting documented."""

from __future__ import annotations

from pathlib import Path

from orchestrator.config import FIELDS

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()


def test_readme_starts_with_make_demo_and_make_test() -> None:
    first_block = README.split("```", 2)[1]
    assert "make demo" in first_block and "make test" in first_block


def test_every_setting_is_documented_with_its_default_and_flag() -> None:
    for field in FIELDS:
        row = next(
            (line for line in README.splitlines() if line.startswith(f"| `{field.env}`")), ""
        )
        assert row, f"{field.env} is not documented in README.md"
        assert f"`{field.flag}`" in row
        if field.default:
            assert f"`{field.default}`" in row, field.env
