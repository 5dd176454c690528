import json
import logging

import pytest
from datasets import Dataset

from trl_custom.data import (
    DSP_DOMAINS,
    DSP_RESPONSE_KEYS,
    dsp_pairs,
    load_dsp_pairs,
    load_dsp_queries,
    load_general_pairs,
    mix_general_preferences,
    split_dsp_queries,
    split_transcript,
    write_general_pairs,
)


def _query(i, empty=()):
    return {"query": f"q{i}", "responses": {k: "" if k in empty else f"{k}{i}" for k in DSP_RESPONSE_KEYS}}


def _write(path, items, jsonl=False):
    with open(path, "w") as f:
        if jsonl:
            f.writelines(json.dumps(x) + "\n" for x in items)
        else:
            json.dump(items, f)
    return path


def _hh(prompt_turns, response):
    return "".join(f"\n\nHuman: {t}\n\nAssistant: ok" for t in prompt_turns[:-1]) + (
        f"\n\nHuman: {prompt_turns[-1]}\n\nAssistant: {response}"
    )


# ---------------------------------------------------------------- DSP queries


def test_constants():
    assert DSP_DOMAINS == ("academy", "business", "entertainment", "literature")
    assert DSP_RESPONSE_KEYS == DSP_DOMAINS + ("normal",)


@pytest.mark.parametrize("jsonl", [False, True])
def test_load_dsp_queries(tmp_path, jsonl):
    items = [_query(0), _query(1)]
    path = _write(tmp_path / ("q.jsonl" if jsonl else "q.json"), items, jsonl=jsonl)
    assert load_dsp_queries(path) == items


def test_load_dsp_queries_errors(tmp_path):
    path = _write(tmp_path / "bad.json", [_query(0), {"responses": {}}])
    with pytest.raises(ValueError, match=r"bad\.json: item 1 is missing the key `query`"):
        load_dsp_queries(path)
    path = _write(tmp_path / "bad2.json", [{"query": "q", "responses": ["a"]}])
    with pytest.raises(ValueError, match=r"bad2\.json: item 0 has `responses` of type list, expected dict"):
        load_dsp_queries(path)
    path = _write(tmp_path / "bad3.json", {"query": "q"})
    with pytest.raises(ValueError, match=r"bad3\.json: expected a JSON list"):
        load_dsp_queries(path)


def test_dsp_pairs_counts_and_contents(caplog):
    queries = [_query(0), _query(1, empty=("normal", "business"))]
    with caplog.at_level(logging.INFO, logger="trl_custom.data"):
        ds = dsp_pairs(queries)
    # query 0: 4 domains x 4 others = 16; query 1: 3 non-empty domain responses x 2 others = 6
    assert len(ds) == 22
    assert ds.column_names == ["prompt", "chosen", "rejected", "domain"]
    assert ds[0] == {"prompt": "q0", "chosen": "academy0", "rejected": "business0", "domain": "academy"}
    q1 = ds.filter(lambda r: r["prompt"] == "q1")
    assert sorted(zip(q1["domain"], q1["rejected"])) == [
        ("academy", "entertainment1"),
        ("academy", "literature1"),
        ("entertainment", "academy1"),
        ("entertainment", "literature1"),
        ("literature", "academy1"),
        ("literature", "entertainment1"),
    ]
    assert all(r["chosen"] == f"{r['domain']}{r['prompt'][1:]}" for r in ds)
    assert "DSP pairs: 2 queries -> 22 pairs (skipped 2 empty responses)" in caplog.text


def test_dsp_pairs_options():
    ds = dsp_pairs([_query(0), _query(1)], domains=["literature"], condition_column="style", max_queries=1)
    assert ds.column_names == ["prompt", "chosen", "rejected", "style"]
    assert ds["rejected"] == ["academy0", "business0", "entertainment0", "normal0"]
    assert set(ds["style"]) == {"literature"}


def test_dsp_pairs_rejected_column():
    ds = dsp_pairs([_query(0), _query(1, empty=("normal",))], domains=["business"], rejected_column="other")
    assert ds.column_names == ["prompt", "chosen", "rejected", "domain", "other"]
    assert list(zip(ds["rejected"], ds["other"])) == [
        ("academy0", "academy"),
        ("entertainment0", "entertainment"),
        ("literature0", "literature"),
        ("normal0", "normal"),
        ("academy1", "academy"),
        ("entertainment1", "entertainment"),
        ("literature1", "literature"),
    ]
    with pytest.raises(ValueError, match="rejected_column='rejected' clashes with a preference column"):
        dsp_pairs([_query(0)], rejected_column="rejected")
    with pytest.raises(ValueError, match="rejected_column='domain' is also the condition column"):
        dsp_pairs([_query(0)], rejected_column="domain")


def test_dsp_pairs_unknown_domain():
    valid = "academy, business, entertainment, literature"
    with pytest.raises(ValueError, match=rf"Unknown DSP domain.*'sports'.*{valid}"):
        dsp_pairs([_query(0)], domains=["academy", "sports"])
    with pytest.raises(ValueError, match="Unknown DSP domain"):
        dsp_pairs([_query(0)], domains=["normal"])


def test_split_dsp_queries():
    queries = [_query(i) for i in range(10)]
    train, test = split_dsp_queries(queries, test_size=0.3, seed=1)
    assert (len(train), len(test)) == (7, 3)
    assert {q["query"] for q in train}.isdisjoint(q["query"] for q in test)
    assert sorted(q["query"] for q in train + test) == sorted(q["query"] for q in queries)
    assert split_dsp_queries(queries, test_size=0.3, seed=1) == (train, test)
    assert split_dsp_queries(queries, test_size=0.3, seed=2) != (train, test)
    assert len(split_dsp_queries(queries, test_size=4)[1]) == 4
    for bad in (0, 0.0, 1.0, 10, -1, 1.5):
        with pytest.raises(ValueError, match="test_size.*out of range"):
            split_dsp_queries(queries, test_size=bad)


def test_load_dsp_pairs_split(tmp_path):
    path = _write(tmp_path / "q.json", [_query(i) for i in range(10)])
    train = load_dsp_pairs(path, split="train", test_size=2, seed=3)
    test = load_dsp_pairs(path, split="test", test_size=2, seed=3)
    assert (len(train), len(test)) == (8 * 16, 2 * 16)
    assert set(train["prompt"]).isdisjoint(test["prompt"])
    assert len(load_dsp_pairs(path, max_queries=3)) == 48
    with pytest.raises(ValueError, match="split='dev'"):
        load_dsp_pairs(path, split="dev")


# ---------------------------------------------------------------- transcripts


def test_split_transcript_hh():
    text = "\n\nHuman: Hi\n\nAssistant: Hello!\n\nHuman: How are you?\n\nAssistant: Fine, thanks."
    prompt, response = split_transcript(text)
    assert prompt == "\n\nHuman: Hi\n\nAssistant: Hello!\n\nHuman: How are you?\n\nAssistant:"
    assert response == " Fine, thanks."
    assert prompt + response == text


def test_split_transcript_webgpt():
    text = "## Human:\nWhy is the sky blue?\n\n## Assistant:\nRayleigh scattering [1]."
    prompt, response = split_transcript(text)
    assert prompt == "## Human:\nWhy is the sky blue?\n\n## Assistant:"
    assert response == "\nRayleigh scattering [1]."
    assert prompt + response == text


def test_split_transcript_no_marker():
    with pytest.raises(ValueError, match="No assistant marker"):
        split_transcript("\n\nHuman: Hi")


# ---------------------------------------------------------------- general preferences


def _general_items():
    return [
        {"text": [_hh(["a"], "good"), _hh(["a"], "bad")], "score": [1.0, 0.0]},
        {"text": [_hh(["b", "c"], "worse"), _hh(["b", "c"], "better")], "score": [-2.0, 3.0]},
        {"text": [_hh(["d"], "tie1"), _hh(["d"], "tie2")], "score": [0.5, 0.5]},
        {"text": [_hh(["e"], "x") + "\n\nHuman: more\n\nAssistant: y", _hh(["e"], "z")], "score": [0.0, 1.0]},
    ]


def test_load_general_pairs_drop_ties(tmp_path, caplog):
    path = _write(tmp_path / "helpful.json", _general_items())
    with caplog.at_level(logging.INFO, logger="trl_custom.data"):
        ds = load_general_pairs(path)
    assert ds.column_names == ["prompt", "chosen", "rejected"]
    assert len(ds) == 3
    assert ds[0] == {"prompt": "\n\nHuman: a\n\nAssistant:", "chosen": " good", "rejected": " bad"}
    assert ds[1]["prompt"] == "\n\nHuman: b\n\nAssistant: ok\n\nHuman: c\n\nAssistant:"
    assert (ds[1]["chosen"], ds[1]["rejected"]) == (" better", " worse")
    # differing prompts -> implicit form with whole transcripts, higher score chosen
    items = _general_items()
    assert ds[2] == {"prompt": "", "chosen": items[3]["text"][1], "rejected": items[3]["text"][0]}
    assert "helpful.json: 4 comparisons -> 3 pairs (dropped 1 ties, 1 with differing prompts)" in caplog.text
    assert len(load_general_pairs(path, max_pairs=2)) == 2


def test_load_general_pairs_keep_ties(tmp_path):
    path = _write(tmp_path / "g.jsonl", _general_items(), jsonl=True)
    ds = load_general_pairs(path, drop_ties=False)
    assert len(ds) == 4
    assert ds["tie"] == [False, False, True, False]
    assert (ds[2]["chosen"], ds[2]["rejected"]) == (" tie1", " tie2")


def test_write_general_pairs_reads_back_as_the_same_pairs(tmp_path):
    """Held-out pairs written for evaluation are read back by `load_general_pairs` as the pairs they were."""
    pairs = load_general_pairs(_write(tmp_path / "helpful.json", _general_items()))
    write_general_pairs(pairs, tmp_path / "held_out.json")
    items = json.loads((tmp_path / "held_out.json").read_text())
    assert [item["score"] for item in items] == [[1.0, 0.0]] * len(pairs)
    assert load_general_pairs(tmp_path / "held_out.json").to_list() == pairs.to_list()


def test_load_general_pairs_errors(tmp_path):
    good = _general_items()[0]
    cases = [
        ([good, {"text": good["text"]}], r"bad\.json: item 1 must be an object with keys `text` and `score`"),
        ([{"text": good["text"][:1], "score": [1.0]}], r"bad\.json: item 0 must have exactly 2 transcripts"),
        ([{"text": good["text"], "score": [1, 2, 3]}], r"bad\.json: item 0 must have exactly 2"),
        ([{"text": ["\n\nHuman: a", good["text"][1]], "score": [1, 0]}], r"bad\.json: item 0: No assistant marker"),
        ([good, {"text": [_hh(["a"], ""), _hh(["a"], "x")], "score": [1, 0]}], r"bad\.json: item 1 has an empty"),
    ]
    for items, match in cases:
        path = _write(tmp_path / "bad.json", items)
        with pytest.raises(ValueError, match=match):
            load_general_pairs(path)


def test_load_general_pairs_skip_empty(tmp_path, caplog):
    items = [_general_items()[0], {"text": [_hh(["a"], "x"), _hh(["a"], "  ")], "score": [1, 0]}]
    path = _write(tmp_path / "g.json", items)
    with caplog.at_level(logging.INFO, logger="trl_custom.data"):
        ds = load_general_pairs(path, skip_empty=True)
    assert len(ds) == 1
    expected = "g.json: 2 comparisons -> 1 pairs (dropped 0 ties, 0 with differing prompts, skipped 1 with empty"
    assert expected in caplog.text


# ---------------------------------------------------------------- mixing


def _custom(n):
    return Dataset.from_dict(
        {
            "prompt": [f"p{i}" for i in range(n)],
            "chosen": ["c"] * n,
            "rejected": ["r"] * n,
            "domain": [DSP_DOMAINS[i % 4] for i in range(n)],
            "extra": list(range(n)),
        }
    )


def _general(n, margin=False):
    data = {"prompt": [f"g{i}" for i in range(n)], "chosen": ["gc"] * n, "rejected": ["gr"] * n}
    if margin:
        data["margin"] = [1.5] * n
    return Dataset.from_dict(data)


def test_mix_general_preferences_counts():
    mixed = mix_general_preferences(_custom(30), _general(100), ratio=0.25, seed=0)
    assert mixed.column_names == ["prompt", "chosen", "rejected", "domain"]
    general_rows = [r for r in mixed if r["prompt"].startswith("g")]
    assert len(mixed) == 40 and len(general_rows) == 10  # round(0.25 / 0.75 * 30) = 10
    assert all(r["domain"] is None for r in general_rows)
    assert len({r["prompt"] for r in general_rows}) == 10  # without replacement
    assert sum(r["prompt"].startswith("p") for r in mixed) == 30
    # deterministic, and shuffled
    assert mix_general_preferences(_custom(30), _general(100), ratio=0.25, seed=0)["prompt"] == mixed["prompt"]
    assert mixed["prompt"][:30] != [f"p{i}" for i in range(30)]


def test_mix_general_preferences_condition_margin_shortfall(caplog):
    with caplog.at_level(logging.WARNING, logger="trl_custom.data"):
        mixed = mix_general_preferences(_custom(10), _general(3, margin=True), ratio=0.5, general_condition="general")
    assert len(mixed) == 13
    assert "need 10 pairs" in caplog.text and "only 3 are available" in caplog.text
    assert mixed.column_names == ["prompt", "chosen", "rejected", "domain", "margin"]
    for r in mixed:
        is_general = r["prompt"].startswith("g")
        assert r["domain"] == ("general" if is_general else DSP_DOMAINS[int(r["prompt"][1:]) % 4])
        assert r["margin"] == (1.5 if is_general else 0.0)


def test_mix_general_preferences_ratio():
    custom = _custom(5)
    assert mix_general_preferences(custom, _general(5), ratio=0) is custom
    for bad in (1, 1.0, -0.1, 2):
        with pytest.raises(ValueError, match=r"ratio=.* must satisfy 0 <= ratio < 1"):
            mix_general_preferences(custom, _general(5), ratio=bad)
