"""The benchmark scripts run end to end on tiny models (what they measure is in benchmarks/RESULTS.md)."""

import json
import sys
from pathlib import Path

import pytest
from toy import make_causal_lm, make_reward_model, make_tokenizer, run_offline

from trl_custom.data import DSP_RESPONSE_KEYS


ROOT = Path(__file__).resolve().parents[1]


def tiny_dsp_file(path, n=12):
    """DSP-format queries whose five responses differ in length, so that every query gives short/long pairs."""

    def response(i, k):
        return " ".join(["answer"] + [f"w{(i + j) % 40}" for j in range(2 + 3 * k)])

    items = [
        {"query": f"question about t{i}", "responses": {d: response(i, k) for k, d in enumerate(DSP_RESPONSE_KEYS)}}
        for i in range(n)
    ]
    path.write_text(json.dumps(items))
    return path


@pytest.mark.parametrize("prompt_format", ["plain", "chat"])
def test_pdpo_benchmark_runs_all_methods(tmp_path, prompt_format):
    tokenizer = make_tokenizer()
    model_dir = tmp_path / "tiny-llama"
    make_causal_lm("llama", tokenizer).save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    out = tmp_path / "out"
    options = (
        "--groups short long --users_per_group 1 --pairs_per_user 8 --max_length 48 --epochs 1 --max_new_tokens 3 "
        "--generation_prompts 2 --timing_reps 1 --sft_coef 0.5 --precompute_ref_log_probs"
    )
    dsp_file = tiny_dsp_file(tmp_path / "dsp.json")
    command = [sys.executable, str(ROOT / "benchmarks/pdpo_synthetic.py"), "--dsp_file", str(dsp_file)]
    command += ["--output_dir", str(out), "--model", str(model_dir), "--prompt_format", prompt_format]
    command += options.split()
    result = run_offline(command, ROOT)

    results = json.loads((out / "results.json").read_text())
    assert set(results["accuracy"]) == {"P-DPO", "vanilla DPO", "user id as text"}
    for accuracy in results["accuracy"].values():
        assert set(accuracy) == {"short", "long"} and all(0.0 <= a <= 1.0 for a in accuracy.values())
    assert set(results["generations"]["P-DPO"]) == {"short-0", "long-0"}
    assert set(results["generations"]["user id as text"]) == {"short-0", "long-0"}
    assert set(results["generations"]["vanilla DPO"]) == {"generic"}
    assert len(results["generations"]["P-DPO"]["short-0"]["samples"]) == 2
    assert set(results["ratios"]) == {"P-DPO / DPO", "100k users / 10 users", "P-DPO (1 user token) / DPO"}
    assert "| P-DPO |" in result.stdout and "- P-DPO / DPO:" in result.stdout


def test_pdpo_benchmark_text_baseline_hides_the_group():
    """Ids like "short-0" would tell the "user id as text" policy each user's group in words."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import pdpo_synthetic
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    users = [f"{group}-{i}" for group in ("short", "long", "mixed") for i in range(50)]
    aliases = {pdpo_synthetic.text_alias(user) for user in users}
    assert len(aliases) == len(users)
    assert not any(word in alias for alias in aliases for word in ("short", "long", "mixed"))
    assert pdpo_synthetic.user_text("short-0", "Why?\n") == f"User: {pdpo_synthetic.text_alias('short-0')}\nWhy?\n"


def test_few_shot_conditions_benchmark_runs(tmp_path):
    tokenizer = make_tokenizer()
    model_dir = tmp_path / "tiny-llama-rm"
    make_reward_model("llama", tokenizer).save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    out = tmp_path / "out"
    command = [sys.executable, str(ROOT / "benchmarks/few_shot_conditions.py"), "--dsp_file"]
    command += [str(tiny_dsp_file(tmp_path / "dsp.json", n=10)), "--output_dir", str(out), "--model", str(model_dir)]
    command += "--held_out academy business --ks 2 4 --max_length 48 --batch_size 8 --train_queries 4".split()
    command += "--dev_queries 2 --select_k 2 --select_learning_rates 1e-2 1e-1".split()
    command += "--select_finetune_learning_rates 5e-5".split()
    command += "--select_epochs 1 2 --fit_max_steps 1".split()
    result = run_offline(command, ROOT)

    results = json.loads((out / "results.json").read_text())
    selection = results["selection"]
    assert set(selection["dev_accuracy"]["fit"]) == {"0.01:1", "0.01:2", "0.1:1", "0.1:2"}
    assert set(selection["dev_accuracy"]["fit"]["0.1:2"]) == {"academy", "business"}
    assert results["settings"] == selection["chosen"]
    assert selection["chosen"]["finetune"]["learning_rate"] == 5e-5
    # --fit_max_steps 1: one step, whatever the chosen epochs (k=4 pairs = 1 batch of 8)
    assert results["domains"]["academy"]["fit"]["4"]["epochs"] == 1
    assert not (out / "academy" / "select-finetune").exists()  # the selection's fine-tunes are not kept
    assert set(results["domains"]) == {"academy", "business"}
    for row in list(results["domains"].values()) + [results["mean"]]:
        assert set(row["fit"]) == set(row["finetune"]) == {"2", "4"}
        values = [row["generic"], row["text zero-shot"], row["upper bound"]]
        values += [cell["accuracy"] for cell in row["fit"].values()]
        assert all(0.0 <= v <= 1.0 for v in values)
    assert all(cell["others_max_score_change"] < 1e-4 for cell in results["domains"]["academy"]["fit"].values())
    assert "| fit_new_condition, k=4 |" in result.stdout
    assert (out / "few_shot_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # --reuse_models: the same setup reuses every reward model trained before
    rerun = run_offline(command + ["--reuse_models"], ROOT)
    # upper + 2 domains x (embedding, text, fine-tunes at k=2 and 4); the selection's fine-tunes were deleted
    assert rerun.stdout.count("  reused ") == 9
    again = json.loads((out / "results.json").read_text())
    for held, row in results["domains"].items():
        for method in ("fit", "finetune"):
            assert {k: c["accuracy"] for k, c in again["domains"][held][method].items()} == {
                k: c["accuracy"] for k, c in row[method].items()
            }


def tiny_general_file(path, n=12):
    """A `{text, score}` general preference file (HH-style transcripts) in the toy tokenizer's words."""
    items = [
        {
            "text": [f"\n\nHuman: question about t{i}\n\nAssistant: answer {w}" for w in ("alpha w1", "beta w2 w3")],
            "score": [1.0, 0.0] if i % 2 else [0.0, 1.0],
        }
        for i in range(n)
    ]
    path.write_text(json.dumps(items))
    return path


def test_gpu_scale_smoke_runs_every_section(tmp_path):
    """`benchmarks/gpu_scale.py --smoke` (the prepared GPU run of issue #21 at tiny sizes) writes every section."""
    tokenizer = make_tokenizer()
    tokenizer_dir, model_dir = tmp_path / "tokenizer", tmp_path / "tiny-llama"
    tokenizer.save_pretrained(tokenizer_dir)
    make_causal_lm("llama", tokenizer).save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    general = [str(tiny_general_file(tmp_path / f"{name}.json")) for name in ("helpful", "webgpt")]
    out = tmp_path / "out"
    command = [sys.executable, str(ROOT / "benchmarks/gpu_scale.py"), "--smoke", "--output_dir", str(out)]
    command += ["--work_dir", str(tmp_path / "work"), "--tokenizer", str(tokenizer_dir), "--smollm2", str(model_dir)]
    command += ["--dsp_file", str(tiny_dsp_file(tmp_path / "dsp.json", n=12)), "--general_files", *general]
    result = run_offline(command, ROOT)

    assert sorted(p.name for p in out.iterdir()) == ["results.json", "results.md"]
    results = json.loads((out / "results.json").read_text())
    assert results["smoke"] and results["peak_tflops"] == 989.0 and results["environment"]["device"] == "cpu"
    assert set(results["planned_budget_s"]) == set(results["sections"]) == {"rm_scale", "dpo", "dsp"}
    rm = results["sections"]["rm_scale"]
    assert rm["data"] == "DSP file" and set(rm["variants"]) == {"stock", "none", "text", "embedding", "packed"}
    for row in rm["variants"].values():
        assert row["tokens_per_s"] > 0 and row["speedup_vs_stock"] > 0 and len(row["step_seconds"]) == 2
        assert row["mfu"] is None and row["model_tflops"] > 0  # MFU only against a GPU's peak
    dpo = results["sections"]["dpo"]
    assert set(dpo["variants"]) == {"TRL DPOTrainer", "P-DPO", "P-DPO packed"}
    assert all(row["speedup_vs_TRL DPOTrainer"] > 0 for row in dpo["variants"].values())
    models = results["sections"]["dsp"]["models"]
    assert list(models) == ["general RM (stage 2)"] + [
        f"conditioned, {v}" for v in ("text", "embedding", "text+imitation", "embedding+imitation")
    ]
    for row in models.values():
        assert set(row["dsp"]) == {"academy", "business", "entertainment", "literature", "mean"}
        assert set(row["general"]) == {"helpful", "webgpt"} and row["steps"] == 1
    assert "## Reward model" in result.stdout and "| packed |" in (out / "results.md").read_text()


def test_dsp_kfold_benchmark_runs_and_resumes(tmp_path):
    """`benchmarks/dsp_kfold.py`: mean ± std over folds per variant, results.json resumed cell by cell."""
    from toy import save_reward_model

    from trl_custom.data.demo import make_demo_dsp_queries

    dsp_file = tmp_path / "dsp.json"
    dsp_file.write_text(json.dumps(make_demo_dsp_queries(num_queries=6)))
    out = tmp_path / "out"
    command = [sys.executable, str(ROOT / "benchmarks/dsp_kfold.py"), "--dsp_file", str(dsp_file)]
    command += ["--output_dir", str(out), "--model", save_reward_model(tmp_path, arch="bert", kind="bert")]
    command += "--folds 2 --variants by-hand text --max_length 64".split()
    result = run_offline(command, ROOT)

    results = json.loads((out / "results.json").read_text())
    columns = ["academy", "business", "entertainment", "literature", "mean"]
    columns += ["academy-vs-business", "business-vs-academy"]
    assert set(results["cells"]) == set(results["summary"]) == {"by-hand", "text"} and not results["errors"]
    for variant, cells in results["cells"].items():
        assert set(cells) == {"0", "1"}
        for cell in cells.values():
            assert all(0.0 <= cell[c] <= 1.0 for c in columns)
            assert cell["train_queries"] == 3 and cell["train_rows"] == 48 and cell["steps"] == 3  # 3 x 16 pairs
        for c in columns:
            stat = results["summary"][variant][c]
            assert stat["n"] == 2 and stat["std"] >= 0.0
            assert abs(stat["mean"] - (cells["0"][c] + cells["1"][c]) / 2) < 1e-9
    assert results["summary"]["by-hand"]["mean_minus_text"]["n"] == 2
    assert "3 planned steps" in result.stdout and "| by-hand | 0,1 |" in result.stdout
    assert (out / "kfold.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    again = run_offline(command, ROOT)  # resumed: every cell is done, nothing is trained again
    assert again.stdout.count("skip ") == 4 and "planned steps" not in again.stdout
    assert json.loads((out / "results.json").read_text())["cells"] == results["cells"]


def test_dsp_kfold_early_stopping_and_general_start(tmp_path):
    """`text-early-stop` trains on the fold minus its dev split and keeps the best checkpoint; `text-from-general`
    starts from a general RM trained once and reused."""
    from toy import save_reward_model

    from trl_custom.data.demo import make_demo_dsp_queries

    dsp_file = tmp_path / "dsp.json"
    dsp_file.write_text(json.dumps(make_demo_dsp_queries(num_queries=10)))
    out = tmp_path / "out"
    command = [sys.executable, str(ROOT / "benchmarks/dsp_kfold.py"), "--dsp_file", str(dsp_file)]
    command += ["--output_dir", str(out), "--model", save_reward_model(tmp_path, arch="bert", kind="bert")]
    command += ["--general_files", str(tiny_general_file(tmp_path / "general.json")), "--general_pairs", "8"]
    command += "--folds 2 --run_folds 0 --variants text-early-stop text-from-general --max_length 64".split()
    result = run_offline(command, ROOT)

    results = json.loads((out / "results.json").read_text())
    assert not results["errors"], results["errors"]
    early = results["cells"]["text-early-stop"]["0"]
    assert early["train_queries"] == 4  # 5 training queries, 1 held out as the dev split
    assert 0 < early["steps"] <= 12  # 4 queries x 16 pairs / 16 = 4 steps per epoch, 3 epochs at most
    assert "general RM: 8 pairs of general.json" in result.stdout
    assert json.loads((out / "general-rm" / "benchmark_setup.json").read_text())["pairs"] == 8
    assert not list((out / "models").glob("*/fold0/checkpoint-*"))

    command[command.index("--run_folds") + 1] = "1"
    again = run_offline(command, ROOT)  # the general RM is reused for the next fold
    assert "general RM:" not in again.stdout
    assert set(json.loads((out / "results.json").read_text())["cells"]["text-from-general"]) == {"0", "1"}


def test_dsp_kfold_folds_and_listwise_rows():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import dsp_kfold
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    queries = [{"query": f"q{i}", "responses": {k: f"{k} {i}" for k in DSP_RESPONSE_KEYS}} for i in range(11)]
    splits = dsp_kfold.fold_splits(queries, 3, seed=0)
    tests = [[q["query"] for q in test] for _, test in splits]
    assert sorted(sum(tests, [])) == sorted(q["query"] for q in queries) and {len(t) for t in tests} == {3, 4}
    for train, test in splits:
        assert len(train) + len(test) == 11 and not {q["query"] for q in train} & {q["query"] for q in test}
    assert dsp_kfold.fold_splits(queries, 3, seed=0) == splits != dsp_kfold.fold_splits(queries, 3, seed=1)
    rows = dsp_kfold.listwise_rows(queries[:1])
    assert len(rows) == 4 and rows[0]["rejected"] == ["business 0", "entertainment 0", "literature 0", "normal 0"]
    assert dsp_kfold.word_cut([{"query": " ".join(["w"] * 40), "responses": {"normal": "x " * 70}}]) == [
        {"query": " ".join(["w"] * 32), "responses": {"normal": " ".join(["x"] * 60)}}
    ]
    with pytest.raises(SystemExit):
        dsp_kfold.parse_args(["--dsp_file", "x.json", "--variants", "text", "no-such-variant"])


def test_pdpo_cold_start_benchmark_runs(tmp_path):
    tokenizer = make_tokenizer()
    model_dir = tmp_path / "tiny-llama"
    make_causal_lm("llama", tokenizer).save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    out = tmp_path / "out"
    command = [
        sys.executable,
        str(ROOT / "benchmarks/pdpo_cold_start.py"),
        "--dsp_file",
        str(tiny_dsp_file(tmp_path / "dsp.json")),
    ]
    command += ["--output_dir", str(out), "--model", str(model_dir)]
    command += (
        "--users_per_group 2 --pairs_per_user 12 --ks 0 2 --eval_pairs 4 --fit_steps 2 --epochs 1 "
        "--max_new_tokens 3 --generation_prompts 1 --max_length 48"
    ).split()
    result = run_offline(command, ROOT)
    results = json.loads((out / "results.json").read_text())
    assert set(results["curve"]) == {"short-0", "long-0"}
    for curve in results["curve"].values():
        assert set(curve) == {"0", "2"} and all(0.0 <= point["accuracy"] <= 1.0 for point in curve.values())
    assert "| short-0 |" in result.stdout and (out / "cold_start.png").is_file()


def test_many_users_benchmark_smoke(tmp_path):
    """`benchmarks/many_users.py --smoke`: every variant, the dev selection, the k-curve, the fine-tune and timing
    sections, on a tiny BERT and a tiny population."""
    from toy import save_reward_model

    out = tmp_path / "out"
    command = [sys.executable, str(ROOT / "benchmarks/many_users.py"), "--smoke", "--output_dir", str(out)]
    command += ["--dsp_file", str(tiny_dsp_file(tmp_path / "dsp.json", n=12)), "--max_length", "48"]
    command += ["--model", save_reward_model(tmp_path, arch="bert", kind="bert"), "--seeds", "0", "1"]
    command += ["--finetune_users", "3", "--finetune_variants", "text", "prototype", "--timing"]
    result = run_offline(command, ROOT)

    results = json.loads((out / "results.json").read_text())
    variants = {"generic", "table", "lowrank", "prototype", "oracle", "bayes"}
    assert set(results["head"]["seen"]) == set(results["head"]["unseen"]) == variants
    for variant in variants:
        assert set(results["head"]["unseen"][variant]) == {"0", "2", "4"}
        for stat in [results["head"]["seen"][variant], *results["head"]["unseen"][variant].values()]:
            assert 0.0 <= stat["mean"] <= 1.0 and stat["std"] >= 0.0
    for variant in ("generic", "oracle", "bayes"):  # no user fitted: the same at every k
        assert len({json.dumps(s) for s in results["head"]["unseen"][variant].values()}) == 1
    selection = results["head"]["selection"]
    assert selection["lowrank"]["train"]["rank"] == 2 and selection["prototype"]["fit"]["steps"] == 2
    assert set(results["oracle_share"]) == {"table", "lowrank", "prototype", "seen"}
    finetune = results["finetune"]["summary"]
    assert {"user id as text (by hand)", "input prototype (fine-tuned)", "head prototype (frozen)"} <= set(finetune)
    assert finetune["input prototype (fine-tuned)"]["steps"]["mean"] >= 1
    timing = results["timing"]
    assert set(timing["ratio"]) == {
        f"{k}, {p}" for k in ("table", "lowrank", "prototype") for p in ("input", "reward_head")
    }
    assert all(r > 0 for r in timing["ratio"].values()) and timing["fit_seconds"]["reward_head"] > 0
    assert (out / "k_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "| prototype |" in result.stdout and "fit_new_condition, k=16 pairs" in result.stdout
