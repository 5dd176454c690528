# Copyright 2026 The trl-custom authors. Licensed under the Apache License, Version 2.0.
"""
Data loading for Domain-Specific Preference (DSP) training.

Two kinds of files are supported:

- DSP query files: a JSON (or JSON-lines) list of `{"query": str, "responses": {domain: str, ...}}`, turned into
  *customized* preference pairs with [`dsp_pairs`] (the response of a domain is preferred over the responses of every
  other domain and over the `"normal"` response).
- General preference files (helpful / harmless / webgpt): a list of `{"text": [transcript_a, transcript_b],
  "score": [score_a, score_b]}`, turned into standard preference pairs with [`load_general_pairs`].

[`mix_general_preferences`] mixes the two ("general preference enrichment" in the DSP paper).
"""

import json
import logging
import math
import os
import random
from collections.abc import Sequence

from datasets import Dataset, Features, Value, concatenate_datasets


logger = logging.getLogger(__name__)

DSP_DOMAINS = ("academy", "business", "entertainment", "literature")
DSP_RESPONSE_KEYS = DSP_DOMAINS + ("normal",)

# Markers that open an assistant turn, in the two transcript styles we support (Anthropic HH and WebGPT).
ASSISTANT_MARKERS = ("\n\nAssistant:", "## Assistant:")


def read_records(path: str | os.PathLike) -> list:
    """Reads a JSON list (`.json`) or JSON-lines (`.jsonl`) file and returns its items."""
    path = os.fspath(path)
    with open(path, encoding="utf-8") as f:
        if path.endswith(".jsonl"):
            return [json.loads(line) for line in f if line.strip()]
        records = json.load(f)
    if not isinstance(records, list):
        raise ValueError(
            f"{path}: expected a JSON list of items at the top level, got {type(records).__name__}. Store the items "
            "as a JSON list (`[{...}, {...}]`) or as JSON lines in a `.jsonl` file."
        )
    return records


def is_empty_response(value) -> bool:
    """Whether a `chosen`/`rejected` value is empty: blank text, or conversational messages that are all blank."""
    if isinstance(value, str):
        return not value.strip()
    if isinstance(value, list):  # conversational: every message empty
        return not value or all(not str(message.get("content") or "").strip() for message in value)
    return value is None


def load_dsp_queries(path: str | os.PathLike) -> list[dict]:
    """
    Loads and validates a DSP query file.

    Args:
        path (`str` or `os.PathLike`):
            JSON file holding a list of `{"query": str, "responses": {"academy": str, ..., "normal": str}}` items, or
            a JSON-lines (`.jsonl`) file with one such item per line.

    Returns:
        `list[dict]`: The items, unchanged.

    Raises:
        `ValueError`: If an item is not an object, lacks `query` / `responses`, or has them with the wrong type.
    """
    name = os.path.basename(os.fspath(path))
    queries = read_records(path)
    for i, item in enumerate(queries):
        if not isinstance(item, dict):
            raise ValueError(
                f"{name}: item {i} is a {type(item).__name__}, expected an object with `query` and `responses`."
            )
        checks = (("query", str, '"query": "..."'), ("responses", dict, '"responses": {"academy": "...", ...}'))
        for key, typ, example in checks:
            if key not in item:
                raise ValueError(f"{name}: item {i} is missing the key `{key}`. Add it, e.g. `{example}`.")
            if not isinstance(item[key], typ):
                raise ValueError(
                    f"{name}: item {i} has `{key}` of type {type(item[key]).__name__}, expected {typ.__name__}. "
                    f"Fix it, e.g. `{example}`."
                )
    return queries


def split_dsp_queries(queries: list[dict], test_size: float | int, seed: int = 0) -> tuple[list[dict], list[dict]]:
    """
    Splits DSP queries into train / test at the query level, so that test queries are never seen in training.

    Args:
        queries (`list[dict]`):
            Items as returned by [`load_dsp_queries`].
        test_size (`float` or `int`):
            Fraction of the queries (`0 < test_size < 1`, rounded up) or number of queries (`1 <= test_size <
            len(queries)`) to hold out.
        seed (`int`, *optional*, defaults to `0`):
            Seed of the shuffle. The same seed always gives the same split.

    Returns:
        `tuple[list[dict], list[dict]]`: `(train, test)`, each in the original order of `queries`.
    """
    n = len(queries)
    if isinstance(test_size, float) and 0 < test_size < 1:
        n_test = math.ceil(test_size * n)
    elif isinstance(test_size, int) and not isinstance(test_size, bool) and 1 <= test_size < n:
        n_test = test_size
    else:
        raise ValueError(
            f"test_size={test_size!r} is out of range for {n} queries: pass a fraction 0 < test_size < 1 or a count "
            f"1 <= test_size < {n}."
        )
    if n_test >= n:
        raise ValueError(f"test_size={test_size!r} would hold out all {n} queries; use a smaller value.")
    indices = list(range(n))
    random.Random(seed).shuffle(indices)
    test_indices = set(indices[:n_test])
    train = [q for i, q in enumerate(queries) if i not in test_indices]
    test = [q for i, q in enumerate(queries) if i in test_indices]
    return train, test


def dsp_pairs(
    queries: list[dict],
    domains: Sequence[str] = DSP_DOMAINS,
    condition_column: str = "domain",
    max_queries: int | None = None,
    rejected_column: str | None = None,
) -> Dataset:
    """
    Builds the DSP paper's customized preference pairs.

    For each query and each domain `d` in `domains` with a non-empty response, one pair is made per *other* non-empty
    response `o` in [`DSP_RESPONSE_KEYS`]: `{"prompt": query, "chosen": responses[d], "rejected": responses[o],
    condition_column: d}`. Empty (or missing) responses are skipped.

    Args:
        queries (`list[dict]`):
            Items as returned by [`load_dsp_queries`].
        domains (`Sequence[str]`, *optional*, defaults to [`DSP_DOMAINS`]):
            Domains whose responses are used as `chosen`.
        condition_column (`str`, *optional*, defaults to `"domain"`):
            Name of the column holding the domain of each pair.
        max_queries (`int` or `None`, *optional*):
            If set, only the first `max_queries` queries are used.
        rejected_column (`str` or `None`, *optional*):
            If set, a column of that name records which response (`academy`, ..., `normal`) is the rejected one, e.g.
            to break accuracy down by the competing response.

    Returns:
        [`~datasets.Dataset`]: Standard preference dataset with explicit prompt and columns `prompt`, `chosen`,
        `rejected` and `condition_column` (and `rejected_column` if set).
    """
    unknown = [d for d in domains if d not in DSP_DOMAINS]
    if unknown:
        raise ValueError(f"Unknown DSP domain(s) {unknown}. Valid domains are: {', '.join(DSP_DOMAINS)}.")
    for name, column in (("condition_column", condition_column), ("rejected_column", rejected_column)):
        if column in ("prompt", "chosen", "rejected"):
            raise ValueError(f"{name}={column!r} clashes with a preference column; pick another name.")
    if rejected_column is not None and rejected_column == condition_column:
        raise ValueError(f"rejected_column={rejected_column!r} is also the condition column; pick another name.")
    if max_queries is not None:
        queries = queries[:max_queries]

    rows = {"prompt": [], "chosen": [], "rejected": [], condition_column: []}
    if rejected_column is not None:
        rows[rejected_column] = []
    n_empty = 0
    for item in queries:
        responses = {k: item["responses"].get(k) or "" for k in DSP_RESPONSE_KEYS}
        n_empty += sum(not r.strip() for r in responses.values())
        for d in domains:
            if not responses[d].strip():
                continue
            for o in DSP_RESPONSE_KEYS:
                if o == d or not responses[o].strip():
                    continue
                rows["prompt"].append(item["query"])
                rows["chosen"].append(responses[d])
                rows["rejected"].append(responses[o])
                rows[condition_column].append(d)
                if rejected_column is not None:
                    rows[rejected_column].append(o)
    logger.info(
        f"DSP pairs: {len(queries)} queries -> {len(rows['prompt'])} pairs (skipped {n_empty} empty responses)"
    )
    features = Features({k: Value("string") for k in rows})
    return Dataset.from_dict(rows, features=features)


def load_dsp_pairs(
    path: str | os.PathLike,
    domains: Sequence[str] = DSP_DOMAINS,
    condition_column: str = "domain",
    split: str | None = None,
    test_size: float | int = 0.2,
    seed: int = 0,
    max_queries: int | None = None,
) -> Dataset:
    """
    Loads a DSP query file and builds its customized preference pairs.

    Args:
        path (`str` or `os.PathLike`):
            DSP query file, see [`load_dsp_queries`].
        domains, condition_column, max_queries:
            See [`dsp_pairs`].
        split (`str` or `None`, *optional*):
            `"train"` or `"test"` to keep one side of [`split_dsp_queries`]; `None` keeps all queries.
        test_size (`float` or `int`, *optional*, defaults to `0.2`):
            See [`split_dsp_queries`]. Ignored when `split` is `None`.
        seed (`int`, *optional*, defaults to `0`):
            See [`split_dsp_queries`]. Ignored when `split` is `None`.

    Returns:
        [`~datasets.Dataset`]: See [`dsp_pairs`].
    """
    if split not in (None, "train", "test"):
        raise ValueError(f"split={split!r} is not supported; use 'train', 'test' or None (all queries).")
    queries = load_dsp_queries(path)
    if split is not None:
        train, test = split_dsp_queries(queries, test_size=test_size, seed=seed)
        queries = train if split == "train" else test
    return dsp_pairs(queries, domains=domains, condition_column=condition_column, max_queries=max_queries)


def split_transcript(text: str) -> tuple[str, str]:
    """
    Splits a multi-turn transcript into its prompt and final assistant response.

    The prompt is everything up to and including the last assistant marker (`"\\n\\nAssistant:"` or `"## Assistant:"`);
    the response is the rest, including the whitespace right after the marker, so that `prompt + response == text`.

    Example:

    ```python
    >>> split_transcript("\\n\\nHuman: Hi\\n\\nAssistant: Hello!")
    ('\\n\\nHuman: Hi\\n\\nAssistant:', ' Hello!')
    ```

    Args:
        text (`str`):
            Transcript with `"\\n\\nHuman: ...\\n\\nAssistant: ..."` turns or
            `"## Human:\\n...\\n\\n## Assistant:\\n..."` turns.

    Returns:
        `tuple[str, str]`: `(prompt, response)`.
    """
    end = max((text.rfind(m) + len(m) if m in text else -1) for m in ASSISTANT_MARKERS)
    if end < 0:
        raise ValueError(
            f"No assistant marker ({' or '.join(repr(m) for m in ASSISTANT_MARKERS)}) found in transcript "
            f"{text[:80]!r}..."
        )
    return text[:end], text[end:]


def load_general_pairs(
    path: str | os.PathLike, drop_ties: bool = True, max_pairs: int | None = None, skip_empty: bool = False
) -> Dataset:
    """
    Loads a general preference file (helpful / harmless / webgpt) as standard preference pairs.

    Each item `{"text": [transcript_a, transcript_b], "score": [score_a, score_b]}` gives one row `{"prompt",
    "chosen", "rejected"}` where `chosen` is the final assistant response of the higher-scored transcript and `prompt`
    the shared prompt (see [`split_transcript`]). If the two prompts differ, the row uses the implicit-prompt form
    (`prompt=""`, `chosen` / `rejected` the whole transcripts).

    Args:
        path (`str` or `os.PathLike`):
            JSON list (or `.jsonl`) file of comparisons.
        drop_ties (`bool`, *optional*, defaults to `True`):
            Drop comparisons with equal scores. If `False`, ties are kept with `chosen` from `text[0]` and a boolean
            column `tie` is added.
        max_pairs (`int` or `None`, *optional*):
            If set, keep only the first `max_pairs` pairs.
        skip_empty (`bool`, *optional*, defaults to `False`):
            Drop comparisons where a final assistant response is empty instead of raising. The Anthropic HH files do
            contain a few of these.

    Returns:
        [`~datasets.Dataset`]: Columns `prompt`, `chosen`, `rejected` (and `tie` if `drop_ties=False`).
    """
    name = os.path.basename(os.fspath(path))
    items = read_records(path)
    rows = {"prompt": [], "chosen": [], "rejected": [], "tie": []}
    n_ties = n_differing = n_empty = 0
    for i, item in enumerate(items):
        if not isinstance(item, dict) or "text" not in item or "score" not in item:
            raise ValueError(
                f"{name}: item {i} must be an object with keys `text` and `score`, e.g. "
                '`{"text": [transcript_a, transcript_b], "score": [score_a, score_b]}`.'
            )
        texts, scores = item["text"], item["score"]
        if not (isinstance(texts, list) and len(texts) == 2 and isinstance(scores, list) and len(scores) == 2):
            raise ValueError(
                f"{name}: item {i} must have exactly 2 transcripts in `text` and 2 numbers in `score`, got "
                f"{len(texts) if isinstance(texts, list) else texts!r} and "
                f"{len(scores) if isinstance(scores, list) else scores!r}. Store one comparison per item."
            )
        try:
            (prompt_a, resp_a), (prompt_b, resp_b) = split_transcript(texts[0]), split_transcript(texts[1])
        except ValueError as e:
            raise ValueError(f"{name}: item {i}: {e}. Each transcript must end with an assistant turn.") from e
        if not resp_a.strip() or not resp_b.strip():
            if skip_empty:
                n_empty += 1
                continue
            raise ValueError(
                f"{name}: item {i} has an empty final assistant response in transcript "
                f"{0 if not resp_a.strip() else 1}. Remove the item or pass `skip_empty=True`."
            )
        tie = scores[0] == scores[1]
        if tie and drop_ties:
            n_ties += 1
            continue
        first_wins = tie or scores[0] > scores[1]
        if prompt_a == prompt_b:
            prompt, chosen, rejected = prompt_a, resp_a, resp_b
        else:
            n_differing += 1
            prompt, chosen, rejected = "", texts[0], texts[1]
        if not first_wins:
            chosen, rejected = rejected, chosen
        rows["prompt"].append(prompt)
        rows["chosen"].append(chosen)
        rows["rejected"].append(rejected)
        rows["tie"].append(tie)

    if max_pairs is not None:
        rows = {k: v[:max_pairs] for k, v in rows.items()}
    skipped = f", skipped {n_empty} with empty responses" if skip_empty else ""
    logger.info(
        f"{name}: {len(items)} comparisons -> {len(rows['prompt'])} pairs "
        f"(dropped {n_ties} ties, {n_differing} with differing prompts{skipped})"
    )
    features = {"prompt": Value("string"), "chosen": Value("string"), "rejected": Value("string")}
    if drop_ties:
        del rows["tie"]
    else:
        features["tie"] = Value("bool")
    return Dataset.from_dict(rows, features=Features(features))


def write_general_pairs(pairs: Dataset, path: str | os.PathLike) -> None:
    """
    Writes preference pairs as a general preference file, the format [`load_general_pairs`] reads: one `{"text":
    [prompt + chosen, prompt + rejected], "score": [1.0, 0.0]}` item per pair (e.g. held-out pairs for evaluation).

    Args:
        pairs ([`~datasets.Dataset`]): Standard preference rows (`prompt`, `chosen`, `rejected`, all text).
        path (`str` or `os.PathLike`): The JSON file written.
    """
    items = [
        {"text": [row["prompt"] + row["chosen"], row["prompt"] + row["rejected"]], "score": [1.0, 0.0]}
        for row in pairs
    ]
    with open(path, "w", encoding="utf-8") as f:
        json.dump(items, f)


def mix_general_preferences(
    custom: Dataset,
    general: Dataset,
    ratio: float,
    seed: int = 0,
    condition_column: str = "domain",
    general_condition: str | None = None,
) -> Dataset:
    """
    Enriches customized preference pairs with general preference pairs (DSP paper).

    `n_general = round(ratio / (1 - ratio) * len(custom))` general pairs are sampled without replacement, so that they
    make up `ratio` of the result.

    Args:
        custom (`~datasets.Dataset`):
            Customized pairs with columns `prompt`, `chosen`, `rejected` and `condition_column`.
        general (`~datasets.Dataset`):
            General pairs with columns `prompt`, `chosen`, `rejected`.
        ratio (`float`):
            Fraction of general pairs in the result, `0 <= ratio < 1`. `0` returns `custom` unchanged.
        seed (`int`, *optional*, defaults to `0`):
            Seed of the sampling and of the final shuffle.
        condition_column (`str`, *optional*, defaults to `"domain"`):
            Condition column of `custom`; general rows get `general_condition` in it.
        general_condition (`str` or `None`, *optional*):
            Condition of general rows; `None` means no condition (generic preference).

    Returns:
        [`~datasets.Dataset`]: Shuffled mix with columns `prompt`, `chosen`, `rejected`, `condition_column` and
        `margin` if either input has it (missing margins are `0.0`).
    """
    if not 0 <= ratio < 1:
        raise ValueError(f"ratio={ratio!r} must satisfy 0 <= ratio < 1 (it is the fraction of general pairs).")
    if ratio == 0:
        return custom
    n_general = round(ratio / (1 - ratio) * len(custom))
    if n_general > len(general):
        logger.warning(
            f"General preferences: need {n_general} pairs for ratio={ratio} but only {len(general)} are available; "
            f"using all of them (shortfall {n_general - len(general)})."
        )
        n_general = len(general)
    general = general.shuffle(seed=seed).select(range(n_general))

    columns = ["prompt", "chosen", "rejected", condition_column]
    has_margin = "margin" in custom.column_names or "margin" in general.column_names
    if has_margin:
        columns.append("margin")

    def _conform(ds: Dataset, condition: str | None) -> Dataset:
        ds = ds.select_columns([c for c in columns if c in ds.column_names])
        if condition_column not in ds.column_names:
            ds = ds.add_column(condition_column, [condition] * len(ds))
        if has_margin and "margin" not in ds.column_names:
            ds = ds.add_column("margin", [0.0] * len(ds))
        features = Features({c: Value("float64") if c == "margin" else Value("string") for c in columns})
        ds = ds.select_columns(columns)
        return ds if ds.features == features else ds.cast(features)

    general = general.remove_columns([c for c in (condition_column,) if c in general.column_names])
    mixed = concatenate_datasets([_conform(custom, None), _conform(general, general_condition)])
    logger.info(f"Mixed {len(custom)} customized pairs with {n_general} general pairs (ratio={ratio}).")
    return mixed.shuffle(seed=seed).flatten_indices()
