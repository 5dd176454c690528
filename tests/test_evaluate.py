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


def _check_structure(results, n_queries, general=("helpful",)):
    assert set(results["dsp"]) == set(DSP_DOMAINS) | {"mean"}
    assert set(results["general"]) == set(general)
    for d in DSP_DOMAINS:
        assert results["counts"]["dsp"][d] == n_queries * 4
        assert 0.0 <= results["dsp"][d] <= 1.0
    assert results["counts"]["dsp"]["total"] == n_queries * 16
    assert results["dsp"]["mean"] == pytest.approx(sum(results["dsp"][d] for d in DSP_DOMAINS) / 4)
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
    _check_structure(results, n_queries=3)
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
    with pytest.raises(ValueError, match="logs no loss or accuracy: lower `logging_steps`"):
        plot_training_curves({"log_history": [{"step": 1, "train_runtime": 2.0}]}, tmp_path / "none.png")
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)  # as if matplotlib were not installed
    with pytest.raises(ImportError, match=r'pip install "trl-custom\[plot\]"'):
        plot_training_curves(tmp_path / "trainer_state.json", tmp_path / "again.png")
