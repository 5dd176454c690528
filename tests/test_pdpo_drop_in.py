"""PersonalizedDPOTrainer as a drop-in for TRL's DPOTrainer, and P-DPO on TRL's own loss (every loss type)."""

import copy
import json
import logging
import os

import pytest
import torch
from datasets import Dataset
from peft import LoraConfig
from toy import cpu_config, make_causal_lm, make_tokenizer, user_pairs
from trl import DPOConfig, DPOTrainer

from trl_custom import PersonalizedDPOConfig, PersonalizedDPOTrainer
from trl_custom.personalized_dpo.inference import sequence_log_probs


# Every loss type of TRL 1.16's DPOConfig.loss_type docstring, each with the options it needs
LOSS_CASES = {
    "sigmoid": {},
    "hinge": {"loss_type": ["hinge"]},
    "ipo": {"loss_type": ["ipo"]},
    "exo_pair": {"loss_type": ["exo_pair"], "label_smoothing": 0.1},
    "nca_pair": {"loss_type": ["nca_pair"]},
    "robust": {"loss_type": ["robust"], "label_smoothing": 0.2},
    "bco_pair": {"loss_type": ["bco_pair"]},
    "sppo_hard": {"loss_type": ["sppo_hard"]},
    "aot": {"loss_type": ["aot"], "label_smoothing": 0.1},
    "aot_unpaired": {"loss_type": ["aot_unpaired"]},
    "apo_zero": {"loss_type": ["apo_zero"]},
    "apo_down": {"loss_type": ["apo_down"]},
    "discopop": {"loss_type": ["discopop"]},
    "sft": {"loss_type": ["sft"]},
    "sigmoid_norm": {"loss_type": ["sigmoid_norm"]},
    "list+weights": {"loss_type": ["sigmoid", "bco_pair", "sft"], "loss_weights": [0.8, 0.2, 1.0]},
    "js_divergence": {"f_divergence_type": "js_divergence"},
    "alpha_divergence": {"f_divergence_type": "alpha_divergence", "f_alpha_divergence_coef": 0.5},
    "ld_alpha": {"ld_alpha": 0.5},
    "use_weighting": {"use_weighting": True},
}
TRAINING = dict(max_steps=3, logging_steps=1, beta=0.5, seed=0, learning_rate=5e-2, per_device_train_batch_size=4)


def plain_pairs(n=12):
    return user_pairs(n).remove_columns("user_id")


def run(trainer_class, config_class, tmp_path, name, data, peft=False, model=None, **options):
    """Train 3 steps; returns the trainer, its per-step logs and its final trainable parameters."""
    tokenizer = make_tokenizer()
    model = model or make_causal_lm("qwen2", tokenizer)
    extra = {}
    if peft:
        model.save_pretrained(tmp_path / f"base-{name}")
        model = type(model).from_pretrained(tmp_path / f"base-{name}")
        extra["peft_config"] = LoraConfig(
            r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM"
        )
    else:
        extra["ref_model"] = copy.deepcopy(model)
    args = cpu_config(config_class, tmp_path / name, **{**TRAINING, **options})
    trainer = trainer_class(model, args=args, train_dataset=data, processing_class=tokenizer, **extra)
    trainer.train()
    logs = [h for h in trainer.state.log_history if "loss" in h]
    params = {n: p.detach().clone() for n, p in trainer.model.named_parameters() if p.requires_grad}
    return trainer, logs, params


def assert_same_run(ours, theirs):
    (_, our_logs, our_params), (_, their_logs, their_params) = ours, theirs
    assert len(our_logs) == len(their_logs) == 3
    for mine, stock in zip(our_logs, their_logs, strict=True):
        assert set(mine) == set(stock)  # the same metrics, nothing added or lost
        for key, value in stock.items():
            assert mine[key] == pytest.approx(value, rel=1e-6, abs=1e-6), key
    assert our_params.keys() == their_params.keys()
    for name, value in their_params.items():
        torch.testing.assert_close(our_params[name], value, rtol=1e-6, atol=1e-6)


# ---------------------------------------------------------------------------------------------------- drop-in
@pytest.mark.parametrize("case", list(LOSS_CASES))
def test_no_user_column_equals_dpo_trainer_step_by_step(tmp_path, case):
    """Default PersonalizedDPOConfig, no user column: TRL's DPOTrainer, loss, grad_norm and weights to 1e-6."""
    options = LOSS_CASES[case]
    theirs = run(DPOTrainer, DPOConfig, tmp_path, "stock", plain_pairs(), **options)
    ours = run(PersonalizedDPOTrainer, PersonalizedDPOConfig, tmp_path, "ours", plain_pairs(), **options)
    assert ours[0].soft_tokens is None and not ours[0].personalized
    assert_same_run(ours, theirs)


@pytest.mark.parametrize("case", list(LOSS_CASES))
def test_packed_no_user_column_equals_dpo_trainer(tmp_path, case):
    """padding_free=True (which TRL 1.16 turns off) runs TRL's loss through the packing hooks: the same run as the
    padded DPOTrainer, to float tolerance (packed attention sums in another order)."""
    options = LOSS_CASES[case]
    _, their_logs, their_params = run(DPOTrainer, DPOConfig, tmp_path, "stock", plain_pairs(), **options)
    ours = run(
        PersonalizedDPOTrainer, PersonalizedDPOConfig, tmp_path, "ours", plain_pairs(), padding_free=True, **options
    )
    _, our_logs, our_params = ours
    assert ours[0].padding_free and [set(log) for log in our_logs] == [set(log) for log in their_logs]
    for mine, stock in zip(our_logs, their_logs, strict=True):
        for key in ("loss", "grad_norm", "rewards/margins", "logps/chosen", "entropy", "mean_token_accuracy"):
            assert mine[key] == pytest.approx(stock[key], rel=1e-4, abs=1e-5), key
    for name, value in their_params.items():  # Adam steps of ~lr=5e-2: noise-sized gradients move ~1e-4
        torch.testing.assert_close(our_params[name], value, rtol=1e-3, atol=2e-4)


@pytest.mark.parametrize(
    "options",
    [
        {"peft": True},
        {"precompute_ref_log_probs": True},
        {"gradient_checkpointing": True},
        {"peft": True, "gradient_checkpointing": True, "loss_type": ["ipo"]},
        {"sync_ref_model": True, "ref_model_sync_steps": 1, "ref_model_mixup_alpha": 0.5},
        {"max_length": 6, "truncation_mode": "keep_end", "pad_to_multiple_of": 8},
    ],
    ids=["lora", "precompute", "gradient-checkpointing", "lora+gc+ipo", "sync-ref", "truncation"],
)
def test_no_user_column_equals_dpo_trainer_with_options(tmp_path, options):
    theirs = run(DPOTrainer, DPOConfig, tmp_path, "stock", plain_pairs(), **options)
    ours = run(PersonalizedDPOTrainer, PersonalizedDPOConfig, tmp_path, "ours", plain_pairs(), **options)
    assert_same_run(ours, theirs)


def test_drop_in_logs_once_saves_the_same_files_and_evaluates_eval_dicts(tmp_path, caplog):
    eval_sets = {"a": plain_pairs(4), "b": user_pairs(4, seed=3).remove_columns("user_id")}
    results = {}
    for name, (trainer_class, config_class) in {
        "stock": (DPOTrainer, DPOConfig),
        "ours": (PersonalizedDPOTrainer, PersonalizedDPOConfig),
    }.items():
        tokenizer = make_tokenizer()
        model = make_causal_lm("qwen2", tokenizer)
        args = cpu_config(config_class, tmp_path / name, **TRAINING, eval_strategy="steps", eval_steps=3)
        with caplog.at_level(logging.WARNING):
            trainer = trainer_class(
                model,
                ref_model=copy.deepcopy(model),
                args=args,
                train_dataset=plain_pairs(),
                eval_dataset=eval_sets,
                processing_class=tokenizer,
            )
        trainer.train()
        trainer.save_model(str(tmp_path / name / "saved"))
        results[name] = (
            trainer.evaluate(),
            sorted(f for f in os.listdir(tmp_path / name / "saved") if f != "README.md"),
        )
    (ours, our_files), (stock, stock_files) = results["ours"], results["stock"]
    assert our_files == sorted(stock_files + ["trl_custom.json"])  # + the record: a policy, not personalized
    with open(tmp_path / "ours" / "saved" / "trl_custom.json") as f:
        record = json.load(f)
    assert record["kind"] == "policy" and record["conditioning"]["mode"] == "none"
    assert set(ours) == set(stock) and "eval_a_loss" in ours and "eval_b_loss" in ours
    for key in ("eval_a_loss", "eval_b_loss"):
        assert ours[key] == pytest.approx(stock[key], rel=1e-6, abs=1e-6)
    notes = [r.getMessage() for r in caplog.records if "Personalization is off" in r.getMessage()]
    assert len(notes) == 1 and "no 'user_id' column" in notes[0]


def test_plain_dpo_config_means_no_personalization(tmp_path):
    """A DPOConfig (not ours) is accepted; even with a user column it is TRL's DPO."""
    trainer = run(PersonalizedDPOTrainer, DPOConfig, tmp_path, "plain", user_pairs(12))[0]
    assert not trainer.personalized and trainer.soft_tokens is None
    assert trainer.args.condition_mode == "none"


def test_moe_aux_loss_reaches_the_personalized_policy(tmp_path):
    from transformers import MixtralConfig, MixtralForCausalLM

    def moe(seed=0):
        torch.manual_seed(seed)
        tokenizer = make_tokenizer()
        config = MixtralConfig(
            vocab_size=len(tokenizer),
            hidden_size=16,
            intermediate_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            num_key_value_heads=1,
            num_local_experts=4,
            num_experts_per_tok=2,
            output_router_logits=True,
            router_aux_loss_coef=0.02,
            max_position_embeddings=256,
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=tokenizer.eos_token_id,
        )
        return MixtralForCausalLM(config)

    theirs = run(DPOTrainer, DPOConfig, tmp_path, "stock", plain_pairs(), model=moe())
    ours = run(PersonalizedDPOTrainer, PersonalizedDPOConfig, tmp_path, "ours", plain_pairs(), model=moe())
    assert "aux_loss" in theirs[1][0]
    assert_same_run(ours, theirs)
    personal = run(PersonalizedDPOTrainer, PersonalizedDPOConfig, tmp_path, "users", user_pairs(12), model=moe())
    assert personal[0].personalized and all(log["aux_loss"] > 0 for log in personal[1])


# ---------------------------------------------------------------------------------------------------- personalized
def user_accuracy(trainer, data):
    """Per-user share of eval pairs whose personalized implicit reward prefers the chosen response."""
    metrics = trainer.evaluate(data)
    return metrics["eval_rewards/accuracies/u1"], metrics["eval_rewards/accuracies/u2"]


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"loss_type": ["ipo"], "beta": 0.1},
        {"loss_type": ["hinge"]},
        {"loss_type": ["robust"], "label_smoothing": 0.1},
        {"loss_type": ["sigmoid", "sft"], "loss_weights": [1.0, 0.1]},
    ],
    ids=["sigmoid", "ipo", "hinge", "robust", "sigmoid+sft"],
)
def test_every_loss_type_personalizes_conflicting_users(tmp_path, options):
    """u1 prefers short answers and u2 long ones on the same prompts: only the user tokens can tell them apart."""
    tokenizer = make_tokenizer()
    model = make_causal_lm("qwen2", tokenizer)
    settings = dict(max_steps=40, logging_steps=10, beta=0.5, seed=0, alpha=1.0, condition_learning_rate=5e-2)
    args = cpu_config(PersonalizedDPOConfig, tmp_path, **{**settings, **options})
    trainer = PersonalizedDPOTrainer(
        model, ref_model=copy.deepcopy(model), args=args, train_dataset=user_pairs(64), processing_class=tokenizer
    )
    held_out = user_pairs(16, seed=1)
    before = user_accuracy(trainer, held_out)
    trainer.train()
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    after = user_accuracy(trainer, held_out)
    assert losses[-1] < losses[0]
    assert min(after) >= 0.9 and sum(after) > sum(before)  # both conflicting users, not one at the other's cost


def test_personalized_loss_is_trl_loss_of_the_soft_token_policy(tmp_path):
    """With users, each loss type is TRL's formula on the log-probs of the policy with the user tokens in front."""
    import torch.nn.functional as F

    tokenizer = make_tokenizer()
    model = make_causal_lm("qwen2", tokenizer)
    args = cpu_config(
        PersonalizedDPOConfig, tmp_path, beta=0.5, alpha=1.0, loss_type=["robust"], label_smoothing=0.2, seed=0
    )
    trainer = PersonalizedDPOTrainer(
        model, ref_model=copy.deepcopy(model), args=args, train_dataset=user_pairs(16), processing_class=tokenizer
    )
    batch = trainer._prepare_inputs(trainer.data_collator([trainer.train_dataset[i] for i in range(8)]))
    trainer.model.train()
    with torch.no_grad():
        trainer.soft_tokens.basis.weight.normal_()
        loss = trainer.compute_loss(trainer.model, dict(batch)).item()
        soft = trainer.soft_tokens(batch["user_ids"])
        (c, r) = sequence_log_probs(trainer.model, batch, torch.cat([soft, soft])).chunk(2)
        (rc, rr) = sequence_log_probs(trainer.ref_model, batch, None).chunk(2)
        delta = 0.5 * ((c - rc) - (r - rr))
        expected = ((-(0.8) * F.logsigmoid(delta) + 0.2 * F.logsigmoid(-delta)) / 0.6).mean().item()
    assert loss == pytest.approx(expected, rel=1e-4, abs=1e-5)


@pytest.mark.parametrize(
    "options",
    [{"loss_type": ["ipo"]}, {"ld_alpha": 0.5}, {"use_weighting": True}, {"loss_type": ["sigmoid", "sft"]}],
    ids=["ipo", "ld_alpha", "use_weighting", "sigmoid+sft"],
)
def test_packed_personalized_equals_padded_for_trl_options(tmp_path, options):
    losses = {}
    for padding_free in (False, True):
        tokenizer = make_tokenizer()
        model = make_causal_lm("qwen2", tokenizer)
        args = cpu_config(
            PersonalizedDPOConfig,
            tmp_path / str(padding_free),
            **{**TRAINING, **options, "padding_free": padding_free, "generic_loss_mode": "exact"},
        )
        trainer = PersonalizedDPOTrainer(
            model, ref_model=copy.deepcopy(model), args=args, train_dataset=user_pairs(12), processing_class=tokenizer
        )
        trainer.train()
        losses[padding_free] = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    assert losses[True] == pytest.approx(losses[False], rel=1e-4, abs=1e-5)


def test_exact_mix_logs_the_generic_pass_apart(tmp_path):
    tokenizer = make_tokenizer()
    model = make_causal_lm("qwen2", tokenizer)
    args = cpu_config(
        PersonalizedDPOConfig, tmp_path, **{**TRAINING, "logging_steps": 3}, generic_loss_mode="exact", alpha=0.5
    )
    trainer = PersonalizedDPOTrainer(
        model, ref_model=copy.deepcopy(model), args=args, train_dataset=user_pairs(12), processing_class=tokenizer
    )
    trainer.train()
    log = next(h for h in trainer.state.log_history if "loss" in h)
    assert "generic/rewards/accuracies" in log and "rewards/accuracies" in log and "rewards/accuracies/u1" in log
    # tokens are counted once per batch, as DPOTrainer counts them (4 pairs x 2 sequences of real tokens)
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(4)])
    assert log["num_tokens"] > 0 and "generic/num_tokens" not in log
    assert log["num_tokens"] <= 3 * int(batch["attention_mask"].shape[1]) * 8
    assert all(len(values) > 0 for values in trainer._metrics["train"].values())  # nothing empty left to average
    metrics = trainer.evaluate(user_pairs(8, seed=2))  # several eval batches: every metric averages
    assert "eval_loss" in metrics
    evaluation = [h for h in trainer.state.log_history if "eval_loss" in h][-1]
    assert (
        "eval_generic/rewards/accuracies" in evaluation and "eval_generic/generic/rewards/accuracies" not in evaluation
    )


def test_options_that_cannot_personalize_are_refused(tmp_path):
    with pytest.raises(ValueError, match="sync_ref_model=True \\(TR-DPO\\) is not supported with personalization"):
        run(PersonalizedDPOTrainer, PersonalizedDPOConfig, tmp_path, "s", user_pairs(4), sync_ref_model=True)


def test_personalization_off_refuses_user_options(tmp_path):
    data = Dataset.from_list([{"prompt": "question ", "chosen": "answer short", "rejected": "answer long w1"}] * 4)
    with pytest.raises(ValueError, match=r"so condition_learning_rate=0\.1 would be ignored"):
        run(PersonalizedDPOTrainer, PersonalizedDPOConfig, tmp_path, "x", data, condition_learning_rate=0.1)
    with pytest.raises(ValueError, match=r"Personalization is off \(condition_mode='none'\), so conditions=\['a'\]"):
        run(
            PersonalizedDPOTrainer,
            PersonalizedDPOConfig,
            tmp_path,
            "y",
            user_pairs(4),
            condition_mode="none",
            conditions=["a"],
        )


def test_compute_metrics_and_conversational_iterable_data_with_users(tmp_path):
    """TRL's prediction_step feeds compute_metrics the policy's logits without the user positions; conversational
    rows with `tools` as JSON strings stream through TRL's own `_prepare_dataset`."""
    import json

    from datasets import IterableDataset

    seen = {}

    def compute_metrics(prediction):
        seen["shapes"] = (prediction.predictions.shape, prediction.label_ids.shape)
        return {"called": 1.0}

    rows = [
        {
            "prompt": [{"role": "user", "content": row["prompt"]}],
            "chosen": [{"role": "assistant", "content": row["chosen"]}],
            "rejected": [{"role": "assistant", "content": row["rejected"]}],
            "tools": json.dumps([]),
            "user_id": row["user_id"],
        }
        for row in user_pairs(12)
    ]
    tokenizer = make_tokenizer()
    model = make_causal_lm("qwen2", tokenizer)
    args = cpu_config(
        PersonalizedDPOConfig, tmp_path, **TRAINING, conditions=["u1", "u2"], per_device_eval_batch_size=4
    )
    trainer = PersonalizedDPOTrainer(
        model,
        ref_model=copy.deepcopy(model),
        args=args,
        train_dataset=IterableDataset.from_generator(lambda: iter(rows)),
        eval_dataset=Dataset.from_list(rows[:4]),
        processing_class=tokenizer,
        compute_metrics=compute_metrics,
    )
    trainer.train()
    assert trainer.personalized and trainer.state.global_step == 3
    metrics = trainer.evaluate()
    assert metrics["eval_called"] == 1.0
    logits_shape, labels_shape = seen["shapes"]
    assert logits_shape[:2] == labels_shape[:2] and logits_shape[2] == len(tokenizer)
