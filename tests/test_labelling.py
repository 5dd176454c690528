"""Preference labelling with a conditioned reward model (`trl_custom.labelling`, `trl-custom label-pairs`): pair
strategies, dropped candidates and pairs counted, margins equal to the reward gaps, one batched reward call across
conditions, resumability, and the early errors."""

import copy
import json

import pytest
import torch
from datasets import load_dataset
from toy import make_causal_lm, make_reward_model, make_tokenizer

from trl_custom import ConditionedRewardFunction, ConditioningSpec, RewardScorer
from trl_custom.labelling import LabelConfig, build_pairs, filter_candidates, label_pairs
from trl_custom.labelling.labelling import LabellingInputError
from trl_custom.record import ModelRecord
from trl_custom.soft_tokens import SoftTokenConfig, attach_soft_tokens, get_soft_tokens, new_soft_tokens


CONDITIONS = ["casual", "formal"]


def conditioned_rm(mode="embedding", seed=1, strict=False, arch="llama"):
    """A tiny conditioned reward model (random weights: its rewards differ per condition)."""
    tokenizer = make_tokenizer()
    model = make_reward_model(arch, tokenizer, seed=seed).eval()
    spec = ConditioningSpec(mode=mode, column="domain", conditions=CONDITIONS, template="domain is {condition} ")
    spec.strict = strict
    if spec.uses_soft_tokens:
        torch.manual_seed(seed)
        attach_soft_tokens(model, new_soft_tokens(model, spec.tokens, len(CONDITIONS)))
        with torch.no_grad():  # conditions far apart: their rankings of the same candidates differ
            get_soft_tokens(model).rows.mul_(30)
    ModelRecord(kind="reward_model", conditioning=spec, max_length=64).attach(model)
    return model, tokenizer


def candidate_rows():
    """Prompts with their candidates: one empty, one exact and one near duplicate among them."""
    return [
        {
            "prompt": "question about t1 ",
            "candidates": ["answer alpha w1", "answer beta w2 w3", "", "answer alpha w1"],
        },
        {"prompt": "question about t2 ", "candidates": ["answer short", "answer very long w4 w5 w6 w7 w8"]},
        {
            "prompt": "question about t3 ",
            "candidates": [
                "tell me more w1 w2 w3 w4 w5 w6 w7 w8 w9",
                "tell me more w1 w2 w3 w4 w5 w6 w7 w8 w9 w10",
                "answer gamma",
                "answer delta t4",
            ],
        },
        # out-of-vocabulary words: both read as "answer <unk>", the same input once tokenized, the same reward
        {"prompt": "question about t4 ", "candidates": ["answer zebra", "answer yak"]},
    ]


def read_rows(path):
    return [json.loads(line) for line in open(path, encoding="utf-8")]


# ---------------------------------------------------------------------------------------------------- pure parts
def test_filter_candidates_drops_and_counts_empty_and_duplicates():
    kept, counts = filter_candidates(
        ["a b c", " ", "a  b c", "A b c d", "x y", [{"role": "assistant", "content": ""}]], 0.5
    )
    assert kept == [0, 4]
    assert counts == {"candidates": 6, "empty": 2, "exact_duplicates": 1, "near_duplicates": 1}
    kept, counts = filter_candidates(["a b c", "a b c d"], 1.0)  # 1.0: exact duplicates only
    assert kept == [0, 1] and counts["near_duplicates"] == 0


def test_pair_strategies_ties_and_margins():
    rewards = [0.5, 2.0, -1.0, 2.0]
    assert build_pairs(rewards, "best_vs_worst") == ([(1, 2)], {"ties": 0, "below_margin": 0, "pairs": 1})
    pairs, counts = build_pairs(rewards, "all_pairs", min_margin=1.0)
    assert sorted(pairs) == [(0, 2), (1, 0), (1, 2), (3, 0), (3, 2)] and counts == {"ties": 1, "below_margin": 0,
                                                                                    "pairs": 5}  # fmt: skip
    pairs, counts = build_pairs(rewards, "all_pairs", min_margin=1.6)
    assert sorted(pairs) == [(1, 2), (3, 2)] and counts == {"ties": 1, "below_margin": 3, "pairs": 2}
    assert build_pairs([1.0, 1.0 + 1e-9], "best_vs_worst")[1] == {"ties": 1, "below_margin": 0, "pairs": 0}
    assert build_pairs([1.0, 1.2], "best_vs_worst", min_margin=0.5)[1] == {"ties": 0, "below_margin": 1, "pairs": 0}


# ---------------------------------------------------------------------------------------------------- labelling
@pytest.mark.parametrize("strategy", ["best_vs_worst", "all_pairs"])
def test_labels_from_a_candidates_column(tmp_path, strategy):
    model, tokenizer = conditioned_rm()
    scorer = RewardScorer(model, tokenizer)
    args = LabelConfig(output_file=str(tmp_path / "pairs.jsonl"), candidates_column="candidates",
                       pair_strategy=strategy, near_duplicate_threshold=0.8)  # fmt: skip
    report = label_pairs(candidate_rows(), scorer, args, progress=False)

    counts = report["counts"]
    assert counts["candidates"] == 12 and counts["empty"] == 1 and counts["exact_duplicates"] == 1
    assert counts["near_duplicates"] == 1  # the 10-word and 11-word "tell me more" answers
    assert counts["ties"] == 2  # "answer zebra" / "answer yak", under each condition
    kept = {0: ["answer alpha w1", "answer beta w2 w3"], 1: candidate_rows()[1]["candidates"],
            2: ["tell me more w1 w2 w3 w4 w5 w6 w7 w8 w9", "answer gamma", "answer delta t4"],
            3: ["answer zebra", "answer yak"]}  # fmt: skip
    assert counts["scored"] == 2 * sum(len(c) for c in kept.values())
    rows = read_rows(args.output_file)
    assert counts["pairs"] == len(rows) == sum(report["pairs_per_condition"].values())
    expected_pairs = 0
    for index, candidates in kept.items():
        prompt = candidate_rows()[index]["prompt"]
        for condition in CONDITIONS:
            # one by one: each candidate in a call of its own
            rewards = [scorer.score([prompt], [c], [condition])[0] for c in candidates]
            pairs, _ = build_pairs(rewards, strategy)
            expected_pairs += len(pairs)
            got = [r for r in rows if r["prompt"] == prompt and r["domain"] == condition]
            assert {(r["chosen"], r["rejected"]) for r in got} == {(candidates[c], candidates[j]) for c, j in pairs}
            for row in got:
                chosen, rejected = rewards[candidates.index(row["chosen"])], rewards[candidates.index(row["rejected"])]
                assert row["chosen_reward"] == pytest.approx(chosen, abs=1e-5)
                assert row["rejected_reward"] == pytest.approx(rejected, abs=1e-5)
                assert row["margin"] == row["chosen_reward"] - row["rejected_reward"] > 0
    assert expected_pairs == len(rows)
    # the two conditions disagree on some prompt: the pairs are per condition
    by_condition = {c: {(r["prompt"], r["chosen"]) for r in rows if r["domain"] == c} for c in CONDITIONS}
    assert by_condition["casual"] != by_condition["formal"]
    # the report on disk, with the length statistics
    on_disk = json.loads((tmp_path / "pairs.report.json").read_text())
    assert on_disk["counts"] == counts and set(on_disk["length"]["per_condition"]) == set(CONDITIONS)
    assert -1.0 <= on_disk["length"]["all"]["reward_gap_vs_length_gap"] <= 1.0
    loaded = load_dataset("json", data_files=args.output_file, split="train")
    assert loaded.column_names == ["prompt", "chosen", "rejected", "domain", "margin", "chosen_reward",
                                   "rejected_reward"]  # fmt: skip


def test_scoring_batches_across_conditions_in_one_call(tmp_path):
    """n candidates x C conditions of a batch of prompts: one reward-model call, ceil(rows / batch) forwards, the
    same rewards as scoring each (candidate, condition) alone."""
    model, tokenizer = conditioned_rm()
    forwards = []
    model.register_forward_hook(lambda module, inputs, output: forwards.append(1))
    scorer = RewardScorer(model, tokenizer)
    rows = [{"prompt": f"question about t{i} ", "candidates": [f"answer w{i}", f"answer beta w{i + 1} w{i + 2}",
                                                              f"tell me w{i + 3}"]} for i in range(4)]  # fmt: skip
    args = LabelConfig(output_file=str(tmp_path / "p.jsonl"), candidates_column="candidates", scoring_batch_size=16,
                       pair_strategy="all_pairs")  # fmt: skip
    report = label_pairs(rows, scorer, args, progress=False)
    scored = 4 * 3 * len(CONDITIONS)
    assert report["counts"]["scored"] == scored and report["throughput"]["reward_model_calls"] == 1
    assert len(forwards) == -(-scored // 16)  # 2 forwards, not one per condition per candidate
    forwards.clear()
    for row in read_rows(args.output_file):
        alone = scorer.score([row["prompt"]], [row["chosen"]], [row["domain"]])[0]
        assert row["chosen_reward"] == pytest.approx(alone, abs=1e-5)
    assert report["throughput"]["candidates_scored_per_second"] > 0


def test_a_conditioned_reward_function_labels_as_its_scorer(tmp_path):
    model, tokenizer = conditioned_rm()
    base = LabelConfig(output_file=str(tmp_path / "scorer.jsonl"), candidates_column="candidates")
    label_pairs(candidate_rows(), RewardScorer(model, tokenizer), base, progress=False)
    args = copy.copy(base)
    args.output_file = str(tmp_path / "function.jsonl")
    label_pairs(candidate_rows(), ConditionedRewardFunction(model, tokenizer), args, progress=False)
    assert read_rows(args.output_file) == read_rows(base.output_file)


def generated_labels(tmp_path, name, **kwargs):
    model, tokenizer = conditioned_rm()
    policy_tokenizer = make_tokenizer()
    policy = make_causal_lm("llama", policy_tokenizer, seed=3)
    options = dict(num_candidates=3, max_new_tokens=4, generation_batch_size=6, output_file=str(tmp_path / name))
    args = LabelConfig(**{**options, **kwargs})
    prompts = [f"question about t{i} " for i in range(7)]
    return RewardScorer(model, tokenizer), args, prompts, policy, policy_tokenizer


def test_generated_candidates_are_resumed_after_an_interruption(tmp_path):
    scorer, args, prompts, policy, tokenizer = generated_labels(tmp_path, "full.jsonl")
    full = label_pairs(prompts, scorer, args, policy, tokenizer, progress=False)
    assert full["counts"]["candidates"] == 21 and full["throughput"]["generated_sequences"] == 21
    assert full["throughput"]["generation_batch_size"] == 6

    _, interrupted, *_ = generated_labels(tmp_path, "resumed.jsonl")
    finished = []

    def stop_after_three(index, record):
        finished.append(index)
        if len(finished) == 3:
            raise KeyboardInterrupt("stopped by the test")

    with pytest.raises(KeyboardInterrupt):
        label_pairs(prompts, scorer, interrupted, policy, tokenizer, callback=stop_after_three, progress=False)
    kept = read_rows(interrupted.output_file)
    assert {r["prompt"] for r in kept} == set(prompts[:3])  # the three finished prompts are on disk
    with open(interrupted.output_file, "a", encoding="utf-8") as f:  # a row of a prompt cut while being written
        f.write('{"prompt": "question about t3 ", "cho')
    resumed = label_pairs(prompts, scorer, interrupted, policy, tokenizer, progress=False)
    assert resumed["prompts"] == {"total": 7, "labelled_this_run": 4, "reused": 3}
    # chunks of 2 prompts (6 sequences / 3 candidates): the half-written chunk (prompts 2 and 3) is generated again
    # whole, so that prompt 3 gets the candidates of the uninterrupted run; then prompts 4-6
    assert resumed["throughput"]["generated_sequences"] == 3 * 5
    assert read_rows(interrupted.output_file) == read_rows(args.output_file)  # as the uninterrupted run
    assert resumed["counts"] == full["counts"]

    again = label_pairs(prompts, scorer, interrupted, policy, tokenizer, progress=False)  # nothing left to do
    assert again["prompts"]["reused"] == 7 and again["throughput"]["generated_sequences"] == 0
    with pytest.raises(LabellingInputError, match=r"holds the pairs of 2 prompts that are not in this input \(5"):
        label_pairs(prompts[:5], scorer, interrupted, policy, tokenizer, progress=False)  # fewer prompts: refused
    assert read_rows(interrupted.output_file) == read_rows(args.output_file)  # untouched
    interrupted.temperature = 0.5
    with pytest.raises(LabellingInputError, match=r"other settings \(temperature differ\).*--overwrite"):
        label_pairs(prompts, scorer, interrupted, policy, tokenizer, progress=False)
    interrupted.overwrite = True
    assert label_pairs(prompts, scorer, interrupted, policy, tokenizer, progress=False)["prompts"]["reused"] == 0


def test_candidates_under_each_conditions_soft_tokens(tmp_path):
    """policy_soft_tokens: a personalized policy generates each condition's candidates under its soft tokens; each is
    scored under its own condition only."""
    scorer, args, prompts, policy, tokenizer = generated_labels(tmp_path, "soft.jsonl", policy_soft_tokens=True)
    spec = ConditioningSpec(mode="embedding", column="domain", conditions=CONDITIONS,
                            tokens=SoftTokenConfig(kind="table", num_tokens=2, placement="prepend"))  # fmt: skip
    torch.manual_seed(0)
    soft = new_soft_tokens(policy, spec.tokens, len(CONDITIONS))
    with torch.no_grad():
        soft.rows.mul_(50)  # far apart: the conditions' generations differ
    attach_soft_tokens(policy, soft)
    ModelRecord(kind="policy", conditioning=spec).attach(policy)
    report = label_pairs(prompts[:3], scorer, args, policy, tokenizer, progress=False)
    counts = report["counts"]
    assert counts["candidates"] == 3 * 3 * 2 and report["throughput"]["generated_sequences"] == 18
    kept = counts["candidates"] - counts["empty"] - counts["exact_duplicates"] - counts["near_duplicates"]
    assert counts["scored"] == kept  # each candidate under its own condition, not under both
    rows = read_rows(args.output_file)
    texts = {c: {r["chosen"] for r in rows if r["domain"] == c} for c in CONDITIONS}
    assert texts["casual"] and texts["formal"] and texts["casual"] != texts["formal"]


def test_chat_template_prompts_write_conversational_rows(tmp_path):
    scorer, args, prompts, policy, tokenizer = generated_labels(tmp_path, "chat.jsonl", use_chat_template=True)
    label_pairs(prompts[:2], scorer, args, policy, tokenizer, progress=False)
    row = read_rows(args.output_file)[0]
    assert row["prompt"] == [{"role": "user", "content": row["prompt"][0]["content"]}]
    assert row["chosen"][0]["role"] == "assistant" and isinstance(row["chosen"][0]["content"], str)
    # the reward model read the text prompt and completion, as it was trained on text
    alone = scorer.score([row["prompt"][0]["content"]], [row["chosen"][0]["content"]], [row["domain"]])[0]
    assert row["chosen_reward"] == pytest.approx(alone, abs=1e-5)


# ---------------------------------------------------------------------------------------------------- bad input
def test_unknown_conditions_are_refused_naming_them_and_the_models_list(tmp_path):
    model, tokenizer = conditioned_rm()
    args = LabelConfig(output_file=str(tmp_path / "p.jsonl"), candidates_column="candidates",
                       conditions=["casual", "legal", "medical"])  # fmt: skip
    pattern = r"Conditions \['legal', 'medical'\] are not among the reward model's domain values \['casual', " \
              r"'formal'\].*--allow_generic.*generic entry"  # fmt: skip
    with pytest.raises(LabellingInputError, match=pattern):
        label_pairs(candidate_rows(), RewardScorer(model, tokenizer), args, progress=False)
    assert not (tmp_path / "p.jsonl").exists()
    args.allow_generic = True
    report = label_pairs(candidate_rows(), RewardScorer(model, tokenizer), args, progress=False)
    assert report["unknown_conditions"] == {"legal": "scored with the generic entry",
                                            "medical": "scored with the generic entry"}  # fmt: skip
    assert set(report["pairs_per_condition"]) == {"casual", "legal", "medical"}

    strict, strict_tokenizer = conditioned_rm(strict=True)
    args.output_file, args.overwrite = str(tmp_path / "strict.jsonl"), True
    with pytest.raises(LabellingInputError, match=r"\['legal', 'medical'\].*it is strict"):
        label_pairs(candidate_rows(), RewardScorer(strict, strict_tokenizer), args, progress=False)


def test_bad_input_fails_before_any_generation(tmp_path):
    scorer, args, prompts, policy, tokenizer = generated_labels(tmp_path, "bad.jsonl")
    calls = []
    policy.register_forward_hook(lambda *a: calls.append(1))
    with pytest.raises(ValueError, match="at least 2 candidates per prompt"):
        LabelConfig(output_file=str(tmp_path / "x.jsonl"), num_candidates=1)
    with pytest.raises(LabellingInputError, match=r"no column 'prompt' \(columns: \['query'\]\): set --prompt_column"):
        from datasets import Dataset

        label_pairs(Dataset.from_list([{"query": "q"}]), scorer, args, policy, tokenizer, progress=False)
    no_template = copy.deepcopy(tokenizer)
    no_template.chat_template = None
    messages = [[{"role": "user", "content": "question about t1"}]]
    scorer.tokenizer.chat_template = make_tokenizer().chat_template  # the reward model could score messages
    with pytest.raises(
        LabellingInputError, match="The policy cannot generate: prompt 0 is a list of messages.*no chat"
    ):
        label_pairs(messages, scorer, args, policy, no_template, progress=False)
    args.use_chat_template = True
    with pytest.raises(LabellingInputError, match="use_chat_template is set.*no chat template"):
        label_pairs(prompts, scorer, args, policy, no_template, progress=False)
    rows = [{"prompt": "q ", "candidates": ["only one"]}]
    column = LabelConfig(output_file=str(tmp_path / "c.jsonl"), candidates_column="candidates")
    with pytest.raises(LabellingInputError, match=r"Row 0, column 'candidates'.*at least 2 candidate"):
        label_pairs(rows, scorer, column, progress=False)
    column.dtype = "bfloat16"  # an option is honoured or refused: the models are float32
    with pytest.raises(LabellingInputError, match=r"dtype=bfloat16, but the reward model is in torch.float32"):
        label_pairs(candidate_rows(), scorer, column, progress=False)
    column.dtype, column.max_length = None, 32  # the scorer cuts at its training max_length, 64
    with pytest.raises(LabellingInputError, match=r"max_length=32, but the reward model given cuts at 64 tokens"):
        label_pairs(candidate_rows(), scorer, column, progress=False)
    column.max_length = None
    unconditioned, plain_tokenizer = conditioned_rm(mode="none")
    with pytest.raises(LabellingInputError, match="not conditioned.*--allow_generic"):
        label_pairs(candidate_rows(), RewardScorer(unconditioned, plain_tokenizer), column, progress=False)
    assert not calls and not (tmp_path / "bad.jsonl").exists()
