"""``python -m bench``: run every figure against its baseline, print the tables, write
``bench/results.md``. Progress goes to stderr; the markdown goes to stdout."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from bench.common import ROOT, RunTimes, load, table_keys, write_tables_file

FIGURES = ("fanout", "lag", "coldstart", "calls")
FANOUT_SIZES = (100, 1000, 2000)
LOOP_SIZE = 100
LAG_SIZES = (10, 100, 1000, 2000)
CALL_SIZES = (10, 50, 100)
LATENCY_S = 0.2
CONCURRENCY = 16  # the default of RDS2BQ_FANOUT_CONCURRENCY


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument(
        "--only", default=",".join(FIGURES), help=f"comma-separated subset of {','.join(FIGURES)}"
    )
    parser.add_argument("--cold-reps", type=int, default=7, help="runs per cold-start path")
    parser.add_argument(
        "--lag-reps",
        type=int,
        default=3,
        help="interleaved rounds per hand-off lag size (without the preflight, a first day, an "
        "ordinary day): best of each",
    )
    parser.add_argument(
        "--lag-sizes",
        default=",".join(str(n) for n in LAG_SIZES),
        help="table counts of the hand-off lag (the target is read at 2,000)",
    )
    parser.add_argument(
        "--sweep",
        default="",
        help="extra fan-out concurrencies to try at 1,000 tables (informational), e.g. 32,64",
    )
    parser.add_argument(
        "--ledger-rtt-ms",
        default="",
        help="extra fan-out runs at 1,000 tables whose ledger waits this long per call "
        "(a model of Firestore's latency; informational), e.g. 20",
    )
    parser.add_argument("--output", default=str(ROOT / "bench" / "results.md"))
    parser.add_argument("--json", default="", help="also write the raw figures to this file")
    args = parser.parse_args(argv)
    wanted = [f.strip() for f in args.only.split(",") if f.strip()]
    unknown = set(wanted) - set(FIGURES)
    if unknown:
        parser.error(f"unknown figure(s): {', '.join(sorted(unknown))}")
    sweep = tuple(int(c) for c in args.sweep.split(",") if c.strip())
    lag_sizes = tuple(int(n) for n in args.lag_sizes.split(",") if n.strip())
    rtts = tuple(float(r) for r in args.ledger_rtt_ms.split(",") if r.strip())
    extra = [(c, 0.0) for c in sweep] + [(c, r) for r in rtts for c in (CONCURRENCY, *sweep)]

    from bench import calls, coldstart, fanout, lag, report
    from bench.peers import create_configs, start_peers

    started = time.monotonic()
    results: dict[str, Any] = {}
    log("starting moto's server, the Firestore and Pub/Sub emulators, the DTS stand-in")
    peers = start_peers()
    try:
        run_times = RunTimes()
        if "fanout" in wanted or "lag" in wanted:
            perf = peers.start_dts(max_workers=max(128, *sweep) if sweep else 128)
            sizes = sorted(
                {*(lag_sizes if "lag" in wanted else ())}
                | ({*FANOUT_SIZES, LOOP_SIZE} if "fanout" in wanted else set())
            )
            files: dict[int, str] = {}
            for n in sizes:
                files[n] = str(write_tables_file(peers.work_dir, table_keys(n), str(n)))
                settings = load(fanout.settings_env(files[n], f"bench-{n}", perf.target, 16))
                create_configs(settings, perf.target)
            log(f"created {sum(sizes)} transfer configs in the DTS stand-in")
            if "fanout" in wanted:
                results["fanout"] = fanout.measure(
                    perf,
                    files,
                    run_times,
                    sizes=FANOUT_SIZES,
                    loop_size=LOOP_SIZE,
                    latency=LATENCY_S,
                    concurrency=CONCURRENCY,
                    extra=tuple(extra),
                    log=log,
                )
            if "lag" in wanted:
                results["lag"] = lag.measure(
                    peers,
                    perf,
                    files,
                    run_times,
                    sizes=lag_sizes,
                    latency=LATENCY_S,
                    concurrency=CONCURRENCY,
                    bigquery=peers.start_bigquery(),
                    reps=args.lag_reps,
                    log=log,
                )
        if "coldstart" in wanted:
            bigquery = peers.start_bigquery()
            cold = peers.start_dts(s3=True, bigquery=bigquery)
            results["coldstart"] = coldstart.measure(
                peers, cold, run_times, bigquery=bigquery, reps=args.cold_reps, log=log
            )
        if "calls" in wanted:
            peers.emulators()
            results["calls"] = calls.measure(
                peers, run_times, sizes=CALL_SIZES, detail_size=max(CALL_SIZES), log=log
            )
    finally:
        log("stopping everything the benchmark started")
        peers.stop()
    elapsed = time.monotonic() - started
    repetitions = (
        "fan-out: 1 run per size (fresh process each); lag: best of "
        f"{args.lag_reps} interleaved rounds per size: without the preflight, with it on a "
        "first day and on an ordinary day (fresh process each); loop baseline: 1 run of "
        f"{LOOP_SIZE} tables; cold start: "
        f"{args.cold_reps} runs per path, of its (a) (each right "
        "after it), of the SDK packages per set and of (b) (best, module by module; each round "
        "at another stack depth) after one warm-up; API calls: 1 day per size"
    )
    document = report.document(
        results, report.machine_info(), {"elapsed_s": elapsed, "repetitions": repetitions}
    )
    print(document)
    Path(args.output).write_text(document)
    log(f"wrote {args.output} ({elapsed:.0f} s in all)")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
