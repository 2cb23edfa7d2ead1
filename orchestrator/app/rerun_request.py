"""What an operator asks of a rerun, and what it answers: the request, validated from its JSON
body (``BadRequestError`` says what is wrong), and the result, per table. Pure data: the work is
``orchestrator.app.reruns.Reruns``'s.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from enum import StrEnum
from typing import Any

from orchestrator.core.errors import BadRequestError
from orchestrator.core.keys import run_time_of

RERUN_FIELDS = frozenset(
    {"run_id", "mode", "tables", "failed", "as_of", "dry_run", "request_id", "force"}
)
MAX_TABLES = 2000
_REQUEST_ID_RE = re.compile(r"[A-Za-z0-9._:-]{1,128}")
_DATE_RE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


class Mode(StrEnum):
    TRANSFER = "transfer"
    EXPORT = "export"


# --------------------------------------------------------------------------- the request


@dataclass(frozen=True)
class RerunRequest:
    mode: Mode
    run_id: str = ""
    tables: tuple[str, ...] = ()
    failed: bool = False
    as_of: date | None = None
    dry_run: bool = False
    request_id: str = ""
    force: bool = False  # re-transfer an older export although a newer run loaded the table

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> RerunRequest:
        """Validate a JSON body (already checked for unknown fields); BadRequestError says why."""
        run_id = _string(body, "run_id")
        if run_id:
            try:
                run_time_of(run_id)
            except ValueError as exc:
                raise BadRequestError(str(exc)) from exc
        tables = _tables(body.get("tables"))
        failed = _flag(body, "failed")
        as_of = _date(body.get("as_of"))
        mode_text = _string(body, "mode")
        if mode_text:
            try:
                mode = Mode(mode_text)
            except ValueError:
                raise BadRequestError(
                    f"mode={mode_text!r} must be 'transfer' (from the same export) or "
                    "'export' (a new export)"
                ) from None
        elif as_of is not None:
            mode = Mode.EXPORT
        elif run_id:
            mode = Mode.TRANSFER
        else:
            raise BadRequestError(
                "nothing to rerun: name a run_id to re-transfer its tables, or send "
                '"mode": "export" for a new export'
            )
        request_id = _string(body, "request_id")
        if request_id and not _REQUEST_ID_RE.fullmatch(request_id):
            raise BadRequestError("request_id must be 1-128 characters of A-Z a-z 0-9 . _ : -")
        if tables and failed:
            raise BadRequestError("send either tables or failed: true, not both")
        if failed and not run_id:
            raise BadRequestError("failed: true needs the run_id whose failed tables to rerun")
        if mode is Mode.TRANSFER:
            if not run_id:
                raise BadRequestError("a re-transfer needs the run_id of the export to reuse")
            if as_of is not None:
                raise BadRequestError(
                    "as_of exports an older snapshot: it needs mode export, not transfer"
                )
            if not tables and not failed:
                raise BadRequestError(
                    f'name the tables of run {run_id} to re-transfer ("tables": [...]) or '
                    'send "failed": true'
                )
        return cls(
            mode=mode,
            run_id=run_id,
            tables=tables,
            failed=failed,
            as_of=as_of,
            dry_run=_flag(body, "dry_run"),
            request_id=request_id,
            force=_flag(body, "force"),
        )

    def fingerprint(self) -> str:
        """The request's meaning (not its id or dry_run): a reused request_id must match it."""
        canonical = {
            "mode": self.mode.value,
            "run_id": self.run_id,
            "tables": sorted(self.tables),
            "failed": self.failed,
            "as_of": self.as_of.isoformat() if self.as_of else "",
            "force": self.force,
        }
        return hashlib.sha256(json.dumps(canonical, sort_keys=True).encode()).hexdigest()[:32]


def _string(body: Mapping[str, Any], name: str) -> str:
    value = body.get(name, "")
    if value is None:
        return ""
    if not isinstance(value, str):
        raise BadRequestError(f"{name} must be a string")
    return value.strip()


def _flag(body: Mapping[str, Any], name: str) -> bool:
    value = body.get(name, False)
    if not isinstance(value, bool):
        raise BadRequestError(f"{name} must be true or false")
    return value


def _tables(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise BadRequestError('tables must be a list of table names, e.g. ["shop.orders"]')
    if not value:
        raise BadRequestError("tables is empty: name at least one table, or leave it out")
    if len(value) > MAX_TABLES:
        raise BadRequestError(f"at most {MAX_TABLES} tables per request")
    return tuple(dict.fromkeys(v.strip() for v in value))


def _date(value: Any) -> date | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise BadRequestError("as_of must be a date string YYYY-MM-DD")
    text = value.strip(" ")
    # Only YYYY-MM-DD in ASCII digits: fromisoformat also takes 20261125 and 2026-W48-3, and
    # other scripts' digits, none of which a person typing a day means.
    if not _DATE_RE.fullmatch(text):
        raise BadRequestError(f"as_of={_clip(value)} is not a date YYYY-MM-DD")
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise BadRequestError(f"as_of={_clip(value)} is not a date YYYY-MM-DD") from None


def _clip(value: object, limit: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


# --------------------------------------------------------------------------- the answer


@dataclass(frozen=True)
class TableOutcome:
    table: str
    # would-start | started | not-started | refused-by-dts | skipped (no data file to re-transfer)
    # | would-export | exporting | requested
    action: str
    detail: str = ""
    dts_run: str = ""


@dataclass(frozen=True)
class RerunResult:
    mode: Mode
    run_id: str  # re-transfer: the run reused; re-export: the new run
    dry_run: bool
    message: str
    tables: tuple[TableOutcome, ...] = ()
    state: str = ""  # the run's state after the request ('' for a dry-run re-export)
    parent_run_id: str = ""
    export_task_id: str = ""
    source_arn: str = ""
    snapshot_time: datetime | None = None
    repeated: bool = False  # a repeat of an earlier identical request: nothing new was started
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def started(self) -> int:
        return sum(1 for t in self.tables if t.action in ("started", "exporting"))

    @property
    def refused_by_dts(self) -> int:
        return sum(1 for t in self.tables if t.action == "refused-by-dts")

    @property
    def skipped(self) -> int:
        return sum(1 for t in self.tables if t.action == "skipped")

    @property
    def not_started(self) -> int:
        return sum(1 for t in self.tables if t.action == "not-started")
