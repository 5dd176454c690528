# Copyright 2026 The trl-custom authors. Licensed under the Apache License, Version 2.0.
"""
The wire format of `trl-custom serve-reward`, shared by the server and its client: JSON only (no pickle), checked
field by field before anything is scored.

`POST /score` takes `{"prompts": [...] | null, "completions": [...], "conditions": [...] | null}`: one prompt and one
condition per completion, each prompt/completion a string or a list of chat messages (`{"role": ..., "content":
...}`), each condition a string, a number or `null` (the generic condition). It answers `{"rewards": [...]}` in the
same order. Errors answer `{"error": "<what is wrong and the fix>"}` with a 4xx status (the request) or 5xx (the
server).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from ..soft_tokens.spec import ConditioningSpec, is_missing


SCORE_PATH = "/score"
HEALTH_PATH = "/health"
INFO_PATH = "/info"
METRICS_PATH = "/metrics"
API_KEY_ENV = "TRL_CUSTOM_API_KEY"
FIELDS = ("prompts", "completions", "conditions")
REQUEST_EXAMPLE = '{"prompts": ["..."], "completions": ["..."], "conditions": ["..."]}'


class RequestError(Exception):
    """A request the server refuses: `status` (4xx, or 503 when busy) and a message naming the field and the fix."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class RequestLimits:
    """What one request may hold: completions (`max_items`), characters per prompt/completion, bytes of JSON."""

    max_items: int = 1024
    max_item_chars: int = 100_000
    max_bytes: int = 16 * 1024 * 1024


def _shown(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _text_length(item: Any, where: str) -> int:
    """Characters of one prompt/completion (a string, or chat messages); a 422 for anything else."""
    if isinstance(item, str):
        return len(item)
    if isinstance(item, list) and item and all(isinstance(m, dict) and isinstance(m.get("role"), str) for m in item):
        return sum(len(m["content"]) if isinstance(m.get("content"), str) else len(json.dumps(m)) for m in item)
    raise RequestError(
        422,
        f"{where}: expected a string or a non-empty list of chat messages ({{'role': str, 'content': ...}}), got "
        f"{type(item).__name__} {_shown(item)}.",
    )


def _texts(body: dict, name: str, count: int | None, limits: RequestLimits) -> list | None:
    values = body.get(name)
    if values is None and name == "prompts":
        return None
    if not isinstance(values, list):
        what = "missing" if name not in body else f"a {type(values).__name__}"
        raise RequestError(422, f"'{name}' is {what}: send a list ({REQUEST_EXAMPLE}).")
    if count is not None and len(values) != count:
        raise RequestError(422, f"'{name}' has {len(values)} values for {count} completions: send one per completion.")
    if len(values) > limits.max_items:
        raise RequestError(
            413,
            f"{len(values)} {name} in one request; this server takes at most {limits.max_items} (--max_request_items):"
            " split the request.",
        )
    for i, item in enumerate(values):
        if _text_length(item, f"{name}[{i}]") > limits.max_item_chars:
            raise RequestError(
                413,
                f"{name}[{i}] has {_text_length(item, '')} characters; this server takes at most "
                f"{limits.max_item_chars} per item (--max_item_chars): shorten it (the model cuts it at its "
                "max_length tokens anyway).",
            )
    return values


def _conditions(body: dict, count: int, conditioning: ConditioningSpec) -> list | None:
    values = body.get("conditions")
    if values is None:
        return None
    if not isinstance(values, list) or len(values) != count:
        what = f"has {len(values)} values" if isinstance(values, list) else f"is a {type(values).__name__}"
        raise RequestError(422, f"'conditions' {what} for {count} completions: send one condition per completion.")
    for i, value in enumerate(values):
        if not (value is None or isinstance(value, (str, int, float)) and not isinstance(value, bool)):
            raise RequestError(
                422,
                f"conditions[{i}]: expected a string, a number or null, got {type(value).__name__} {_shown(value)}.",
            )
    given = [v for v in values if not is_missing(v)]
    if conditioning.mode == "none" and given:
        raise RequestError(
            422,
            f"This reward model is not conditioned (condition_mode 'none'), but conditions[{values.index(given[0])}]"
            f" = {_shown(given[0])}: leave 'conditions' out (or null).",
        )
    if conditioning.strict:
        unknown = conditioning.unknown_values(given)
        if unknown:
            index = next(i for i, v in enumerate(values) if not conditioning.is_known(v))
            more = f" (and {len(unknown) - 1} more unknown values)" if len(unknown) > 1 else ""
            try:
                conditioning.condition_id(values[index], f" in conditions[{index}]{more}")
            except ValueError as e:
                raise RequestError(422, str(e)) from None
    return values


def parse_score_request(
    body: bytes, limits: RequestLimits, conditioning: ConditioningSpec
) -> tuple[list | None, list, list | None]:
    """
    `(prompts, completions, conditions)` of a `POST /score` body, or a [`RequestError`] naming the field, the index
    and the fix: 400 for a body that is not JSON, 413 beyond `limits`, 422 for a wrong shape or type, an unknown
    field, a condition given to an unconditioned model, or a value a strict model does not know.
    """
    if len(body) > limits.max_bytes:
        raise RequestError(
            413,
            f"The request has {len(body)} bytes; this server takes at most {limits.max_bytes} (--max_request_bytes).",
        )
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, ValueError) as e:
        raise RequestError(400, f"The body is not JSON ({e}): send {REQUEST_EXAMPLE}.") from None
    if not isinstance(data, dict):
        raise RequestError(422, f"The body is a JSON {type(data).__name__}; send an object: {REQUEST_EXAMPLE}.")
    unknown = sorted(set(data) - set(FIELDS))
    if unknown:
        raise RequestError(422, f"Unknown field(s) {unknown}; the fields are {list(FIELDS)}.")
    completions = _texts(data, "completions", None, limits)
    prompts = _texts(data, "prompts", len(completions), limits)
    conditions = _conditions(data, len(completions), conditioning)
    return prompts, completions, conditions


def error_message(body: bytes) -> str:
    """The message of an error answer (`{"error": ...}`, or FastAPI's `{"detail": ...}`), else the raw body."""
    try:
        data = json.loads(body)
    except ValueError:
        return body.decode("utf-8", "replace")[:500]
    if isinstance(data, dict):
        return str(data.get("error", data.get("detail", data)))
    return str(data)[:500]
