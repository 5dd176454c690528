import copy

import pytest
import torch
import torch.nn.functional as F
from datasets import Dataset
from peft import LoraConfig
from toy import cpu_config, make_causal_lm, make_tokenizer, user_pairs

from trl_custom import (
    PersonalizedDPOConfig,
    PersonalizedDPOTrainer,
    SoftTokenConfig,
    SoftTokens,
    fit_new_user,
    generate_for_user,
    load_personalized_model,
)
from trl_custom.personalized_dpo.inference import sequence_log_probs
from trl_custom.personalized_dpo.synthetic_users import build_length_preference_dataset, length_pairs
from trl_custom.record import ModelRecord
from trl_custom.soft_tokens import attach_soft_tokens


def config(tmp_path, **kwargs):
    defaults = dict(max_steps=30, logging_steps=10, beta=0.5, seed=0)
    return cpu_config(PersonalizedDPOConfig, tmp_path, **{**defaults, **kwargs})


def make_trainer(tmp_path, arch="qwen2", peft=False, data=None, **kwargs):
    tokenizer = make_tokenizer()
    model = make_causal_lm(arch, tokenizer)
    extra = {}
    if peft:  # from a folder, so that the saved adapter knows its base model
        model.save_pretrained(tmp_path / "base")
        model = type(model).from_pretrained(tmp_path / "base")
        extra["peft_config"] = LoraConfig(
            r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM"
        )
    else:
        extra["ref_model"] = copy.deepcopy(model)
    return PersonalizedDPOTrainer(
        model,
        args=config(tmp_path, **kwargs),
        train_dataset=data or user_pairs(64),
        processing_class=tokenizer,
        **extra,
    )


def batch_of(trainer, n=8):
    return trainer._prepare_inputs(trainer.data_collator([trainer.train_dataset[i] for i in range(n)]))


def manual_dpo(policy, ref, batch, soft, beta):
    """Plain DPO from full logits: policy with `soft` tokens prepended vs the reference without any."""
    logps = sequence_log_probs(policy, batch, torch.cat([soft, soft]))
    ref_logps = sequence_log_probs(ref, batch, None)
    (c, r), (rc, rr) = logps.chunk(2), ref_logps.chunk(2)
    return -F.logsigmoid(beta * ((c - rc) - (r - rr))).mean()


# ---------------------------------------------------------------------------------------------------- training
@pytest.mark.parametrize("arch,peft", [("qwen2", False), ("llama", False), ("qwen2", True)])
def test_policy_and_user_model_learn_conflicting_users(tmp_path, arch, peft):
    trainer = make_trainer(tmp_path, arch, peft=peft, alpha=1.0, max_steps=80 if peft else 40)
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters() if p.requires_grad}
    trainer.train()
    after = dict(trainer.model.named_parameters())
    changed = {n for n, v in before.items() if not torch.equal(v, after[n].detach())}
    assert any("soft_tokens.basis" in n for n in changed) and any("soft_tokens.vectors" in n for n in changed)
    assert any(("lora_" in n) if peft else ("layers.0" in n) for n in changed)
    metrics = trainer.evaluate(user_pairs(16, seed=1))
    assert metrics["eval_rewards/accuracies/u1"] >= 0.9 and metrics["eval_rewards/accuracies/u2"] >= 0.9


def test_reference_is_the_non_personalized_base(tmp_path):
    trainer = make_trainer(tmp_path)
    batch = batch_of(trainer)
    with torch.no_grad():
        trainer.soft_tokens.basis.weight.normal_()  # make users differ
        ref_chosen, ref_rejected = trainer.compute_ref_log_probs(trainer.model, batch)
        plain = sequence_log_probs(trainer.ref_model, batch, None)
        personal = sequence_log_probs(trainer.model, batch, torch.cat([trainer.soft_tokens(batch["user_ids"])] * 2))
    assert torch.allclose(torch.cat([ref_chosen, ref_rejected]), plain, atol=1e-4)
    assert not torch.allclose(personal, plain, atol=1e-3)


def test_reference_stays_frozen_while_the_policy_trains(tmp_path):
    """Full fine-tuning: the loss's reference is the frozen `ref_model`, not the moving policy without user tokens."""
    trainer = make_trainer(tmp_path, alpha=1.0, generic_loss_mode="exact", learning_rate=5e-2, max_steps=3)
    trainer.train()
    batch = batch_of(trainer)
    trainer.model.eval()
    with torch.no_grad():
        loss = trainer.compute_loss(trainer.model, dict(batch)).item()
        soft = trainer.soft_tokens(batch["user_ids"])
        frozen = manual_dpo(trainer.model, trainer.ref_model, batch, soft, 0.5).item()
        moving = manual_dpo(trainer.model, trainer.model, batch, soft, 0.5).item()
    assert frozen != pytest.approx(moving, abs=1e-3)  # the policy has moved away from the reference
    assert loss == pytest.approx(frozen, rel=1e-4, abs=1e-5)


@pytest.mark.parametrize("alpha", [1.0, 0.0, 0.3])
def test_alpha_mixes_personalized_and_generic_dpo(tmp_path, alpha):
    trainer = make_trainer(tmp_path, alpha=alpha, generic_loss_mode="exact")
    trainer.model.train()
    batch = batch_of(trainer)
    with torch.no_grad():
        trainer.soft_tokens.basis.weight.normal_()
        loss = trainer.compute_loss(trainer.model, dict(batch)).item()
        personal = manual_dpo(
            trainer.model, trainer.ref_model, batch, trainer.soft_tokens(batch["user_ids"]), 0.5
        ).item()
        generic_tokens = trainer.soft_tokens.generic.unsqueeze(0).expand(8, -1, -1)
        generic = manual_dpo(trainer.model, trainer.ref_model, batch, generic_tokens, 0.5).item()
    assert personal != pytest.approx(generic, abs=1e-4)
    assert loss == pytest.approx(alpha * personal + (1 - alpha) * generic, rel=1e-4, abs=1e-5)


@pytest.mark.parametrize("alpha", [1.0, 0.3])
def test_trls_sft_loss_adds_the_chosen_nll_under_the_same_user_tokens(tmp_path, alpha):
    trainer = make_trainer(
        tmp_path, alpha=alpha, generic_loss_mode="exact", loss_type=["sigmoid", "sft"], loss_weights=[1.0, 0.7]
    )
    trainer.model.train()
    batch = batch_of(trainer)
    with torch.no_grad():
        trainer.soft_tokens.basis.weight.normal_()
        loss = trainer.compute_loss(trainer.model, dict(batch)).item()
        chosen_tokens = batch["completion_mask"][:8].sum()
        generic_tokens = trainer.soft_tokens.generic.unsqueeze(0).expand(8, -1, -1)
        expected = 0.0
        for weight, soft in ((alpha, trainer.soft_tokens(batch["user_ids"])), (1 - alpha, generic_tokens)):
            chosen_logps = sequence_log_probs(trainer.model, batch, torch.cat([soft, soft])).chunk(2)[0]
            nll = (-chosen_logps.sum() / chosen_tokens).item()
            assert nll > 0.1  # a real term, not a no-op
            dpo = manual_dpo(trainer.model, trainer.ref_model, batch, soft, 0.5).item()
            expected += weight * (dpo + 0.7 * nll)
    assert loss == pytest.approx(expected, rel=1e-4, abs=1e-5)
    # the former alias is refused, naming TRL's own options
    with pytest.raises(TypeError, match=r"`sft_coef` was removed .* set loss_type=\['sigmoid', 'sft'\]"):
        config(tmp_path, sft_coef=0.5)


def test_sampled_generic_loss_is_one_pass_and_trains(tmp_path):
    trainer = make_trainer(tmp_path, alpha=0.5, generic_loss_mode="sampled", max_steps=30)
    trainer.train()
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    assert losses[-1] < losses[0]


def test_precompute_ref_log_probs_and_gradient_checkpointing(tmp_path):
    trainer = make_trainer(tmp_path, precompute_ref_log_probs=True, gradient_checkpointing=True, max_steps=3)
    assert "ref_chosen_logps" in trainer.train_dataset.column_names
    row = trainer.train_dataset[0]
    batch = trainer.data_collator([row])
    expected = sequence_log_probs(trainer.ref_model, batch, None)[0].item()
    assert row["ref_chosen_logps"] == pytest.approx(expected, abs=1e-4)
    trainer.train()


# ---------------------------------------------------------------------------------------------------- save / load
@pytest.mark.parametrize("peft", [False, True])
def test_save_load_identical_log_probs_per_user(tmp_path, peft):
    trainer = make_trainer(tmp_path, peft=peft, max_steps=5)
    trainer.train()
    trainer.save_model(str(tmp_path / "saved"))
    model, _, soft_tokens = load_personalized_model(str(tmp_path / "saved"), tokenizer=make_tokenizer())
    batch = {k: v for k, v in batch_of(trainer).items()}
    trainer.model.eval()
    for user in ["u1", "u2", "never-seen"]:
        ids = torch.full((8,), trainer.conditioning.condition_id(user))
        with torch.no_grad():
            expected = sequence_log_probs(trainer.model, batch, torch.cat([trainer.soft_tokens(ids)] * 2))
            got = sequence_log_probs(model, batch, torch.cat([soft_tokens(ids)] * 2))
        assert torch.allclose(got, expected, atol=1e-5), user
    assert ModelRecord.of(model).conditioning.conditions == ["u1", "u2"]


def test_unseen_user_gets_the_generic_tokens(tmp_path):
    trainer = make_trainer(tmp_path, max_steps=3)
    trainer.train()
    um, spec = trainer.soft_tokens, trainer.conditioning
    assert spec.condition_id("never-seen") == 0
    generic = um(torch.tensor([0]))
    assert torch.equal(um(torch.tensor([spec.condition_id("never-seen")])), generic)
    assert torch.equal(generic[0], um.generic)
    assert not torch.equal(um(torch.tensor([spec.condition_id("u1")])), generic)


# ---------------------------------------------------------------------------------------------------- inference
@pytest.mark.parametrize("condition_model", ["lowrank", "prototype"])
def test_generate_for_user_and_cold_start(tmp_path, condition_model):
    trainer = make_trainer(tmp_path, peft=True, alpha=1.0, max_steps=40, condition_model=condition_model)
    trainer.train()
    model, tokenizer = trainer.model.eval(), trainer.processing_class
    texts = generate_for_user(
        model, tokenizer, ["question about t1 ", "question about t2 "], users="u1", max_new_tokens=5, do_sample=False
    )
    assert len(texts) == 2 and all(isinstance(t, str) for t in texts)
    pairs = list(user_pairs(8, seed=5, users=("u1", "u2")).filter(lambda r: r["user_id"] == "u2"))  # likes long
    assert fit_new_user(model, tokenizer, "newcomer", [], beta=0.5) == 0  # zero pairs: generic
    index = fit_new_user(model, tokenizer, "newcomer", pairs, beta=0.5, steps=30)
    assert trainer.conditioning.conditions[-1] == "newcomer" and index == 3
    batch = trainer.data_collator(
        [
            trainer.train_dataset[i]
            for i in range(len(trainer.train_dataset))
            if trainer.train_dataset[i]["user_id"] == "u2"
        ][:8]
    )
    with torch.no_grad(), model.disable_adapter():
        ref = sequence_log_probs(model, batch, None)
    with torch.no_grad():
        new = sequence_log_probs(model, batch, torch.cat([trainer.soft_tokens(torch.full((8,), index))] * 2))
    (c, r), (rc, rr) = new.chunk(2), ref.chunk(2)
    assert ((c - rc) > (r - rr)).float().mean() >= 0.9  # the newcomer now prefers long answers, like u2
    # mini-batches of 2 pairs: deterministic, and fits the same user
    rows = [fit_new_user(model, tokenizer, f"mini-{i}", pairs, beta=0.5, steps=30, batch_size=2) for i in range(2)]
    table = trainer.soft_tokens.rows
    assert torch.equal(table[rows[0]], table[rows[1]]) and not torch.equal(table[rows[0]], table[index])
    with torch.no_grad():
        mini = sequence_log_probs(model, batch, torch.cat([trainer.soft_tokens(torch.full((8,), rows[0]))] * 2))
    (c, r) = mini.chunk(2)
    assert ((c - rc) > (r - rr)).float().mean() >= 0.9
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        fit_new_user(model, tokenizer, "bad", pairs, batch_size=0)


# ---------------------------------------------------------------------------------------------------- errors
def test_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="The train dataset has no 'user_id' column"):
        make_trainer(tmp_path, data=user_pairs(8).remove_columns("user_id"), condition_mode="embedding")
    with pytest.raises(ValueError, match=r"Personalization is off \(the training dataset .* so alpha=1\.0"):
        make_trainer(tmp_path, data=user_pairs(8).remove_columns("user_id"), alpha=1.0)
    with pytest.raises(ValueError, match="The eval dataset has no 'user_id' column"):
        PersonalizedDPOTrainer(
            make_causal_lm("qwen2", make_tokenizer()),
            args=config(tmp_path),
            train_dataset=user_pairs(8),
            eval_dataset=user_pairs(8).remove_columns("user_id"),
            processing_class=make_tokenizer(),
        )
    bad = user_pairs(8).map(lambda r, i: {"user_id": "stranger"} if i == 5 else {}, with_indices=True)
    with pytest.raises(ValueError, match="Unknown user_id='stranger' in row 5 of the train dataset"):
        make_trainer(tmp_path, data=bad, conditions=["u1", "u2"], strict_conditions=True)
    with pytest.raises(ValueError, match="soft tokens have hidden size 8 but the model's embeddings have 16"):
        attach_soft_tokens(make_causal_lm("qwen2", make_tokenizer()), SoftTokens(SoftTokenConfig(hidden_size=8), 1))
    with pytest.raises(ValueError, match="alpha must be in"):
        config(tmp_path, alpha=1.5)


# ---------------------------------------------------------------------------------------------------- user model
def test_prototype_user_model_and_features():
    um = SoftTokens(
        SoftTokenConfig(kind="prototype", hidden_size=6, num_tokens=2, dim=3, num_prototypes=4, num_features=2), 2
    )
    torch.nn.init.normal_(um.basis.weight)
    out = um(torch.tensor([0, 1, 2]), torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]]))
    assert out.shape == (3, 2, 6)
    assert torch.equal(out[0], um.generic)  # id 0 ignores features: generic user
    assert not torch.allclose(out[1], out[2])


@pytest.mark.parametrize("kind", ["table", "lowrank", "prototype"])
def test_soft_tokens_of_a_row_equal_the_forward(kind):
    """The map the cold-start fitter optimises a new row through is the forward pass of a known condition."""
    um = SoftTokens(SoftTokenConfig(kind=kind, hidden_size=6, num_tokens=2, dim=3), 2)
    if kind != "table":
        torch.nn.init.normal_(um.basis.weight)
    assert torch.allclose(um.tokens_of_rows(um.rows[1:3]), um(torch.tensor([1, 2])))
    assert hasattr(um, "prototypes") == (kind == "prototype")


def test_synthetic_length_users_are_deterministic_and_conflicting():
    items = [{"query": f"q{i}", "responses": {"a": "x" * 10, "b": "y" * 40, "c": "z" * 12, "d": ""}} for i in range(5)]
    assert {(p["short"], p["long"]) for p in length_pairs(items)} == {("x" * 10, "y" * 40), ("z" * 12, "y" * 40)}
    first = build_length_preference_dataset(items, users_per_group=2, pairs_per_user=3, seed=1)
    second = build_length_preference_dataset(items, users_per_group=2, pairs_per_user=3, seed=1)
    assert first.to_list() == second.to_list()
    assert len(first) == 3 * 2 * 3 and set(first["group"]) == {"short", "long", "mixed"}
    for row in first:
        if row["group"] == "short":
            assert len(row["chosen"]) < len(row["rejected"])
        if row["group"] == "long":
            assert len(row["chosen"]) > len(row["rejected"])
    with pytest.raises(ValueError, match="length ratio >= 9"):
        build_length_preference_dataset(items, min_ratio=9)
    assert isinstance(first, Dataset)
    assert all(row["prompt"].endswith("\n") for row in first)  # prompt + response splits at a token boundary
    chat = build_length_preference_dataset(items, users_per_group=1, pairs_per_user=2, seed=1, conversational=True)
    assert chat[0]["prompt"] == [{"role": "user", "content": chat[0]["prompt"][0]["content"]}]
    assert chat[0]["chosen"][0]["role"] == "assistant"


def test_synthetic_users_cli(tmp_path, capsys):
    import json

    from trl_custom.scripts.synthetic_users import main

    items = [{"query": f"q{i}", "responses": {"a": "x" * 10, "b": "y" * 40}} for i in range(3)]
    (tmp_path / "dsp.json").write_text(json.dumps(items))
    main(
        [
            "--dsp_file",
            str(tmp_path / "dsp.json"),
            "--output",
            str(tmp_path / "u.jsonl"),
            "--users_per_group",
            "1",
            "--pairs_per_user",
            "2",
            "--groups",
            "short",
            "long",
        ]
    )
    rows = [json.loads(line) for line in (tmp_path / "u.jsonl").read_text().splitlines()]
    assert len(rows) == 4 and {r["user_id"] for r in rows} == {"short-0", "long-0"}
    assert "Wrote 4 pairs for 2 users" in capsys.readouterr().out


def test_user_learning_rate_gets_its_own_optimizer_group(tmp_path):
    trainer = make_trainer(tmp_path, condition_learning_rate=0.1, max_steps=2)
    trainer.train()
    groups = trainer.optimizer.param_groups
    user_ids = {id(p) for p in trainer.soft_tokens.parameters()}
    (user_group,) = [g for g in groups if {id(p) for p in g["params"]} == user_ids]
    assert user_group["weight_decay"] == 0.0 and user_group["initial_lr"] == 0.1
    assert all(not ({id(p) for p in g["params"]} & user_ids) for g in groups if g is not user_group)


# ---------------------------------------------------------------------------------------------------- issue #29
@pytest.mark.parametrize("unseen_first", [False, True])
def test_evaluation_with_users_not_in_training_has_an_unseen_bucket(tmp_path, unseen_first):
    """Users outside the table (scored with the generic user) are counted under `rewards/accuracies/unseen`, whether
    an unseen user comes first in the evaluation set or after known ones (it used to raise a KeyError in
    `datasets.map`, or drop the group column silently)."""
    rows = list(user_pairs(8, seed=4))
    stranger = {**rows[0], "user_id": "stranger"}
    eval_rows = [stranger] + rows if unseen_first else rows + [stranger]
    trainer = make_trainer(tmp_path, max_steps=1)
    metrics = trainer.evaluate(Dataset.from_list(eval_rows))
    assert {"eval_rewards/accuracies/u1", "eval_rewards/accuracies/u2", "eval_rewards/accuracies/unseen"} <= set(
        metrics
    )
    assert trainer.conditioning.conditions == ["u1", "u2"]  # the table did not grow


def test_fit_new_user_is_deterministic_in_eval_mode_with_the_trainers_log_probs(tmp_path):
    """The cold-start fitter tokenizes pairs as TRL's DPOTrainer does (conversational too) and runs the policy in eval
    mode: two fits give the same row, and its log-probs of a pair equal the trainer's for the same tokens."""
    tokenizer = make_tokenizer()
    model = make_causal_lm("qwen2", tokenizer)
    model.config.attention_dropout = 0.5  # dropout in train mode would make two fits differ
    model.save_pretrained(tmp_path / "base")
    model = type(model).from_pretrained(tmp_path / "base")
    trainer = PersonalizedDPOTrainer(
        model,
        args=config(tmp_path, max_steps=2, max_length=32),
        train_dataset=user_pairs(16),
        processing_class=tokenizer,
        peft_config=LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM"),
    )
    trainer.train()
    policy = trainer.model
    conversational = [
        {
            "prompt": [{"role": "user", "content": "question about t4"}],
            "chosen": [{"role": "assistant", "content": "answer short"}],
            "rejected": [{"role": "assistant", "content": "answer w1 w2 w3"}],
        }
    ] * 3
    policy.train()  # the fitter must switch dropout off itself, and put the mode back
    first = fit_new_user(policy, tokenizer, "new-a", conversational, beta=0.5, steps=5)
    second = fit_new_user(policy, tokenizer, "new-b", conversational, beta=0.5, steps=5)
    assert policy.training and torch.equal(trainer.soft_tokens.rows[first], trainer.soft_tokens.rows[second])

    from trl_custom.personalized_dpo.inference import preference_batches

    standard = [{"prompt": "question about t4 ", "chosen": "answer short", "rejected": "answer w1 w2 w3"}]
    examples, collator = preference_batches(policy, tokenizer, standard)
    ours = collator(examples)
    theirs = trainer.data_collator([trainer._prepare_dataset(Dataset.from_list([{**standard[0], "user_id": "u1"}]),
                                                             tokenizer, trainer.args, "x")[0]])  # fmt: skip
    assert torch.equal(ours["input_ids"], theirs["input_ids"])  # TRL's tokenization
    policy.eval()
    ids = torch.full((2,), trainer.conditioning.condition_id("u1"))
    labels = theirs["input_ids"].masked_fill(theirs["completion_mask"] == 0, -100)
    with torch.no_grad():
        fitted = sequence_log_probs(policy, ours, trainer.soft_tokens(ids))
        with trainer._hooked(policy, trainer.soft_tokens(ids)) as hooks:  # TRL's fused pass, as in training
            policy(input_ids=theirs["input_ids"], attention_mask=theirs["attention_mask"], labels=labels,
                   fused_lm_head=True, use_cache=False)  # fmt: skip
    shift = theirs["completion_mask"][:, 1:]
    torch.testing.assert_close(fitted, (hooks.log_probs[:, -shift.shape[1] :] * shift).sum(1), atol=1e-4, rtol=0)
