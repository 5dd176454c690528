"""Truncation options of CustomRewardTrainer (`truncation_mode`, `max_prompt_length`), shared with RewardScorer."""

import pytest
from datasets import Dataset
from toy import cpu_config, make_reward_model, make_tokenizer, save_reward_model

from trl_custom import CustomRewardConfig, CustomRewardTrainer, RewardScorer
from trl_custom.conditioned_rm.encoding import truncate_sequence


def test_truncate_sequence_modes_and_prompt_budget():
    ids = list(range(20))  # prompt: the first 8 tokens
    assert truncate_sequence(ids, 10, 8, "keep_start") == ([0, 1, 2, 3, 4, 5, 6, 7, 8, 19], 8)
    assert truncate_sequence(ids, 10, 8, "head_tail")[0] == [0, 1, 12, 13, 14, 15, 16, 17, 18, 19]
    assert truncate_sequence(ids, 10, 8, "keep_start", max_prompt_length=3) == ([0, 1, 2, 8, 9, 10, 11, 12, 13, 19], 3)
    assert truncate_sequence(list(range(6)), 10, 4, "keep_start", max_prompt_length=2) == ([0, 1, 4, 5], 2)
    assert truncate_sequence(list(range(6)), 10, 4, "keep_start") == (list(range(6)), 4)  # short: untouched


def long_pairs(n=8):
    prompt = "question about " + " ".join(f"t{i % 20}" for i in range(12)) + " "
    return Dataset.from_list(
        [
            {
                "prompt": prompt,
                "chosen": "answer " + " ".join(f"w{(i + j) % 40}" for j in range(20)),
                "rejected": "answer short",
                "domain": "formal" if i % 2 else "casual",
            }
            for i in range(n)
        ]
    )


@pytest.mark.parametrize("kind,arch", [("causal", "qwen2"), ("bert", "bert")])
def test_prompt_budget_and_keep_start_in_training_and_scoring(tmp_path, kind, arch):
    tokenizer = make_tokenizer(kind)
    args = cpu_config(
        CustomRewardConfig,
        tmp_path,
        max_steps=1,
        max_length=24,
        truncation_mode="keep_start",
        max_prompt_length=10,
    )
    trainer = CustomRewardTrainer(
        make_reward_model(arch, tokenizer), args=args, train_dataset=long_pairs(), processing_class=tokenizer
    )
    row = trainer.train_dataset[0]
    assert row["completion_start"] == 10 and len(row["chosen_ids"]) == 24
    last = tokenizer.eos_token_id if kind == "causal" else tokenizer.sep_token_id
    assert row["chosen_ids"][-1] == last and row["rejected_ids"][-1] == last  # the closing token is kept
    rendered = tokenizer(f"Preference domain: {long_pairs()[0]['domain']}.\n\n")["input_ids"]
    assert row["chosen_ids"][:3] == rendered[:3]  # the prompt's start: the condition template
    trainer.train()
    trainer.save_model(str(tmp_path / "rm"))
    scorer = RewardScorer.from_pretrained(str(tmp_path / "rm"), tokenizer=tokenizer, max_length=24)
    example = long_pairs()[0]
    assert scorer.encode(example["prompt"], example["chosen"], example["domain"]) == row["chosen_ids"]
    assert scorer.encode(example["prompt"], example["rejected"], example["domain"]) == row["rejected_ids"]


def test_truncation_options_are_checked(tmp_path):
    with pytest.raises(ValueError, match="truncation_mode='middle': choose one of"):
        cpu_config(CustomRewardConfig, tmp_path, truncation_mode="middle")
    with pytest.raises(ValueError, match="max_prompt_length=64 must be >= 1 and below max_length=64"):
        cpu_config(CustomRewardConfig, tmp_path, max_length=64, max_prompt_length=64)


def test_truncation_of_a_lora_reward_model_is_restored_with_its_adapter(tmp_path):
    """A LoRA folder has no config.json of its own: the truncation is in the record beside it."""
    from peft import LoraConfig

    tokenizer = make_tokenizer("causal")
    args = cpu_config(
        CustomRewardConfig, tmp_path, max_steps=1, max_length=24, truncation_mode="keep_start", max_prompt_length=10
    )
    trainer = CustomRewardTrainer(
        save_reward_model(tmp_path, "qwen2"),  # a path: the adapter folder names its base model
        args=args,
        train_dataset=long_pairs(),
        processing_class=tokenizer,
        peft_config=LoraConfig(task_type="SEQ_CLS", target_modules=["q_proj"]),
    )
    trainer.train()
    trainer.save_model(str(tmp_path / "rm"))
    scorer = RewardScorer.from_pretrained(str(tmp_path / "rm"), tokenizer=tokenizer, max_length=24)
    example, row = long_pairs()[0], trainer.train_dataset[0]
    assert scorer.encode(example["prompt"], example["chosen"], example["domain"]) == row["chosen_ids"]


@pytest.mark.parametrize("mode", ["keep_start", "head_tail"])
def test_pairs_left_identical_by_the_cut_are_named(tmp_path, caplog, mode):
    """keep_start with a prompt longer than max_length cuts every response token: the warning names those rows."""
    import logging

    tokenizer = make_tokenizer("bert")
    pairs = Dataset.from_list(
        [{"prompt": " ".join(f"t{j}" for j in range(40)) + " ", "chosen": "a good answer", "rejected": "bad"}] * 3
    )
    args = cpu_config(CustomRewardConfig, tmp_path, max_steps=1, max_length=24, truncation_mode=mode)
    with caplog.at_level(logging.WARNING, logger="trl_custom.conditioned_rm.preparation"):
        CustomRewardTrainer(
            make_reward_model("bert", tokenizer), args=args, train_dataset=pairs, processing_class=tokenizer
        )
    assert "Truncated 3 of 3 pairs of the train dataset" in caplog.text
    if mode == "keep_start":
        assert "3 of them are now the same sequence for chosen and rejected (rows [0, 1, 2])" in caplog.text
        assert "Set max_prompt_length" in caplog.text and "or use truncation_mode='head_tail'" in caplog.text
    else:  # the end of each response is kept: the pairs still differ
        assert "same sequence" not in caplog.text
