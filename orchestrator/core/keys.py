"""Keys, one home: run ids and run times, export ids, the config names that mark a transfer
config as ours, and the de-duplication keys of what may arrive twice. Pure standard library.
"""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, datetime

from orchestrator.core.timestamps import floor_minute, utc

RUN_ID_FORMAT = "%Y%m%d%H%M"  # a daily run's id: its slot's minute
RERUN_ID_FORMAT = "%Y%m%d%H%M%S"  # a re-export's id: the minute it was asked for, second 01
EXPORT_TIME_FORMAT = "%Y%m%d%H%M%S"  # in every export id, and in the configs' data_path template


# Run keys. The DTS notification of a load carries only the run time we requested, and each
# config's data_path is templated on it, so the run time alone must say which run (and so which
# export) a load belongs to, whatever kind of run asked for it. The kinds are kept apart by the
# second: a daily run's run time is its slot's minute (second 00); a re-export's is the minute it
# was asked for at second 01 (so a repeat within the minute is still the same run, as before).
# A re-transfer is no run of its own: it loads again, at the original run time, from the original
# run's export. So a daily run and a re-export can never share a run id or an export id, whatever
# minute they fall in.
#
# Ids: a daily run keeps the previous version's ``YYYYMMDDHHMM`` (so its ledger reads the same);
# a re-export's is ``YYYYMMDDHHMMSS``. Both sort as their run times do (the daily id is the
# re-export format with its ``00`` left off). Export ids carry the seconds for every kind:
# ``rds2bq-ENV-YYYYMMDDHHMMSS``.


def daily_run_time(slot: datetime) -> datetime:
    """A daily run's run time: its scheduled slot, to the minute."""
    return floor_minute(slot)


def reexport_run_time(now: datetime) -> datetime:
    """A re-export's run time: the minute of ``now`` at second 01 (second 00 is daily runs')."""
    return floor_minute(now).replace(second=1)


def is_daily_run_time(run_time: datetime) -> bool:
    return utc(run_time).second == 0 and run_time.microsecond == 0


def run_id_for(run_time: datetime) -> str:
    moment = utc(run_time).replace(microsecond=0)
    return moment.strftime(RUN_ID_FORMAT if moment.second == 0 else RERUN_ID_FORMAT)


def run_time_of(run_id: str) -> datetime:
    """The run time of a run id; ValueError (with the expected shape) for anything else."""
    # One message for every malformed id, whatever is wrong with it (the shape, or digits that are
    # no time, such as month 13: not strptime's "unconverted data remains").
    problem = (
        f"{_clip(run_id)} is not a run id (YYYYMMDDHHMM for a daily run, "
        "YYYYMMDDHHMMSS for a re-export; UTC)"
    )
    # ASCII digits only: str.isdigit, \d and int() accept other scripts' digits.
    if not (isinstance(run_id, str) and re.fullmatch(r"[0-9]{12}(?:[0-9]{2})?", run_id)):
        raise ValueError(problem)
    # The fixed-width fields of RUN_ID_FORMAT / RERUN_ID_FORMAT (year, then two digits each), as
    # strptime would read them: without it, no path loads _strptime (cold start, bench/).
    digits = run_id.ljust(14, "0")  # a daily run's second is 00
    try:
        parsed = datetime(
            int(digits[:4]),
            int(digits[4:6]),
            int(digits[6:8]),
            int(digits[8:10]),
            int(digits[10:12]),
            int(digits[12:14]),
            tzinfo=UTC,
        )
    except ValueError:
        raise ValueError(problem) from None
    if len(run_id) == 14 and parsed.second == 0:
        # Second 00 is a daily run's, whose id is the 12-digit form: one run, one id.
        raise ValueError(f"{run_id!r} is not a run id: a daily run's id is {run_id[:12]}")
    return parsed


def export_task_id(env: str, run_time: datetime) -> str:
    """``rds2bq-ENV-YYYYMMDDHHMMSS``: unique per run, stable across retries of the same run."""
    return _export_prefix(env) + utc(run_time).strftime(EXPORT_TIME_FORMAT)


def _clip(value: object, limit: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


# --------------------------------------------------------------------------- states


def export_id_template(env: str) -> str:
    """The export id as a DTS runtime template: it resolves (in UTC) to ``export_task_id`` of the
    run whose run time a manual run was requested with (docs/platform.md, runtime parameters)."""
    return _export_prefix(env) + f'{{run_time|"{EXPORT_TIME_FORMAT}"}}'


def _export_prefix(env: str) -> str:
    return f"rds2bq-{env}-"


MANAGED_PREFIX = "rds2bq-"


def display_name_for(env: str, table_key: str) -> str:
    return f"{MANAGED_PREFIX}{env}:{table_key}"


def table_key_of(display_name: str, env: str) -> str | None:
    """The table key of one of *our* configs, or None when the config is not ours."""
    prefix = display_name_for(env, "")
    if not display_name.startswith(prefix):
        return None
    return display_name[len(prefix) :] or None


def transfer_key(run_name: str, state: str) -> str:
    """The de-duplication key of a DTS run reaching a final state, however we learn of it (its
    notification, or the poll's look-up when the notification is late or lost)."""
    return hashlib.sha256(f"dts|{run_name}|{state}".encode()).hexdigest()


def rerun_request_key(request_id: str) -> str:
    """The idempotency key of an operator's rerun request."""
    return "rerun-" + hashlib.sha256(request_id.encode()).hexdigest()


def missed_day_key(run_id: str) -> str:
    """The key under which the poll reports, once, that the daily run ``run_id`` never started."""
    return f"missed-day-{run_id}"
