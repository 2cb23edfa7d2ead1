"""One JSON object per line, as Cloud Logging reads it: severity, message, labels, trace.

Use ``logging`` with lazy ``%s`` arguments and pass the run id as ``extra={"run_id": ...}``; it
becomes ``logging.googleapis.com/labels.run_id``. functions-framework merges its execution id into
the labels of such lines, so every line of one invocation correlates for free.

Secrets never reach a log call in the first place; ``redact`` (``orchestrator.core.redaction``, the
one redaction) is the last line of defence, applied to every formatted line.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any

from orchestrator.core.redaction import redact, register_secret

__all__ = ["JsonFormatter", "redact", "register_secret", "setup"]

_SEVERITY = {
    logging.DEBUG: "DEBUG",
    logging.INFO: "INFO",
    logging.WARNING: "WARNING",
    logging.ERROR: "ERROR",
    logging.CRITICAL: "CRITICAL",
}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        if record.exc_info:
            message += "\n" + self.formatException(record.exc_info)
        entry: dict[str, Any] = {
            "severity": _SEVERITY.get(record.levelno, "DEFAULT"),
            "message": message,
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "logger": record.name,
        }
        labels = {"component": "rds2bq"}
        run_id = getattr(record, "run_id", None)
        if run_id:
            labels["run_id"] = str(run_id)
        entry["logging.googleapis.com/labels"] = labels
        trace = getattr(record, "trace", None)
        if trace:
            entry["logging.googleapis.com/trace"] = trace
        return redact(json.dumps(entry, default=str, ensure_ascii=False))


def setup(level: int = logging.INFO) -> None:
    """Install the JSON formatter on the root logger once (idempotent)."""
    root = logging.getLogger()
    if any(isinstance(h.formatter, JsonFormatter) for h in root.handlers):
        return
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonFormatter())
    root.addHandler(handler)
    root.setLevel(level)
    for noisy in ("urllib3", "botocore", "google", "grpc"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
