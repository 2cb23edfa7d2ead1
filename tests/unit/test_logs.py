"""One JSON object per line, as Cloud Logging reads it; a registered secret never survives."""

from __future__ import annotations

import io
import json
import logging

from orchestrator import logs


def capture() -> tuple[logging.Logger, io.StringIO]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logs.JsonFormatter())
    logger = logging.getLogger(f"test-logs-{id(stream)}")
    logger.handlers = [handler]
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    return logger, stream


def test_lines_are_json_with_severity_message_and_run_label() -> None:
    logger, stream = capture()
    logger.warning("run %s: %d tables", "202611271500", 3, extra={"run_id": "202611271500"})
    logger.info("no run here")
    first, second = (json.loads(line) for line in stream.getvalue().splitlines())
    assert first["severity"] == "WARNING"
    assert first["message"] == "run 202611271500: 3 tables"
    assert first["logging.googleapis.com/labels"]["run_id"] == "202611271500"
    assert second["severity"] == "INFO" and "run_id" not in second["logging.googleapis.com/labels"]


def test_exceptions_stay_on_one_line() -> None:
    logger, stream = capture()
    try:
        raise ValueError("bad")
    except ValueError:
        logger.exception("failed")
    lines = stream.getvalue().splitlines()
    assert len(lines) == 1 and "ValueError: bad" in json.loads(lines[0])["message"]


def test_a_registered_secret_is_redacted_from_every_line() -> None:
    canary = "CANARY-secret-value-0123456789"
    logs.register_secret(canary)
    logger, stream = capture()
    logger.error("oops %s", {"token": canary})
    assert canary not in stream.getvalue() and "[REDACTED]" in stream.getvalue()
