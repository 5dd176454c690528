"""ConditionedRewardFunction: a conditioned reward model as `reward_funcs` of GRPO, RLOO and Online DPO."""

import copy
import math

import pytest
import torch
from datasets import Dataset
from toy import make_causal_lm, make_reward_model, make_tokenizer
from trl import GRPOConfig, GRPOTrainer, RLOOConfig, RLOOTrainer
from trl.experimental.online_dpo import OnlineDPOConfig, OnlineDPOTrainer
from trl.trainer.utils import get_callable_name

from trl_custom import ConditionedRewardFunction, ConditioningSpec, RewardScorer
from trl_custom.record import ModelRecord
from trl_custom.soft_tokens import attach_soft_tokens, new_soft_tokens


CONDITIONS = ["casual", "formal"]
PROMPT, COMPLETION = "question about t3 ", "answer alpha w5"


def conditioned_rm(mode: str, seed: int = 1, column: str = "domain"):
    """A tiny reward model conditioned on `column` (text mode: a template made of in-vocabulary words)."""
    tokenizer = make_tokenizer()
    model = make_reward_model("qwen2", tokenizer, seed=seed).eval()
    spec = ConditioningSpec(mode=mode, column=column, conditions=CONDITIONS, template="domain is {condition} ")
    if spec.uses_soft_tokens:
        torch.manual_seed(seed)
        attach_soft_tokens(model, new_soft_tokens(model, spec.tokens, len(CONDITIONS)))
    ModelRecord(kind="reward_model", conditioning=spec, max_length=64).attach(model)
    return model, tokenizer


class RecordingReward(ConditionedRewardFunction):
    """Keeps what the trainer passed and what it got back (our own class, TRL is not mocked)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.calls = []

    def __call__(self, prompts, completions, completion_ids=None, **kwargs):
        rewards = super().__call__(prompts, completions, completion_ids, **kwargs)
        self.calls.append({"prompts": list(prompts), "completions": list(completions), "rewards": rewards, **kwargs})
        return rewards


# ---------------------------------------------------------------------------------------------------- the callable
@pytest.mark.parametrize("mode", ["text", "embedding"])
@pytest.mark.parametrize("conversational", [False, True])
def test_rewards_are_the_scorer_rewards_under_each_completion_condition(mode, conversational):
    model, tokenizer = conditioned_rm(mode)
    reward = ConditionedRewardFunction(model, tokenizer)
    if conversational:
        prompts = [[{"role": "user", "content": PROMPT.strip()}]] * 3
        completions = [[{"role": "assistant", "content": COMPLETION}]] * 3
    else:
        prompts, completions = [PROMPT] * 3, [COMPLETION] * 3
    domains = ["formal", "casual", None]
    got = reward(prompts=prompts, completions=completions, completion_ids=[[1, 2]] * 3, domain=domains)
    expected = RewardScorer(model, tokenizer).score(prompts, completions, domains)
    assert got == pytest.approx(expected, abs=1e-6)
    assert len({round(r, 6) for r in got}) == 3  # formal, casual and generic differ for the same completion


def test_condition_column_is_configurable_and_other_columns_ignored():
    model, tokenizer = conditioned_rm("embedding", column="domain")
    reward = ConditionedRewardFunction(model, tokenizer, condition_column="user_id")
    got = reward(prompts=[PROMPT] * 2, completions=[COMPLETION] * 2, user_id=["formal", "casual"], domain=["x", "y"])
    expected = RewardScorer(model, tokenizer).score([PROMPT] * 2, [COMPLETION] * 2, ["formal", "casual"])
    assert got == pytest.approx(expected, abs=1e-6)


def test_missing_condition_column_fails_naming_column_and_fix():
    model, tokenizer = conditioned_rm("text")
    reward = ConditionedRewardFunction(model, tokenizer)
    with pytest.raises(ValueError, match=r"needs the 'domain' column.*\['topic'\].*condition_column="):
        reward(prompts=[PROMPT], completions=[COMPLETION], topic=["t3"], trainer_state=None)
    with pytest.raises(ValueError, match="'domain' column has 1 values for 2 completions"):
        reward(prompts=[PROMPT] * 2, completions=[COMPLETION] * 2, domain=["formal"])
    with pytest.raises(ValueError, match="normalize='zscore'"):
        ConditionedRewardFunction(model, tokenizer, normalize="zscore")


def test_unknown_condition_raises_for_strict_models_and_is_generic_otherwise(caplog):
    model, tokenizer = conditioned_rm("embedding")
    reward = ConditionedRewardFunction(model, tokenizer)
    with caplog.at_level("WARNING", logger="trl_custom.downstream.reward_functions"):
        unknown, generic = reward(prompts=[PROMPT] * 2, completions=[COMPLETION] * 2, domain=["legal", None])
        reward(prompts=[PROMPT], completions=[COMPLETION], domain=["legal"])  # logged once per value
    assert unknown == pytest.approx(generic, abs=1e-6)
    warnings = [r.getMessage() for r in caplog.records if "not seen in training" in r.getMessage()]
    assert len(warnings) == 1 and "['legal']" in warnings[0] and "scored with the generic entry" in warnings[0]
    with pytest.raises(ValueError, match="Unknown domain='legal'"):  # the option, without touching the record
        ConditionedRewardFunction(model, tokenizer, strict_conditions=True)(
            prompts=[PROMPT], completions=[COMPLETION], domain=["legal"]
        )
    assert not ModelRecord.of(model).conditioning.strict
    ModelRecord.of(model).conditioning.strict = True
    with pytest.raises(ValueError, match="Unknown domain='legal'"):
        ConditionedRewardFunction(model, tokenizer)(prompts=[PROMPT], completions=[COMPLETION], domain=["legal"])


def test_unconditioned_model_needs_no_condition_column():
    tokenizer = make_tokenizer()
    model = make_reward_model("qwen2", tokenizer, seed=1).eval()
    reward = ConditionedRewardFunction(model, tokenizer)
    got = reward(prompts=[PROMPT], completions=[COMPLETION])
    assert got == pytest.approx(RewardScorer(model, tokenizer).score([PROMPT], [COMPLETION]), abs=1e-6)


def test_batch_and_running_normalization():
    model, tokenizer = conditioned_rm("embedding")
    raw = ConditionedRewardFunction(model, tokenizer)
    completions = [f"answer alpha w{i}" for i in range(6)]
    domains = ["formal", "casual"] * 3
    first = raw(prompts=[PROMPT] * 6, completions=completions, domain=domains)
    second = raw(prompts=[PROMPT] * 4, completions=completions[:4], domain=["casual", "formal"] * 2)

    batch = ConditionedRewardFunction(model, tokenizer, normalize="batch")
    normalized = torch.tensor(batch(prompts=[PROMPT] * 6, completions=completions, domain=domains))
    assert normalized.mean().item() == pytest.approx(0.0, abs=1e-6)
    assert normalized.std(unbiased=False).item() == pytest.approx(1.0, abs=1e-3)

    running = ConditionedRewardFunction(model, tokenizer, normalize="running", eps=0.0)
    running(prompts=[PROMPT] * 6, completions=completions, domain=domains)
    got = running(prompts=[PROMPT] * 4, completions=completions[:4], domain=["casual", "formal"] * 2)
    seen = torch.tensor(first + second, dtype=torch.float64)
    assert running.count == 10
    assert running.running_mean == pytest.approx(seen.mean().item(), abs=1e-9)
    assert running.running_std == pytest.approx(seen.std(unbiased=False).item(), abs=1e-9)
    expected = (torch.tensor(second, dtype=torch.float64) - seen.mean()) / seen.std(unbiased=False)
    assert got == pytest.approx(expected.tolist(), abs=1e-6)
    running.reset_statistics()
    assert running.count == 0 and running.running_std == 0.0


def test_name_device_and_not_a_module():
    model, tokenizer = conditioned_rm("text")
    reward = ConditionedRewardFunction(model, tokenizer, name="dsp_reward", device="cpu")
    assert get_callable_name(reward) == "dsp_reward"  # what TRL logs: rewards/dsp_reward/mean
    assert not isinstance(reward, torch.nn.Module)  # TRL would call a Module without the condition
    auto = ConditionedRewardFunction(model, tokenizer, device="auto")
    auto(prompts=[PROMPT], completions=[COMPLETION], domain=["formal"])
    assert next(model.parameters()).device.type == "cpu"


def test_from_pretrained_loads_the_saved_spec(tmp_path):
    from trl_custom import save_reward_model

    model, tokenizer = conditioned_rm("embedding")
    save_reward_model(model, tokenizer, tmp_path / "rm")
    reward = ConditionedRewardFunction.from_pretrained(tmp_path / "rm", tokenizer=make_tokenizer(), batch_size=2)
    assert reward.conditioning.conditions == CONDITIONS and reward.condition_column == "domain"
    assert reward.scorer.batch_size == 2


# ---------------------------------------------------------------------------------------------------- trainers
def prompt_dataset(n: int = 8, conversational: bool = False) -> Dataset:
    """One distinct prompt per row, so each reward call can be checked against its row's domain."""
    rows = []
    for i in range(n):
        prompt = f"question about t{i} "
        if conversational:
            prompt = [{"role": "user", "content": prompt.strip()}]
        rows.append({"prompt": prompt, "domain": CONDITIONS[i % 2], "topic": f"t{i}"})
    return Dataset.from_list(rows)


def prompt_text(prompt) -> str:
    return prompt[-1]["content"] if isinstance(prompt, list) else prompt


COMMON = dict(use_cpu=True, bf16=False, report_to="none", max_steps=2, logging_steps=1, save_strategy="no")


def make_online_trainer(kind, output_dir, reward, conversational=False):
    tokenizer = make_tokenizer()
    policy = make_causal_lm("qwen2", tokenizer)
    dataset = prompt_dataset(conversational=conversational)
    if kind == "grpo":
        args = GRPOConfig(
            output_dir, max_completion_length=4, num_generations=2, per_device_train_batch_size=2, **COMMON
        )
        return GRPOTrainer(policy, reward_funcs=reward, args=args, train_dataset=dataset, processing_class=tokenizer)
    if kind == "rloo":
        args = RLOOConfig(
            output_dir, beta=0.0, max_completion_length=4, num_generations=2, per_device_train_batch_size=2, **COMMON
        )
        return RLOOTrainer(policy, reward_funcs=reward, args=args, train_dataset=dataset, processing_class=tokenizer)
    args = OnlineDPOConfig(output_dir, max_new_tokens=4, per_device_train_batch_size=2, **COMMON)
    return OnlineDPOTrainer(
        policy,
        ref_model=copy.deepcopy(policy),
        reward_funcs=reward,
        args=args,
        train_dataset=dataset,
        processing_class=tokenizer,
    )


@pytest.mark.parametrize(
    "kind,mode,conversational",
    [
        ("grpo", "embedding", False),
        ("grpo", "text", True),
        ("rloo", "embedding", False),
        ("online_dpo", "text", False),
    ],
)
def test_online_trainer_two_steps_with_conditioned_reward(tmp_path, kind, mode, conversational):
    model, tokenizer = conditioned_rm(mode)
    reward = RecordingReward(model, tokenizer)
    trainer = make_online_trainer(kind, str(tmp_path / kind), reward, conversational)
    trainer.train()
    assert trainer.state.global_step == 2
    assert len(reward.calls) == 2
    scorer = RewardScorer(model, tokenizer)
    domain_of = {prompt_text(row["prompt"]).strip(): row["domain"] for row in prompt_dataset()}
    for call in reward.calls:
        texts = [prompt_text(p).strip() for p in call["prompts"]]
        assert all(isinstance(p, list) == conversational for p in call["prompts"])
        # the trainer passed the condition column, one value per completion, aligned with its prompt
        assert call["domain"] == [domain_of[t] for t in texts]
        assert call["topic"] == [t.split()[2] for t in texts]  # other columns travel too
        assert call["rewards"] == pytest.approx(scorer.score(call["prompts"], call["completions"], call["domain"]))
        # the same completions under the other condition get other rewards
        flipped = [CONDITIONS[1 - CONDITIONS.index(d)] for d in call["domain"]]
        other = scorer.score(call["prompts"], call["completions"], flipped)
        assert all(not math.isclose(a, b, abs_tol=1e-7) for a, b in zip(call["rewards"], other, strict=True))
    logged = {key for entry in trainer.state.log_history for key in entry}
    if kind == "grpo":
        assert "rewards/conditioned_reward/mean" in logged
    if kind in ("grpo", "rloo"):  # the raw reward per condition, through TRL's log_metric
        assert logged & {"conditioned_reward/formal", "conditioned_reward/casual"}


def test_grpo_fails_early_without_the_condition_column(tmp_path):
    model, tokenizer = conditioned_rm("text")
    reward = ConditionedRewardFunction(model, tokenizer)
    trainer = make_online_trainer("grpo", str(tmp_path / "grpo"), reward)
    trainer.train_dataset = trainer.train_dataset.remove_columns("domain")
    with pytest.raises(ValueError, match="needs the 'domain' column"):
        trainer.train()
