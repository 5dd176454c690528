"""The soft-token core: one injection (padded either side, packed), the module's variants, the shared options and
their renamed predecessors."""

import pytest
import torch
from toy import make_causal_lm, make_reward_model, make_tokenizer

from trl_custom import CustomRewardConfig, PersonalizedDPOConfig, SoftTokenConfig, SoftTokens
from trl_custom.soft_tokens import attach_soft_tokens, embed_with_soft_tokens, new_soft_tokens, soft_token_forward


def left_and_right(tokenizer, texts):
    batches = {}
    for side in ("left", "right"):
        tokenizer.padding_side = side
        batches[side] = tokenizer(texts, return_tensors="pt", padding=True)
    return batches


def real_positions(mask):
    return [row.nonzero().squeeze(-1) for row in mask]


@pytest.mark.parametrize("kind", ["table", "lowrank", "prototype"])
def test_policy_tokens_read_the_same_under_left_and_right_padding(kind):
    """Prepended soft tokens under left padding (generation, online RL) get the positions generation computes, so
    every real token's logits equal those of the right-padded (DPO) batch and of the row alone."""
    tokenizer = make_tokenizer()
    model = make_causal_lm("qwen2", tokenizer).eval()
    soft = attach_soft_tokens(model, new_soft_tokens(model, SoftTokenConfig(kind=kind, placement="prepend"), 2))
    if kind != "table":
        torch.nn.init.normal_(soft.basis.weight)
    texts = ["question about t1 answer", "question about t2 please explain more about it", "tell me"]
    ids = torch.tensor([1, 2, 0])
    logits = {}
    with torch.no_grad():
        for side, batch in left_and_right(tokenizer, texts).items():
            with soft_token_forward(model, soft(ids)):
                out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
            logits[side] = [out[i, positions] for i, positions in enumerate(real_positions(batch["attention_mask"]))]
        for i, text in enumerate(texts):
            alone = tokenizer([text], return_tensors="pt")
            with soft_token_forward(model, soft(ids[i : i + 1])):
                single = model(**alone).logits[0]
            torch.testing.assert_close(logits["left"][i], single, atol=1e-5, rtol=0)
            torch.testing.assert_close(logits["right"][i], single, atol=1e-5, rtol=0)


def test_generation_positions_equal_the_forward_passes():
    """`generate` with the injected `inputs_embeds` (left padding) computes positions `cumsum(mask) - 1`: its first
    step's logits equal the forward pass with the injection's explicit positions, for every row."""
    tokenizer = make_tokenizer()
    model = make_causal_lm("qwen2", tokenizer).eval()
    soft = attach_soft_tokens(model, new_soft_tokens(model, SoftTokenConfig(kind="table", placement="prepend"), 3))
    tokenizer.padding_side = "left"
    batch = tokenizer(["question", "question about t2 please explain"], return_tensors="pt", padding=True)
    tokens = soft(torch.tensor([1, 3]))
    inputs = embed_with_soft_tokens(model, tokens, batch["input_ids"], batch["attention_mask"])
    with torch.no_grad():
        forward = model(**inputs).logits[:, -1]
        generated = model.generate(
            inputs_embeds=inputs["inputs_embeds"], attention_mask=inputs["attention_mask"], max_new_tokens=1,
            do_sample=False, output_logits=True, return_dict_in_generate=True, pad_token_id=tokenizer.pad_token_id,
        )  # fmt: skip
    torch.testing.assert_close(generated.logits[0], forward, atol=1e-5, rtol=0)


def test_reward_tokens_after_the_first_token_padded_and_right_aligned():
    """A decoder reward model reads its soft tokens after BOS and its reward at each row's last real token."""
    tokenizer = make_tokenizer()
    model = make_reward_model("qwen2", tokenizer).eval()
    soft = attach_soft_tokens(model, new_soft_tokens(model, SoftTokenConfig(), 2))
    from trl_custom.conditioned_rm.conditioning import reward_forward

    texts = ["question about t1 answer alpha", "question"]
    tokenizer.padding_side = "right"
    batch = tokenizer(texts, return_tensors="pt", padding=True)
    with torch.no_grad():
        together = reward_forward(model, batch["input_ids"], batch["attention_mask"], soft(torch.tensor([1, 2])))
        packed = reward_forward(
            model, batch["input_ids"], batch["attention_mask"], soft(torch.tensor([1, 2])), padding_free=True
        )
        alone = [
            reward_forward(model, **tokenizer([t], return_tensors="pt"), soft_tokens=soft(torch.tensor([i + 1])))
            for i, t in enumerate(texts)
        ]
    expected = torch.cat([a["rewards"] for a in alone])
    torch.testing.assert_close(together["rewards"], expected, atol=1e-5, rtol=0)
    torch.testing.assert_close(packed["rewards"], expected, atol=1e-5, rtol=0)


@pytest.mark.parametrize("kind", ["table", "lowrank", "prototype"])
def test_each_variant_saves_and_loads_exactly_and_grows(tmp_path, kind):
    module = SoftTokens(SoftTokenConfig(kind=kind, hidden_size=6, num_tokens=2, dim=3, num_prototypes=4), 5)
    if kind != "table":
        torch.nn.init.normal_(module.basis.weight)
    module.save(tmp_path)
    loaded = SoftTokens.load(tmp_path, module.config)
    ids = torch.tensor([0, 1, 5])
    assert torch.equal(loaded(ids), module(ids))
    before = module(torch.arange(6))
    module.extend_to(7)  # two conditions more, each starting as the generic entry
    assert module.num_rows == 8 and torch.equal(module(torch.arange(6)), before)
    generic = before[0] if kind != "prototype" else module.tokens_of_rows(torch.zeros_like(module.rows[:1]))[0]
    torch.testing.assert_close(module(torch.tensor([7]))[0], generic)


def test_renamed_options_name_their_replacement(tmp_path):
    renamed = {
        PersonalizedDPOConfig: {
            "user_column": "renamed condition_column",
            "users": "renamed conditions",
            "personalize": "replaced by condition_mode",
            "user_model_type": "'individual' -> 'lowrank', 'cluster' -> 'prototype'",
            "user_learning_rate": "renamed condition_learning_rate",
        },
        CustomRewardConfig: {
            "long_pair_policy": "merged into truncation_mode",
            "condition_in_text": "condition_mode='text\\+embedding'",
        },
    }
    for config_class, names in renamed.items():
        for name, replacement in names.items():
            with pytest.raises(TypeError, match=f"`{name}` (was )?.*{replacement}"):
                config_class(str(tmp_path), **{name: "x"})
    # both trainers take the same names for the same things
    shared = {"conditions": ["a"], "strict_conditions": True, "num_condition_tokens": 2, "condition_model": "lowrank"}
    reward = CustomRewardConfig(str(tmp_path), condition_mode="embedding", use_cpu=True, **shared)
    policy = PersonalizedDPOConfig(str(tmp_path), condition_mode="embedding", use_cpu=True, **shared)
    for name in shared:
        assert getattr(reward, name) == getattr(policy, name)


def test_every_generated_tokens_log_prob_equals_the_training_pass():
    """Left-padded prompts with their users' soft tokens: the log-prob `generate` gave each sampled token equals the
    one the training pass (the hooks, as GRPO/RLOO run them) computes for it, row by row (generation's positions)."""
    tokenizer = make_tokenizer()
    model = make_causal_lm("qwen2", tokenizer).eval()
    soft = attach_soft_tokens(model, new_soft_tokens(model, SoftTokenConfig(kind="table", placement="prepend"), 3))
    with torch.no_grad():
        soft.table.normal_(0, 1.0)
    tokenizer.padding_side = "left"
    batch = tokenizer(["question", "question about t2 please explain", "tell me"], return_tensors="pt", padding=True)
    tokens = soft(torch.tensor([1, 3, 2]))
    inputs = embed_with_soft_tokens(model, tokens, batch["input_ids"], batch["attention_mask"])
    inputs.pop("position_ids")
    torch.manual_seed(0)
    with torch.no_grad():
        generated = model.generate(
            **inputs, max_new_tokens=6, do_sample=True, output_logits=True, return_dict_in_generate=True,
            pad_token_id=tokenizer.pad_token_id, eos_token_id=None,
        )  # fmt: skip
        new = generated.sequences
        step_logps = torch.stack(generated.logits, dim=1).log_softmax(-1).gather(-1, new.unsqueeze(-1)).squeeze(-1)
        ids = torch.cat([batch["input_ids"], new], dim=1)
        mask = torch.cat([batch["attention_mask"], torch.ones_like(new)], dim=1)
        with soft_token_forward(model, tokens):
            logits = model(input_ids=ids, attention_mask=mask).logits
        train_logps = logits[:, -new.shape[1] - 1 : -1].log_softmax(-1).gather(-1, new.unsqueeze(-1)).squeeze(-1)
    torch.testing.assert_close(train_logps, step_logps, atol=1e-4, rtol=0)
