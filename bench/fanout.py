"""Figure 1 (issue 3): the hand-off's fan-out against a one-at-a-time loop.

Both sides use the production DTS adapter (``DtsTransfers`` over the DTS REST API, built by
``build_transfer_runner`` exactly as the wiring builds it) against the DTS stand-in, which adds the
same latency to every call. The hand-off side is the real ``Orchestrator`` poll that claims the
hand-off, lists the configs and starts one run per table through its thread pool; its run ledger is
the in-memory fake from ``tests/fakes.py`` so that only DTS is measured. Each measurement runs in
a fresh process, which also reports its peak RSS.

Child usage (the harness runs these): ``python -m bench.fanout handoff|loop --run-time ISO``,
settings from the environment.
"""

from __future__ import annotations

import argparse
import gc
import math
import os
import time
from collections import Counter
from datetime import datetime, timedelta
from typing import Any

from bench.common import (
    BASE_ENV,
    Intervals,
    Timed,
    emit,
    iso,
    load,
    memo,
    peak_rss_mib,
    percentile,
    rss_mib,
    run_child,
)

# --------------------------------------------------------------------------- child side


class Delayed:
    """A ledger whose every call first waits one round trip (a model of Firestore's latency,
    for the informational runs only: the in-memory ledger answers in microseconds)."""

    def __init__(self, target: Any, seconds: float) -> None:
        self._target = target
        self._seconds = seconds

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._target, name)
        if not callable(value):
            return value

        def call(*args: Any, **kwargs: Any) -> Any:
            time.sleep(self._seconds)
            return value(*args, **kwargs)

        return call


def _handoff(run_time: datetime) -> dict[str, Any]:
    from orchestrator.adapters.dts import build_transfer_runner
    from orchestrator.app.daily import Orchestrator
    from orchestrator.core.model import ExportStatus, RunState, TableExportStatus, TableState
    from tests.fakes import FakeExporter, FixedClock, InMemoryLedger, RecordingEventBus

    settings = load(os.environ)
    spans = Intervals()
    ledger = InMemoryLedger()
    rtt_ms = float(os.environ.get("BENCH_LEDGER_RTT_MS", "0") or 0)
    ledger_port: Any = Delayed(ledger, rtt_ms / 1000) if rtt_ms else ledger
    ledger_port = Timed(ledger_port, spans, "ledger")
    exporter = FakeExporter()
    clock = FixedClock(run_time + timedelta(seconds=20))
    transfers = memo(lambda: Timed(build_transfer_runner(settings), spans, "dts"))
    service = Orchestrator(
        settings,
        ledger_port,
        lambda: exporter,
        transfers,
        RecordingEventBus(),
        clock,
    )
    # GIVEN a run whose export is COMPLETE with every table exported, margin not yet passed
    run = service.start_export(run_time)
    exporter.tables_info[run.export_task_id] = [
        TableExportStatus(max(t.export_targets, key=len), "COMPLETE") for t in settings.tables
    ]
    exporter.set_status(
        run.export_task_id, ExportStatus.COMPLETE, percent=100, task_end_time=clock.now()
    )
    service.poll()
    assert ledger.runs[run.run_id].state is RunState.EXPORTED, ledger.runs[run.run_id].state
    spans.spans.clear()
    clock.advance(minutes=settings.visibility_margin_minutes + 1)
    gc.collect()
    rss_before, peak_before = rss_mib(), peak_rss_mib()
    # WHEN the next poll hands off
    start = time.perf_counter()
    report = service.poll()
    total = time.perf_counter() - start
    peak_after = peak_rss_mib()
    # THEN every table was started once, and we say how the time was spent
    tables = ledger.tables(run.run_id)
    started = sum(1 for t in tables if t.state is TableState.STARTED and t.dts_run)
    starts = spans.durations_ms("dts.start_run")
    return {
        "tables": len(settings.tables),
        "concurrency": settings.fanout_concurrency,
        "ledger_rtt_ms": rtt_ms,
        "started": started,
        "action": report.runs[0]["action"] if report.runs else "",
        "total_s": total,
        "list_configs_s": spans.total("dts.configs_by_table"),
        "pool_s": spans.window("dts.start_run"),
        "ledger_s": sum(spans.total(k) for k in spans.spans if k.startswith("ledger.")),
        "start_calls": len(starts),
        "start_ms_mean": sum(starts) / len(starts) if starts else 0.0,
        "start_ms_p50": percentile(starts, 0.5),
        "start_ms_p99": percentile(starts, 0.99),
        "start_ms_max": max(starts) if starts else 0.0,
        "rss_before_mib": rss_before,
        "peak_before_mib": peak_before,
        "peak_rss_mib": peak_after,
    }


def _loop(run_time: datetime) -> dict[str, Any]:
    from orchestrator.adapters.dts import build_transfer_runner

    settings = load(os.environ)
    transfers = build_transfer_runner(settings)
    configs = transfers.configs_by_table()  # not timed: the baseline gets its list for free
    names = [configs[t.key].name for t in settings.tables]
    start = time.perf_counter()
    for name in names:
        transfers.start_run(name, run_time)
    total = time.perf_counter() - start
    return {"tables": len(names), "total_s": total, "peak_rss_mib": peak_rss_mib()}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.fanout")
    parser.add_argument("mode", choices=("handoff", "loop"))
    parser.add_argument("--run-time", required=True)
    args = parser.parse_args(argv)
    run_time = datetime.fromisoformat(args.run_time.replace("Z", "+00:00"))
    emit(_handoff(run_time) if args.mode == "handoff" else _loop(run_time))


# --------------------------------------------------------------------------- harness side


def settings_env(
    tables_file: str, location: str, dts_target: str, concurrency: int
) -> dict[str, str]:
    return {
        **BASE_ENV,
        "RDS2BQ_TABLES_FILE": tables_file,
        "RDS2BQ_BQ_LOCATION": location,
        "RDS2BQ_DTS_ENDPOINT": dts_target,
        "RDS2BQ_FANOUT_CONCURRENCY": str(concurrency),
    }


def starts_per_config(standin: Any, run_time: datetime) -> Counter[str]:
    """How many runs the stand-in started per config for ``run_time`` (exactly-once check)."""
    wanted = run_time.timestamp()
    return Counter(r.config_name for r in standin.runs() if r.run.run_time.timestamp() == wanted)


def check_once(standin: Any, run_time: datetime, expected: int, what: str) -> None:
    counts = starts_per_config(standin, run_time)
    twice = sum(1 for c in counts.values() if c > 1)
    if len(counts) != expected or twice:
        raise RuntimeError(
            f"{what}: the stand-in started {len(counts)} of {expected} configs, {twice} twice"
        )


def measure(
    standin: Any,
    tables_files: dict[int, str],
    run_times: Any,
    *,
    sizes: tuple[int, ...],
    loop_size: int,
    latency: float,
    concurrency: int,
    extra: tuple[tuple[int, float], ...] = (),
    repeats: int = 1,
    log: Any = print,
) -> dict[str, Any]:
    """Run the loop baseline and the hand-off at each size (fresh processes), verify exactly-once
    starts in the stand-in, and return the figures."""
    standin.faults.latency = latency
    results: dict[str, Any] = {"latency_s": latency, "concurrency": concurrency, "handoff": {}}

    def env_for(n: int, c: int) -> dict[str, str]:
        return settings_env(tables_files[n], f"bench-{n}", standin.target, c)

    log(f"fan-out: one-at-a-time loop over {loop_size} tables ({loop_size * latency:.0f}s)")
    run_time = run_times.take()
    results["loop"] = run_child(
        ["-m", "bench.fanout", "loop", "--run-time", iso(run_time)],
        env_for(loop_size, concurrency),
        f"loop over {loop_size} tables",
    )
    check_once(standin, run_time, loop_size, "loop")
    for n in sizes:
        samples = []
        for _ in range(repeats):
            log(f"fan-out: hand-off of {n} tables at concurrency {concurrency}")
            run_time = run_times.take()
            sample = run_child(
                ["-m", "bench.fanout", "handoff", "--run-time", iso(run_time)],
                env_for(n, concurrency),
                f"hand-off of {n} tables",
            )
            check_once(standin, run_time, n, f"hand-off of {n} tables")
            if sample["started"] != n or sample["action"] != "handed-off":
                raise RuntimeError(f"hand-off of {n} tables did not complete: {sample}")
            samples.append(sample)
        best = sorted(samples, key=lambda s: s["total_s"])[len(samples) // 2]
        best["samples_s"] = [s["total_s"] for s in samples]
        best["ideal_s"] = math.ceil(n / concurrency) * latency
        results["handoff"][n] = best
    results["extra"] = []
    for c, rtt in extra:
        n = 1000 if 1000 in sizes else max(sizes)
        log(f"fan-out: hand-off of {n} tables at concurrency {c}, ledger RTT {rtt:g} ms (extra)")
        run_time = run_times.take()
        env = env_for(n, c)
        if rtt:
            env["BENCH_LEDGER_RTT_MS"] = str(rtt)
        sample = run_child(
            ["-m", "bench.fanout", "handoff", "--run-time", iso(run_time)],
            env,
            f"hand-off of {n} tables at concurrency {c}",
        )
        check_once(standin, run_time, n, f"hand-off at concurrency {c}")
        sample["ideal_s"] = math.ceil(n / c) * latency
        results["extra"].append(sample)
    standin.faults.latency = 0.0
    return results


if __name__ == "__main__":
    main()
