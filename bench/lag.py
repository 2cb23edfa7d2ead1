"""Figure 2 (issue 7): hand-off lag, from the export being COMPLETE to every DTS run started.

The measured poll is the production one, built by ``orchestrator.wiring`` with its real AWS and
DTS adapters: botocore against moto's server (``DescribeExportTasks``, then the export's
``export_tables_info_*`` files listed and read from S3, written as RDS writes them, column
metadata included), and the DTS adapter over the DTS REST API against the stand-in with a fixed
latency per call. Only the run ledger and the event bus are in-memory fakes (``tests/fakes.py``,
``RecordingEventBus``): the Firestore emulator's speed says nothing about Firestore's.

The visibility margin is set to 0 so that the poll that sees COMPLETE also hands off: the measured
lag is the work of one poll. In production add the wait for the next poll (up to the poll
interval) and the margin (default 5 minutes), both configuration, not code.

The instance is warm (it polled once while the export was under way), as a poll every few minutes
usually is. Baseline: the ideal, ceil(tables / concurrency) x latency per call.

Child usage: ``python -m bench.lag --run-time ISO`` (says READY, waits for GO on stdin).
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import time
from datetime import datetime, timedelta
from typing import Any

from bench.common import (
    BASE_ENV,
    Conversation,
    Intervals,
    Timed,
    emit,
    iso,
    load,
    peak_rss_mib,
    wait_for_go,
)
from bench.fanout import check_once
from bench.peers import complete_export, create_destinations

# --------------------------------------------------------------------------- child side


def _child(run_time: datetime, preflight: bool, yesterday: str) -> dict[str, Any]:
    from orchestrator import wiring
    from orchestrator.core.model import TableState
    from tests.fakes import InMemoryLedger, RecordingEventBus

    settings = load(os.environ)
    spans = Intervals()
    ledger = InMemoryLedger()
    if yesterday:
        _loaded_yesterday(ledger, settings, run_time, json.loads(yesterday))
    w = wiring.Wiring(settings)
    w.__dict__["ledger"] = Timed(ledger, spans, "ledger")  # the cached_property, pre-filled
    w.__dict__["events"] = RecordingEventBus()
    real_exporter, real_transfers = w.exporter, w.transfers
    w.exporter = lambda: Timed(real_exporter(), spans, "aws")  # type: ignore[method-assign]

    def transfers() -> Any:  # the wiring builds the DTS adapter (and its HTTP client) lazily
        start = time.perf_counter()
        built = real_transfers()
        spans.add("build.transfers", start, time.perf_counter())
        return Timed(built, spans, "dts")

    w.transfers = transfers  # type: ignore[method-assign]
    real_destinations = w.destinations
    described: list[str] = []

    class Counted:  # which tables the preflight described (an ordinary day: none)
        def __init__(self, inner: Any) -> None:
            self.inner = inner

        def __getattr__(self, name: str) -> Any:
            return getattr(self.inner, name)

        def describe(self, ids: Any) -> Any:
            described.extend(ids)
            return self.inner.describe(ids)

    def destinations() -> Any:
        return Timed(Counted(real_destinations()), spans, "bq")

    w.destinations = destinations  # type: ignore[method-assign]
    if not preflight:
        w.__dict__["preflight"] = None  # the hand-off as it was before the preflight (issue 15)
    service = w.service
    run = service.start_export(run_time)
    service.poll()  # the export is under way: the instance is warm
    print("READY " + json.dumps({"task_id": run.export_task_id}), flush=True)
    wait_for_go()
    gc.collect()
    spans.spans.clear()
    cpu = time.process_time()
    start = time.perf_counter()
    report = service.poll()
    total = time.perf_counter() - start
    cpu = time.process_time() - cpu
    tables = ledger.tables(run.run_id)
    return {
        "tables": len(settings.tables),
        "started": sum(1 for t in tables if t.state is TableState.STARTED and t.dts_run),
        "actions": [r["action"] for r in report.runs],
        "total_s": total,
        "cpu_s": cpu,  # the poll's process, every thread
        "describe_export_s": spans.total("aws.describe_export"),
        "tables_info_s": spans.total("aws.read_tables_info"),
        "preflight": preflight,
        "described": len(described),
        # windows (first start to last end): the preflight's chunks overlap each other
        "footers_s": spans.window("aws.read_exported_tables"),
        "describe_s": spans.window("bq.describe"),
        "add_columns_s": spans.window("bq.add_columns"),
        "rows_counted": sum(1 for t in tables if t.export_rows is not None),
        "dts_client_s": spans.total("build.transfers"),
        "list_configs_s": spans.total("dts.configs_by_table"),
        "pool_s": spans.window("dts.start_run"),
        # from the poll's start to its first StartManualTransferRuns (the first chunk's checks)
        "first_start_s": min((b for b, _ in spans.spans.get("dts.start_run", [])), default=start)
        - start,
        "ledger_s": sum(spans.total(k) for k in spans.spans if k.startswith("ledger.")),
        "peak_rss_mib": peak_rss_mib(),
    }


def _loaded_yesterday(
    ledger: Any, settings: Any, run_time: datetime, footer: dict[str, Any]
) -> None:
    """The ledger as an ordinary day finds it: the day before's run closed, every table of it
    SUCCEEDED with the rows and the columns' fingerprint today's export has (``footer``)."""
    from orchestrator.core.keys import run_id_for
    from orchestrator.core.model import Run, RunState, TableRun, TableState

    day_before = run_time - timedelta(days=1)
    keys = tuple(t.key for t in settings.tables)
    run = Run(
        run_id_for(day_before),
        day_before,
        "daily",
        "rds2bq-bench-yesterday",
        keys,
        state=RunState.SUCCEEDED,
        handed_off_at=day_before + timedelta(hours=1),
        closed_at=day_before + timedelta(hours=2),
    )
    ledger.create_run(run)
    ledger.add_tables(
        run.run_id,
        [
            TableRun(
                k,
                TableState.SUCCEEDED,
                loaded_rows=footer["rows"],
                export_rows=footer["rows"],
                export_schema=footer["export_schema"],
            )
            for k in keys
        ],
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.lag")
    parser.add_argument("--run-time", required=True)
    parser.add_argument("--no-preflight", action="store_true", help="the hand-off without it")
    parser.add_argument(
        "--yesterday",
        default="",
        help="an ordinary day: JSON {rows, export_schema} of every table's load the day before",
    )
    args = parser.parse_args(argv)
    run_time = datetime.fromisoformat(args.run_time.replace("Z", "+00:00"))
    emit(_child(run_time, preflight=not args.no_preflight, yesterday=args.yesterday))


# --------------------------------------------------------------------------- harness side


# The arms of each size, in the order each interleaved round runs them: (its name in ``runs``,
# the results key it keeps its best run under, preflight on, an ordinary day).
ARMS = (
    ("without", "baseline", False, False),  # the hand-off before issue 15
    ("first day", "sizes", True, False),  # no previous run: every destination described
    ("ordinary day", "ordinary", True, True),  # yesterday's loads vouch for every table
)


def measure(
    peers: Any,
    standin: Any,
    tables_files: dict[int, str],
    run_times: Any,
    *,
    sizes: tuple[int, ...],
    latency: float,
    concurrency: int,
    bigquery: Any,
    reps: int = 1,
    log: Any = print,
) -> dict[str, Any]:
    """Per size, the poll that sees COMPLETE and hands off, in ``reps`` interleaved rounds of
    ``ARMS``: without the preflight (``baseline``), with it on a first day (``sizes``: every
    destination described) and on an ordinary day (``ordinary``: the day before loaded every
    table with today's columns, so none is described). Each arm keeps its best run (the least
    disturbed by the shared machine); every run's lag is kept in ``runs``."""
    from bench.peers import bench_footer

    footer = bench_footer()
    yesterday = json.dumps({"rows": footer.rows, "export_schema": footer.export_schema})
    standin.faults.latency = latency
    results: dict[str, Any] = {
        "latency_s": latency,
        "concurrency": concurrency,
        "reps": reps,
        "sizes": {},
        "baseline": {},
        "ordinary": {},
        "runs": {},
    }
    try:
        for n in sizes:
            env = {
                **BASE_ENV,
                **peers.aws_env(),
                "RDS2BQ_AWS_AUTH": "default",
                "RDS2BQ_TABLES_FILE": tables_files[n],
                "RDS2BQ_BQ_LOCATION": f"bench-{n}",
                "RDS2BQ_DTS_ENDPOINT": standin.target,
                "RDS2BQ_BQ_ENDPOINT": bigquery.endpoint,
                "RDS2BQ_FANOUT_CONCURRENCY": str(concurrency),
                "RDS2BQ_VISIBILITY_MARGIN_MINUTES": "0",
            }
            settings = load(env)
            create_destinations(settings, bigquery.endpoint)
            runs: dict[str, list[float]] = {arm: [] for arm, *_ in ARMS}
            for rep in range(reps):
                for arm, kept, preflight, ordinary in ARMS:
                    log(f"hand-off lag: {n} tables, {arm} ({rep + 1} of {reps})")
                    result = _one(
                        peers,
                        standin,
                        env,
                        settings,
                        run_times,
                        n,
                        preflight,
                        yesterday if ordinary else "",
                    )
                    result["ideal_s"] = math.ceil(n / concurrency) * latency
                    runs[arm].append(result["total_s"])
                    best = results[kept]
                    if n not in best or result["total_s"] < best[n]["total_s"]:
                        best[n] = result
            results["runs"][n] = runs
    finally:
        standin.faults.latency = 0.0
    return results


def _one(
    peers: Any,
    standin: Any,
    env: dict[str, str],
    settings: Any,
    run_times: Any,
    n: int,
    preflight: bool,
    yesterday: str,
) -> dict[str, Any]:
    run_time = run_times.take()
    argv = ["-m", "bench.lag", "--run-time", iso(run_time)]
    if not preflight:
        argv.append("--no-preflight")
    if yesterday:
        argv += ["--yesterday", yesterday]
    arm = " (no preflight)" if not preflight else " (ordinary day)" if yesterday else ""
    child = Conversation(argv, env, f"lag {n}{arm}")
    try:
        task_id = child.ready()["task_id"]
        metadata = complete_export(peers.control, task_id, settings.tables)
        peers_cpu = time.process_time()  # the peers serve the poll from this process's threads
        result = child.go()
        result["peers_cpu_s"] = time.process_time() - peers_cpu
    finally:
        child.close()
    check_once(standin, run_time, n, f"hand-off lag of {n} tables")
    if result["started"] != n:
        raise RuntimeError(f"lag {n}: {result['started']} tables started: {result}")
    if preflight and result["rows_counted"] != n:
        raise RuntimeError(f"lag {n}: the preflight counted {result['rows_counted']} tables")
    if preflight and result["described"] != (0 if yesterday else n):
        raise RuntimeError(f"lag {n}: the preflight described {result['described']} tables")
    result["tables_info_bytes"] = metadata
    return result


if __name__ == "__main__":
    main()
