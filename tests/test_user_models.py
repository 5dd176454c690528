"""User models of a conditioned reward model (issue #33): table, low-rank and prototype soft tokens, in the input or at
the reward head; each trains, saves and reloads exactly, a new user is fitted from k pairs touching only its own
weights, k = 0 (and any unknown user) is the generic user, strict models refuse unknown users."""

import copy

import pytest
import torch
from toy import conditioned_pairs, cpu_config, make_reward_model, make_tokenizer, save_reward_model

from trl_custom import (
    ConditionedRewardFunction,
    CustomRewardConfig,
    CustomRewardTrainer,
    RewardScorer,
    SoftTokenConfig,
    SoftTokens,
    fit_new_condition,
)
from trl_custom.conditioned_rm.conditioning import reward_forward
from trl_custom.evaluation import evaluate_pairs
from trl_custom.soft_tokens import attach_soft_tokens, get_soft_tokens, head_features, new_soft_tokens


USER_MODELS = [(kind, place) for place in ("input", "reward_head") for kind in ("table", "lowrank", "prototype")]


def config(tmp_path, kind, placement, **kwargs):
    return cpu_config(
        CustomRewardConfig,
        tmp_path,
        condition_mode="embedding",
        condition_model=kind,
        condition_placement=placement,
        condition_dim=4,
        num_prototypes=3,
        condition_learning_rate=5e-2,
        max_length=64,
        logging_steps=4,
        **kwargs,
    )


@pytest.fixture(scope="module", params=USER_MODELS, ids=lambda p: "-".join(p))
def trained(request, tmp_path_factory):
    """A tiny Qwen2 RM with the user model trained on `formal` (alpha wins) / `casual` (beta wins), saved."""
    kind, placement = request.param
    tmp_path = tmp_path_factory.mktemp(f"{kind}-{placement}")
    args = config(tmp_path, kind, placement, max_steps=48, learning_rate=1e-3, lr_scheduler_type="constant", seed=1)
    trainer = CustomRewardTrainer(
        save_reward_model(tmp_path), args=args, train_dataset=conditioned_pairs(256), processing_class=make_tokenizer()
    )
    initial = {k: v.detach().clone() for k, v in trainer.soft_tokens.state_dict().items()}
    trainer.train()
    trainer.model.eval()
    trainer.save_model(str(tmp_path / "saved"))
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    return {"trainer": trainer, "initial": initial, "losses": losses, "path": tmp_path / "saved", "kind": kind}


def accuracy(scorer, rows, conditions):
    chosen = scorer.score(rows["prompt"], rows["chosen"], conditions)
    rejected = scorer.score(rows["prompt"], rows["rejected"], conditions)
    return sum(c > r for c, r in zip(chosen, rejected)) / len(chosen)


def casual_like(n, seed):
    """Pairs of a new user `chatty` who prefers what `casual` prefers (beta wins)."""
    rows = conditioned_pairs(2 * n, seed=seed).filter(lambda r: r["domain"] == "casual")
    return [{"prompt": r["prompt"], "chosen": r["chosen"], "rejected": r["rejected"]} for r in rows][:n]


def columns(pairs):
    return {key: [p[key] for p in pairs] for key in pairs[0]}


def bt_loss(scorer, pairs, user):
    rows = columns(pairs)
    chosen = torch.tensor(scorer.score(rows["prompt"], rows["chosen"], [user] * len(pairs)))
    rejected = torch.tensor(scorer.score(rows["prompt"], rows["rejected"], [user] * len(pairs)))
    return float(-torch.nn.functional.logsigmoid(chosen - rejected).mean())


def test_each_user_model_trains_saves_and_reloads_exactly(trained):
    trainer, held_out = trained["trainer"], conditioned_pairs(48, seed=7)
    spec, soft = trainer.conditioning, trainer.soft_tokens
    assert soft.config.kind == trained["kind"] and spec.tokens.placement == soft.config.placement
    assert sum(trained["losses"][-3:]) / 3 < 0.8 * trained["losses"][0], trained["losses"]
    assert any(not torch.equal(v, trained["initial"][k]) for k, v in soft.state_dict().items())
    scorer = RewardScorer(trainer.model, trainer.processing_class, spec, batch_size=64)
    assert accuracy(scorer, held_out, held_out["domain"]) >= 0.75  # both users, with opposite labels

    reloaded = RewardScorer.from_pretrained(trained["path"], tokenizer=make_tokenizer(), batch_size=64)
    assert reloaded.conditioning.tokens == spec.tokens and reloaded.conditioning.conditions == spec.conditions
    for key, value in soft.state_dict().items():
        assert torch.equal(get_soft_tokens(reloaded.model).state_dict()[key], value), key
    for users in (held_out["domain"], [None] * len(held_out)):
        assert reloaded.score(held_out["prompt"], held_out["chosen"], users) == scorer.score(
            held_out["prompt"], held_out["chosen"], users
        )
    reward = ConditionedRewardFunction.from_pretrained(trained["path"], tokenizer=make_tokenizer())
    assert reward(
        prompts=held_out["prompt"][:6], completions=held_out["chosen"][:6], domain=held_out["domain"][:6]
    ) == pytest.approx(scorer.score(held_out["prompt"][:6], held_out["chosen"][:6], held_out["domain"][:6]))
    results = evaluate_pairs(reloaded, held_out, condition_column="domain", with_heatmap=False, progress=False)
    assert results["pairs"]["all"] == accuracy(reloaded, held_out, held_out["domain"])


def test_the_fitter_touches_only_the_new_users_weights(trained):
    scorer = RewardScorer.from_pretrained(trained["path"], tokenizer=make_tokenizer(), batch_size=64)
    soft = get_soft_tokens(scorer.model)
    before = {name: p.detach().clone() for name, p in scorer.model.named_parameters()}
    rows_name = {"table": "table", "lowrank": "vectors", "prototype": "weights"}[trained["kind"]]
    held_out, users = conditioned_pairs(48, seed=7), ["formal", "casual", None]
    scores = {u: scorer.score(held_out["prompt"], held_out["chosen"], [u] * 48) for u in users}
    shots, new = casual_like(16, seed=1), casual_like(40, seed=3)
    generic = bt_loss(scorer, shots, None), accuracy(scorer, columns(new), [None] * 40)
    start = copy.deepcopy(scorer)  # where the fit starts (generic; prototype: the prototypes' mean), a step at lr 0
    fit_new_condition(start, "chatty", shots, num_epochs=1, learning_rate=0.0)

    new_id = fit_new_condition(scorer, "chatty", shots, num_epochs=15, learning_rate=5e-2)

    assert new_id == 3 and scorer.conditioning.conditions == ["casual", "formal", "chatty"]
    for name, p in scorer.model.named_parameters():
        if name.endswith(f"soft_tokens.{rows_name}"):
            assert p.shape[0] == 4 and torch.equal(p[:3], before[name]), name  # the other users' rows
        else:
            assert torch.equal(p, before[name]), name  # backbone, head, basis, prototypes, generic: bit-identical
    numbers = {"table": soft.config.num_tokens * soft.config.hidden_size, "lowrank": 4, "prototype": 3}
    assert soft.rows[3].numel() == numbers[trained["kind"]]  # the new user's weights: r or K numbers (factored)
    assert {u: scorer.score(held_out["prompt"], held_out["chosen"], [u] * 48) for u in users} == scores
    fitted = bt_loss(scorer, shots, "chatty"), accuracy(scorer, columns(new), ["chatty"] * 40)
    assert fitted[0] < bt_loss(start, shots, "chatty"), fitted  # the fit lowers the new user's loss on its k pairs
    if soft.config.placement == "reward_head":  # linear in the user's weights: held-out pairs follow (the toy
        assert fitted[1] >= max(0.9, generic[1]), (generic, fitted)  # input-side backbone saturates: no claim there)


def test_k0_and_unknown_users_are_the_generic_user_strict_refuses(trained):
    scorer = RewardScorer.from_pretrained(trained["path"], tokenizer=make_tokenizer(), batch_size=64)
    rows = conditioned_pairs(8, seed=9)
    generic = scorer.score(rows["prompt"], rows["chosen"], [None] * 8)
    assert fit_new_condition(scorer, "newcomer", []) == 0 and "newcomer" not in scorer.conditioning.conditions
    assert scorer.score(rows["prompt"], rows["chosen"], ["newcomer"] * 8) == generic  # k = 0: the generic user
    assert scorer.score(rows["prompt"], rows["chosen"], ["formal"] * 8) != generic

    strict = copy.deepcopy(scorer.conditioning)
    strict.strict = True
    strict_scorer = RewardScorer(scorer.model, scorer.tokenizer, strict)
    with pytest.raises(ValueError, match="Unknown domain='newcomer'.*fit it with fit_new_condition"):
        strict_scorer.score(rows["prompt"], rows["chosen"], ["newcomer"] * 8)
    reward = ConditionedRewardFunction(scorer.model, scorer.tokenizer, strict)
    with pytest.raises(ValueError, match="Unknown domain='newcomer'"):
        reward(prompts=rows["prompt"], completions=rows["chosen"], domain=["newcomer"] * 8)
    fit_new_condition(strict_scorer, "newcomer", casual_like(2, seed=1), num_epochs=1)
    assert len(strict_scorer.score(rows["prompt"], rows["chosen"], ["newcomer"] * 8)) == 8  # known now


@pytest.mark.parametrize("arch", ["qwen2", "bert"])
@pytest.mark.parametrize("kind", ["table", "lowrank", "prototype"])
def test_head_features_give_every_users_reward_without_the_model(arch, kind):
    """At the reward head, `reward_c = head(f) + u_c . f`: the decoder's reward read at the last real token of
    right-padded rows of different lengths, the encoder's from its pooled output."""
    tokenizer = make_tokenizer("bert" if arch == "bert" else "causal")
    model = make_reward_model(arch, tokenizer).eval()
    soft = new_soft_tokens(
        model, SoftTokenConfig(kind=kind, placement="reward_head", num_tokens=1, dim=3, num_prototypes=2), 4
    )
    assert soft.config.num_tokens == 1 and soft.config.hidden_size == 16 and soft.config.num_input_tokens == 0
    for parameter in soft.parameters():
        torch.nn.init.normal_(parameter)
    attach_soft_tokens(model, soft)
    texts = ["question about t1 answer alpha", "tell me more", "answer beta w1 w2 w3 w4 w5"]
    batch = tokenizer(texts, padding=True, return_tensors="pt")
    ids = torch.tensor([1, 4, 0])
    with torch.no_grad():
        rewards = reward_forward(
            model, batch["input_ids"], batch["attention_mask"], soft(ids), placement="reward_head"
        )
        plain = reward_forward(model, batch["input_ids"], batch["attention_mask"])["rewards"]
    base, features = head_features(
        model, lambda: reward_forward(model, batch["input_ids"], batch["attention_mask"])["rewards"], 3
    )
    torch.testing.assert_close(base, plain, rtol=0, atol=0)
    torch.testing.assert_close(rewards["rewards"], base + (features * soft(ids)[:, 0]).sum(-1), rtol=0, atol=1e-5)
    for i, text in enumerate(texts):  # each row as if alone: padding does not move the features
        alone = tokenizer([text], return_tensors="pt")
        single = reward_forward(
            model, alone["input_ids"], alone["attention_mask"], soft(ids[i : i + 1]), placement="reward_head"
        )
        torch.testing.assert_close(single["rewards"], rewards["rewards"][i : i + 1], rtol=0, atol=1e-5)


def test_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="num_condition_tokens=2 counts soft tokens in the input"):
        config(tmp_path, "table", "reward_head", num_condition_tokens=2)
    with pytest.raises(ValueError, match="reward_head' with padding_free=True"):
        config(tmp_path, "table", "reward_head", padding_free=True)
    with pytest.raises(ValueError, match="condition_placement='reward_head'.*soft-token options, read only with"):
        cpu_config(CustomRewardConfig, tmp_path, condition_mode="text", condition_placement="reward_head")
    with pytest.raises(ValueError, match="condition_placement='head'"):
        config(tmp_path, "table", "head")
    with pytest.raises(ValueError, match="num_tokens=4 with placement='reward_head'"):
        SoftTokenConfig(num_tokens=4, placement="reward_head")
    model = make_reward_model("qwen2", make_tokenizer())
    model.score = torch.nn.Sequential(torch.nn.Linear(16, 16), torch.nn.Linear(16, 1))  # pools nothing, two layers
    with pytest.raises(ValueError, match="one linear layer named score or classifier.*has a Sequential reward head"):
        new_soft_tokens(model, SoftTokenConfig(placement="reward_head", num_tokens=1), 2)
    other = SoftTokens(SoftTokenConfig(placement="reward_head", num_tokens=1, hidden_size=8), 2)
    with pytest.raises(ValueError, match="reward head reads features of width 16"):
        attach_soft_tokens(make_reward_model("qwen2", make_tokenizer()), other)
