"""From a customized reward model to a personalized policy (issue #31): `trl-custom label-pairs` -> `trl-custom dpo
--condition_column domain` -> `trl-custom evaluate-policy`, end to end on tiny models (2 training steps), and the
arithmetic of the policy evaluation (win rates, the generation x judge matrix)."""

import json

import pytest
import torch
import yaml
from test_labelling import CONDITIONS, conditioned_rm
from toy import make_causal_lm, make_tokenizer

from trl_custom import RewardScorer, cli, save_reward_model
from trl_custom.evaluation.policy import evaluate_policy, judge_generations, render_condition_prompt
from trl_custom.scripts import dpo


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    """A labeller and a judge (two tiny conditioned reward models), a tiny causal LM, prompts."""
    root = tmp_path_factory.mktemp("rm-to-policy")
    for name, seed in (("labeller", 1), ("judge", 2)):
        model, tokenizer = conditioned_rm(seed=seed)
        save_reward_model(model, tokenizer, root / name)
    tokenizer = make_tokenizer()
    make_causal_lm("llama", tokenizer, seed=3).save_pretrained(root / "lm")
    tokenizer.save_pretrained(root / "lm")
    rows = [{"prompt": f"question about t{i}", "topic": i} for i in range(12)]
    (root / "prompts.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root


def test_labelled_pairs_train_a_personalized_policy_and_it_is_evaluated(assets, tmp_path, capsys):
    root = assets
    label_config = tmp_path / "label.yaml"
    label_config.write_text(
        yaml.safe_dump(
            {
                "reward_model": str(root / "labeller"),
                "policy": str(root / "lm"),
                "dataset_name": str(root / "prompts.jsonl"),
                "max_prompts": 10,
                "num_candidates": 3,
                "max_new_tokens": 5,
                "use_chat_template": True,
                "generation_batch_size": 6,
                "output_file": str(tmp_path / "labelled" / "pairs.jsonl"),
            }
        )
    )
    cli.main(["label-pairs", "--config", str(label_config)])
    out = capsys.readouterr().out
    assert "Labelled 10 prompts (0 reused" in out and "Report written to" in out
    report = json.loads((tmp_path / "labelled" / "pairs.report.json").read_text())
    rows = [json.loads(line) for line in (tmp_path / "labelled" / "pairs.jsonl").read_text().splitlines()]
    assert len(rows) == report["counts"]["pairs"] > 0 and {r["domain"] for r in rows} == set(CONDITIONS)
    assert rows[0]["prompt"][0]["role"] == "user" and rows[0]["chosen"][0]["role"] == "assistant"

    # the labelled file feeds `trl-custom dpo --condition_column domain` unchanged (2 steps, LoRA)
    policy_dir = tmp_path / "policy"
    argv = ["--model_name_or_path", str(root / "lm"), "--dataset_name", str(tmp_path / "labelled" / "pairs.jsonl"),
            "--condition_column", "domain", "--output_dir", str(policy_dir), "--use_cpu", "true", "--bf16", "false",
            "--max_steps", "2", "--per_device_train_batch_size", "4", "--per_device_eval_batch_size", "4",
            "--max_length", "48", "--learning_rate", "1e-2", "--condition_learning_rate", "5e-2", "--use_peft", "true",
            "--lora_target_modules", "q_proj", "v_proj", "--lora_r", "4", "--test_size", "0.25", "--report_to", "none",
            "--disable_tqdm", "true", "--save_strategy", "no", "--logging_steps", "1"]  # fmt: skip
    dpo.main(*dpo.make_parser().parse_args_and_config(argv))
    state = json.loads((policy_dir / "trainer_state.json").read_text())
    assert state["global_step"] == 2
    record = json.loads((policy_dir / "trl_custom.json").read_text())
    assert record["conditioning"]["mode"] == "embedding" and record["conditioning"]["column"] == "domain"
    assert record["conditioning"]["conditions"] == CONDITIONS
    assert (policy_dir / "adapter_config.json").is_file()

    # evaluated under a judge that did not label the pairs, against the base policy (the adapter off)
    eval_dir = tmp_path / "eval"
    cli.main(["evaluate-policy", "--policy", str(policy_dir), "--judge", str(root / "judge"), "--dataset_name",
              str(root / "prompts.jsonl"), "--skip_prompts", "10", "--use_chat_template", "true",
              "--max_new_tokens", "4", "--output_dir", str(eval_dir)])  # fmt: skip
    out = capsys.readouterr().out
    assert "Win rate of the policy over the base policy (2 prompts" in out
    results = json.loads((eval_dir / "policy_eval.json").read_text())
    assert results["condition_mode"] == "embedding" and set(results["win_rate"]) == set(CONDITIONS)
    assert results["matrix"]["rows"] == results["matrix"]["columns"] == CONDITIONS
    assert set(results["generations"]) == {"base policy", *CONDITIONS}
    assert all(len(texts) == 2 for texts in results["generations"].values())
    assert (eval_dir / "policy_heatmap.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_win_rates_and_matrix_are_the_judges_reward_comparisons():
    model, tokenizer = conditioned_rm(seed=2)
    judge = RewardScorer(model, tokenizer)
    prompts = ["question about t1 ", "question about t2 ", "question about t3 "]
    base = ["answer alpha", "answer beta w1", "answer short"]
    generations = {"casual": list(base), "formal": ["answer beta w2 w3", "answer alpha w4", "answer gamma delta"]}
    results = judge_generations(judge, prompts, generations, base)
    assert results["matrix"]["values"][0] == [0.5, 0.5]  # the same completions as the base policy: ties
    for column, condition in enumerate(CONDITIONS):
        mine = judge.score(prompts, generations["formal"], [condition] * 3)
        theirs = judge.score(prompts, base, [condition] * 3)
        expected = sum(float(a > b) for a, b in zip(mine, theirs)) / 3
        assert results["matrix"]["values"][1][column] == pytest.approx(expected)
        assert results["mean_reward"]["values"][1][column] == pytest.approx(sum(mine) / 3, abs=1e-5)
        assert results["base_mean_reward"][condition] == pytest.approx(sum(theirs) / 3, abs=1e-5)
    values = results["matrix"]["values"]
    assert results["win_rate"] == {"casual": values[0][0], "formal": values[1][1]}
    assert results["diagonal_mean"] == pytest.approx((values[0][0] + values[1][1]) / 2)
    assert results["off_diagonal_mean"] == pytest.approx((values[0][1] + values[1][0]) / 2)
    with pytest.raises(ValueError, match=r"Conditions \['legal'\] are not among the judge's domain values"):
        judge_generations(judge, prompts, {"legal": base}, base)


def test_a_completion_equal_to_the_base_policys_is_a_tie_whatever_its_scores():
    """The same text scored in another batch can get a reward a few 1e-6 away (the real MiniLM judge of
    benchmarks/rm_to_policy.py: 1.4e-6 > tie_tolerance): that must not decide a win or a loss."""
    model, tokenizer = conditioned_rm(seed=2)
    scorer = RewardScorer(model, tokenizer)

    class Jittery:  # the scorer's rewards, each row moved by 1e-5 x its position in the call
        conditioning = scorer.conditioning

        def score(self, prompts, responses, conditions):
            return [r + 1e-5 * i for i, r in enumerate(scorer.score(prompts, responses, conditions))]

    prompts = ["question about t1 ", "question about t2 "]
    base = ["answer alpha", "answer beta w1"]
    generations = {"casual": list(base), "formal": [base[0], "answer gamma delta"]}
    results = judge_generations(Jittery(), prompts, generations, base)
    assert results["matrix"]["values"][0] == [0.5, 0.5]  # without the rule: 0.0, the base rows come last
    for column, condition in enumerate(CONDITIONS):
        mine, theirs = (
            scorer.score(prompts[1:], [texts[1]], [condition])[0] for texts in (generations["formal"], base)
        )
        assert results["matrix"]["values"][1][column] == (0.5 + float(mine > theirs)) / 2


def test_domain_in_prompt_generations_see_the_rendered_prompt():
    """`condition_mode="text"`: the by-hand baseline's prompts, as its training rows wrote them; the base policy is
    given apart (a full model has no adapter to switch off)."""
    judge_model, judge_tokenizer = conditioned_rm(seed=2)
    tokenizer = make_tokenizer()
    policy = make_causal_lm("llama", tokenizer, seed=4)
    prompts = ["question about t1", "question about t2"]
    kwargs = dict(use_chat_template=True, max_new_tokens=3, do_sample=False)
    with pytest.raises(ValueError, match="Give the base policy"):
        evaluate_policy(policy, tokenizer, RewardScorer(judge_model, judge_tokenizer), prompts, None, "text", **kwargs)
    results = evaluate_policy(policy, tokenizer, RewardScorer(judge_model, judge_tokenizer), prompts, None, "text",
                              base_policy=policy, template="domain is {condition} ", **kwargs)  # fmt: skip
    assert render_condition_prompt("question about t1", "formal", "domain is {condition} ") == (
        "domain is formal question about t1"
    )
    messages = [{"role": "user", "content": "domain is formal question about t1"}]
    ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt", return_dict=True)
    greedy = policy.generate(**ids, max_new_tokens=3, do_sample=False, pad_token_id=tokenizer.pad_token_id)
    expected = tokenizer.decode(greedy[0, ids["input_ids"].shape[1] :], skip_special_tokens=True).strip()
    assert results["generations"]["formal"][0] == expected
    assert results["condition_mode"] == "text" and torch.is_tensor(greedy)


def test_readme_example_compiles_and_its_imports_resolve():
    from test_readme import python_block

    code = python_block("## From a reward model to a personalized policy")
    compile(code, "README.md", "exec")
    exec("\n".join(line for line in code.splitlines() if line.startswith(("from ", "import "))), {})


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--conditions", "casual", "legal"], "Conditions ['legal'] are not among the reward model's domain values"),
        (["--num_candidates", "1"], "a pair needs at least 2 candidates per prompt (n >= 2)"),
        (
            ["--prompt_column", "question"],
            "has no column 'question' (columns: ['prompt', 'topic']): set --prompt_column",
        ),
    ],
)
def test_label_pairs_command_errors_are_one_line_before_generation(assets, tmp_path, capsys, extra, message):
    argv = ["label-pairs", "--reward_model", str(assets / "labeller"), "--policy", str(assets / "lm"),
            "--dataset_name", str(assets / "prompts.jsonl"), "--output_file", str(tmp_path / "p.jsonl")]  # fmt: skip
    with pytest.raises(SystemExit) as exit_info:
        cli.main(argv + extra)
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_info.value.code == 2 and err[-1].startswith("trl-custom label-pairs: error: ")
    assert message in err[-1] and not (tmp_path / "p.jsonl").exists()
