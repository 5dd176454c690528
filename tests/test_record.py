"""One saved record per model (`trl_custom.json`): written by both trainers, read by every loader; folders saved by
trl-custom 0.1.0 (`tests/fixtures/legacy_v0`) still load and score exactly as they did."""

import json
import shutil
from pathlib import Path

import pytest
import torch
from toy import conditioned_pairs, cpu_config, make_reward_model, make_tokenizer

from trl_custom import (
    ConditionedRewardFunction,
    CustomRewardConfig,
    CustomRewardTrainer,
    ModelRecord,
    RewardScorer,
    load_personalized_model,
)
from trl_custom.personalized_dpo.inference import preference_batches, sequence_log_probs


FIXTURES = Path(__file__).parent / "fixtures" / "legacy_v0"
EXPECTED = json.loads((FIXTURES / "expected.json").read_text())


def legacy_copy(tmp_path, name):
    """A fixture folder, its adapter pointed at the fixture's base model (they name it `BASE/...`)."""
    folder = tmp_path / name
    shutil.copytree(FIXTURES / name, folder)
    adapter = folder / "adapter_config.json"
    if adapter.exists():
        config = json.loads(adapter.read_text())
        config["base_model_name_or_path"] = config["base_model_name_or_path"].replace("BASE", str(FIXTURES))
        adapter.write_text(json.dumps(config))
    return str(folder)


@pytest.mark.parametrize("name", ["rm_embedding_qwen2", "rm_text_bert_lora"])
def test_legacy_reward_models_score_as_they_did(tmp_path, name):
    expected = EXPECTED[name]
    kind = "bert" if "bert" in name else "causal"
    folder = legacy_copy(tmp_path, name)
    default = RewardScorer.from_pretrained(folder, tokenizer=make_tokenizer(kind))
    assert default.record.legacy and default.max_length == (252 if kind == "causal" else 128)  # 512, capped
    scorer = RewardScorer.from_pretrained(folder, tokenizer=make_tokenizer(kind), max_length=expected["max_length"])
    prompts, responses, conditions = zip(*expected["probe"], strict=True)
    assert scorer.score(prompts, responses, conditions) == pytest.approx(expected["rewards"], abs=1e-5)
    record = scorer.record
    if name == "rm_embedding_qwen2":
        assert record.conditioning.mode == "embedding" and record.conditioning.tokens.kind == "table"
        assert (record.truncation_mode, record.max_prompt_length) == ("keep_start", 8)
    else:
        assert record.conditioning.mode == "text" and record.pooling == "mean"
    # saved again, it is this version's one record, and scores the same
    scorer.record.kind = "reward_model"
    reward = ConditionedRewardFunction(scorer.model, scorer.tokenizer, max_length=expected["max_length"])
    assert reward(prompts=list(prompts), completions=list(responses), domain=list(conditions)) == pytest.approx(
        expected["rewards"], abs=1e-5
    )


@pytest.mark.parametrize("name", ["pdpo_individual_qwen2", "pdpo_cluster_lora"])
def test_legacy_personalized_policies_give_the_same_log_probs(tmp_path, name):
    model, tokenizer, soft_tokens = load_personalized_model(legacy_copy(tmp_path, name), tokenizer=make_tokenizer())
    record = ModelRecord.of(model)
    assert record.kind == "policy" and record.conditioning.conditions == ["u1", "u2"]
    assert soft_tokens.config.kind == ("prototype" if "cluster" in name else "lowrank")
    pairs = [{"prompt": "question about t3 ", "chosen": "answer short", "rejected": "answer w1 w2 w3 w4"}]
    examples, collator = preference_batches(model, tokenizer, pairs)
    batch = collator(examples)
    for user, expected in EXPECTED[name]["log_probs"].items():
        ids = torch.full((2,), record.conditioning.condition_id(None if user == "None" else user))
        with torch.no_grad():
            got = sequence_log_probs(model, batch, soft_tokens(ids))
        torch.testing.assert_close(got, torch.tensor(expected), atol=1e-4, rtol=0)


def test_trainer_writes_one_record_and_the_scorer_reads_its_max_length(tmp_path):
    tokenizer = make_tokenizer()
    args = cpu_config(CustomRewardConfig, tmp_path, max_steps=1, max_length=40, condition_mode="embedding")
    trainer = CustomRewardTrainer(
        make_reward_model("qwen2", tokenizer),
        args=args,
        train_dataset=conditioned_pairs(8),
        processing_class=tokenizer,
    )
    trainer.save_model(str(tmp_path / "rm"))
    saved = sorted(p.name for p in (tmp_path / "rm").iterdir())
    assert "trl_custom.json" in saved and "soft_tokens.safetensors" in saved
    assert not {"conditioning.json", "trl_custom_settings.json", "condition_embeddings.safetensors"} & set(saved)
    config = json.loads((tmp_path / "rm" / "config.json").read_text())
    assert not any(key.startswith("trl_custom") for key in config)  # the record is the one place
    record = json.loads((tmp_path / "rm" / "trl_custom.json").read_text())
    assert record["version"] == 1 and record["kind"] == "reward_model" and record["max_length"] == 40
    assert record["conditioning"]["conditions"] == ["casual", "formal"] and record["trainer"] == "CustomRewardTrainer"

    scorer = RewardScorer.from_pretrained(tmp_path / "rm", tokenizer=tokenizer)
    assert scorer.max_length == 40  # the training max_length, not a fixed 512
    assert RewardScorer.from_pretrained(tmp_path / "rm", tokenizer=tokenizer, max_length=20).max_length == 20
    with pytest.raises(ValueError, match="max_length=300 plus 4 condition tokens exceeds the model's 256 positions"):
        RewardScorer.from_pretrained(tmp_path / "rm", tokenizer=tokenizer, max_length=300)
    reward = ConditionedRewardFunction.from_pretrained(tmp_path / "rm", tokenizer=tokenizer)
    assert reward.scorer.max_length == 40


def test_a_record_of_another_version_or_kind_is_refused(tmp_path):
    ModelRecord(kind="policy").save(tmp_path / "policy")
    with pytest.raises(ValueError, match="holds a policy, not a reward model: load it with load_personalized_model"):
        from trl_custom.record import restore_saved

        restore_saved(make_reward_model("qwen2", make_tokenizer()), tmp_path / "policy", kind="reward_model")
    data = json.loads((tmp_path / "policy" / "trl_custom.json").read_text())
    (tmp_path / "policy" / "trl_custom.json").write_text(json.dumps({**data, "version": 9}))
    with pytest.raises(ValueError, match="record version 9; this trl-custom reads versions up to 1"):
        ModelRecord.load(tmp_path / "policy")
