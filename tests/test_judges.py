"""Synthetic judges (reward-model and A/B LM judges), their disk cache, and the agreement/margin formulas."""

import json
import math
import os

import pytest
import torch
from datasets import Dataset
from toy import make_causal_lm, make_reward_model, make_tokenizer

from trl_custom import RewardScorer
from trl_custom.margin.agreement import agreement_scores, margin_from_agreement, plurality_flags, validate_pairs
from trl_custom.margin.judges import (
    JudgmentCache,
    LMJudge,
    RewardModelJudge,
    judge_pairs,
    pair_key,
    reward_model_judges,
)
from trl_custom.margin.metrics import average_ranks, calibration_error, spearman_correlation


PAIRS = {
    "prompt": ["question about t1 ", "question about t2 ", "tell me ", "question about t1 "],
    "chosen": ["answer alpha w1", "answer beta w2 w3", "short", "answer alpha w1"],
    "rejected": ["answer beta w4", "answer alpha", "long very long", "answer beta w4"],
}


def rm_judge(seed=0, **kwargs):
    tokenizer = make_tokenizer("causal")
    return RewardModelJudge(RewardScorer(make_reward_model("qwen2", tokenizer, seed=seed), tokenizer), **kwargs)


def always_first_lm(tokenizer, first="alpha", second="beta", bias=8.0):
    """A real tiny causal LM whose LM head ignores the input and always favours the `first` answer token."""
    model = make_causal_lm("qwen2", tokenizer)
    head = torch.nn.Linear(model.config.hidden_size, model.config.vocab_size, bias=True)
    with torch.no_grad():
        head.weight.zero_()
        head.bias.zero_()
        head.bias[tokenizer.convert_tokens_to_ids(first)] = bias
        head.bias[tokenizer.convert_tokens_to_ids(second)] = -bias
    model.lm_head = head
    return model


TEMPLATE = "{prompt} a: {response_a} b: {response_b}"


# ---------------------------------------------------------------------------------------------------- formulas
def test_agreement_vote_and_mean_on_hand_built_judgments():
    judgments = [
        [0.9, 0.8, 0.7, 0.6],  # all agree with chosen
        [0.1, 0.2, 0.3, 0.4],  # all disagree
        [0.9, 0.1, 0.8, 0.2],  # split 2-2
        [0.5, 0.5, 0.9, 0.1],  # two ties (1/2 each), one for, one against
        [0.7, 0.7, 0.7, 0.2],  # 3 of 4
    ]
    assert agreement_scores(judgments, "vote") == [1.0, 0.0, 0.5, 0.5, 0.75]
    assert agreement_scores(judgments, "mean") == pytest.approx([0.75, 0.25, 0.5, 0.5, 0.575])
    with pytest.raises(ValueError, match="Pair 1 has no judgments"):
        agreement_scores([[0.7], []])
    with pytest.raises(ValueError, match="mode='majority'"):
        agreement_scores(judgments, "majority")


def test_margin_mapping_all_agree_all_disagree_ties():
    # a = (N * agreement + s) / (N + 2s); margin = scale * clip(log(a / (1 - a)), -c, c)
    assert margin_from_agreement(0.5, 4) == 0.0  # judges split evenly: no margin
    assert margin_from_agreement(1.0, 4, clip=5.0) == pytest.approx(math.log(4.5 / 0.5))  # all agree
    assert margin_from_agreement(0.0, 4, clip=5.0) == pytest.approx(-math.log(9.0))  # all disagree
    assert margin_from_agreement(1.0, 4, clip=2.0, scale=0.5) == pytest.approx(1.0)  # clipped, then scaled
    assert margin_from_agreement(0.0, 4, clip=2.0) == pytest.approx(-2.0)
    assert margin_from_agreement(0.0, 4, negative=False) == 0.0
    assert margin_from_agreement(0.75, 4, clip=5.0) == pytest.approx(math.log(3.5 / 1.5))
    assert margin_from_agreement(1.0, 3, smoothing=0.0, clip=3.0) == 3.0  # unsmoothed unanimity: the clip bound
    assert margin_from_agreement(0.0, 3, smoothing=0.0, clip=3.0) == -3.0
    margins = [margin_from_agreement(a / 6, 6, clip=10.0) for a in range(7)]
    assert margins == sorted(margins) and margins[3] == 0.0  # monotone, antisymmetric around 1/2
    assert margins[0] == pytest.approx(-margins[6])
    with pytest.raises(ValueError, match="agreement must be in"):
        margin_from_agreement(1.2, 4)


def test_plurality_flags_band():
    assert plurality_flags([0.5, 0.7, 0.3, 0.75, 1.0, 0.0, 2 / 3], band=0.2) == [
        True,
        True,
        True,
        False,
        False,
        False,
        True,
    ]


def test_spearman_and_calibration_match_definitions():
    from scipy.stats import spearmanr

    x = [0.1, 0.4, 0.4, 0.9, 0.3, 0.3, 0.8]
    y = [0.0, 1 / 3, 2 / 3, 1.0, 1 / 3, 0.0, 2 / 3]
    assert average_ranks([3.0, 1.0, 3.0, 2.0]) == [3.5, 1.0, 3.5, 2.0]
    assert spearman_correlation(x, y) == pytest.approx(spearmanr(x, y).statistic)
    assert spearman_correlation([1.0, 2.0], [3.0, 3.0]) is None
    assert calibration_error([0.6, 0.5], [0.5, 1.0]) == pytest.approx(0.3)
    assert calibration_error([], []) is None


# ---------------------------------------------------------------------------------------------------- judges
def test_reward_model_judge_is_sigmoid_of_reward_gap():
    judge = rm_judge(temperature=2.0)
    probs = judge.judge(PAIRS["prompt"], PAIRS["chosen"], PAIRS["rejected"], progress=False)
    rewards = judge.scorer.score(PAIRS["prompt"] * 2, PAIRS["chosen"] + PAIRS["rejected"])
    expected = [1 / (1 + math.exp(-(rewards[i] - rewards[4 + i]) / 2.0)) for i in range(4)]
    assert probs == pytest.approx(expected, abs=1e-6)
    assert judge.num_judged == 3  # pairs 0 and 3 are identical: judged once


def test_conditioned_reward_model_judges_one_per_condition(tmp_path):
    from trl_custom import ConditioningSpec

    tokenizer = make_tokenizer("causal")
    spec = ConditioningSpec(mode="text", conditions=["formal", "casual"], template="domain is {condition} ")
    scorer = RewardScorer(make_reward_model("qwen2", tokenizer), tokenizer, spec)
    judges = reward_model_judges(scorer, name="rm")
    assert [j.name for j in judges] == ["rm@formal", "rm@casual"]
    assert judges[0].fingerprint != judges[1].fingerprint
    probs = judge_pairs(judges, PAIRS["prompt"], PAIRS["chosen"], PAIRS["rejected"], progress=False)
    assert len(probs) == 4 and all(len(row) == 2 for row in probs)
    assert probs[0][0] != probs[0][1]  # the condition is rendered into the input: distinct annotators


def test_cache_hit_on_rerun(tmp_path):
    tokenizer = make_tokenizer("causal")
    cache_dir = tmp_path / "judgments"

    def judges(rm_seed=0):
        model = make_causal_lm("qwen2", tokenizer)
        lm = LMJudge(model, tokenizer, name="lm", template=TEMPLATE, choices=("alpha", "beta"))
        return [rm_judge(seed=rm_seed, name="rm"), lm]

    first = judges()
    probs = judge_pairs(first, PAIRS["prompt"], PAIRS["chosen"], PAIRS["rejected"], cache_dir=cache_dir)
    assert [j.num_judged for j in first] == [3, 3]
    assert sorted(os.listdir(cache_dir)) == sorted(os.path.basename(JudgmentCache(cache_dir, j).path) for j in first)

    again = judges()  # fresh models with the same weights: answered from disk, no forward pass
    assert judge_pairs(again, PAIRS["prompt"], PAIRS["chosen"], PAIRS["rejected"], cache_dir=cache_dir) == probs
    assert [j.num_judged for j in again] == [0, 0]

    # one new pair: only it is judged
    more = judges()
    extra = judge_pairs(
        more, PAIRS["prompt"] + ["tell me "], PAIRS["chosen"] + ["alpha"], PAIRS["rejected"] + ["beta"], cache_dir
    )
    assert extra[:4] == probs and [j.num_judged for j in more] == [1, 1]

    # retrained weights under the same name: a new fingerprint, so no stale hit
    changed = judges(rm_seed=1)
    judge_pairs(changed, PAIRS["prompt"], PAIRS["chosen"], PAIRS["rejected"], cache_dir=cache_dir)
    assert [j.num_judged for j in changed] == [3, 0]
    lines = (cache_dir / os.path.basename(JudgmentCache(cache_dir, first[0]).path)).read_text().splitlines()
    assert {json.loads(line)["key"] for line in lines} >= {pair_key("tell me ", "alpha", "beta")}


def test_lm_judge_cancels_position_bias():
    tokenizer = make_tokenizer("causal")
    judge = LMJudge(always_first_lm(tokenizer), tokenizer, template=TEMPLATE, choices=("alpha", "beta"))
    texts = [judge.render(p, c, r) for p, c, r in zip(PAIRS["prompt"], PAIRS["chosen"], PAIRS["rejected"])]
    assert min(judge.prob_first(texts)) > 0.99  # the model always answers the first option...
    probs = judge.judge(PAIRS["prompt"], PAIRS["chosen"], PAIRS["rejected"], progress=False)
    assert probs == pytest.approx([0.5] * 4, abs=1e-6)  # ...so asking both orders leaves no preference


def test_lm_judge_reads_content_in_both_orders():
    """A judge that favours the response containing `alpha` (in either slot) prefers it in both orders."""
    tokenizer = make_tokenizer("causal")
    model = make_causal_lm("qwen2", tokenizer)
    judge = LMJudge(model, tokenizer, template=TEMPLATE, choices=("alpha", "beta"))
    ab = judge.prob_first([judge.render("q", "alpha w1", "beta w2")])[0]
    ba = judge.prob_first([judge.render("q", "beta w2", "alpha w1")])[0]
    assert judge.judge(["q"], ["alpha w1"], ["beta w2"], progress=False)[0] == pytest.approx(0.5 * (ab + 1 - ba))
    assert judge.judge(["q"], ["beta w2"], ["alpha w1"], progress=False)[0] == pytest.approx(0.5 * (ba + 1 - ab))


def test_lm_judge_uses_chat_template():
    tokenizer = make_tokenizer("causal")  # has a chat template
    judge = LMJudge(make_causal_lm("qwen2", tokenizer), tokenizer, template=TEMPLATE, choices=("alpha", "beta"))
    assert judge.use_chat_template
    assert judge.render("q", "x", "y") == "user: q a: x b: y <eos> assistant: "


def test_lm_judge_errors():
    tokenizer = make_tokenizer("causal")
    model = make_causal_lm("qwen2", tokenizer)
    with pytest.raises(ValueError, match="no \\{response_b\\} field"):
        LMJudge(model, tokenizer, template="{prompt} {response_a}")
    with pytest.raises(ValueError, match="'alpha beta' is 2 tokens"):
        LMJudge(model, tokenizer, template=TEMPLATE, choices=("alpha beta", "gamma"))
    with pytest.raises(ValueError, match="map to the same token"):
        LMJudge(model, tokenizer, template=TEMPLATE, choices=("zzz", "yyy"))  # both unknown: <unk>


def test_judge_names_must_be_unique():
    with pytest.raises(ValueError, match="Judge names must be unique, got duplicates \\['rm'\\]"):
        judge_pairs([rm_judge(name="rm"), rm_judge(seed=1, name="rm")], None, ["a"], ["b"])


def test_validate_pairs_names_row_and_column():
    good = {"prompt": "q", "chosen": "a", "rejected": "b"}
    validate_pairs([good, good])
    with pytest.raises(ValueError, match="Row 2 of the dataset has no 'chosen' response"):
        validate_pairs([good, good, {"prompt": "q", "rejected": "b"}])
    with pytest.raises(ValueError, match="Row 1 of the dataset has an empty 'rejected' response"):
        validate_pairs(Dataset.from_list([good, {"prompt": "q", "chosen": "a", "rejected": "  "}]))
    with pytest.raises(ValueError, match="Row 0 of x.jsonl has an empty 'chosen' response"):
        validate_pairs([{"chosen": [{"role": "assistant", "content": ""}], "rejected": "b"}], source="x.jsonl")
    with pytest.raises(ValueError, match="Row 0 of the dataset has prompt=3 \\(int\\): prompt must be text"):
        validate_pairs([{"prompt": 3, "chosen": "a", "rejected": "b"}])


def test_lm_judge_batch_equals_one_by_one():
    """Left padding with matching position ids: a batch gives each input the probability it gets alone."""
    tokenizer = make_tokenizer("causal")
    judge = LMJudge(make_causal_lm("qwen2", tokenizer), tokenizer, template=TEMPLATE, choices=("alpha", "beta"))
    texts = [judge.render("q", "alpha", "beta w1 w2 w3 w4 w5"), judge.render("question about t1", "w1", "w2")]
    assert judge.prob_first(texts) == pytest.approx([judge.prob_first([t])[0] for t in texts], abs=1e-5)
