import json

import pytest
from toy import conditioned_pairs, save_reward_model

from trl_custom import CustomRewardConfig, CustomRewardTrainer, RewardScorer
from trl_custom.data import DSP_DOMAINS, dsp_pairs, load_dsp_queries
from trl_custom.evaluation import evaluate_reward_model, heatmap
from trl_custom.scripts.evaluate import main


# Responses use the toy tokenizer's vocabulary so that they tokenize differently (unknown words all map to <unk>).
RESPONSE_WORDS = {
    "academy": "answer formal alpha",
    "business": "answer casual beta",
    "entertainment": "tell me more gamma",
    "literature": "very long answer delta",
    "normal": "short answer",
}


def _dsp_file(tmp_path, n=3):
    items = [
        {
            "query": f"question about t{i}",
            "responses": {k: f"{words} w{i + 5 * j}" for j, (k, words) in enumerate(RESPONSE_WORDS.items())},
        }
        for i in range(n)
    ]
    path = tmp_path / "dsp.json"
    path.write_text(json.dumps(items))
    return str(path)


def _general_file(tmp_path):
    def hh(prompt, response):
        return f"\n\nHuman: {prompt}\n\nAssistant: {response}"

    items = [
        {"text": [hh("tell me about t1", "answer alpha w1"), hh("tell me about t1", "short")], "score": [2, 1]},
        {"text": [hh("explain t2", "answer beta"), hh("explain t2", "very long answer w3 w4")], "score": [0, 3]},
        {"text": [hh("explain t3", "answer gamma"), hh("explain t3", "answer delta")], "score": [1, 1]},  # tie
        {"text": [hh("question t4", "formal answer"), hh("question t4", "casual answer w9")], "score": [5, 2]},
    ]
    path = tmp_path / "helpful.json"
    path.write_text(json.dumps(items))
    return str(path)


@pytest.fixture(scope="module")
def embedding_model(tmp_path_factory):
    """Embedding-mode model trained 2 steps on toy pairs whose domains are DSP domains."""
    tmp_path = tmp_path_factory.mktemp("embedding")
    path = save_reward_model(tmp_path)
    data = conditioned_pairs(16).map(lambda x: {"domain": {"formal": "academy", "casual": "business"}[x["domain"]]})
    args = CustomRewardConfig(
        str(tmp_path / "out"),
        condition_mode="embedding",
        use_cpu=True,
        bf16=False,
        report_to="none",
        max_steps=2,
        per_device_train_batch_size=4,
        save_strategy="no",
        disable_tqdm=True,
        max_length=64,
    )
    trainer = CustomRewardTrainer(path, args=args, train_dataset=data)
    trainer.train()
    out = str(tmp_path / "saved")
    trainer.save_model(out)
    return out


def _check_structure(results, n_queries, general=("helpful",), unseen=()):
    assert set(results["dsp"]) == set(DSP_DOMAINS) | {"mean"}
    assert set(results["unseen"]) == set(unseen)
    assert set(results["general"]) == set(general)
    for d in DSP_DOMAINS:
        assert results["counts"]["dsp"][d] == n_queries * 4
        assert 0.0 <= results["dsp"][d] <= 1.0
    assert results["counts"]["dsp"]["total"] == n_queries * 16
    seen = [d for d in DSP_DOMAINS if d not in unseen]  # the mean leaves out domains the model was not trained on
    assert results["dsp"]["mean"] == pytest.approx(sum(results["dsp"][d] for d in seen) / len(seen))
    for key in ("ties", "identical"):
        assert set(results[key]["dsp"]) == set(DSP_DOMAINS) | {"total"} and set(results[key]["general"]) == set(
            general
        )
    for name in general:
        assert results["counts"]["general"][name] == 3  # 4 comparisons, one tie dropped
        assert 0.0 <= results["general"][name] <= 1.0


def test_cli_unconditioned(tmp_path, capsys):
    model = save_reward_model(tmp_path)
    dsp, general = _dsp_file(tmp_path), _general_file(tmp_path)
    out, png = tmp_path / "eval" / "results.json", tmp_path / "heatmap.png"
    returned = main(
        [
            "--model_name_or_path",
            model,
            "--dsp_file",
            dsp,
            "--general_files",
            general,
            "--output_json",
            str(out),
            "--plot",
            str(png),
            "--batch_size",
            "8",
            "--no_progress",
        ]
    )
    results = json.loads(out.read_text())
    assert results == json.loads(json.dumps(returned))
    _check_structure(results, n_queries=3)
    assert results["meta"]["condition_mode"] == "none"
    # Unconditioned: one row, equal to the per-domain accuracies.
    assert results["heatmap"]["rows"] == ["general"]
    assert results["heatmap"]["columns"] == list(DSP_DOMAINS)
    assert results["heatmap"]["values"] == [[results["dsp"][d] for d in DSP_DOMAINS]]
    assert png.is_file() and png.stat().st_size > 0
    printed = capsys.readouterr().out
    assert "academy" in printed and "helpful" in printed and "mean" in printed

    # --condition names the single row of a model trained for that domain; it does not change the rewards.
    out2 = tmp_path / "academy.json"
    main(
        [
            "--model_name_or_path",
            model,
            "--dsp_file",
            dsp,
            "--output_json",
            str(out2),
            "--condition",
            "academy",
            "--no_progress",
        ]
    )
    forced = json.loads(out2.read_text())
    assert forced["heatmap"]["rows"] == ["academy"]
    assert forced["dsp"] == results["dsp"]
    assert forced["general"] == {}


def test_dsp_split_and_limits(tmp_path):
    model = save_reward_model(tmp_path)
    dsp, general = _dsp_file(tmp_path, n=5), _general_file(tmp_path)
    out = tmp_path / "r.json"
    main(
        [
            "--model_name_or_path",
            model,
            "--dsp_file",
            dsp,
            "--general_files",
            general,
            "--output_json",
            str(out),
            "--dsp_split",
            "test",
            "--test_size",
            "2",
            "--seed",
            "1",
            "--max_pairs",
            "2",
            "--no_heatmap",
            "--no_progress",
        ]
    )
    results = json.loads(out.read_text())
    assert all(results["counts"]["dsp"][d] == 2 * 4 for d in DSP_DOMAINS)
    assert results["counts"]["general"]["helpful"] == 2
    assert "heatmap" not in results
    main(
        [
            "--model_name_or_path",
            model,
            "--dsp_file",
            dsp,
            "--output_json",
            str(out),
            "--max_queries",
            "1",
            "--no_progress",
        ]
    )
    assert json.loads(out.read_text())["counts"]["dsp"]["total"] == 16


def test_dedupe_matches_naive_pairwise_scoring(tmp_path, embedding_model):
    scorer = RewardScorer.from_pretrained(embedding_model, batch_size=4)
    queries = load_dsp_queries(_dsp_file(tmp_path))
    scored = []
    original = scorer.score

    def counting_score(prompts, responses, conditions=None, **kwargs):
        scored.append(len(responses))
        return original(prompts, responses, conditions, **kwargs)

    scorer.score = counting_score
    results = evaluate_reward_model(scorer, queries, progress=False)
    n_pairs = results["counts"]["dsp"]["total"]
    assert n_pairs == 48
    # 3 queries x 5 responses under the two known domains; unknown domains share the generic entry.
    assert sum(scored) == 3 * 5 * 3 < 2 * n_pairs

    scorer.score = original
    pairs = dsp_pairs(queries, rejected_column="other")
    wins = {d: [] for d in DSP_DOMAINS}
    wins_by_other = {}
    for row in pairs:
        cond = row["domain"]
        chosen, rejected = original([row["prompt"]] * 2, [row["chosen"], row["rejected"]], [cond, cond])
        wins[cond].append(chosen > rejected)
        wins_by_other.setdefault((cond, row["other"]), []).append(chosen > rejected)
    for d in DSP_DOMAINS:
        assert results["dsp"][d] == pytest.approx(sum(wins[d]) / len(wins[d]))
    # The breakdown by competing response: 4 other responses per domain, each scored on its own pairs.
    assert {d: sorted(v) for d, v in results["dsp_by_rejected"].items()} == {
        d: sorted(o for o in ("academy", "business", "entertainment", "literature", "normal") if o != d)
        for d in DSP_DOMAINS
    }
    for (d, other), w in wins_by_other.items():
        assert results["dsp_by_rejected"][d][other] == pytest.approx(sum(w) / len(w))

    # Forced condition and the heatmap agree with each other (and reuse the cache).
    cache = {}
    forced = evaluate_reward_model(scorer, queries, condition="business", progress=False, cache=cache)
    matrix = heatmap(scorer, queries, ["business", "generic"], progress=False, cache=cache)
    assert matrix["values"][0] == [forced["dsp"][d] for d in DSP_DOMAINS]
    generic = evaluate_reward_model(scorer, queries, condition=None, progress=False)
    assert matrix["values"][1] == [generic["dsp"][d] for d in DSP_DOMAINS]
    with pytest.raises(ValueError, match="academy, business"):
        heatmap(scorer, queries, ["literature"], progress=False)


def test_cli_embedding_model_heatmap(tmp_path, embedding_model, capsys):
    dsp, general = _dsp_file(tmp_path), _general_file(tmp_path)
    out, png = tmp_path / "results.json", tmp_path / "heatmap.png"
    main(
        [
            "--model_name_or_path",
            embedding_model,
            "--dsp_file",
            dsp,
            "--general_files",
            general,
            "--output_json",
            str(out),
            "--plot",
            str(png),
            "--no_progress",
        ]
    )
    results = json.loads(out.read_text())
    _check_structure(results, n_queries=3, unseen=("entertainment", "literature"))
    assert results["unseen"] == {d: "scored with the generic entry" for d in ("entertainment", "literature")}
    assert results["meta"]["condition_mode"] == "embedding"
    matrix = results["heatmap"]
    assert matrix["rows"] == ["academy", "business", "generic"]
    assert matrix["columns"] == list(DSP_DOMAINS)
    assert len(matrix["values"]) == 3 and all(len(row) == 4 for row in matrix["values"])
    assert all(0.0 <= v <= 1.0 for row in matrix["values"] for v in row)
    # Auto condition: each domain is scored under its own condition (generic for the ones the model does not know).
    assert matrix["values"][0][0] == results["dsp"]["academy"]
    assert matrix["values"][1][1] == results["dsp"]["business"]
    assert matrix["values"][2][2:] == [results["dsp"]["entertainment"], results["dsp"]["literature"]]
    assert png.is_file() and png.stat().st_size > 0
    assert "Heatmap" in capsys.readouterr().out


def test_cli_errors(tmp_path, embedding_model, capsys):
    dsp = _dsp_file(tmp_path)
    out = str(tmp_path / "r.json")
    with pytest.raises(SystemExit):
        main(
            ["--model_name_or_path", embedding_model, "--dsp_file", str(tmp_path / "nope.json"), "--output_json", out]
        )
    assert "nope.json" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(
            [
                "--model_name_or_path",
                embedding_model,
                "--dsp_file",
                dsp,
                "--general_files",
                str(tmp_path / "missing_general.json"),
                "--output_json",
                out,
            ]
        )
    assert "missing_general.json" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--model_name_or_path", str(tmp_path / "no_model"), "--dsp_file", dsp, "--output_json", out])
    assert "no_model" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(
            [
                "--model_name_or_path",
                embedding_model,
                "--dsp_file",
                dsp,
                "--output_json",
                out,
                "--condition",
                "literature",
            ]
        )
    err = capsys.readouterr().err
    assert "literature" in err and "academy, business" in err
    # 'none' forces the generic entry and is always accepted.
    main(
        [
            "--model_name_or_path",
            embedding_model,
            "--dsp_file",
            dsp,
            "--output_json",
            out,
            "--condition",
            "none",
            "--no_heatmap",
            "--no_progress",
        ]
    )
    assert json.loads(open(out).read())["condition"] == "none"


def test_plot_without_matplotlib(tmp_path, monkeypatch):
    from trl_custom.evaluation import plot_heatmap

    monkeypatch.setitem(__import__("sys").modules, "matplotlib.figure", None)
    matrix = {"rows": ["general"], "columns": list(DSP_DOMAINS), "values": [[0.5, 0.5, None, 1.0]]}
    with pytest.raises(ImportError, match=r'pip install "trl-custom\[plot\]"'):
        plot_heatmap(matrix, tmp_path / "h.png")


def test_cli_on_a_preference_dataset_with_a_condition_column(embedding_model, tmp_path):
    """`--dataset_name` (a local folder in TRL's format) scored per `domain`, each pair under its own condition; the
    heatmap gives every known condition to every pair."""
    folder = tmp_path / "prefs"
    folder.mkdir()
    pairs = conditioned_pairs(12, seed=3).map(
        lambda x: {"domain": {"formal": "academy", "casual": "business"}[x["domain"]]}
    )
    pairs.to_json(folder / "test.jsonl")
    out, png = tmp_path / "eval.json", tmp_path / "heatmap.png"
    results = main(
        ["--model_name_or_path", embedding_model, "--dataset_name", str(folder), "--output_json", str(out),
         "--plot", str(png), "--no_progress"]
    )  # fmt: skip
    scorer = RewardScorer.from_pretrained(embedding_model)
    chosen = scorer.score(pairs["prompt"], pairs["chosen"], pairs["domain"])
    rejected = scorer.score(pairs["prompt"], pairs["rejected"], pairs["domain"])
    for domain in ("academy", "business"):
        wins = [c > r for c, r, d in zip(chosen, rejected, pairs["domain"]) if d == domain]
        assert results["pairs"][domain] == pytest.approx(sum(wins) / len(wins))
        assert results["counts"]["pairs"][domain] == 6
    assert results["heatmap"]["rows"] == [*scorer.conditioning.conditions, "generic"]
    assert results["heatmap"]["columns"] == ["academy", "business"]
    assert json.loads(out.read_text())["meta"]["condition_column"] == "domain"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plots_from_a_trainer_state_and_without_matplotlib(tmp_path, monkeypatch):
    import sys

    import matplotlib.image

    from trl_custom.evaluation import plot_accuracy_bars, plot_training_curves

    state = {
        "log_history": [
            {"step": s, "loss": 0.7 - 0.1 * s, "accuracy": 0.5 + 0.1 * s, "accuracy/formal": 0.4 + 0.1 * s}
            for s in (1, 2, 3)
        ]
        + [{"step": 3, "eval_loss": 0.5, "eval_rewards/accuracies/u1": 0.9, "train_runtime": 1.0}]
    }
    (tmp_path / "trainer_state.json").write_text(json.dumps(state))
    curves = plot_training_curves(tmp_path / "trainer_state.json", tmp_path / "curves.png")
    assert curves["loss"] == {"train loss": [(1, 0.6), (2, pytest.approx(0.5)), (3, pytest.approx(0.4))],
                              "eval loss": [(3, 0.5)]}  # fmt: skip
    assert set(curves["accuracy"]) == {"train overall", "train formal", "eval u1"}
    assert matplotlib.image.imread(tmp_path / "curves.png").ndim == 3
    plot_accuracy_bars({"u1": 0.8, "u2": None}, tmp_path / "bars.png", before={"u1": 0.5, "u2": 0.5})
    assert (tmp_path / "bars.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # an online-RL log (GRPO/RLOO: no accuracy): the loss and the mean reward, no empty accuracy panel
    online = {"log_history": [{"step": s, "loss": 0.0, "reward": 0.1 * s, "kl": 0.01 * s} for s in (1, 2)]}
    curves = plot_training_curves(online, tmp_path / "online.png")
    assert set(curves) == {"loss", "reward"} and curves["reward"]["train reward"] == [(1, 0.1), (2, 0.2)]
    assert set(curves["reward"]) == {"train reward", "train kl"}
    with pytest.raises(ValueError, match="logs no loss or accuracy: lower `logging_steps`"):
        plot_training_curves({"log_history": [{"step": 1, "train_runtime": 2.0}]}, tmp_path / "none.png")
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)  # as if matplotlib were not installed
    with pytest.raises(ImportError, match=r'pip install "trl-custom\[plot\]"'):
        plot_training_curves(tmp_path / "trainer_state.json", tmp_path / "again.png")


# ---------------------------------------------------------------------------------------------------- issue #29
UNSEEN_HOW = {"text": "rendered into the template (zero-shot)", "embedding": "scored with the generic entry"}


def _scorer(mode="none", conditions=(), strict=False, truncation=None, max_length=64):
    """An in-memory scorer of a tiny untrained model with the toy word-level tokenizer (inputs tokenize as written)."""
    import torch
    from toy import make_reward_model, make_tokenizer

    from trl_custom import ConditioningSpec, ModelRecord
    from trl_custom.soft_tokens import attach_soft_tokens, new_soft_tokens

    tokenizer = make_tokenizer()
    model = make_reward_model("qwen2", tokenizer)
    spec = ConditioningSpec(mode=mode, conditions=list(conditions), strict=strict)
    if mode == "embedding":
        soft = attach_soft_tokens(model, new_soft_tokens(model, spec.tokens, len(spec.conditions)))
        with torch.no_grad():  # distinct rows: the generic entry scores differently from the known conditions
            soft.table.normal_(0, 1.0)
    ModelRecord(conditioning=spec, max_length=max_length, truncation_mode=truncation or "head_tail").attach(model)
    scorer = RewardScorer(model.eval(), tokenizer, spec, max_length=max_length, batch_size=8)
    scorer.scored, original = [], scorer.score

    def counting_score(prompts, responses, conditions=None, **kwargs):
        scorer.scored.append(len(responses))
        return original(prompts, responses, conditions, **kwargs)

    scorer.score = counting_score
    return scorer


def _dsp_domain_pairs(n=12, seed=3, extra=None):
    """Toy conditioned pairs on the DSP domains academy/business, plus `n // 2` pairs of domain `extra`."""
    from datasets import concatenate_datasets

    pairs = conditioned_pairs(n, seed=seed).map(
        lambda x: {"domain": {"formal": "academy", "casual": "business"}[x["domain"]]}
    )
    if extra:
        pairs = concatenate_datasets(
            [pairs, conditioned_pairs(n // 2, seed=seed + 1).map(lambda x: {"domain": extra})]
        )
    return pairs


@pytest.mark.parametrize("mode", ["text", "embedding"])
def test_strict_model_refuses_unseen_conditions_before_scoring(tmp_path, mode, capsys):
    """#29.1: a strict model given condition values it was not trained on fails before anything is scored, naming
    them, the values it knows and the fixes (it used to score them zero-shot / with the generic entry)."""
    from trl_custom.evaluation import evaluate_pairs

    scorer = _scorer(mode, ["academy", "business"], strict=True)
    queries = load_dsp_queries(_dsp_file(tmp_path))
    known = r"it knows \['academy', 'business'\]\), and the model is strict \(strict_conditions=True\)"
    fix = r"Drop those rows, evaluate a model saved with strict_conditions=False .*trl_custom.fit_new_condition"
    with pytest.raises(
        ValueError, match=rf"The DSP pairs: domain value\(s\) \['entertainment', 'literature'\] .*{known}"
    ):
        evaluate_reward_model(scorer, queries, general_files=[_general_file(tmp_path)], progress=False)
    with pytest.raises(
        ValueError, match=rf"'domain' column of the evaluation pairs: domain value\(s\) \['law'\].*{fix}"
    ):
        evaluate_pairs(scorer, _dsp_domain_pairs(extra="law"), progress=False)
    if mode == "text":  # (an embedding-mode model refuses any unknown forced condition, strict or not)
        with pytest.raises(ValueError, match=r"The heatmap rows: domain value\(s\) \['literature'\]"):
            heatmap(scorer, queries, ["academy", "literature", "generic"], progress=False)
    assert scorer.scored == []  # nothing scored

    # `trl-custom evaluate` on the saved strict model: a usage error, nothing written.
    folder = tmp_path / "strict-model"
    scorer.model.save_pretrained(folder)
    scorer.tokenizer.save_pretrained(folder)
    scorer.record.save(folder)
    if mode == "embedding":
        scorer.soft_tokens.save(folder)
    out = tmp_path / "r.json"
    with pytest.raises(SystemExit):
        main(["--model_name_or_path", str(folder), "--dsp_file", _dsp_file(tmp_path), "--output_json", str(out)])
    assert "['entertainment', 'literature'] were not seen" in capsys.readouterr().err and not out.exists()


@pytest.mark.parametrize("mode", ["text", "embedding"])
def test_unseen_conditions_are_reported_apart_and_left_out_of_the_mean(tmp_path, mode, caplog):
    """#29.1: a non-strict model's unseen condition values keep their rows, marked with how they were scored (JSON,
    table, recipe table, model card), out of the mean, with one warning."""
    import logging

    from trl_custom.evaluation import evaluate_pairs, format_results
    from trl_custom.scripts.outputs import flatten_results
    from trl_custom.scripts.reward import print_before_after

    how = UNSEEN_HOW[mode]
    scorer = _scorer(mode, ["academy", "business"])
    pairs = _dsp_domain_pairs(extra="law")
    with caplog.at_level(logging.WARNING, logger="trl_custom.evaluation.accuracy"):
        results = evaluate_pairs(scorer, pairs, progress=False)
    assert [r.getMessage() for r in caplog.records if "law" in r.getMessage()] == [
        "The 'domain' column of the evaluation pairs: domain value(s) ['law'] were not seen when training this model "
        f"(it knows ['academy', 'business']): they are {how}, reported on rows of their own marked unseen, out of the "
        "mean."
    ]
    assert results["unseen"] == {"law": how}
    assert set(results["pairs"]) == {"academy", "business", "law", "mean", "all"}
    assert results["counts"]["pairs"] == {"academy": 6, "business": 6, "law": 6, "all": 18}
    assert results["pairs"]["mean"] == pytest.approx((results["pairs"]["academy"] + results["pairs"]["business"]) / 2)
    law = pairs.filter(lambda x: x["domain"] == "law")
    given = [None if mode == "embedding" else "law"] * len(law)  # what "scored with ..." says
    chosen, rejected = (
        scorer.score(law["prompt"], law["chosen"], given),
        scorer.score(law["prompt"], law["rejected"], given),
    )
    assert results["pairs"]["law"] == pytest.approx(sum(c > r for c, r in zip(chosen, rejected)) / len(law))

    table = format_results(results).splitlines()
    assert next(line for line in table if line.strip().startswith("law")).endswith(f"(unseen in training: {how})")
    assert next(line for line in table if line.strip().startswith("mean")).endswith(
        "(seen conditions only, without law)"
    )
    recipe_table = print_before_after(results, results)
    assert "domain law" in recipe_table and f"(unseen in training: {how})" in recipe_table
    metrics = flatten_results(results, {**results, "condition_column": "domain"})
    assert metrics[f"accuracy/domain/law (unseen in training: {how})"] == results["pairs"]["law"]
    assert metrics["accuracy/domain/mean (seen conditions only)"] == results["pairs"]["mean"]
    assert metrics["accuracy/domain/academy"] == results["pairs"]["academy"]
    assert "accuracy/domain/law" not in metrics and "accuracy/domain/mean" not in metrics

    # DSP pairs under their own domain: the two the model was not trained on are marked and out of the mean.
    dsp = evaluate_reward_model(scorer, load_dsp_queries(_dsp_file(tmp_path)), progress=False)
    assert dsp["unseen"] == {"entertainment": how, "literature": how}
    assert dsp["dsp"]["mean"] == pytest.approx((dsp["dsp"]["academy"] + dsp["dsp"]["business"]) / 2)
    assert "accuracy/dsp/literature (unseen in training: " + how + ")" in flatten_results(None, dsp)


def test_heatmap_marks_rows_of_unseen_conditions(tmp_path):
    """#29.1: a heatmap row forced to a condition the (text-mode) model was not trained on is marked in the result,
    the table and the picture."""
    from trl_custom.evaluation import format_results, plot_heatmap

    scorer = _scorer("text", ["academy", "business"])
    matrix = heatmap(
        scorer, load_dsp_queries(_dsp_file(tmp_path)), ["academy", "literature", "generic"], progress=False
    )
    assert matrix["unseen"] == {"literature": UNSEEN_HOW["text"]}
    fig = plot_heatmap(matrix, tmp_path / "h.png", title="model")
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["academy", "literature *", "generic"]
    assert ax.get_title() == "model\n* not seen in training: rendered into the template (zero-shot)"
    table = format_results({"heatmap": matrix})
    assert "  literature *" in table and table.endswith(
        "* not seen in training: rendered into the template (zero-shot)"
    )
    assert (
        heatmap(scorer, load_dsp_queries(_dsp_file(tmp_path)), ["academy", "generic"], progress=False)["unseen"] == {}
    )


def test_ties_and_pairs_identical_after_truncation_are_counted(tmp_path):
    """#29.7: beside each accuracy, its ties and how many pairs are the same input once truncated (here
    `truncation_mode="keep_start"` keeps only the start of a long prompt); they count as errors."""
    import torch
    from datasets import Dataset

    from trl_custom.evaluation import evaluate_pairs, format_results
    from trl_custom.scripts.outputs import flatten_results

    scorer = _scorer(truncation="keep_start", max_length=8)
    long_prompt = "question about t1 " + " ".join(f"w{i}" for i in range(10)) + " "  # 13 tokens: cut inside
    rows = [
        {"prompt": long_prompt, "chosen": "answer alpha", "rejected": "answer beta", "domain": "a"},
        {"prompt": long_prompt, "chosen": "short answer", "rejected": "very long answer", "domain": "a"},
        {"prompt": "question about t2 ", "chosen": "answer alpha", "rejected": "answer beta", "domain": "a"},
        {"prompt": "question about t3 ", "chosen": "tell me more", "rejected": "answer beta", "domain": "a"},
        {"prompt": "question about t4 ", "chosen": "answer gamma", "rejected": "answer delta", "domain": "b"},
        {"prompt": "question about t5 ", "chosen": "answer delta", "rejected": "answer gamma", "domain": "b"},
    ]
    data = Dataset.from_list(rows)
    assert [len(scorer.encode(r["prompt"], r["chosen"])) for r in rows] == [8, 8, 6, 7, 6, 6]
    results = evaluate_pairs(scorer, data, progress=False)
    assert results["identical"]["pairs"] == {"a": 2, "b": 0, "all": 2}
    assert results["ties"]["pairs"] == {"a": 2, "b": 0, "all": 2}
    chosen = scorer.score(data["prompt"], data["chosen"])
    rejected = scorer.score(data["prompt"], data["rejected"])
    wins = [c > r for c, r in zip(chosen, rejected)]
    assert results["pairs"]["a"] == sum(wins[2:4]) / 4  # the identical pairs are errors
    assert results["pairs"]["b"] == sum(wins[4:]) / 2
    a_line = next(line for line in format_results(results).splitlines() if line.strip().startswith("a "))
    assert a_line.endswith("(ties 50%, 50% identical after truncation)")
    metrics = flatten_results(None, {**results, "condition_column": "domain"})
    assert metrics["ties/domain/a"] == "2 of 4 pairs (50%), 2 identical after truncation"
    assert "ties/domain/b" not in metrics

    # Equal rewards on different inputs are ties, not identical inputs: a reward head of zeros.
    with torch.no_grad():
        scorer.model.score.weight.zero_()
    tied = evaluate_pairs(scorer, data, progress=False)
    assert tied["ties"]["pairs"] == {"a": 4, "b": 2, "all": 6} and tied["identical"]["pairs"]["all"] == 2
    assert tied["pairs"]["all"] == 0.0

    # The DSP / general-file path counts them the same way: every general pair is cut inside its prompt.
    general = evaluate_reward_model(_scorer(truncation="keep_start", max_length=4), None, [_general_file(tmp_path)],
                                    progress=False)  # fmt: skip
    assert (general["counts"]["general"], general["ties"]["general"], general["identical"]["general"]) == (
        {"helpful": 3},
        {"helpful": 3},
        {"helpful": 3},
    )
    assert general["general"]["helpful"] == 0.0
