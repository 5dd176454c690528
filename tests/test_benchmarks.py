"""The benchmark scripts run end to end on tiny models (what they measure is in benchmarks/RESULTS.md)."""

import ast
import importlib
import json
import sys
from pathlib import Path

import pytest
from toy import make_causal_lm, make_reward_model, make_tokenizer, run_offline

from trl_custom.data import DSP_DOMAINS, DSP_RESPONSE_KEYS


ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS = ROOT / "benchmarks"
SCRIPTS = sorted(path.stem for path in BENCHMARKS.glob("*.py"))


def imported_modules(path):
    """The modules `path` imports (`import a.b`, `from a.b import c` -> `a.b.c` too: `c` may be a module)."""
    names = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            names += [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
    return names


def test_benchmarks_share_code_only_through_their_shared_modules():
    """No benchmark imports another benchmark script (their common parts are in `benchmarks/_shared/`) nor the
    command lines' code (`trl_custom.scripts`: the library has what they need)."""
    assert len(SCRIPTS) >= 9 and not [s for s in SCRIPTS if s.startswith("_")]
    for path in sorted(BENCHMARKS.rglob("*.py")):
        where = path.relative_to(ROOT)
        for name in imported_modules(path):
            assert name.split(".")[0] not in SCRIPTS, f"{where} imports the benchmark script {name}"
            assert not (name + ".").startswith("trl_custom.scripts."), f"{where} imports {name}: use the library"
    assert "sys.path" not in "".join(path.read_text(encoding="utf-8") for path in BENCHMARKS.glob("*.py"))


@pytest.mark.parametrize("script", SCRIPTS)
def test_benchmark_help(script, capsys):
    sys.path.insert(0, str(BENCHMARKS))
    try:
        module = importlib.import_module(script)
    finally:
        sys.path.remove(str(BENCHMARKS))
    with pytest.raises(SystemExit) as exit_info:
        module.parse_args(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: ") and "--output_dir" in out and out.count("--") > 5


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


def test_online_users_benchmark_runs(tmp_path):
    """The conflicting-users online benchmark on a toy causal LM (tests/toy.py; `--model tiny` needs SmolLM2's
    tokenizer, not installed in CI): every variant trains, evaluates own and swapped users, and the step-time ratios
    are measured."""
    tokenizer = make_tokenizer()
    model_dir = tmp_path / "tiny-llama"
    make_causal_lm("llama", tokenizer).save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    out = tmp_path / "out"
    command = [sys.executable, str(ROOT / "benchmarks/online_users.py"), "--model", str(model_dir)]
    command += ["--output_dir", str(out)]
    command += (
        "--steps 2 --users_per_group 1 --prompts_per_user 4 --eval_prompts 2 --eval_samples 1 --batch_size 4 "
        "--num_generations 2 --max_completion_length 4 --timing --timing_reps 1"
    ).split()
    result = run_offline(command, ROOT)
    report = json.loads((out / "results.json").read_text())
    assert set(report["variants"]) == {"personalized", "stock", "user-id-in-prompt"}
    assert {"own/short", "own/long", "swapped/short", "swapped/long"} <= set(report["variants"]["personalized"])
    assert report["timing"]["personalized_over_stock"] > 0 and report["timing"]["users_10k_over_10"] > 0
    assert "long/short length ratio" in result.stdout


def tiny_data_dir(path, general_pairs=12):
    """A `--data_dir` as the benchmarks read it: `dsp_queries.dev.json` and the three general `*.dev.json` files."""
    path.mkdir()
    tiny_dsp_file(path / "dsp_queries.dev.json", n=12)
    for name in ("helpful", "harmless", "webgpt"):
        tiny_general_file(path / f"{name}.dev.json", n=general_pairs)
    return path


def test_dsp_customized_rm_benchmark_runs(tmp_path):
    """`benchmarks/dsp_customized_rm.py`: general RM, per-domain RMs, conditioned RMs, the step-time table."""
    from toy import save_reward_model

    out, data_dir = tmp_path / "out", tiny_data_dir(tmp_path / "d")
    model = save_reward_model(tmp_path, arch="bert", kind="bert")
    command = [sys.executable, str(BENCHMARKS / "dsp_customized_rm.py"), "--data_dir", str(data_dir), "--model", model]
    command += ["--output_dir", str(out)] + (
        "--train_queries 6 --general_train_pairs 4 --general_eval_pairs 4 --batch_size 4 --max_length 48 "
        "--per_domain_epochs 1 --timing_reps 1 --conditioned text embedding+enrichment"
    ).split()
    result = run_offline(command, ROOT)

    results = json.loads((out / "results.json").read_text())
    per_domain = [f"per-domain RM: {d}" for d in DSP_DOMAINS]
    conditioned = ["conditioned RM, text", "conditioned RM, embedding + enrichment"]
    models = ["general RM (stage 2)", *per_domain, "per-domain RMs (own domain)", *conditioned]
    assert list(results["models"]) == models
    for name in ["general RM (stage 2)", *per_domain, *conditioned]:
        row = results["models"][name]
        assert set(row["dsp"]) == {*DSP_DOMAINS, "mean"} and set(row["general"]) == {"helpful", "harmless", "webgpt"}
        assert all(0.0 <= v <= 1.0 for v in [*row["dsp"].values(), *row["general"].values()])
    assert [len(row) for row in results["per_domain_heatmap"]["values"]] == [4] * 4
    assert all("heatmap" in results["models"][name] for name in conditioned)
    steps = results["step_time"]
    assert list(steps)[0] == "stock RewardTrainer" and steps["stock RewardTrainer"]["ratio_vs_stock"] == 1.0
    assert len(steps) == 5 and all(t["median_s"] > 0 and t["tokens"] > 0 for t in steps.values())
    assert "| conditioned RM, text |" in result.stdout and "| ours, embedding (K=4) |" in result.stdout


def test_padding_free_benchmark_runs(tmp_path):
    """`benchmarks/padding_free.py`: stock, padded and packed on the same batches, and each one's memory probe."""
    tokenizer_dir = tmp_path / "tokenizer"
    make_tokenizer().save_pretrained(tokenizer_dir)
    out, data = tmp_path / "out", tiny_dsp_file(tmp_path / "d.json")
    command = [sys.executable, str(BENCHMARKS / "padding_free.py"), "--data", str(data), "--output_dir", str(out)]
    command += ["--tokenizer", str(tokenizer_dir)] + (
        "--hidden_size 64 --num_layers 1 --intermediate_size 64 --batch_size 2 --batches 2 --memory_batches 1 "
        "--max_length 64"
    ).split()
    result = run_offline(command, ROOT)

    results = json.loads((out / "results.json").read_text())
    assert list(results["variants"]) == ["stock", "padded", "packed"] and results["pairs"] == 6  # warm-up + 2 batches
    assert 0 < results["padding_efficiency"] <= results["packed_efficiency"] <= 1.0
    for row in results["variants"].values():
        assert len(row["step_seconds"]) == 2 and row["tokens_per_s"] > 0 and row["peak_rss_growth_mib"] > 0
        assert row["speedup_vs_stock"] > 0 and row["memory_vs_stock"] > 0
    assert results["variants"]["stock"]["speedup_vs_stock"] == 1.0
    assert "| packed |" in result.stdout


def test_margin_regularization_benchmark_runs(tmp_path):
    """`benchmarks/margin_regularization.py`: judges, augmented pairs, plain BT vs the margin RM, held-out judges."""
    from toy import save_reward_model

    out = tmp_path / "out"
    data_dir = tiny_data_dir(tmp_path / "d", general_pairs=40)
    command = [sys.executable, str(BENCHMARKS / "margin_regularization.py"), "--data_dir", str(data_dir)]
    command += ["--output_dir", str(out), "--model", save_reward_model(tmp_path, arch="bert", kind="bert")]
    command += "--test_pairs 4 --train_pairs 8 --judge_pairs 8 --judge_epochs 1 --lm_judge_pairs 0".split()
    command += "--batch_size 4 --max_length 48".split()
    result = run_offline(command, ROOT)

    results = json.loads((out / "results.json").read_text())
    reference = "reference: training judges' mean P(chosen)"
    assert list(results["models"]) == [reference, "plain BT", "margin (scale 1)"]
    for row in results["models"].values():
        assert 0.0 <= row["accuracy"] <= 1.0 and 0.0 <= row["calibration_all"] <= 1.0
    assert len(results["judges"]) == 6 and results["data"]["train_pairs"] == 24 and results["data"]["test_pairs"] == 12
    assert (out / "train.augmented.jsonl").is_file() and "| margin (scale 1) |" in result.stdout


def test_serve_reward_benchmark_runs_load_and_faults(tmp_path):
    """The serving benchmark on a tiny Llama reward model, server in a thread: every request answered right in both
    variants, the batching variant merges requests, and each fault ends as it should (no made-up reward)."""
    pytest.importorskip("fastapi")
    from trl_custom import ConditioningSpec, save_reward_model
    from trl_custom.data import DSP_DOMAINS
    from trl_custom.record import ModelRecord

    tokenizer = make_tokenizer()
    model = make_reward_model("llama", tokenizer).eval()
    spec = ConditioningSpec(
        mode="text", column="domain", conditions=list(DSP_DOMAINS), template="domain is {condition} "
    )
    ModelRecord(kind="reward_model", conditioning=spec, max_length=48).attach(model)
    folder = save_reward_model(model, tokenizer, tmp_path / "rm")
    out = tmp_path / "out"
    command = [sys.executable, str(ROOT / "benchmarks/serve_reward.py"), "--model", folder, "--server", "thread"]
    command += ["--dsp_file", str(tiny_dsp_file(tmp_path / "dsp.json", n=30)), "--output_dir", str(out)]
    command += ["--clients", "1", "4", "--requests", "4", "--max_wait_ms", "20", "--repeats", "1"]
    result = run_offline(command, ROOT)
    results = json.loads((out / "results.json").read_text())
    batched, single = results["load"].values()
    assert all(row["ok"] and row["answered"] == row["requests"] for row in batched + single)
    assert single[-1]["mean_batch"] == 1 and batched[-1]["mean_batch"] >= 1
    assert set(results["batching_gain"]) == {"1", "4"} and "batching gain at 4 clients" in result.stdout
    assert "| one request per forward (max 1) | 4 | 16/16 |" in result.stdout
    faults = results["faults"]
    assert faults["client_timeout"]["raised"] and "timeout" in faults["client_timeout"]["error"]
    assert [status for status, _ in faults["bad_requests"]["answers"].values()] == [400, 413, 422, 422]
    assert faults["bad_requests"]["good_answered_right"] and faults["bad_requests"]["healthy_after"]
    restart = faults["server_restart"]
    assert restart["calls"] >= 2 and restart["answered_right"] + len(restart["errors"]) == restart["calls"]
    assert faults["server_gone"]["raised"] and "connection refused" in faults["server_gone"]["error"]


def test_rm_to_policy_benchmark_smoke_runs_and_resumes(tmp_path):
    """`benchmarks/rm_to_policy.py --smoke` on tiny models: two reward models, labelled pairs, the three policies and
    the untrained prefix baseline judged per domain; a rerun reuses every stage."""
    tokenizer = make_tokenizer()
    rm_dir, lm_dir = tmp_path / "tiny-rm", tmp_path / "tiny-lm"
    make_reward_model("llama", tokenizer).save_pretrained(rm_dir)
    make_causal_lm("llama", tokenizer).save_pretrained(lm_dir)
    for folder in (rm_dir, lm_dir):
        tokenizer.save_pretrained(folder)
    out = tmp_path / "out"
    command = [sys.executable, str(ROOT / "benchmarks/rm_to_policy.py"), "--smoke", "--output_dir", str(out)]
    command += ["--dsp_file", str(tiny_dsp_file(tmp_path / "dsp.json", n=12)), "--rm_model", str(rm_dir)]
    command += ["--policy_model", str(lm_dir)]
    result = run_offline(command, ROOT)

    results = json.loads((out / "results.json").read_text())
    assert results["queries"] == {"held_out": 2, "labeller": 5, "judge": 5}
    assert set(results["evaluation"]) == {"P-DPO", "pooled DPO", "domain in prompt", "base + domain in prompt"}
    for row in results["evaluation"].values():
        assert set(row["win_rate"]) == {"academy", "business", "entertainment", "literature"}
        assert all(0.0 <= v <= 1.0 for line in row["matrix"]["values"] for v in line)
    pooled = results["evaluation"]["pooled DPO"]["matrix"]["values"]
    assert all(line == pooled[0] for line in pooled)  # one generation for every domain
    assert results["labelling"]["counts"]["candidates"] == 3 * 3
    comparison = results["scoring_comparison"]
    assert len(comparison["rows_per_second"]) == 3 and comparison["max_reward_difference"] < 1e-4
    assert all(t["steps"] == 2 for t in results["training"].values())
    assert len(results["goals"]) == 4 and all(isinstance(met, bool) for met in results["goals"].values())
    assert "| P-DPO |" in result.stdout and (out / "matrix.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    again = run_offline(command, ROOT)
    assert again.stdout.count("reused ") == 2 + 3  # the reward models and the policies
    assert json.loads((out / "results.json").read_text())["evaluation"] == results["evaluation"]

    # another reward-model setup: the reward models are trained again, and so is every stage made from the labeller
    changed = run_offline(command + ["--rm_max_length", "96"], ROOT)
    assert "reused " not in changed.stdout
    assert json.loads((out / "results.json").read_text())["labelling"]["prompts"]["reused"] == 0
    generated = (out / "generations" / "P-DPO.json").stat().st_mtime
    assert generated >= (out / "policies" / "P-DPO" / "benchmark_setup.json").stat().st_mtime


def test_many_users_benchmark_smoke(tmp_path):
    """`benchmarks/many_users.py --smoke`: every variant, the dev selection, the k-curve, the fine-tune and timing
    sections, on a tiny BERT and a tiny population."""
    from toy import save_reward_model

    out = tmp_path / "out"
    command = [sys.executable, str(ROOT / "benchmarks/many_users.py"), "--smoke", "--output_dir", str(out)]
    common = ["--dsp_file", str(tiny_dsp_file(tmp_path / "dsp.json", n=12)), "--max_length", "48"]
    common += ["--model", save_reward_model(tmp_path, arch="bert", kind="bert")]
    command += common + ["--seeds", "0", "1", "--finetune_users", "3", "--finetune_variants", "text", "prototype"]
    result = run_offline(command + ["--timing"], ROOT)

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

    # the timings alone (e.g. rerun on a quiet machine), to their own file
    only = tmp_path / "timing-only"
    script = [sys.executable, str(ROOT / "benchmarks/many_users.py"), "--smoke", "--timing_only"]
    result = run_offline(script + common + ["--output_dir", str(only)], ROOT)
    assert set(json.loads((only / "timing.json").read_text())["ratio"]) == set(timing["ratio"])
    assert not (only / "results.json").exists() and "fit_new_condition, k=16 pairs" in result.stdout
