"""Personalized online RL: TRL's GRPO and RLOO with the user model in generation and in every log-prob pass."""

import copy
import os

import pytest
import torch
from datasets import Dataset
from toy import cpu_config, make_causal_lm, make_tokenizer
from transformers import AutoModelForCausalLM
from trl import GRPOConfig, GRPOTrainer, RLOOConfig, RLOOTrainer

from trl_custom.personalized_rl import (
    PersonalizedGRPOConfig,
    PersonalizedGRPOTrainer,
    PersonalizedRLOOConfig,
    PersonalizedRLOOTrainer,
)


TRAINERS = {
    "grpo": (GRPOTrainer, GRPOConfig, PersonalizedGRPOTrainer, PersonalizedGRPOConfig),
    "rloo": (RLOOTrainer, RLOOConfig, PersonalizedRLOOTrainer, PersonalizedRLOOConfig),
}
ONLINE = dict(
    per_device_train_batch_size=4, num_generations=2, max_completion_length=6, logging_steps=1, max_steps=3, seed=0
)


def base_model(tmp_path):
    """A tiny causal LM saved to a folder (TRL builds the reference from the model's path)."""
    tokenizer = make_tokenizer()
    path = tmp_path / "base"
    if not (path / "config.json").exists():
        make_causal_lm("qwen2", tokenizer).save_pretrained(path)
        tokenizer.save_pretrained(path)
    return AutoModelForCausalLM.from_pretrained(path), tokenizer


def prompts(n=16, users=("short", "long")):
    """Prompts of varied lengths (mixed left padding), each naming its user in its text (to check alignment)."""
    return Dataset.from_list(
        [{"prompt": f"{users[i % 2]} question" + " about t1" * (i % 3), "user_id": users[i % 2]} for i in range(n)]
    )


def length_reward(prompts, completions, user_id=None, who=None, **kwargs):
    """The P-RLHF length task (in characters: the tiny model's completions often all reach `max_completion_length`
    tokens): `short` users reward short answers, `long` ones long answers; it also checks that each row's user is
    the one its prompt names (rows and users stay together)."""
    users = user_id if user_id is not None else who
    for prompt, user in zip(prompts, users, strict=True):
        assert prompt.startswith(user), (prompt, user)
    return [(-1.0 if user == "short" else 1.0) * len(c) / 30 for c, user in zip(completions, users)]


def run(trainer_class, config_class, tmp_path, name, data, **options):
    model, tokenizer = base_model(tmp_path)
    args = cpu_config(config_class, tmp_path / name, **{**ONLINE, **options})
    trainer = trainer_class(
        model, reward_funcs=length_reward, args=args, train_dataset=data, processing_class=tokenizer
    )
    trainer.train()
    params = {n: p.detach().clone() for n, p in trainer.model.named_parameters() if "soft_tokens" not in n}
    logs = [{k: v for k, v in h.items() if k not in ("step_time",) and "runtime" not in k and "per_second" not in k}
            for h in trainer.state.log_history]  # fmt: skip
    return trainer, logs, params


@pytest.mark.parametrize("kind", list(TRAINERS))
def test_without_users_equals_the_trl_trainer_step_by_step(tmp_path, kind):
    stock_trainer, stock_config, our_trainer, our_config = TRAINERS[kind]
    data = prompts().rename_column("user_id", "who")  # no user column: a plain column the reward reads
    theirs = run(stock_trainer, stock_config, tmp_path, "stock", data)
    ours = run(our_trainer, our_config, tmp_path, "ours", data)
    assert not ours[0].personalized and ours[0].soft_tokens is None
    assert len(ours[1]) == len(theirs[1]) > 2
    for mine, stock in zip(ours[1], theirs[1], strict=True):
        assert set(mine) == set(stock)
        for key, value in stock.items():
            assert mine[key] == pytest.approx(value, rel=1e-6, abs=1e-6), key
    for name, value in theirs[2].items():
        torch.testing.assert_close(ours[2][name], value, rtol=1e-6, atol=1e-6)
    ours[0].save_model(str(tmp_path / "ours-saved"))
    theirs[0].save_model(str(tmp_path / "stock-saved"))
    our_files = sorted(f for f in os.listdir(tmp_path / "ours-saved") if f != "README.md")
    stock_files = sorted(f for f in os.listdir(tmp_path / "stock-saved") if f != "README.md")
    assert our_files == sorted(stock_files + ["trl_custom.json"])


# ---------------------------------------------------------------------------------------------------- with users
def personalized(tmp_path, kind="grpo", data=None, **options):
    _, _, trainer_class, config_class = TRAINERS[kind]
    model, tokenizer = base_model(tmp_path)
    args = cpu_config(config_class, tmp_path / f"p-{kind}", **{**ONLINE, "beta": 0.1, **options})
    return trainer_class(
        model, reward_funcs=length_reward, args=args, train_dataset=data or prompts(), processing_class=tokenizer
    )


def rows_of(data, trainer, n=4):
    """A generation batch as TRL's sampler yields it: each prompt repeated `num_generations` times."""
    return [data[i] for i in range(n) for _ in range(trainer.num_generations)]


def test_every_log_prob_pass_reads_the_rows_user_tokens_and_the_kl_starts_at_zero(tmp_path):
    """Old, reference and loss-pass log-probs of a rollout (mixed left padding, `steps_per_generation=2`, chunked by
    `per_device_train_batch_size`) read each row's user: equal to each other before any update (the reference reads
    the frozen initial user model: KL 0), and different from the generic user's."""
    trainer = personalized(tmp_path, condition_model="table", steps_per_generation=2, per_device_train_batch_size=2)
    with torch.no_grad():
        trainer.soft_tokens.table.normal_(0, 1.0)  # users differ from each other and from the generic user
        trainer.reference_tokens.table.copy_(trainer.soft_tokens.table)  # as if they had started so
    trainer.model.train()
    data = prompts()
    out = trainer._generate_and_score_completions(rows_of(data, trainer))
    ids = torch.cat([out["prompt_ids"], out["completion_ids"]], dim=1)
    mask = torch.cat([out["prompt_mask"], out["completion_mask"]], dim=1)
    assert (out["prompt_mask"] == 0).any()  # mixed left padding
    keep = out["completion_ids"].shape[1]
    with torch.no_grad(), trainer._user_passes(out["user_ids"]):
        loss_pass, _, _ = trainer._get_per_token_logps_and_entropies(trainer.model, ids, mask, keep, batch_size=2)
    real = out["completion_mask"].bool()
    torch.testing.assert_close(out["old_per_token_logps"][real], loss_pass[real], atol=1e-5, rtol=0)
    torch.testing.assert_close(out["ref_per_token_logps"][real], loss_pass[real], atol=1e-5, rtol=0)
    with torch.no_grad(), trainer._user_passes(torch.zeros_like(out["user_ids"])):  # everyone as the generic user
        generic, _, _ = trainer._get_per_token_logps_and_entropies(trainer.model, ids, mask, keep)
    assert not torch.allclose(generic[real], loss_pass[real], atol=1e-3)
    names = [data[i]["user_id"] for i in range(4) for _ in range(trainer.num_generations)]
    assert out["user_ids"].tolist() == [trainer.conditioning.condition_id(n) for n in names]


def test_users_stay_with_their_rows_through_trls_shuffles_and_splits(tmp_path):
    """TRL shuffles a rollout and splits it over `steps_per_generation` batches: each row keeps its user (the prompt
    names it), and the reward function gets the right user column (length_reward checks it)."""
    trainer = personalized(tmp_path, steps_per_generation=2, per_device_train_batch_size=2)
    trainer.model.train()
    data = prompts()
    trainer._prepare_inputs(rows_of(data, trainer))
    tokenizer = trainer.processing_class
    seen = 0
    for batch in trainer._buffered_inputs:
        for prompt, mask, user in zip(batch["prompt_ids"], batch["prompt_mask"], batch["user_ids"], strict=True):
            name = tokenizer.decode(prompt[mask.bool()]).split()[0]
            assert trainer.conditioning.condition_id(name) == user.item()
            seen += 1
    assert seen == 8


def test_training_moves_each_users_tokens_and_logs_per_user(tmp_path):
    trainer = personalized(tmp_path, max_steps=4, condition_learning_rate=0.05)
    before = trainer.soft_tokens.vectors.detach().clone()
    trainer.train()
    after = trainer.soft_tokens.vectors.detach()
    moved = [(after[i] - before[i]).abs().max().item() > 0 for i in (1, 2)]
    assert all(moved) and trainer.soft_tokens.basis.weight.abs().max() > 0  # users' vectors and the shared basis
    logged = {key for entry in trainer.state.log_history for key in entry}
    assert {"user_reward/short", "user_reward/long", "user_completion_length/short"} <= logged
    first_kl = next(entry["kl"] for entry in trainer.state.log_history if "kl" in entry)
    assert first_kl == pytest.approx(0.0, abs=1e-6)
    groups = {group["initial_lr"] for group in trainer.optimizer.param_groups}
    assert 0.05 in groups  # the user model's own learning rate
    assert set(trainer._logs["extra"]["user_id"]) <= {"short", "long"} and trainer._logs["extra"]["user_id"]  # table


def test_rloo_with_users_trains(tmp_path):
    trainer = personalized(tmp_path, kind="rloo", max_steps=2)
    before = trainer.soft_tokens.basis.weight.detach().clone()
    trainer.train()
    assert not torch.equal(trainer.soft_tokens.basis.weight, before)
    assert any("user_reward/long" in entry for entry in trainer.state.log_history)


def test_start_from_a_pdpo_checkpoint_new_and_unseen_users(tmp_path):
    """A P-DPO policy's user model carries over; a new user is added (as the generic user) before the optimizer;
    a user outside the table gets the generic user, or an error with strict_conditions."""
    from toy import user_pairs

    from trl_custom import PersonalizedDPOConfig, PersonalizedDPOTrainer

    model, tokenizer = base_model(tmp_path)
    pdpo = PersonalizedDPOTrainer(
        model, ref_model=copy.deepcopy(model), args=cpu_config(PersonalizedDPOConfig, tmp_path / "dpo", max_steps=2),
        train_dataset=user_pairs(16, users=("short", "long")), processing_class=tokenizer,
    )  # fmt: skip
    pdpo.train()
    pdpo.save_model(str(tmp_path / "pdpo"))
    data = prompts(12, users=("short", "long")).map(lambda r, i: {"user_id": "newbie"} if i == 5 else {},
                                                    with_indices=True)  # fmt: skip
    data = data.map(lambda r: {"prompt": r["user_id"] + " " + " ".join(r["prompt"].split()[1:])})
    args = cpu_config(PersonalizedGRPOConfig, tmp_path / "grpo", **{**ONLINE, "max_steps": 1})
    trainer = PersonalizedGRPOTrainer(
        str(tmp_path / "pdpo"), reward_funcs=lambda completions, **kw: [0.0] * len(completions), args=args,
        train_dataset=data, processing_class=tokenizer,
    )  # fmt: skip
    assert trainer.conditioning.conditions == ["long", "short", "newbie"]
    assert torch.equal(trainer.soft_tokens.vectors[:3], pdpo.soft_tokens.vectors.to(trainer.soft_tokens.vectors))
    assert torch.equal(trainer.soft_tokens.vectors[3], torch.zeros_like(trainer.soft_tokens.vectors[3]))
    assert trainer.user_ids_of([{"user_id": "stranger"}]).tolist() == [0]  # outside the table: the generic user
    strict = cpu_config(PersonalizedGRPOConfig, tmp_path / "strict", **ONLINE, strict_conditions=True)
    strict_trainer = PersonalizedGRPOTrainer(
        str(tmp_path / "pdpo"), reward_funcs=lambda completions, **kw: [0.0] * len(completions), args=strict,
        train_dataset=data, processing_class=tokenizer,
    )  # fmt: skip
    with pytest.raises(ValueError, match="Unknown user_id='stranger' \\(a rollout's user\\)"):
        strict_trainer.user_ids_of([{"user_id": "stranger"}])


def test_what_users_cannot_follow_is_refused(tmp_path):
    with pytest.raises(ValueError, match="does not support vLLM generation"):
        personalized(tmp_path, use_vllm=True)
    with pytest.raises(ValueError, match="scale_rewards='batch' normalizes every user's rewards"):
        personalized(tmp_path, scale_rewards="batch")
    with pytest.raises(ValueError, match="normalize_advantages=True normalizes every user's advantages"):
        personalized(tmp_path, kind="rloo", normalize_advantages=True)
    with pytest.raises(TypeError, match="`users` was renamed conditions"):
        PersonalizedGRPOConfig(str(tmp_path), users=["a"])


@pytest.mark.parametrize("kind", list(TRAINERS))
def test_resume_equals_the_uninterrupted_run(tmp_path, kind):
    """Stopped after its checkpoint at step 2 and resumed to 4: the same rewards, losses and weights (the user model
    and the reference's frozen copy included) as 4 uninterrupted steps."""
    from test_resume import StopAt

    _, _, trainer_class, config_class = TRAINERS[kind]

    def make(output_dir, callbacks=None):
        model, tokenizer = base_model(tmp_path)
        args = cpu_config(config_class, tmp_path, **{**ONLINE, "beta": 0.1, "max_steps": 4, "output_dir":
                          str(output_dir), "save_strategy": "steps", "save_steps": 2,
                          "condition_learning_rate": 0.05})  # fmt: skip
        return trainer_class(model, reward_funcs=length_reward, args=args, train_dataset=prompts(),
                             processing_class=tokenizer, callbacks=callbacks)  # fmt: skip

    full = make(tmp_path / "full")
    full.train()
    stopped = make(tmp_path / "run", callbacks=[StopAt(2)])
    stopped.train()
    resumed = make(tmp_path / "run")
    resumed.train(resume_from_checkpoint=True)
    keys = ("loss", "reward", "kl", "user_reward/short", "user_reward/long")
    expected = {e["step"]: e for e in full.state.log_history if "loss" in e}
    got = {e["step"]: e for e in resumed.state.log_history if "loss" in e}
    assert sorted(got) == sorted(expected) == [1, 2, 3, 4]
    for step, entry in expected.items():
        for key in keys:
            if key in entry:
                assert got[step][key] == pytest.approx(entry[key], abs=1e-5), (step, key)
    for name, value in full.soft_tokens.state_dict().items():
        torch.testing.assert_close(resumed.soft_tokens.state_dict()[name], value, atol=1e-5, rtol=0)
    for name, value in full.reference_tokens.state_dict().items():
        torch.testing.assert_close(resumed.reference_tokens.state_dict()[name], value, atol=0, rtol=0)
