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
    command += "--held_out academy business --ks 2 4 --max_length 48 --fit_epochs 1 --batch_size 8".split()
    result = run_offline(command, ROOT)

    results = json.loads((out / "results.json").read_text())
    assert set(results["domains"]) == {"academy", "business"}
    for row in list(results["domains"].values()) + [results["mean"]]:
        assert set(row["fit"]) == set(row["finetune"]) == {"2", "4"}
        values = [row["generic"], row["text zero-shot"], row["upper bound"]]
        values += [cell["accuracy"] for cell in row["fit"].values()]
        assert all(0.0 <= v <= 1.0 for v in values)
    assert all(cell["others_max_score_change"] < 1e-4 for cell in results["domains"]["academy"]["fit"].values())
    assert "| fit_new_condition, k=4 |" in result.stdout
    assert (out / "few_shot_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
