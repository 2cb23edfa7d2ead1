"""Watching the watcher: scheduler.tf's alerts match what the code and the platform really log.

Slack is posted by the functions it would warn about, so rds2bq's own failures go through Cloud
Monitoring: (a) a function logging at ERROR or failing, (b) no run closing for a day and more (a
log-based metric on the code's own run-closed line, with an absence condition), (c) the poll job
not running. There is no Google provider here, so the policies are read with the HCL parser, their
interpolations resolved with the variables' defaults, and each log filter evaluated against log
entries: for (b), the very line the code logs when a run closes, so the filter and the code cannot
drift apart.
"""

from __future__ import annotations

import json
import logging
import re
from typing import Any

import pytest

from orchestrator.app import outbox
from orchestrator.logs import JsonFormatter
from tests.infra.conftest import blocks
from tests.unit.test_notify import Notify

SEVERITIES = (
    "DEFAULT",
    "DEBUG",
    "INFO",
    "NOTICE",
    "WARNING",
    "ERROR",
    "CRITICAL",
    "ALERT",
    "EMERGENCY",
)
# The largest trigger absence time of a metric-absence condition (Cloud Monitoring's limit).
MAX_ABSENCE_SECONDS = 23 * 3600 + 1800


# --- Reading scheduler.tf ----------------------------------------------------------------------


def _tree(hcl: dict[str, Any]) -> dict[str, Any]:
    return hcl["scheduler.tf"]


def _resources(hcl: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {name: body for rtype, name, body in blocks(_tree(hcl), "resource") if rtype == kind}


def _variables(hcl: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {name: body for name, _, body in blocks(_tree(hcl), "variable")}


def _locals(hcl: dict[str, Any]) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for entry in _tree(hcl).get("locals", []):
        merged.update(entry)
    return merged


# The one for-expression the filters use, evaluated here from local.functions.
_SERVICE_LIST = '${join(" OR ", [for f in local.functions : "\\"${f.name}\\""])}'


def resolve(hcl: dict[str, Any], text: str) -> str:
    """``text`` with its interpolations evaluated at the variables' defaults.

    Only the forms scheduler.tf's monitoring uses are known; anything else fails the test, so a
    new form is looked at rather than silently left unresolved."""
    variables = _variables(hcl)
    local = _locals(hcl)
    prefix = str(variables["name_prefix"]["default"])

    def default(name: str) -> str:
        return str(variables[name]["default"])

    names = [
        body["name"].replace("${var.name_prefix}", prefix) for body in local["functions"].values()
    ]
    text = text.replace(_SERVICE_LIST, " OR ".join(f'"{n}"' for n in names))
    text = text.replace('${replace(var.name_prefix, "-", "_")}', prefix.replace("-", "_"))
    text = re.sub(r"\$\{var\.(\w+) \* 60\}", lambda m: str(int(default(m[1])) * 60), text)
    for name, body in _resources(hcl, "google_logging_metric").items():
        reference = f"${{google_logging_metric.{name}.name}}"
        if reference in text:
            text = text.replace(reference, resolve(hcl, body["name"]))
    text = re.sub(r"\$\{local\.(\w+)\}", lambda m: resolve(hcl, str(local[m[1]])), text)
    text = re.sub(r"\$\{var\.(\w+)\}", lambda m: default(m[1]), text)
    assert "${" not in text, f"unresolved interpolation in {text!r}"
    return text


# --- Cloud Logging's query language, the part these filters use ---------------------------------

_CLAUSE = re.compile(
    r'(?P<field>[A-Za-z_.]+(?:\."[^"]+")?)\s*(?P<op>=~|>=|=)\s*'
    r'(?P<value>"(?:[^"\\]|\\.)*"|\((?:"[^"]*"(?:\s+OR\s+)?)+\)|[A-Z]+)'
)


def _field(entry: dict[str, Any], path: str) -> Any:
    value: Any = entry
    for part in re.findall(r'"[^"]+"|[^.]+', path):
        if not isinstance(value, dict):
            return None
        value = value.get(part.strip('"'))
    return value


def matches(log_filter: str, entry: dict[str, Any]) -> bool:
    """Whether a log entry matches a filter of ``AND``-joined comparisons."""
    clauses = re.split(r"\s+AND\s+", log_filter.strip())
    result = True
    for clause in clauses:
        match = _CLAUSE.fullmatch(clause)
        assert match, f"not a comparison this test understands: {clause!r}"
        actual = _field(entry, match["field"])
        raw = match["value"]
        if match["op"] == ">=":
            assert match["field"] == "severity", clause
            result &= SEVERITIES.index(str(actual)) >= SEVERITIES.index(raw)
        elif match["op"] == "=~":
            result &= actual is not None and re.search(json.loads(raw), str(actual)) is not None
        elif raw.startswith("("):
            result &= actual in re.findall(r'"([^"]*)"', raw)
        else:
            result &= actual == (json.loads(raw) if raw.startswith('"') else raw)
    return result


def cloud_run_entry(line: str, service: str) -> dict[str, Any]:
    """A JSON line written to stdout by a gen2 function, as Cloud Logging stores it."""
    payload = json.loads(line)
    return {
        "resource": {"type": "cloud_run_revision", "labels": {"service_name": service}},
        "severity": payload.pop("severity"),
        "labels": payload.pop("logging.googleapis.com/labels", {}),
        "jsonPayload": payload,
    }


@pytest.fixture(scope="module")
def function_names(hcl: dict[str, Any]) -> list[str]:
    return [resolve(hcl, f["name"]) for f in _locals(hcl)["functions"].values()]


# --- (b) the dead-man's switch ----------------------------------------------------------------


def test_run_closed_metric_counts_the_line_the_code_logs_when_a_run_closes(
    hcl: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    # GIVEN the metric's filter as deployed
    log_filter = resolve(hcl, _resources(hcl, "google_logging_metric")["run_closed"]["filter"])
    # WHEN notify records the last tables of a run, and the run closes
    n = Notify(2)
    with caplog.at_level(logging.INFO):
        n.finish("shop.t0000", "SUCCEEDED")
        n.finish("shop.t0001", "FAILED", "boom")
    formatter = JsonFormatter()
    entries = [cloud_run_entry(formatter.format(r), "rds2bq-notify") for r in caplog.records]
    # THEN exactly the one run-closed line is counted, and none of the others
    counted = [e for e in entries if matches(log_filter, e)]
    assert [e["jsonPayload"]["message"] for e in counted] == ["run closed: 202611271500 PARTIAL"]
    assert len(entries) > len(counted)
    assert counted[0]["labels"]["run_id"] == "202611271500"
    assert outbox.RUN_CLOSED_LOG.split("%s")[0] == "run closed: "
    # ...and the same line from a service that is not one of ours is not.
    foreign = cloud_run_entry(formatter.format(caplog.records[-1]), "someone-else")
    assert not matches(log_filter, {**counted[0], "resource": foreign["resource"]})


def test_dead_mans_switch_fires_when_no_run_closed_within_the_window(
    hcl: dict[str, Any],
) -> None:
    variables = _variables(hcl)
    window = variables["run_closed_window_hours"]
    assert window["default"] == 26
    assert window["validation"], "run_closed_window_hours has no validation"
    policy = _resources(hcl, "google_monitoring_alert_policy")["no_run_closed"]
    # Only once the functions exist: it would fire while no run has ever closed.
    assert policy["count"] == "${var.functions_deployed ? 1 : 0}"
    (condition,) = policy["conditions"]
    (promql,) = condition["condition_prometheus_query_language"]
    query = resolve(hcl, promql["query"])
    # The log-based metric logging.googleapis.com/user/NAME is NAME's PromQL series.
    metric = resolve(hcl, _resources(hcl, "google_logging_metric")["run_closed"]["name"])
    assert re.fullmatch(r"[a-z][a-z0-9_]*", metric), metric
    assert query == (
        f"absent_over_time(logging_googleapis_com:user_{metric}"
        '{monitored_resource="cloud_run_revision"}[26h])'
    )
    assert "${var.run_closed_window_hours}h]" in promql["query"]


# --- (a) errors and failures ------------------------------------------------------------------


def test_error_alert_matches_errors_of_every_function_and_nothing_else(
    hcl: dict[str, Any], function_names: list[str], caplog: pytest.LogCaptureFixture
) -> None:
    policy = _resources(hcl, "google_monitoring_alert_policy")["function_errors"]
    (condition,) = policy["conditions"]
    (matched_log,) = condition["condition_matched_log"]
    log_filter = resolve(hcl, matched_log["filter"])
    assert len(function_names) == 5
    log = logging.getLogger("orchestrator.test")
    with caplog.at_level(logging.INFO, logger="orchestrator.test"):
        log.error("run %s: boom", "202611271500", extra={"run_id": "202611271500"})
        log.warning("a warning is not paged")
    error, warning = (JsonFormatter().format(r) for r in caplog.records)
    for name in function_names:
        # An error the code logs, and a failed request (5xx: Cloud Run logs it at ERROR).
        assert matches(log_filter, cloud_run_entry(error, name)), name
        request_log = {
            "resource": {"type": "cloud_run_revision", "labels": {"service_name": name}},
            "severity": "ERROR",
            "httpRequest": {"status": 500},
        }
        assert matches(log_filter, request_log), name
        assert not matches(log_filter, cloud_run_entry(warning, name)), name
    assert not matches(log_filter, cloud_run_entry(error, "another-service"))
    # A log-match condition needs a rate limit, or the API refuses the policy.
    (strategy,) = policy["alert_strategy"]
    (limit,) = strategy["notification_rate_limit"]
    assert limit["period"] == "300s"


# --- (c) the poll job --------------------------------------------------------------------------


def test_poll_alert_counts_the_poll_jobs_finished_attempts(hcl: dict[str, Any]) -> None:
    metric = _resources(hcl, "google_logging_metric")["poll_attempts"]
    log_filter = resolve(hcl, metric["filter"])
    (job,) = [
        body
        for name, body in _resources(hcl, "google_cloud_scheduler_job").items()
        if name == "poll"
    ]
    job_id = resolve(hcl, job["name"])

    def attempt(job_id: str, kind: str) -> dict[str, Any]:
        return {
            "resource": {"type": "cloud_scheduler_job", "labels": {"job_id": job_id}},
            "severity": "INFO",
            "jsonPayload": {"@type": f"type.googleapis.com/google.cloud.scheduler.logging.{kind}"},
        }

    assert matches(log_filter, attempt(job_id, "AttemptFinished"))
    assert not matches(log_filter, attempt(job_id, "AttemptStarted"))
    assert not matches(log_filter, attempt(resolve(hcl, "${var.name_prefix}-daily-export"), "x"))
    policy = _resources(hcl, "google_monitoring_alert_policy")["poll_not_running"]
    (condition,) = policy["conditions"]
    (absent,) = condition["condition_absent"]
    assert resolve(hcl, absent["filter"]) == (
        f'metric.type="logging.googleapis.com/user/{resolve(hcl, metric["name"])}"'
        ' AND resource.type="cloud_scheduler_job"'
    )
    seconds = int(resolve(hcl, absent["duration"]).removesuffix("s"))
    assert seconds == 30 * 60
    # The validation keeps every allowed value within what a metric-absence condition accepts.
    condition_text = _variables(hcl)["poll_silence_minutes"]["validation"][0]["condition"]
    upper = int(re.search(r"var\.poll_silence_minutes <= (\d+)", condition_text)[1])  # type: ignore[index]
    assert upper * 60 <= MAX_ABSENCE_SECONDS


# --- Where the alerts go ------------------------------------------------------------------------


def test_every_alert_goes_to_the_e_mail_channel_and_any_extra_ones(hcl: dict[str, Any]) -> None:
    variables = _variables(hcl)
    assert "default" not in variables["alert_email"], "alerts need somewhere to go"
    assert variables["alert_email"]["validation"]
    assert variables["alert_notification_channels"]["default"] == []
    (channel,) = _resources(hcl, "google_monitoring_notification_channel").values()
    assert channel["type"] == "email"
    assert channel["labels"] == {"email_address": "${var.alert_email}"}
    channels = _locals(hcl)["alert_channels"]
    assert channels == (
        "${concat([google_monitoring_notification_channel.email.id], "
        "var.alert_notification_channels)}"
    )
    policies = _resources(hcl, "google_monitoring_alert_policy")
    assert set(policies) == {"function_errors", "no_run_closed", "poll_not_running"}
    for name, policy in policies.items():
        assert policy["notification_channels"] == "${local.alert_channels}", name
        assert policy["combiner"] == "OR", name
        (documentation,) = policy["documentation"]
        assert "docs/deploy.md" in documentation["content"], name
    enabled = _resources(hcl, "google_project_service")["enabled"]["for_each"]
    assert '"monitoring.googleapis.com"' in enabled
