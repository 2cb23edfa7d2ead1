"""The benchmark runs (``make bench`` is not part of ``make test``, and a broken preparation step
once went unseen until a bench run): its figures on their smallest sizes, once each. Timings are
not judged here (they are the bench's, beside their baselines); what every run must hold is:
each hand-off started every table once, each arm of the preflight described the tables its day
should and had its processor time read, every path loaded only its SDKs and had the full GC passes
in its imports found, notify stayed within five Firestore operations a
message, and an idle poll made no AWS call."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]


def test_the_bench_runs_and_its_counts_hold(tmp_path: Path) -> None:
    out, raw = tmp_path / "results.md", tmp_path / "results.json"
    command = [
        sys.executable,
        "-m",
        "bench",
        "--only",
        "lag,coldstart,calls",
        "--lag-sizes",
        "10",
        "--lag-reps",
        "1",
        "--cold-reps",
        "1",
        "--output",
        str(out),
        "--json",
        str(raw),
    ]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-4000:]
    results = json.loads(raw.read_text())
    text = out.read_text()
    for heading in ("## 2. Hand-off lag", "## 3. Cold start", "## 4. API calls"):
        assert heading in text

    lag = results["lag"]
    first, ordinary, without = lag["sizes"]["10"], lag["ordinary"]["10"], lag["baseline"]["10"]
    assert [r["started"] for r in (without, first, ordinary)] == [10, 10, 10]
    assert (first["described"], ordinary["described"]) == (10, 0)
    assert first["rows_counted"] == ordinary["rows_counted"] == 10
    # the processor time of the poll's process and of the peers that served it
    assert all(r["cpu_s"] > 0 and r["peers_cpu_s"] > 0 for r in (without, first, ordinary))

    paths = results["coldstart"]["paths"]
    assert len(paths) >= 10
    served = [p for p in paths.values() if p["body"]]  # all but "import main alone"
    assert len(served) == len(paths) - 1 and {p["status"] for p in served} == {200}
    assert all(p["sdks_ok"] is not False for p in paths.values()), {
        name: (p["loaded"], p["expected"]) for name, p in paths.items()
    }

    # the full GC passes that ran inside imports are found, and taken out of both sides
    for p in paths.values():
        billed = p["gc_full_in_imports"]
        assert 0 <= billed["min_ms"] <= p["gc_full_min_ms"] + 0.01  # µs rounding
        assert p["less_full_gc_ms"] <= p["filtered_ms"] + 1e-6
        assert all(not m.startswith(("main", "__main__")) for m, _ in billed["where"])
    assert any(p["gc_full_in_imports"]["where"] for p in paths.values())
    # the hand-off imports in its workers (the preflight's pyarrow and BigQuery client)
    (handoff,) = [p for name, p in paths.items() if name.startswith("poll, hand-off")]
    assert handoff["common_threaded_modules"] > 0

    calls = results["calls"]
    assert calls["idle_aws_calls"] == 0
    per_message = calls["notify_firestore_per_message"]
    assert per_message and all(
        int(rpcs) <= 5 for size in per_message.values() for kind in size.values() for rpcs in kind
    ), per_message
