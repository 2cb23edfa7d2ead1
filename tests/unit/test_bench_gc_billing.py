"""The cold-start bench bills each full GC pass to the import whose self-time holds it
(``bench.coldstart.full_passes_billed``), so that figure 3 can show (1) - (a) with and without
them: a pass inside an import the log names goes to the innermost such import, one outside
every logged import (the call itself, main.py's own body) to none."""

from __future__ import annotations

from bench.coldstart import full_passes_billed

IMPORTS = [("google.cloud.firestore_v1.types.write", 900), ("orchestrator.core.model", 4000)]


def test_a_pass_goes_to_the_innermost_import_the_log_names() -> None:
    passes = [
        # inside firestore's types, itself imported by a module importlib.import_module loaded
        (["google.cloud.firestore_v1.types.write", "unlogged.plugin", "main"], 31.25),
        # inside a module imported without a log line, inside our model's import
        (["unlogged.helper", "orchestrator.core.model"], 2.0),
    ]
    assert full_passes_billed(IMPORTS, passes) == {
        "google.cloud.firestore_v1.types.write": 31250,
        "orchestrator.core.model": 2000,
    }


def test_a_pass_outside_every_logged_import_is_billed_to_none() -> None:
    assert full_passes_billed(IMPORTS, [([], 40.0), (["main"], 12.0)]) == {}


def test_passes_in_one_module_add_up() -> None:
    passes = [(["orchestrator.core.model"], 1.5), (["orchestrator.core.model"], 2.5)]
    assert full_passes_billed(IMPORTS, passes) == {"orchestrator.core.model": 4000}
