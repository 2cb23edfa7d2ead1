"""``data_path`` as DTS reads it: runtime templates, then the documented wildcard rules (pure)."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

# --------------------------------------------------------------------------- runtime templates

_OFFSET_RE = re.compile(r"^([+-])(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m)?(?:(\d+(?:\.\d+)?)s)?$")
_TOKEN_RE = re.compile(r"\\([{}])|\{([^{}]*)\}|([{}])")


class TemplateError(ValueError):
    """A ``data_path`` or table template the real service would refuse."""


def _render_parameter(body: str, run_time: datetime) -> str:
    if body == "run_date":
        return run_time.strftime("%Y%m%d")
    head, sep, fmt = body.partition("|")
    if not head.startswith("run_time") or not sep:
        raise TemplateError(
            f"unknown runtime parameter {{{body}}}: use {{run_date}} or "
            '{run_time[+-offset]|"format"}'
        )
    if not (len(fmt) >= 2 and fmt[0] == '"' and fmt[-1] == '"'):
        raise TemplateError(f"{{{body}}}: the time format must be in double quotes")
    offset_text = head[len("run_time") :]
    moment = run_time
    if offset_text:
        match = _OFFSET_RE.match(offset_text)
        if match is None or not any(match.group(i) for i in (2, 3, 4)):
            raise TemplateError(
                f"{{{body}}}: offset {offset_text!r} is not +/- hours (h), "
                "minutes (m), seconds (s), in that order"
            )
        sign = 1 if match.group(1) == "+" else -1
        hours, minutes, seconds = (float(match.group(i) or 0) for i in (2, 3, 4))
        moment = run_time + sign * timedelta(hours=hours, minutes=minutes, seconds=seconds)
    return moment.strftime(fmt[1:-1])


def render_template(template: str, run_time: datetime) -> str:
    """Resolve ``{run_date}`` and ``{run_time[+-offset]|"strftime"}``: always in UTC, as DTS does
    (whatever time zone the schedule was written in)."""
    if run_time.tzinfo is None:
        raise ValueError("run_time must be timezone-aware")
    moment = run_time.astimezone(UTC)
    out: list[str] = []
    position = 0
    for match in _TOKEN_RE.finditer(template):
        out.append(template[position : match.start()])
        escaped, body, stray = match.groups()
        if escaped:
            out.append(escaped)
        elif stray:
            raise TemplateError(f"unbalanced {stray!r} in {template!r} (escape it as \\{stray})")
        else:
            out.append(_render_parameter(body, moment))
        position = match.end()
    out.append(template[position:])
    return "".join(out)


# --------------------------------------------------------------------------- wildcard matching


@dataclass(frozen=True)
class DataPathPattern:
    """A resolved ``s3://`` data path: the bucket, the listing prefix and the key matcher."""

    uri: str
    bucket: str
    prefix: str  # the literal text before the first '*': what S3 is asked to list
    regex: re.Pattern[str] | None  # None: the path can match nothing

    def matches(self, key: str) -> bool:
        return self.regex is not None and self.regex.fullmatch(key) is not None


def compile_data_path(uri: str) -> DataPathPattern:
    """Compile a resolved data path by the documented rules.

    - With zero or one ``*`` the wildcard spans directories (it may match ``/``); with two or more,
      each ``*`` stays inside one path segment.
    - S3 can only list by prefix: everything under the literal text before the first ``*`` is
      listed (and, in the real service, copied) even if the pattern then rejects it.
    - A path whose last segment has no wildcard (a folder such as ``.../db.orders/``, or a plain
      name) loads nothing (docs/platform.md: "a path that does not end in a wildcard loads
      nothing"), read as "the file-name part must be a pattern". Our paths end in ``*.parquet``.
    - Keys ending in ``/`` are folder placeholders, never files.
    """
    if not uri.startswith("s3://"):
        raise TemplateError(f"data_path {uri!r} must start with s3://")
    bucket, _, key = uri[len("s3://") :].partition("/")
    if not bucket:
        raise TemplateError(f"data_path {uri!r} names no bucket")
    prefix = key.split("*", 1)[0]
    last_segment = key.rsplit("/", 1)[-1]
    if "*" not in last_segment:
        return DataPathPattern(uri, bucket, prefix, None)
    star = ".*" if key.count("*") <= 1 else "[^/]*"
    regex = re.compile(star.join(re.escape(part) for part in key.split("*")), re.DOTALL)
    return DataPathPattern(uri, bucket, prefix, regex)


def match_keys(pattern: DataPathPattern, keys: Iterable[str]) -> list[str]:
    return sorted(k for k in keys if not k.endswith("/") and pattern.matches(k))
