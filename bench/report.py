"""Turns the figures into markdown: one headline table (each figure beside its same-run baseline,
target and verdict), then the breakdowns that explain them."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from bench.common import ROOT

TARGET_FANOUT_S = 15.0
TARGET_FANOUT_SPEEDUP = 13.0  # issue 11 (issue 3 asked 10x)
TARGET_PEAK_MIB = 256.0
TARGET_PREFLIGHT_SHARE = 0.10  # issue 15: the preflight adds at most 10 % to the 2,000-table lag
TARGET_NOTIFY_FIRESTORE_OPS = 5  # issue 15: per notify message, of every kind


def named(items: Sequence[Any]) -> str:
    return ", ".join(f"{m} {t:+.0f}" for m, t in items) or "none"


def sdk_list(names: Sequence[str]) -> str:
    return " + ".join(names) if names else "none"


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    def cell(value: Any) -> str:
        return str(value).replace("|", "\\|")

    lines = [
        "| " + " | ".join(headers) + " |",
        "|" + "|".join("---" for _ in headers) + "|",
    ]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def s(seconds: float) -> str:
    return f"{seconds:.2f} s" if seconds < 10 else f"{seconds:.1f} s"


def ms(millis: float) -> str:
    return f"{millis:.0f} ms"


def mib(value: float) -> str:
    return f"{value:.0f} MiB"


def verdict(ok: bool) -> str:
    return "**met**" if ok else "**MISSED**"


def n_fmt(n: int | str) -> str:
    return f"{int(n):,}"


def count(value: float) -> str:
    if value == int(value):
        return f"{int(value):,}"
    return f"{value:,.1f}"


# --------------------------------------------------------------------------- headline


def headline(results: dict[str, Any]) -> str:
    rows: list[list[str]] = []
    fan = results.get("fanout")
    if fan:
        loop = fan["loop"]
        per_table = loop["total_s"] / loop["tables"]
        c, lat = fan["concurrency"], fan["latency_s"]
        for n_key, h in sorted(fan["handoff"].items(), key=lambda kv: int(kv[0])):
            n = int(n_key)
            measured_loop = n == loop["tables"]
            base = loop["total_s"] if measured_loop else per_table * n
            label = "measured" if measured_loop else f"**extrapolated** from {loop['tables']}"
            speedup = base / h["total_s"]
            target, ok = "", None
            if n == 1000:
                target = f"< {TARGET_FANOUT_S:.0f} s and >= {TARGET_FANOUT_SPEEDUP:.0f}x"
                ok = h["total_s"] < TARGET_FANOUT_S and speedup >= TARGET_FANOUT_SPEEDUP
            rows.append(
                [
                    f"1 fan-out, {n_fmt(n)} tables (c={c}, {lat * 1000:.0f} ms/call)",
                    s(h["total_s"]),
                    f"one-at-a-time loop {s(base)} ({label})",
                    f"{speedup:.1f}x faster",
                    target or "-",
                    verdict(ok) if ok is not None else "-",
                ]
            )
        biggest = max(fan["handoff"], key=int)
        h = fan["handoff"][biggest]
        rows.append(
            [
                f"1 peak RSS, {n_fmt(biggest)}-table hand-off (fresh process, VmHWM)",
                mib(h["peak_rss_mib"]),
                f"same process before the hand-off: {mib(h['rss_before_mib'])}",
                f"+{h['peak_rss_mib'] - h['rss_before_mib']:.0f} MiB",
                f"< {TARGET_PEAK_MIB:.0f} MiB",
                verdict(h["peak_rss_mib"] < TARGET_PEAK_MIB),
            ]
        )
    lag = results.get("lag")
    if lag:
        for n_key, r in sorted(lag["sizes"].items(), key=lambda kv: int(kv[0])):
            rows.append(
                [
                    f"2 hand-off lag, {n_fmt(n_key)} tables (COMPLETE seen -> all started)",
                    s(r["total_s"]),
                    f"ideal ceil(n/{lag['concurrency']}) x {lag['latency_s'] * 1000:.0f} ms"
                    f" = {s(r['ideal_s'])}",
                    f"{r['total_s'] / r['ideal_s']:.2f}x ideal",
                    "-",
                    "-",
                ]
            )
        biggest_size = max(int(k) for k in lag["sizes"])
        runs_of = lag.get("runs", {})
        reps = lag.get("reps", 1)
        for key, day, arm in (
            ("sizes", "a first day (every destination described)", "first day"),
            (
                "ordinary",
                "an ordinary day (the day before vouches for every table)",
                "ordinary day",
            ),
        ):
            for n_key, r in sorted(lag.get(key, {}).items(), key=lambda kv: int(kv[0])):
                base = lag.get("baseline", {}).get(n_key)
                if base is None:
                    continue
                extra = r["total_s"] - base["total_s"]
                at_target = int(n_key) == biggest_size
                runs = runs_of.get(n_key, {})
                mine = runs.get(arm, [])
                every = (
                    f" (best of {reps} interleaved rounds; with: "
                    + " / ".join(s(x) for x in mine)
                    + ", without: "
                    + " / ".join(s(x) for x in runs.get("without", []))
                    + ")"
                    if reps > 1 and runs
                    else ""
                )
                rows.append(
                    [
                        f"2 preflight (footers, schemas, rows), {n_fmt(n_key)} tables, {day}: "
                        "the same poll with it",
                        s(r["total_s"]),
                        f"without it (the hand-off before issue 15), same run: "
                        f"{s(base['total_s'])}" + every,
                        f"{extra:+.1f} s ({100 * extra / base['total_s']:+.0f}%)",
                        f"<= +{TARGET_PREFLIGHT_SHARE:.0%} at 2,000" if at_target else "-",
                        verdict(extra <= TARGET_PREFLIGHT_SHARE * base["total_s"])
                        if at_target
                        else "-",
                    ]
                )
        biggest = max(lag["sizes"], key=int)
        r = lag["sizes"][biggest]
        rows.append(
            [
                f"2 peak RSS, poll with {n_fmt(biggest)} tables (botocore + DTS, VmHWM)",
                mib(r["peak_rss_mib"]),
                "-",
                "-",
                f"< {TARGET_PEAK_MIB:.0f} MiB",
                verdict(r["peak_rss_mib"] < TARGET_PEAK_MIB),
            ]
        )
    cold = results.get("coldstart")
    if cold:
        everything_f = cold["everything"]["filtered_ms"]
        for name, p in cold["paths"].items():
            loaded = sdk_list(p["loaded"])
            expected = "as measured" if p["expected"] is None else sdk_list(p["expected"])
            ok = p["own_ok"] and p["sdks_ok"] is not False
            rows.append(
                [
                    f"3 cold import, {name} (best of {cold['reps']}, module by module)",
                    f"{ms(p['filtered_ms'])}; loads {loaded}",
                    (
                        f"(a) the {p['replay_modules']} SDK modules it loaded, alone "
                        f"{ms(p['alone_filtered_ms'])}"
                        if p["alone"]
                        else "(a) none (no SDK)"
                    )
                    + f"; (b) main + every SDK "
                    f"{ms(cold['everything']['filtered_ms'])}",
                    f"{p['own_filtered_ms']:+.0f} ms over (a), our modules {p['ours_ms']:.0f} ms "
                    f"(each less the full GC passes in its imports: "
                    f"{p['own_less_full_gc_ms']:+.0f}; "
                    f"best whole runs: {p['own_ms']:+.0f}; over the SDK packages alone: "
                    f"{p['own_vs_packages_ms']:+.0f}); "
                    f"{p['filtered_ms'] / everything_f:.0%} of (b)",
                    f"<= +{cold['target_own_ms']:.0f} ms; SDKs: {expected}",
                    verdict(ok),
                ]
            )
    calls = results.get("calls")
    if calls:
        idle = calls["idle_aws_calls"]
        rows.append(
            [
                "4 AWS calls made by idle polls",
                count(idle),
                "-",
                "-",
                "0",
                verdict(idle == 0),
            ]
        )
        rpcs = calls.get("idle_firestore_rpcs", [])
        shapes = calls.get("idle_firestore", [])
        rows.append(
            [
                "4 Firestore RPCs per idle poll (before and after the run, every size)",
                "; ".join(shapes),
                "-",
                "-",
                "1 ledger query",
                verdict(rpcs == [1.0] and shapes == ["run_query x1"]),
            ]
        )
        # every size's messages, by kind: Firestore RPCs -> messages
        per_kind: dict[str, dict[int, int]] = {}
        for by_kind in calls.get("notify_firestore_per_message", {}).values():
            for kind, spread in by_kind.items():
                into = per_kind.setdefault(kind, {})
                for rpcs, messages in spread.items():
                    into[int(rpcs)] = into.get(int(rpcs), 0) + messages
        if per_kind:
            every = [(r, m) for spread in per_kind.values() for r, m in spread.items()]
            within = sum(m for r, m in every if r <= TARGET_NOTIFY_FIRESTORE_OPS)
            rows.append(
                [
                    "4 Firestore RPCs per notify message, by kind (every size)",
                    "; ".join(
                        f"{kind}: "
                        + ", ".join(f"{r} x{count(m)}" for r, m in sorted(spread.items()))
                        for kind, spread in sorted(per_kind.items())
                    ),
                    "-",
                    f"{within} of {sum(m for _, m in every)} messages within the target",
                    f"<= {TARGET_NOTIFY_FIRESTORE_OPS} per message",
                    verdict(max(r for r, _ in every) <= TARGET_NOTIFY_FIRESTORE_OPS),
                ]
            )
        n = calls["detail_size"]
        totals = calls["totals"][str(n)] if str(n) in calls["totals"] else calls["totals"][n]
        rows.append(
            [
                f"4 API calls, one day of {n_fmt(n)} tables",
                "; ".join(f"{k} {count(v)}" for k, v in totals.items() if v),
                "-",
                "-",
                "-",
                "-",
            ]
        )
    return table(
        ["figure", "measured", "baseline (same run)", "vs baseline", "target", "verdict"], rows
    )


# --------------------------------------------------------------------------- breakdowns


def fanout_breakdown(fan: dict[str, Any]) -> str:
    rows = []
    entries = [(int(n), h) for n, h in fan["handoff"].items()]
    entries += [(int(h["tables"]), h) for h in fan.get("extra", [])]
    for n, h in sorted(entries, key=lambda e: (e[0], e[1]["concurrency"], e[1]["ledger_rtt_ms"])):
        other = h["total_s"] - h["list_configs_s"] - h["pool_s"]
        extra = f", ledger {h['ledger_rtt_ms']:g} ms/call (modelled)" if h["ledger_rtt_ms"] else ""
        rows.append(
            [
                n_fmt(n),
                f"{h['concurrency']}{extra}",
                s(h["total_s"]),
                s(h["ideal_s"]),
                s(h["list_configs_s"]),
                s(h["pool_s"]),
                f"{h['start_ms_mean']:.0f} / {h['start_ms_p99']:.0f} / {h['start_ms_max']:.0f}",
                s(h["ledger_s"]),
                s(other),
                f"{h['started']}/{h['tables']}",
                mib(h["peak_rss_mib"]),
            ]
        )
    loop = fan["loop"]
    rows.append(
        [
            f"{n_fmt(loop['tables'])} (loop)",
            "1",
            s(loop["total_s"]),
            s(loop["tables"] * fan["latency_s"]),
            "(not timed)",
            s(loop["total_s"]),
            f"{loop['total_s'] / loop['tables'] * 1000:.0f} (mean)",
            "-",
            "-",
            f"{loop['tables']}/{loop['tables']}",  # every start answered once
            mib(loop["peak_rss_mib"]),
        ]
    )
    return table(
        [
            "tables",
            "concurrency",
            "hand-off poll",
            "ideal",
            "list configs",
            "start window",
            "StartManualTransferRuns ms mean / p99 / max",
            "ledger (sum over threads)",
            "rest",
            "started once",
            "peak RSS",
        ],
        rows,
    )


def lag_breakdown(lag: dict[str, Any]) -> str:
    rows = []
    arms = (
        ("without the preflight", lag.get("baseline", {})),
        ("first day", lag["sizes"]),
        ("ordinary day", lag.get("ordinary", {})),
    )
    for n_key in sorted(lag["sizes"], key=int):
        for day, results in arms:
            r = results.get(n_key)
            if r is None:
                continue
            rest = (  # the preflight's windows overlap the start window: not subtracted
                r["total_s"]
                - r["describe_export_s"]
                - r["tables_info_s"]
                - r["dts_client_s"]
                - r["list_configs_s"]
                - r["pool_s"]
            )
            preflight = (
                f"{s(r.get('footers_s', 0.0))}, {s(r.get('describe_s', 0.0))} "
                f"({r.get('described', '?')} described)"
                if r.get("preflight", True)
                else "-"
            )
            rows.append(
                [
                    n_fmt(n_key),
                    day,
                    s(r["total_s"]),
                    s(r["ideal_s"]),
                    ms(r["describe_export_s"] * 1000),
                    f"{ms(r['tables_info_s'] * 1000)} ({r['tables_info_bytes'] / 1e6:.1f} MB)",
                    preflight,
                    ms(r["dts_client_s"] * 1000),
                    s(r["list_configs_s"]),
                    s(r["pool_s"]),
                    s(r["first_start_s"]) if "first_start_s" in r else "-",
                    s(rest),
                    f"{s(r['cpu_s'])} / {s(r['peers_cpu_s'])}" if "cpu_s" in r else "-",
                    f"{r['started']}/{r['tables']}",
                    mib(r["peak_rss_mib"]),
                ]
            )
    return table(
        [
            "tables",
            "poll",
            "lag (one poll)",
            "ideal",
            "DescribeExportTasks",
            "export_tables_info (S3)",
            "preflight windows: footers (S3), destinations (BigQuery), beside the starts",
            "DTS client (lazy import + build)",
            "list configs",
            "start window",
            "first start (after the poll began)",
            "rest",
            "CPU: the poll's process / the peers'",
            "started once",
            "peak RSS",
        ],
        rows,
    )


def full_gc_where(p: dict[str, Any]) -> str:
    """The full GC passes billed to a path's imports and to its (a)'s: time, and modules."""

    def side(gc: dict[str, Any]) -> str:
        where = ", ".join(f"{m} {t:.0f}" for m, t in gc["where"]) or "none"
        return f"{gc['min_ms']:.0f} ms ({where})"

    return side(p["gc_full_in_imports"]) + " / " + side(p["alone_gc_full_in_imports"])


def coldstart_breakdown(cold: dict[str, Any]) -> tuple[str, str]:
    """The verdict table (each path beside its columns (a) and (b)) and where the time went."""
    from bench.coldstart import SDK_COLUMNS

    everything = cold["everything"]
    rows = []
    for name, p in cold["paths"].items():
        expected = "(report)" if p["expected"] is None else sdk_list(p["expected"])
        same = "-" if p["sdks_ok"] is None else ("yes" if p["sdks_ok"] else "**NO**")
        a = p["alone"]
        rows.append(
            [
                name,
                ms(p["filtered_ms"]),
                f"{ms(p['alone_filtered_ms'])} ({p['replay_modules']} modules)"
                if a
                else "0 ms (none)",
                f"**{p['own_filtered_ms']:+.0f} ms**",
                verdict(p["own_ok"]),
                f"{p['ours_ms']:.0f} ms ({p['ours_modules']} modules)",
                f"{p['own_vs_packages_ms']:+.0f} ms" if p["packages"] else "-",
                f"**{p['own_less_full_gc_ms']:+.0f} ms**",
                full_gc_where(p),
                f"{p['gc_full_max']} / {a['gc_full_max']}: {p['gc_full_min_ms']:.0f} / "
                f"{a['gc_full_min_ms']:.0f} ms (all passes {p['gc_min_ms']:.0f} / "
                f"{a['gc_min_ms']:.0f} ms)"
                if a
                else f"{p['gc_full_max']}: {p['gc_full_min_ms']:.0f} ms (all passes "
                f"{p['gc_min_ms']:.0f} ms)",
                ms(p["best_ms"]),
                " / ".join(f"{v:.0f}" for v in p["samples_ms"]),
                ms(p["alone_ms"]) if a else "0 ms (none)",
                " / ".join(f"{v:.0f}" for v in a["samples_ms"]) if a else "-",
                f"{p['own_ms']:+.0f} ms",
                f"ours {p['ours_ms']:+.0f} ({p['ours_modules']} modules: "
                + named(p.get("ours_top", []))
                + "); other modules only "
                f"the path imports {p['path_only_ms']:+.0f} ({p['path_only_modules']}: "
                + named(p["path_only_top"])
                + f"); only (a) imports {-p['alone_only_ms']:+.0f} ("
                + named(p["alone_only_top"])
                + f"); both import {p['common_ms']:+.0f} (largest: "
                + named(p["common_top"])
                + f"; in worker threads: {p.get('common_threaded_ms', 0.0):+.0f}, "
                f"{p.get('common_threaded_modules', 0)} modules)",
                f"{p['filtered_ms'] / everything['filtered_ms']:.0%}",
                sdk_list(p["loaded"]) + (" (+ ID token)" if p["sdks"].get("id token") else ""),
                expected,
                same,
                mib(p["peak_rss_mib"]),
            ]
        )
    rows.append(
        [
            "(b) main + every SDK",
            ms(everything["filtered_ms"]),
            "-",
            "-",
            "-",
            "-",
            "-",
            "-",
            "-",
            f"{everything['gc_full_max']}: {everything['gc_full_min_ms']:.0f} ms (all passes "
            f"{everything['gc_min_ms']:.0f} ms)",
            ms(everything["best_ms"]),
            " / ".join(f"{v:.0f}" for v in everything["samples_ms"]),
            "-",
            "-",
            "-",
            "-",
            "100%",
            "all",
            "-",
            "-",
            mib(everything["peak_rss_mib"]),
        ]
    )
    verdicts = table(
        [
            "path",
            "(1) path",
            "(a) the SDK modules it loaded, alone",
            "(1) - (a)",
            f"<= {cold['target_own_ms']:.0f} ms",
            "our modules (self times)",
            "(1) - the SDK packages alone (former (a))",
            "(1) - (a), each less the full GC passes in its imports",
            "full GC passes in imports, (1) / (a): ms (the least of the runs), where (the run "
            "with the most)",
            "full GC passes, (1) / (a): how many, their time",
            "(1) best whole run",
            "(1) all runs (ms)",
            "(a) best whole run",
            "(a) all runs (ms)",
            "(1) - (a), whole runs",
            "(1) - (a), by module: ours; other modules only the path imports; modules only (a) "
            "imports; modules both import, (1) over (a)",
            "(1) / (b)",
            "SDKs loaded",
            "expected",
            "same",
            "peak RSS",
        ],
        rows,
    )
    families = (
        "google core",
        "firestore",
        "pubsub",
        "dts",
        "secretmanager",
        "botocore",
        "bigquery",
        "rds2bq",
        "stdlib/other",
    )
    rows = []
    for name, p in [*cold["paths"].items(), ("(b) main + every SDK", everything)]:
        rows.append(
            [
                name,
                ms(p["best_ms"]),
                str(p["modules"]),
                *("yes" if p["sdks"].get(sdk) else "no" for sdk in SDK_COLUMNS),
                *(f"{p['families_ms'].get(f, 0.0):.0f}" for f in families),
            ]
        )
        a = p.get("alone")
        if a:
            rows.append(
                [
                    f"  (a) for it: the {p['replay_modules']} SDK modules it loaded "
                    f"({sdk_list(p['sdk_modules'])} and their submodules)",
                    ms(a["best_ms"]),
                    str(a["modules"]),
                    *("" for _ in SDK_COLUMNS),
                    *(f"{a['families_ms'].get(f, 0.0):.0f}" for f in families),
                ]
            )
    where = table(
        ["run", "best", "modules", *SDK_COLUMNS, *(f"{f} ms" for f in families)],
        rows,
    )
    return verdicts, where


def calls_tables(calls: dict[str, Any]) -> tuple[str, str]:
    from bench.calls import PHASES, SERVICES

    invocations = calls["invocations"]
    rows = []
    for service in SERVICES:
        rows.append(
            [
                service,
                *(
                    count(round(calls["per_invocation"][p][service] * invocations.get(p, 0)))
                    for p in PHASES
                ),
            ]
        )
    per_phase = table(
        ["calls, all invocations", *(f"{p} (x{invocations.get(p, 0)})" for p in PHASES)], rows
    )
    sizes = [str(x) for x in calls["sizes"]]
    totals = {str(k): v for k, v in calls["totals"].items()}
    rows = []
    for service in SERVICES:
        row = [service, *(count(totals[x][service]) for x in sizes)]
        if calls["extrapolated"]:
            row.append(count(round(calls["extrapolated"][service])))
        rows.append(row)
    headers = ["calls per day", *(f"{n_fmt(x)} tables" for x in sizes)]
    if calls["extrapolated"]:
        headers.append(
            f"{n_fmt(calls['extrapolate_to'])} tables (**extrapolated**: the larger of a quadratic "
            "and a linear fit)"
        )
    return per_phase, table(headers, rows)


# --------------------------------------------------------------------------- machine


def machine_info() -> dict[str, str]:
    cpu = "unknown"
    try:
        with open("/proc/cpuinfo") as info:
            cpu = next(
                (line.split(":", 1)[1].strip() for line in info if line.startswith("model name")),
                platform.processor() or "unknown",
            )
    except OSError:
        pass
    memory = "unknown"
    try:
        with open("/proc/meminfo") as info:
            kib = int(next(line for line in info if line.startswith("MemTotal")).split()[1])
            memory = f"{kib / 1024 / 1024:.1f} GiB"
    except (OSError, StopIteration):
        pass

    def git(*args: str) -> str:
        try:
            return subprocess.run(
                ["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10
            ).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    changed = git("status", "--porcelain")
    commit = git("rev-parse", "--short", "HEAD") or "unknown"
    if changed:
        commit += f" + {len(changed.splitlines())} uncommitted paths"
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{cpu}, {os.cpu_count()} cores, {memory}",
        "os": platform.platform(),
        "python": sys.version.split()[0],
        "commit": commit,
    }


def document(results: dict[str, Any], info: dict[str, str], settings: dict[str, Any]) -> str:
    parts = [
        "# rds2bq benchmarks",
        "",
        f"- date: {info['date']}",
        f"- machine: {info['machine']}; {info['os']}; Python {info['python']}",
        f"- code: {info['commit']}",
        f"- command: `python -m bench` ({settings['elapsed_s']:.0f} s); repetitions: "
        f"{settings['repetitions']}",
        "",
        "## Headline",
        "",
        headline(results),
    ]
    if "fanout" in results:
        parts += [
            "",
            "## 1. Fan-out: where the hand-off's time goes",
            "",
            f"DTS stand-in latency {results['fanout']['latency_s'] * 1000:.0f} ms on every call; "
            'run ledger: the in-memory fake (`tests/fakes.py`), to isolate DTS. "start window": '
            'first StartManualTransferRuns sent to last answered; "rest": claim, ledger writes, '
            "release. The loop baseline times only its sequential starts (its config listing is "
            "free), so the speed-up is conservative.",
            "",
            fanout_breakdown(results["fanout"]),
        ]
    if "lag" in results:
        parts += [
            "",
            "## 2. Hand-off lag: where one poll's time goes",
            "",
            "Production adapters: botocore against moto, DTS on the official client's REST "
            "transport against the stand-in; "
            "ledger and events in memory. Three polls per size and round: without the "
            "preflight (the hand-off before issue 15); a first day, when no previous run vouches "
            "for a table and every destination is described; an ordinary day, when the day "
            "before's run loaded every table with today's columns (seeded in the ledger), so no "
            "destination is described and the footers are the preflight's only reads. "
            "Visibility margin 0 (one poll observes COMPLETE and "
            "hands off); in production add up to one poll interval plus the margin (5 + 5 minutes "
            "by default). "
            "The ideal counts only the starts: listing the configs is one more round trip per "
            "1,000 configs, and the instance imports google-cloud-bigquery-datatransfer and builds "
            'its DTS client on its first hand-off (column "DTS client"). '
            '"CPU": the processor time of the poll\'s process (every thread) over the poll, and '
            "that of the harness, whose threads are the peers (moto's server, the DTS and "
            "BigQuery stand-ins), over the same poll: on this 2-core machine they share the "
            "cores, which remote services would not.",
            "",
            lag_breakdown(results["lag"]),
        ]
    if "coldstart" in results:
        cold = results["coldstart"]
        verdicts, where = coldstart_breakdown(cold)
        parts += [
            "",
            "## 3. Cold start: each entry point's imports beside its SDKs' own",
            "",
            "(1) Each path runs for real, once per fresh interpreter, against the local peers "
            "(Firestore and Pub/Sub emulators over gRPC; DTS and Secret Manager stand-ins over "
            "the SDK clients' REST transport; moto; Slack stand-in). `K_SERVICE` is set as on "
            "Cloud Functions and google-auth is pointed at a metadata-server stand-in "
            "(`GCE_METADATA_HOST` and `GCE_METADATA_IP`); AWS is reached keyless (a Google ID "
            "token from it, exchanged with moto's STS by `AssumeRoleWithWebIdentity`). Sum of "
            "the self-times of every module imported between loading `main.py` and the reply, "
            "in any thread: each import's **processor time in the thread that made it**, less "
            "its nested imports' (the child wraps importlib's `_find_and_load` and reads "
            "`time.thread_time_ns`; network waits do not count). **Method changed** on "
            "2026-12-02: it was `python -X importtime`, whose self-times are wall-clock and "
            "whose nesting counters are shared by all threads, so imports in worker threads "
            "beside running ones were billed the others' time, or each other's (bench/README.md, "
            '"Why processor time"). The code is a byte-compiled copy of '
            "what is deployed (main.py and orchestrator/, `compileall` as the buildpack does). "
            "(a) Right after each run of the path, a fresh interpreter importing every "
            "third-party module that run loaded, in the order it loaded them, and nothing of "
            "ours: the SDK packages (`google.cloud.firestore`, `google.cloud.pubsub_v1`, "
            "`google.cloud.bigquery_datatransfer_v1`, `google.cloud.secretmanager`, `boto3`, "
            "google-auth's ID-token modules, ...) **and the submodules the path made them load** "
            "by building a client and making its first call (grpc's channel, google-auth's "
            "metadata client, botocore's service models, ...), with the standard-library "
            "modules those import. **Method changed** since the 2026-12-01 runs: (a) was the "
            "SDK packages alone, which billed those SDK submodules to our code; that former "
            "figure is still shown, as (1) - the SDK packages alone. (b) `main.py`, then every "
            "SDK package imported eagerly. All three start from the same state: "
            "functions_framework loaded and two stub requests served, which the Cloud Functions "
            "runtime has done before it loads `main.py`, so the framework counts in none of "
            "them. (1) - (a) is what our code adds: our own modules (their self-times are shown "
            "on their own), the standard-library modules they import, and the garbage "
            "collector's extra work over the objects they add. The table splits it by module: "
            "our own modules; the other modules only the path imports (standard library); minus "
            "the modules only (a) imports; and the modules both import, (1) over (a), the "
            "largest named. A full pass of the cyclic garbage collector is billed to whichever "
            "import is running when it comes, so it lands in a different module in (1) and (a) "
            "(a Firestore types module in one, `cryptography.hazmat.bindings._rust` in the "
            "other), and its cost grows with the live heap: the GC column gives each child's full "
            "passes while its clock ran (the most of the runs) and the time they took, and the "
            "time of every pass (the smallest of the runs; the path's include those made during "
            "its call, outside any import); it is inside (1) and (a), and the verdict keeps it. "
            "Beside it, (1) - (a) with each side less the full passes that ran inside its "
            "imports, and where they ran: when a full pass ends, the child reads from "
            "importlib's `_find_and_load` frames which imports are under way, and the pass is "
            "billed to the innermost one, as its self-time holds it. "
            f"Each figure is the best of {cold['reps']} fresh interpreters, interleaved, taken "
            "**module by module**: the sum over every module imported of its smallest "
            "self-time in any of the runs. On this shared machine (other engineers' test "
            "suites, the emulators, moto) a whole run is rarely undisturbed, and the best whole "
            "runs, also shown, differ from one bench run to the next by as much as the 40 ms "
            "target; each module has an undisturbed run among the N, so a spike is filtered "
            "wherever it lands. **Method changed** on 2026-12-02: each round now runs its "
            "children (the path, its (a), the SDK packages, (b)) a number of frames deeper, "
            f"from 0 in the first round to {max(cold.get('depths') or [0])} in the last "
            "(their threads too): on Python 3.11 and 3.12 a loop whose calls cross a boundary "
            "between two chunks of the frame stack maps and unmaps a chunk on every call "
            "(python/cpython#142183), so one import can take several times its usual time at "
            "one depth and not at another (`http.cookiejar`: 1.7 ms at most depths, 7.3 ms at "
            "some), and the best of N takes each module at a depth where it does not "
            '(bench/README.md, "Stack depth"). '
            f"Target: (1) - (a) <= {cold['target_own_ms']:.0f} ms, and the SDKs loaded are the "
            "ones the path uses (`tests/unit/test_cold_start.py` holds the same list, less the "
            "Pub/Sub that `start_export` and the hand-off load to publish their events; rerun is "
            "reported as measured). Peak RSS: the child's VmHWM at the end.",
            "",
            verdicts,
            "",
            "Not measured on these paths: the peers take anonymous credentials, so no path "
            "runs `google.auth.default()` against the metadata server or builds an "
            "authenticated gRPC channel, as production does for every Google client. Importing "
            "what that loads ("
            + ", ".join(f"`{m}`" for m in cold["production_credentials_modules"])
            + f") after `google.cloud.firestore` costs {ms(cold['production_credentials_ms'])} "
            "(best of the same runs): add it to (1) - (a) of each path that builds a Google "
            "client for production's figure.",
            "",
            "Where the time went (best run; each module's own time booked to its family: "
            '"google core" is google-api-core, google-auth, grpc, protobuf, proto-plus, '
            "cryptography, requests, urllib3, what every Google client library pulls in):",
            "",
            where,
        ]
        if cold.get("uncovered"):
            parts += [
                "",
                "Entry points without a scenario here: "
                + ", ".join(f"`{n}`" for n in cold["uncovered"])
                + " (see bench/README.md to add one).",
            ]
    if "calls" in results:
        per_phase, per_day = calls_tables(results["calls"])
        calls = results["calls"]
        a = calls["assumptions"]
        parts += [
            "",
            f"## 4. API calls: one day of {n_fmt(calls['detail_size'])} tables, by invocation",
            "",
            "One warm instance per function; one table skipped by the export, one DTS run "
            "failing. Each column sums every invocation of that kind (xN). Firestore RPCs are "
            "counted on the SDK's generated client (`FirestoreClient.commit`, `run_query`, "
            "`batch_get_documents`, `run_aggregation_query`, ...), one per RPC sent to the "
            "emulator; doc reads and writes are what those RPCs bill, read off their requests and "
            "streamed responses (each document a query returns, at least one per query; each "
            "document a get asks for, found or missing; a COUNT one per 1,000 index entries; "
            "each write of a commit). A document get is a `BatchGetDocuments` RPC in the SDK and "
            "a create or update a `Commit`. Pub/Sub: messages and `Publish` RPCs of the real "
            "`PublisherClient` (it batches) to the emulator; Secret Manager: `versions.access` "
            "calls the stand-in served (the real client, REST, with the adapter's cache).",
            "",
            per_phase,
            "",
            "## 4. API calls per day, by service",
            "",
            f"The measured run plus the day's other polls: {a['polls_per_day']} polls a day "
            f"(every 5 minutes), {a['exporting_polls']} of them while the export runs (an "
            "assumed one-hour export). Idle polls after the run count as idle polls.",
            "",
            per_day,
        ]
    return "\n".join(parts) + "\n"
