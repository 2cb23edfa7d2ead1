"""What the deployed code imports is what requirements.txt installs (Cloud Functions builds from
it alone), and requirements.txt is what the design card promises: its named packages, pinned."""

from __future__ import annotations

import ast
import re
import sys
from importlib.metadata import distribution, packages_distributions
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DEPLOYED = [ROOT / "main.py", *sorted((ROOT / "orchestrator").rglob("*.py"))]


def _imported_top_levels() -> set[str]:
    found: set[str] = set()
    for path in DEPLOYED:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found.add(node.module)
    return found


def _holds(distribution_name: str, package: str) -> bool:
    files = distribution(distribution_name).files or []
    return any(str(f).startswith(package) for f in files)


def _requirements() -> set[str]:
    names = set()
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            names.add(re.split(r"[=<>\[ ;]", line, maxsplit=1)[0].lower().replace("_", "-"))
    return names


def test_every_third_party_import_of_the_deployed_code_is_a_pinned_requirement() -> None:
    distributions = packages_distributions()
    needed: dict[str, set[str]] = {}
    for module in _imported_top_levels():
        top = module.split(".")[0]
        if top in sys.stdlib_module_names or top in ("main", "orchestrator", "__future__"):
            continue
        candidates = distributions.get(top, [])
        if top == "google":  # a namespace shared by many distributions: which one holds it?
            package = "google/" + module.split(".")[1] + "/"
            candidates = [d for d in candidates if _holds(d, package)]
        needed[module] = {d.lower().replace("_", "-") for d in candidates}
    # What a pinned requirement itself requires comes with it, in the range that release pins:
    # botocore (boto3's), google-api-core and protobuf (the SDKs').
    installed = _requirements() | {
        re.split(r"[=<>!~\[ ;(]", dep, maxsplit=1)[0].lower().replace("_", "-")
        for name in _requirements()
        for dep in distribution(name).requires or []
        if "extra ==" not in dep
    }
    missing = {m: d for m, d in needed.items() if not d & installed}
    assert missing == {}


# The design card's runtime packages, and the ones it names beside them.
DESIGN_CARD = {
    "functions-framework",
    "boto3",
    "google-cloud-bigquery-datatransfer",
    "google-cloud-secret-manager",
    "google-cloud-pubsub",
    "google-cloud-firestore",
    "google-auth",
    "google-cloud-bigquery",
}


def test_requirements_are_the_design_cards_packages_each_pinned() -> None:
    lines = [
        line.split("#", 1)[0].strip()
        for line in (ROOT / "requirements.txt").read_text().splitlines()
    ]
    pins = [line for line in lines if line]
    # requests too: the REST transports' HTTP client, whose exceptions google_errors translates;
    # pyarrow: the Parquet footers' reader (issue 15 asks for "a maintained Parquet library")
    assert _requirements() == DESIGN_CARD | {"requests", "pyarrow"}
    assert all(re.fullmatch(r"[a-z0-9-]+==[0-9][0-9a-z.]*", pin) for pin in pins), pins
