"""A local stand-in for the BigQuery Data Transfer Service REST API v1, for tests and the demo.

It speaks the real REST format, as the production adapter (``orchestrator.adapters.dts``) and the
official client with ``transport="rest"`` both do: the documented URLs (``/v1/projects/P/locations/
L/transferConfigs``, ``...:startManualRuns``, ``.../runs/R``), camelCase JSON bodies, RFC 3339
times, ``updateMask`` and the other request fields as query parameters, enums by name (or by
number when asked with ``$alt=json;enum-encoding=int``, as the official client asks), and errors
as ``{"error": {"code", "message", "status"}}`` with the HTTP code of each canonical status. The
service logic works on the client library's own message types; JSON is converted to and from them
with protobuf's JSON mapping, which is what defines the REST format (unknown fields are refused,
as Google does).

What it models, because our correctness depends on it (see docs/platform.md, DTS section):

- the validation the real service applies to the calls we make (parents, required ``amazon_s3``
  params, manual runs: not in the future, a run time for configs without auto-scheduling);
- each run resolves the config's ``data_path`` (runtime template, always UTC) against the S3
  contents by the documented wildcard rules and records the keys it would have loaded;
- a run that matched nothing still ends SUCCEEDED, as the real service does;
- given the BigQuery stand-in (``bigquery=``), a SUCCEEDED run loads its files there as a
  WRITE_TRUNCATE load job would: the Parquet footers' rows and schema replace the table's, and the
  run logs the job's "Number of records"; a missing table or a file that is no Parquet fails it;
- run-finished notifications published to the config's Pub/Sub topic, byte for byte in the
  shape DTS sends (attributes, camelCase TransferRun JSON, ``params`` echoing ``access_key_id``);
- faults: per-call latency, UNAVAILABLE / RESOURCE_EXHAUSTED bursts, calls that succeed but answer
  too late (so the client sees DEADLINE_EXCEEDED for a run that *was* started), and a cut-off after
  N successful StartManualTransferRuns (a fan-out that dies half-way). Faults are named by their
  canonical status (``"UNAVAILABLE"``) and method (``"StartManualTransferRuns"``).

Run it in-process with ``start(...)`` or as ``python -m devstack.dts --port N ...``.

One module per concern, the public names re-exported here: ``rest`` (routes, requests as the
library's message types, responses, error bodies, pages), ``server`` (HTTP, dispatch, lifecycle),
``configs`` (storage, validation), ``runs`` (manual runs, finishing them against S3, the outcome
policy, transfer logs), ``loads`` (a run's files into the BigQuery stand-in), ``paths``
(``data_path`` templates and wildcards, pure), ``notifications`` (Pub/Sub), ``faults``,
``errors``, ``standin`` (``DtsStandin``, ``start``, ``client_for``) and ``cli`` (``main``;
``__main__`` runs it).
"""

from devstack.dts.cli import main
from devstack.dts.configs import (
    DATA_SOURCE,
    FILE_FORMATS,
    REQUIRED_PARAMS,
    SECRET_PARAMS,
    WRITE_DISPOSITIONS,
)
from devstack.dts.errors import HTTP_CODES, RpcFault
from devstack.dts.faults import CallRecord, Faults
from devstack.dts.notifications import Notification
from devstack.dts.paths import (
    DataPathPattern,
    TemplateError,
    compile_data_path,
    match_keys,
    render_template,
)
from devstack.dts.rest import (
    MAX_PAGE_SIZE,
    ROUTES,
    Route,
    encode_error,
    encode_response,
    parse_request,
)
from devstack.dts.runs import CLOCK_SKEW, TERMINAL, Outcome, RunRecord
from devstack.dts.standin import DtsStandin, client_for, start

__all__ = [
    "CLOCK_SKEW",
    "DATA_SOURCE",
    "FILE_FORMATS",
    "HTTP_CODES",
    "MAX_PAGE_SIZE",
    "REQUIRED_PARAMS",
    "ROUTES",
    "SECRET_PARAMS",
    "TERMINAL",
    "WRITE_DISPOSITIONS",
    "CallRecord",
    "DataPathPattern",
    "DtsStandin",
    "Faults",
    "Notification",
    "Outcome",
    "Route",
    "RpcFault",
    "RunRecord",
    "TemplateError",
    "client_for",
    "compile_data_path",
    "encode_error",
    "encode_response",
    "main",
    "match_keys",
    "parse_request",
    "render_template",
    "start",
]
