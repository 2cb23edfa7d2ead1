"""Console pages a message links to: a DTS run, a destination table. Pure.

The URLs are built from percent-encoded parts, so they hold no ``<``, ``>`` or ``|`` (which would
end a mrkdwn link).
"""

from __future__ import annotations

from urllib.parse import quote, urlencode

from orchestrator.core.model import parse_table_ref
from orchestrator.core.notifications import run_name_parts

CONSOLE = "https://console.cloud.google.com"


def transfer_run_url(run_name: str, default_location: str = "") -> str | None:
    """Console page of a DTS run, from ``projects/P/locations/L/transferConfigs/C/runs/R``."""
    parts = run_name_parts(run_name)
    if parts is None:
        return None
    project, location, config, run = parts
    location = location or default_location or "us"
    path = "/".join(
        quote(p, safe="") for p in ("locations", location, "configs", config, "runs", run)
    )
    return f"{CONSOLE}/bigquery/transfers/{path}?{urlencode({'project': project})}"


def table_url(project: str, dataset: str, table_key: str) -> str:
    """Console page of the destination table in BigQuery."""
    query = {
        "project": project,
        "p": project,
        "d": dataset,
        "t": bq_table_name(table_key),
        "page": "table",
    }
    return f"{CONSOLE}/bigquery?{urlencode(query, quote_via=quote)}"


def bq_table_name(table_key: str) -> str:
    try:
        return parse_table_ref(table_key).bq_table
    except ValueError:
        return table_key.replace(".", "__")
