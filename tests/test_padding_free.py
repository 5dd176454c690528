"""Padding-free (packed) batches: packed rewards, losses and gradients equal the padded ones; clear errors."""

import copy
import logging

import pytest
import torch
from peft import LoraConfig
from toy import conditioned_pairs, cpu_config, make_causal_lm, make_reward_model, make_tokenizer, user_pairs
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward

from trl_custom import CustomRewardConfig, CustomRewardTrainer, PersonalizedDPOConfig, PersonalizedDPOTrainer
from trl_custom.packing import check_packable, pack, plan_packing, unpack


def reward_config(tmp_path, **kwargs):
    defaults = dict(max_steps=3, logging_steps=1, max_length=64, condition_template="{condition} ")
    return cpu_config(CustomRewardConfig, tmp_path, **{**defaults, **kwargs})


def dpo_config(tmp_path, **kwargs):
    return cpu_config(PersonalizedDPOConfig, tmp_path, **{"max_steps": 3, "logging_steps": 1, "beta": 0.5, **kwargs})


def gradients(model):
    return {name: p.grad.detach().clone() for name, p in model.named_parameters() if p.grad is not None}


def assert_same_gradients(padded, packed):
    assert padded.keys() == packed.keys() and padded
    for name, grad in padded.items():
        assert torch.allclose(grad, packed[name], atol=1e-5), name


# ---------------------------------------------------------------------------------------------------- layout
def test_layout_packs_first_fit_decreasing_with_restarting_positions():
    mask = torch.zeros(4, 7, dtype=torch.long)
    for row, length in enumerate([5, 3, 7, 2]):
        mask[row, :length] = 1
    mask[1] = mask[1].roll(4)  # left padding is packed the same way
    layout = plan_packing(mask)
    assert layout.shape == (3, 7)  # 17 tokens in rows of the longest sequence (7), instead of 4 x 7
    assert layout.position_ids.tolist() == [[0, 1, 2, 3, 4, 5, 6], [0, 1, 2, 3, 4, 0, 1], [0, 1, 2, 0, 1, 2, 3]]
    values = torch.arange(28).view(4, 7) * mask
    packed = pack(values, layout, fill=-1)
    assert torch.equal(unpack(packed, layout, like=mask), values)
    last = packed[layout.last].tolist()
    assert last == [values[row][mask[row].bool()][-1].item() for row in range(4)]
    assert plan_packing(mask, single_row=True).shape == (1, 17)


@pytest.mark.parametrize("implementation", ["sdpa", "eager"])
def test_packed_attention_does_not_cross_sequences(implementation):
    tokenizer = make_tokenizer()
    model = make_causal_lm("qwen2", tokenizer)
    model.set_attn_implementation(implementation)
    torch.manual_seed(0)
    input_ids = torch.randint(3, len(tokenizer), (4, 9))
    mask = torch.zeros(4, 9, dtype=torch.long)
    for row, length in enumerate([9, 4, 6, 2]):
        mask[row, :length] = 1
    padded = model.model(input_ids=input_ids, attention_mask=mask).last_hidden_state
    layout = plan_packing(mask)
    assert layout.shape[0] < 4
    packed = model.model(
        input_ids=pack(input_ids, layout), position_ids=layout.position_ids, attention_mask=None, use_cache=False
    ).last_hidden_state
    assert torch.allclose(unpack(packed, layout, like=mask)[mask.bool()], padded[mask.bool()], atol=1e-6)


# ---------------------------------------------------------------------------------------------------- reward trainer
def reward_step(tmp_path, padding_free, mode, arch="qwen2", lora=False, imitation_coef=0.0):
    """Loss, rewards and gradients of one batch of 8 pairs, with the same (randomized) weights on both paths."""
    tokenizer = make_tokenizer()
    model = make_reward_model(arch, tokenizer)
    with torch.no_grad():
        model.score.weight.normal_()  # rewards of order 1, so that equality is not trivially ~0 == ~0
    peft_config = (
        LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], task_type="SEQ_CLS") if lora else None
    )
    trainer = CustomRewardTrainer(
        model,
        args=reward_config(tmp_path, condition_mode=mode, padding_free=padding_free, imitation_coef=imitation_coef),
        train_dataset=conditioned_pairs(16),
        processing_class=tokenizer,
        peft_config=peft_config,
    )
    if trainer.soft_tokens is not None:
        torch.manual_seed(1)
        with torch.no_grad():
            trainer.soft_tokens.table.normal_()
    batch = trainer._prepare_inputs(trainer.data_collator([trainer.train_dataset[i] for i in range(8)]))
    trainer.model.train()
    loss, outputs = trainer.compute_loss(trainer.model, dict(batch), return_outputs=True)
    loss.backward()
    return loss.detach(), outputs.logits.detach(), gradients(trainer.model), trainer


@pytest.mark.parametrize(
    "mode,arch,imitation_coef",
    [("none", "qwen2", 0.0), ("text", "llama", 0.0), ("embedding", "qwen2", 0.0), ("embedding", "llama", 0.5)],
)
def test_packed_reward_equals_padded(tmp_path, mode, arch, imitation_coef):
    padded_loss, padded_rewards, padded_grads, _ = reward_step(
        tmp_path, False, mode, arch, imitation_coef=imitation_coef
    )
    loss, rewards, grads, trainer = reward_step(tmp_path, True, mode, arch, imitation_coef=imitation_coef)
    assert padded_rewards.abs().max() > 0.1
    assert torch.allclose(rewards, padded_rewards, atol=1e-5)
    assert torch.allclose(loss, padded_loss, atol=1e-5)
    assert_same_gradients(padded_grads, grads)
    if mode == "embedding":
        assert any("soft_tokens" in name for name in grads)
    if imitation_coef:
        assert trainer._metrics["train"]["imitation_loss"][-1] > 0


def test_packed_reward_equals_padded_with_lora(tmp_path):
    padded_loss, padded_rewards, padded_grads, _ = reward_step(tmp_path, False, "embedding", lora=True)
    loss, rewards, grads, trainer = reward_step(tmp_path, True, "embedding", lora=True)
    assert torch.allclose(rewards, padded_rewards, atol=1e-5)
    assert torch.allclose(loss, padded_loss, atol=1e-5)
    assert_same_gradients(padded_grads, grads)
    assert any("lora_" in name for name in grads) and any("score" in name for name in grads)


def test_packed_reward_training_runs_and_counts_real_tokens(tmp_path):
    tokenizer = make_tokenizer()
    logged = {}
    for padding_free in (False, True):
        trainer = CustomRewardTrainer(
            make_reward_model("qwen2", tokenizer),
            args=reward_config(tmp_path, condition_mode="embedding", padding_free=padding_free),
            train_dataset=conditioned_pairs(32),
            processing_class=tokenizer,
        )
        trainer.train()
        logged[padding_free] = [(h["loss"], h["num_tokens"]) for h in trainer.state.log_history if "loss" in h]
    assert len(logged[True]) == 3
    for (padded_loss, padded_tokens), (loss, tokens) in zip(logged[False], logged[True], strict=True):
        assert loss == pytest.approx(padded_loss, abs=1e-4) and tokens == padded_tokens


# ---------------------------------------------------------------------------------------------------- P-DPO
def dpo_step(tmp_path, padding_free, peft=False):
    tokenizer = make_tokenizer()
    model = make_causal_lm("qwen2", tokenizer)
    extra = {}
    if peft:
        extra["peft_config"] = LoraConfig(
            r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM"
        )
    else:
        extra["ref_model"] = copy.deepcopy(model)
    trainer = PersonalizedDPOTrainer(
        model,
        args=dpo_config(tmp_path, padding_free=padding_free, generic_loss_mode="exact"),
        train_dataset=user_pairs(16),
        processing_class=tokenizer,
        **extra,
    )
    torch.manual_seed(3)
    with torch.no_grad():
        trainer.soft_tokens.basis.weight.normal_()  # users differ from the generic user
    batch = trainer._prepare_inputs(trainer.data_collator([trainer.train_dataset[i] for i in range(8)]))
    trainer.model.train()
    loss = trainer.compute_loss(trainer.model, dict(batch))
    loss.backward()
    ref = torch.cat(trainer.compute_ref_log_probs(trainer.model, batch))
    metrics = {k: v[-1] for k, v in trainer._metrics["train"].items()}
    return loss.detach(), ref, gradients(trainer.model), metrics, trainer


@pytest.mark.parametrize("peft", [False, True])
def test_packed_pdpo_equals_padded(tmp_path, peft, caplog):
    padded_loss, padded_ref, padded_grads, padded_metrics, _ = dpo_step(tmp_path, False, peft)
    with caplog.at_level(logging.WARNING):
        loss, ref, grads, metrics, trainer = dpo_step(tmp_path, True, peft)
    assert "temporarily unavailable" not in caplog.text  # TRL's "padding_free is disabled" warning does not apply
    assert trainer.padding_free and trainer.args.padding_free
    assert torch.allclose(ref, padded_ref, atol=1e-5)
    assert torch.allclose(loss, padded_loss, atol=1e-5)
    for key in ("logps/chosen", "logps/rejected", "rewards/margins"):
        assert metrics[key] == pytest.approx(padded_metrics[key], abs=1e-4)
    assert_same_gradients(padded_grads, grads)
    assert any("soft_tokens" in name for name in grads)


def test_packed_pdpo_trains_with_precomputed_reference(tmp_path):
    tokenizer = make_tokenizer()
    model = make_causal_lm("qwen2", tokenizer)
    trainer = PersonalizedDPOTrainer(
        model,
        ref_model=copy.deepcopy(model),
        args=dpo_config(tmp_path, padding_free=True, precompute_ref_log_probs=True),
        train_dataset=user_pairs(16),
        processing_class=tokenizer,
    )
    trainer.train()
    assert all(torch.isfinite(torch.tensor(h["loss"])) for h in trainer.state.log_history if "loss" in h)


# ---------------------------------------------------------------------------------------------------- errors
def test_clear_errors_for_models_that_cannot_be_packed(tmp_path):
    bert_tokenizer = make_tokenizer("bert")
    with pytest.raises(ValueError, match="BertForSequenceClassification is an encoder.*padding_free=False"):
        CustomRewardTrainer(
            make_reward_model("bert", bert_tokenizer),
            args=reward_config(tmp_path, condition_mode="none", padding_free=True),
            train_dataset=conditioned_pairs(8),
            processing_class=bert_tokenizer,
        )
    AttentionInterface.register("my_custom_attention", sdpa_attention_forward)
    tokenizer = make_tokenizer()
    model = make_reward_model("qwen2", tokenizer)
    model.set_attn_implementation("my_custom_attention")
    with pytest.raises(ValueError, match="attn_implementation='my_custom_attention'.*attn_implementation='sdpa'"):
        check_packable(model)
    with pytest.raises(ValueError, match="attn_implementation='my_custom_attention'"):
        CustomRewardTrainer(
            model,
            args=reward_config(tmp_path, condition_mode="none", padding_free=True),
            train_dataset=conditioned_pairs(8),
            processing_class=tokenizer,
        )
    policy = make_causal_lm("qwen2", tokenizer)
    policy.set_attn_implementation("my_custom_attention")
    with pytest.raises(ValueError, match="cannot keep packed sequences apart"):
        PersonalizedDPOTrainer(
            policy,
            ref_model=copy.deepcopy(policy),
            args=dpo_config(tmp_path, padding_free=True),
            train_dataset=user_pairs(8),
            processing_class=tokenizer,
        )
