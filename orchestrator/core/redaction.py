"""The one redaction: what no log line, HTTP reply, ledger document or Slack message may carry.

``redact`` removes, from any text:

- every secret value read at run time (``register_secret``: Secret Manager values, static AWS
  keys), and any extra values the caller knows are secret (e.g. a config's echoed key params);
- AWS access key ids (``AKIA...`` long-term, ``ASIA...`` temporary), which vendors echo in error
  text ("The AWS Access Key Id AKIA... does not exist");
- the value after a secret-looking label (``secret_access_key=...``, ``"sessionToken": "..."``,
  ``X-Amz-Signature=...``, ``Authorization: Bearer ...``);
- Slack webhook URLs (the URL is the credential).

Vendor text (DTS error messages, AWS failure causes and error messages, Slack replies) is passed
through it where it enters: in the adapters, in the Pub/Sub message parser, and where the machine
turns it into ledger state, so every later path (notify, the poll's reconcile, rerun, status,
doctor, Slack, logs) carries only the scrubbed text. Pure standard library, so that every layer
may import it.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable

REDACTED = "[REDACTED]"
MIN_SECRET_LENGTH = 6  # shorter registered values would scrub ordinary words

_secrets: set[str] = set()
_lock = threading.Lock()

_AWS_KEY_ID_RE = re.compile(r"(?<![A-Z0-9])(?:AKIA|ASIA)[A-Z0-9]{16}(?![A-Z0-9])")
_SLACK_WEBHOOK_RE = re.compile(r"https?://hooks\.slack(?:-gov)?\.com/[^\s\"'<>]+", re.IGNORECASE)
# A secret-looking label, its separator (with optional quotes), then the value up to a delimiter.
_LABELLED_RE = re.compile(
    r"(?P<label>(?:aws_)?secret[_-]?access[_-]?key|secret[_-]?key|session[_-]?token"
    r"|security[_-]?token|x-amz-security-token|x-amz-signature|x-amz-credential"
    r"|password|passwd|client[_-]?secret|authorization)"
    r"(?P<sep>[\"']?\s*[:=]\s*[\"']?(?:bearer\s+|basic\s+)?)"
    r"(?P<value>[^\s\"',;&}<>]+)",
    re.IGNORECASE,
)


def register_secret(value: str) -> None:
    """Remember a secret value so that ``redact`` removes it from any text from now on."""
    if value and len(value) >= MIN_SECRET_LENGTH:
        with _lock:
            _secrets.add(value)


def redact(text: str, also: Iterable[str] = ()) -> str:
    """``text`` without secrets: registered values, ``also``, key ids, labelled values, webhooks."""
    if not text:
        return text
    with _lock:
        values = set(_secrets)
    values.update(v for v in also if isinstance(v, str) and len(v) >= 4)
    # Longest first, so that a secret containing another is removed whole.
    for value in sorted(values, key=len, reverse=True):
        if value in text:
            text = text.replace(value, REDACTED)
    text = _SLACK_WEBHOOK_RE.sub(REDACTED, text)
    text = _AWS_KEY_ID_RE.sub(REDACTED, text)
    return _LABELLED_RE.sub(_labelled, text)


def _labelled(match: re.Match[str]) -> str:
    if match.group("value") == REDACTED or match.group("value").startswith("[REDACTED"):
        return match.group(0)
    return f"{match.group('label')}{match.group('sep')}{REDACTED}"
