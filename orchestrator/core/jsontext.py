"""Strict JSON text decoding for everything that arrives from outside (HTTP bodies, Pub/Sub data).

``json.loads`` alone accepts what we must not act on: a repeated key (which value wins differs
between parsers), ``NaN`` and ``Infinity``, integers far outside any field's range, and nesting
deep enough to raise ``RecursionError`` while the text is still well under our size caps. Here
each is a ``ValueError`` with a short reason that never quotes the text (it may hold anything).
"""

from __future__ import annotations

import json
from typing import Any

MAX_DEPTH = 16  # none of our inputs nests deeper than 5; DTS's TransferRun about 3
MAX_INT = 2**63 - 1  # Firestore's int64: no integer we keep may exceed it


class JsonTextError(ValueError):
    """The text is not JSON we accept; ``str()`` is a short reason, never the text."""


class JsonSyntaxError(JsonTextError):
    """The text is not JSON at all (``str()`` names the position)."""


def loads(text: str, max_depth: int = MAX_DEPTH) -> Any:
    if depth(text) > max_depth:
        raise JsonTextError(f"nests deeper than {max_depth} levels")
    try:
        value = json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_no_constant)
    except JsonTextError:
        raise
    except json.JSONDecodeError as exc:
        raise JsonSyntaxError(f"{exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except (ValueError, RecursionError) as exc:
        # ValueError: an integer with more digits than Python converts (4,300).
        raise JsonTextError(f"unreadable ({type(exc).__name__})") from None
    _check_ints(value, 0)
    return value


def depth(text: str) -> int:
    """How deep the arrays and objects of a JSON text nest (brackets inside strings ignored)."""
    level = deepest = 0
    in_string = escaped = False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            level += 1
            deepest = max(deepest, level)
        elif char in "]}":
            level -= 1
    return deepest


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise JsonTextError(f"field {_clip(key)} appears more than once")
        result[key] = value
    return result


def _no_constant(name: str) -> Any:
    raise JsonTextError(f"{name} is not a JSON number")


def _check_ints(value: Any, level: int) -> None:
    # Bounded by MAX_DEPTH, checked before parsing: this recursion cannot run away.
    if isinstance(value, bool):
        return
    if isinstance(value, int):
        if abs(value) > MAX_INT:
            raise JsonTextError("an integer is out of range (more than 64 bits)")
    elif isinstance(value, dict):
        for item in value.values():
            _check_ints(item, level + 1)
    elif isinstance(value, list):
        for item in value:
            _check_ints(item, level + 1)


def _clip(value: object, limit: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"
