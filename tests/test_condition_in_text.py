"""`condition_mode="text+embedding"`: soft tokens with the condition's name rendered into the text as well."""

import json

import pytest
from toy import conditioned_pairs, cpu_config, make_reward_model, make_tokenizer

from trl_custom import CustomRewardConfig, CustomRewardTrainer, RewardScorer


def test_text_and_embedding_renders_the_name_and_trains_the_table(tmp_path):
    tokenizer = make_tokenizer("causal")
    args = cpu_config(
        CustomRewardConfig,
        tmp_path,
        condition_mode="text+embedding",
        condition_learning_rate=1e-2,
        max_steps=2,
        max_length=64,
    )
    dataset = conditioned_pairs(8)
    model = make_reward_model("qwen2", tokenizer)
    trainer = CustomRewardTrainer(model, args=args, train_dataset=dataset, processing_class=tokenizer)
    table_before = trainer.soft_tokens.table.detach().clone()
    row = trainer.train_dataset[0]
    rendered = tokenizer(f"Preference domain: {dataset[0]['domain']}.\n\n{dataset[0]['prompt']}")["input_ids"]
    assert row["chosen_ids"][: len(rendered)] == rendered  # the name is in the text
    assert row["condition_ids"] == trainer.conditioning.condition_id(dataset[0]["domain"]) > 0  # and in the table
    trainer.train()
    assert not trainer.soft_tokens.table.detach().equal(table_before)

    path = str(tmp_path / "rm")
    trainer.save_model(path)
    with open(f"{path}/trl_custom.json") as f:
        assert json.load(f)["conditioning"]["mode"] == "text+embedding"
    scorer = RewardScorer.from_pretrained(path, tokenizer=tokenizer, max_length=64)
    assert scorer.conditioning.renders_text and scorer.conditioning.uses_soft_tokens
    example = dataset[0]
    assert scorer.encode(example["prompt"], example["chosen"], example["domain"]) == row["chosen_ids"]
    in_memory = RewardScorer(trainer.model.eval(), tokenizer, trainer.conditioning, max_length=64)
    prompts, responses, domains = dataset["prompt"], dataset["chosen"], dataset["domain"]
    assert scorer.score(prompts, responses, domains) == pytest.approx(in_memory.score(prompts, responses, domains))

    # going on training the saved model: the same setting, or an error naming it
    args = cpu_config(CustomRewardConfig, tmp_path, condition_mode="embedding", max_steps=1, max_length=64)
    with pytest.raises(ValueError, match="trained with condition_mode='text\\+embedding': set it the same"):
        CustomRewardTrainer(path, args=args, train_dataset=dataset, processing_class=tokenizer)


def test_text_and_embedding_options_are_checked(tmp_path):
    with pytest.raises(TypeError, match="`condition_in_text` was merged into condition_mode: use condition_mode="):
        cpu_config(CustomRewardConfig, tmp_path, condition_mode="text", condition_in_text=True)
    with pytest.raises(ValueError, match="the text would still name the dropped condition"):
        cpu_config(CustomRewardConfig, tmp_path, condition_mode="text+embedding", condition_dropout=0.1)
