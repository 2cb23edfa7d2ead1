"""Pure Block Kit primitives for Slack messages: Slack's limits, mrkdwn escaping and clipping,
blocks, long lists cut to fit, payload validation, and payloads back to terminal text.

Text that comes from outside (DTS and AWS messages, table names, paths) is escaped for mrkdwn here
so it cannot mention ``@channel`` or forge a link; composed text is cut to Slack's limits.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

Payload = dict[str, Any]

# Slack's documented limits for messages (Block Kit reference, chat.postMessage).
MAX_BLOCKS = 50
MAX_SECTION_TEXT = 3000
MAX_HEADER_TEXT = 150
MAX_FIELDS = 10
MAX_FIELD_TEXT = 2000
MAX_CONTEXT_ELEMENTS = 10
MAX_CONTEXT_TEXT = 3000
MAX_FALLBACK_TEXT = 40_000
MAX_BLOCK_ID = 255
# Not documented: Slack has answered msg_blocks_too_long at ~13,000 characters of block text in
# total, far below 50 x 3000. We stay under a round figure with margin.
MAX_TOTAL_BLOCK_TEXT = 12_000

FALLBACK_LIMIT = 300  # the notification preview; "keep it short"
_BLOCK_TYPES = ("header", "section", "context", "divider")
_LINK_RE = re.compile(r"<([^<>|]+)\|([^<>]*)>|<([^<>|]+)>")


# --------------------------------------------------------------------------- text


def escape(text: str) -> str:
    """Escape the three characters mrkdwn treats as control (links, mentions, entities)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def clip(text: str, limit: int) -> str:
    """Cut escaped text to ``limit`` characters with an ellipsis, never inside an entity."""
    if len(text) <= limit:
        return text
    cut = text[: max(limit - 1, 0)]
    amp = cut.rfind("&", max(len(cut) - 5, 0))
    if amp != -1 and ";" not in cut[amp:]:
        cut = cut[:amp]
    return cut + "…"


def oneline(text: str) -> str:
    return " ".join(text.split())


def cut(text: str, limit: int) -> str:
    """Last-resort length guard on composed text (user parts were clipped before composing)."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def code_inline(text: str, limit: int) -> str:
    # Inline code stops mrkdwn formatting (*, _, ~) inside vendor text; backticks would end it.
    return "`" + clip(escape(oneline(text).replace("`", "'")), limit) + "`"


def code_block(text: str, limit: int) -> str:
    return "```" + clip(escape(text.strip().replace("```", "'''")), limit) + "```"


def link(url: str | None, text: str) -> str:
    # The URL is built by us from percent-encoded parts, so it holds no '<', '>' or '|'.
    return f"<{url}|{escape(text)}>" if url else escape(text)


# --------------------------------------------------------------------------- blocks


def build_payload(fallback: str, blocks: list[dict[str, Any]]) -> Payload:
    return {"text": clip(escape(oneline(fallback)), FALLBACK_LIMIT), "blocks": blocks[:MAX_BLOCKS]}


def header_block(text: str) -> dict[str, Any]:
    # plain_text: Slack does not parse markup here, so nothing to escape; only the length matters.
    return {
        "type": "header",
        "text": {"type": "plain_text", "text": cut(text, MAX_HEADER_TEXT), "emoji": True},
    }


def section_block(text: str) -> dict[str, Any]:
    return {"type": "section", "text": mrkdwn(cut(text, MAX_SECTION_TEXT))}


def fields_block(items: Sequence[str]) -> dict[str, Any]:
    return {
        "type": "section",
        "fields": [mrkdwn(cut(item, MAX_FIELD_TEXT)) for item in items[:MAX_FIELDS]],
    }


def field(label: str, value: str) -> str:
    return f"*{label}*\n{value}"


def mrkdwn(text: str) -> dict[str, Any]:
    return {"type": "mrkdwn", "text": text}


def list_sections(
    title: str, lines: Sequence[str], shown: int, budget: int, more_hint: str
) -> list[dict[str, Any]]:
    """Sections holding ``title`` and the first lines that fit both ``shown`` and ``budget``
    characters, then "… and N more" so a huge run still gives one readable message."""
    kept: list[str] = []
    used = 0
    for line in lines[:shown]:
        if used + len(line) > budget:
            break
        kept.append(line)
        used += len(line) + 1
    rest = len(lines) - len(kept)
    if rest:
        kept.append(f"… and {rest} more {more_hint}")
    sections: list[dict[str, Any]] = []
    current = title
    for line in kept:
        if len(current) + 1 + len(line) > MAX_SECTION_TEXT:
            sections.append(section_block(current))
            current = line
        else:
            current = f"{current}\n{line}"
    sections.append(section_block(current))
    return sections


# --------------------------------------------------------------------------- validation, text


def validate_payload(payload: Mapping[str, Any]) -> list[str]:
    """Every way ``payload`` breaks Slack's limits (empty list: it is valid)."""
    problems: list[str] = []
    text = payload.get("text")
    if not isinstance(text, str) or not text.strip():
        problems.append("text: a non-empty fallback text is required")
    elif len(text) > MAX_FALLBACK_TEXT:
        problems.append(f"text: {len(text)} characters > {MAX_FALLBACK_TEXT}")
    blocks = payload.get("blocks", [])
    if not isinstance(blocks, list):
        return [*problems, "blocks: not a list"]
    if len(blocks) > MAX_BLOCKS:
        problems.append(f"blocks: {len(blocks)} blocks > {MAX_BLOCKS}")
    total = 0
    for index, block in enumerate(blocks):
        where = f"blocks[{index}]"
        if not isinstance(block, Mapping):
            problems.append(f"{where}: not an object")
            continue
        kind = block.get("type")
        block_id = block.get("block_id")
        if block_id is not None and (not isinstance(block_id, str) or len(block_id) > MAX_BLOCK_ID):
            problems.append(f"{where}.block_id: longer than {MAX_BLOCK_ID}")
        if kind == "header":
            total += _check_text(
                block.get("text"), f"{where}.text", MAX_HEADER_TEXT, problems, plain_only=True
            )
        elif kind == "section":
            fields = block.get("fields")
            if block.get("text") is None and not fields:
                problems.append(f"{where}: a section needs text or fields")
            if block.get("text") is not None:
                total += _check_text(block["text"], f"{where}.text", MAX_SECTION_TEXT, problems)
            if fields is not None:
                if not isinstance(fields, list) or len(fields) > MAX_FIELDS:
                    problems.append(f"{where}.fields: more than {MAX_FIELDS} fields")
                else:
                    for number, item in enumerate(fields):
                        total += _check_text(
                            item, f"{where}.fields[{number}]", MAX_FIELD_TEXT, problems
                        )
        elif kind == "context":
            elements = block.get("elements")
            if not isinstance(elements, list) or not 1 <= len(elements) <= MAX_CONTEXT_ELEMENTS:
                problems.append(f"{where}.elements: 1 to {MAX_CONTEXT_ELEMENTS} elements required")
            else:
                for number, item in enumerate(elements):
                    total += _check_text(
                        item, f"{where}.elements[{number}]", MAX_CONTEXT_TEXT, problems
                    )
        elif kind != "divider":
            problems.append(f"{where}: block type {kind!r} is not one of {_BLOCK_TYPES}")
    if total > MAX_TOTAL_BLOCK_TEXT:
        problems.append(
            f"blocks: {total} characters of text in all > {MAX_TOTAL_BLOCK_TEXT} "
            "(Slack answers msg_blocks_too_long)"
        )
    return problems


def _check_text(
    obj: object, where: str, limit: int, problems: list[str], plain_only: bool = False
) -> int:
    if not isinstance(obj, Mapping):
        problems.append(f"{where}: not a text object")
        return 0
    kind = obj.get("type")
    allowed = ("plain_text",) if plain_only else ("plain_text", "mrkdwn")
    if kind not in allowed:
        problems.append(f"{where}.type: {kind!r} is not one of {allowed}")
    text = obj.get("text")
    if not isinstance(text, str) or not text:
        problems.append(f"{where}.text: empty")
        return 0
    if len(text) > limit:
        problems.append(f"{where}.text: {len(text)} characters > {limit}")
    return len(text)


def render_text(payload: Mapping[str, Any]) -> str:
    """A payload as terminal text: links as ``text (url)``, entities unescaped (for the demo)."""
    lines: list[str] = []
    blocks = payload.get("blocks") or []
    if not blocks:
        return _plain(str(payload.get("text", "")))
    for block in blocks:
        kind = block.get("type")
        if kind == "header":
            title = str(block.get("text", {}).get("text", ""))
            lines += [title, "=" * min(len(title) + 2, 78)]
        elif kind == "section":
            if block.get("text"):
                lines.append(_plain(str(block["text"].get("text", ""))))
            for item in block.get("fields") or []:
                label, _, value = _plain(str(item.get("text", ""))).partition("\n")
                lines.append(f"  {label.strip('*')}: {value}" if value else f"  {label}")
        elif kind == "context":
            lines.append(
                "  "
                + " · ".join(_plain(str(e.get("text", ""))) for e in block.get("elements") or [])
            )
        elif kind == "divider":
            lines.append("-" * 40)
    return "\n".join(lines)


def _plain(mrkdwn: str) -> str:
    def unlink(match: re.Match[str]) -> str:
        url, label, bare = match.group(1), match.group(2), match.group(3)
        return bare if bare else f"{label} ({url})"

    text = _LINK_RE.sub(unlink, mrkdwn)
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
