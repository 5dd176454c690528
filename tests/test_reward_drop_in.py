"""
Drop-in for TRL's `RewardTrainer` (issue 17): with the default `CustomRewardConfig`, `CustomRewardTrainer` equals
`RewardTrainer` + `RewardConfig` step by step (logged losses and metrics, final weights, gradients) on every dataset
form and option TRL accepts; the automatic condition mode switches conditioning on only for a dataset with the
condition column; a PEFT config without `task_type` gets the reward head trained and saved.
"""

import copy
import json
import logging
from itertools import islice

import numpy as np
import pytest
import torch
from peft import LoraConfig
from toy import CHAT_TEMPLATE, conditioned_pairs, cpu_config, make_reward_model, make_tokenizer, save_reward_model
from trl import RewardConfig, RewardTrainer
from trl.trainer.reward_trainer import DataCollatorForPreference

from trl_custom import CustomRewardConfig, CustomRewardTrainer, RewardScorer


ATOL = 1e-6
TIMING_KEYS = {
    f"{split}_{key}"
    for split in ("train", "eval", "eval_a", "eval_b")
    for key in ("runtime", "samples_per_second", "steps_per_second")
}
OFF_MESSAGE = "Conditioning is off: the train dataset has no 'domain' column"
# The toy chat template, rendering the tools' names (words of the toy vocabulary) and a per-row kwarg.
TOOLS_TEMPLATE = (
    "{% for tool in tools or [] %}{{ 'system: ' + tool['function']['name'] + ' <eos> ' }}{% endfor %}"
    "{% if formal %}{{ 'formal ' }}{% endif %}" + CHAT_TEMPLATE
)
TOOLS = [{"type": "function", "function": {"name": "gamma", "description": "", "parameters": {"type": "object"}}}]


def pairs(form: str, n: int = 16):
    """The toy pairs in one of TRL's dataset forms, without a condition column."""
    conversational = form.startswith("conversational")
    data = conditioned_pairs(n, conversational=conversational, implicit=form.endswith("implicit")).remove_columns(
        "domain"
    )
    if form in ("tokenized", "legacy tokenized"):
        tokenizer = make_tokenizer()
        names = ("chosen_ids", "rejected_ids") if form == "tokenized" else ("chosen_input_ids", "rejected_input_ids")
        return data.map(
            lambda row: {
                names[0]: tokenizer(row["prompt"] + row["chosen"] + "<eos>").input_ids,
                names[1]: tokenizer(row["prompt"] + row["rejected"] + "<eos>").input_ids,
            },
            remove_columns=data.column_names,
        )
    if form == "margin":
        return data.add_column("margin", [0.25 * (i % 4) for i in range(n)])
    if form == "iterable":
        return data.to_iterable_dataset()
    return data


def train_both(
    tmp_path, data, ours_kwargs=None, stock_peft=None, ours_peft=None, tokenizer=None, model=None, **kwargs
):
    """TRL's trainer and ours from the same model (a toy Qwen2, or a path), data and options, for 3 logged steps."""
    tokenizer = tokenizer or make_tokenizer()
    model = model or make_reward_model("qwen2", tokenizer)
    options = {"max_steps": 3, "logging_steps": 1, "seed": 3, **kwargs.pop("args", {})}
    trainers = []
    for name, trainer_class, config_class, extra, peft_config in (
        ("stock", RewardTrainer, RewardConfig, {}, stock_peft),
        ("ours", CustomRewardTrainer, CustomRewardConfig, ours_kwargs or {}, ours_peft),
    ):
        args = cpu_config(config_class, tmp_path / name, **options, **extra)
        trainer = trainer_class(
            copy.deepcopy(model),
            args=args,
            train_dataset=copy.deepcopy(data),
            processing_class=copy.deepcopy(tokenizer),
            peft_config=peft_config,
            **kwargs,
        )
        trainers.append(trainer)
    for trainer in trainers:
        trainer.train()
    return trainers


def first_rows(dataset, n=8):
    return list(islice(iter(dataset), n))


def assert_same_run(stock, ours):
    """Same logged values at every step (timings aside), same final weights, same gradients on a batch."""
    assert ours.conditioning.mode == "none"
    assert len(ours.state.log_history) == len(stock.state.log_history) >= 4
    for ours_log, stock_log in zip(ours.state.log_history, stock.state.log_history, strict=True):
        assert ours_log.keys() == stock_log.keys()
        for key, value in stock_log.items():
            if key not in TIMING_KEYS:
                assert ours_log[key] == pytest.approx(value, abs=ATOL, rel=0), key
    stock_params = dict(stock.model.named_parameters())
    for name, param in ours.model.named_parameters():
        torch.testing.assert_close(param, stock_params[name], atol=ATOL, rtol=0, msg=name)
    rows = first_rows(stock.train_dataset)
    assert [row["chosen_ids"] for row in first_rows(ours.train_dataset)] == [row["chosen_ids"] for row in rows]
    grads = []
    for trainer in (stock, ours):
        batch = trainer._prepare_inputs(trainer.data_collator(rows))
        trainer.model.train()
        trainer.model.zero_grad()
        trainer.compute_loss(trainer.model, batch).backward()
        grads.append({n: p.grad for n, p in trainer.model.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys() and grads[0]
    for name, grad in grads[0].items():
        torch.testing.assert_close(grads[1][name], grad, atol=ATOL, rtol=0, msg=name)


# ---------------------------------------------------------------------------------------------------- dataset forms
@pytest.mark.parametrize(
    "form",
    ["standard", "standard implicit", "conversational", "conversational implicit", "tokenized", "margin", "iterable"],
)
def test_default_config_equals_trl_on_each_dataset_form(tmp_path, form, caplog):
    with caplog.at_level(logging.WARNING):
        stock, ours = train_both(tmp_path, pairs(form))
    assert_same_run(stock, ours)
    assert caplog.text.count(OFF_MESSAGE) == 1  # said once, naming the column


def test_legacy_tokenized_columns_get_trls_deprecation_warning_and_rename(tmp_path):
    with pytest.warns(FutureWarning, match="chosen_input_ids.*will not be supported in v1"):
        stock, ours = train_both(tmp_path, pairs("legacy tokenized"))
    assert {"chosen_ids", "rejected_ids"} <= set(ours.train_dataset.column_names)
    assert "chosen_input_ids" not in ours.train_dataset.column_names
    assert_same_run(stock, ours)


@pytest.mark.parametrize("tools_as", ["json", "list"])
def test_conversational_tools_and_chat_template_kwargs(tmp_path, tools_as):
    data = pairs("conversational")
    tools = json.dumps(TOOLS) if tools_as == "json" else TOOLS
    data = data.add_column("tools", [tools] * len(data))
    data = data.add_column("chat_template_kwargs", [{"formal": i % 2 == 0} for i in range(len(data))])
    tokenizer = make_tokenizer()
    tokenizer.chat_template = TOOLS_TEMPLATE
    stock, ours = train_both(tmp_path, data, tokenizer=tokenizer)
    ids = ours.train_dataset[0]["chosen_ids"]
    assert ids[:4] == tokenizer("system: gamma <eos> formal").input_ids  # the tools and the kwarg were rendered
    assert_same_run(stock, ours)


# ---------------------------------------------------------------------------------------------------- TRL options
def test_trl_loss_and_batching_options(tmp_path):
    options = dict(center_rewards_coefficient=0.01, pad_to_multiple_of=8, per_device_train_batch_size=4)
    stock, ours = train_both(tmp_path, pairs("margin"), args=options)
    assert_same_run(stock, ours)


def test_long_pairs_dropped_as_trl_with_drop_policy_and_counted(tmp_path, caplog):
    long = lambda row, i: {"chosen": row["chosen"] + " w1" * 30} if i < 3 else {}  # noqa: E731
    data = pairs("standard").map(long, with_indices=True)
    with caplog.at_level(logging.WARNING):
        stock, ours = train_both(tmp_path, data, ours_kwargs={"truncation_mode": "drop"}, args={"max_length": 24})
    assert len(stock.train_dataset) == len(ours.train_dataset) == 13
    assert "Dropped 3 of 16 pairs of the train dataset" in caplog.text  # TRL drops them silently
    assert_same_run(stock, ours)


@pytest.mark.parametrize("use_reentrant", [None, True])
def test_gradient_checkpointing(tmp_path, use_reentrant):
    kwargs = {} if use_reentrant is None else {"gradient_checkpointing_kwargs": {"use_reentrant": use_reentrant}}
    stock, ours = train_both(tmp_path, pairs("standard"), args={"gradient_checkpointing": True, **kwargs})
    assert ours.model.is_gradient_checkpointing
    assert_same_run(stock, ours)


def test_eval_dataset_dict_evaluate_and_compute_metrics(tmp_path):
    def compute_metrics(prediction):
        return {"mean_prediction": float(np.mean(prediction.predictions)), "n": prediction.predictions.shape[0]}

    raw = pairs("standard", 8)
    stock, ours = train_both(
        tmp_path,
        pairs("standard"),
        eval_dataset={"a": raw, "b": pairs("conversational", 6)},
        compute_metrics=compute_metrics,
        args={"eval_strategy": "steps", "eval_steps": 2},
    )
    assert_same_run(stock, ours)
    logged = {key for log in ours.state.log_history for key in log}
    assert {"eval_a_loss", "eval_b_loss", "eval_a_mean_prediction", "eval_b_n", "eval_accuracy"} <= logged
    for dataset in (raw, {"a": raw}):  # a raw dataset handed to `evaluate`, as TRL allows
        expected, got = stock.evaluate(eval_dataset=dataset), ours.evaluate(eval_dataset=dataset)
        assert got.keys() == expected.keys()
        for key, value in expected.items():
            if key not in TIMING_KEYS:
                assert got[key] == pytest.approx(value, abs=ATOL, rel=0), key


# ---------------------------------------------------------------------------------------------------- PEFT
def test_lora_with_seq_cls_task_type(tmp_path):
    lora = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], task_type="SEQ_CLS")
    stock, ours = train_both(tmp_path, pairs("standard"), stock_peft=copy.deepcopy(lora), ours_peft=lora)
    assert_same_run(stock, ours)


def test_lora_without_task_type_trains_saves_and_reloads_the_head(tmp_path, caplog):
    """TRL would leave `score` frozen and out of the adapter: ours adds it (as `modules_to_save=['score']` in TRL)."""
    lora = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"])
    explicit = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], modules_to_save=["score"])
    path = save_reward_model(tmp_path)  # from a path: the head is found on the model TRL will build from it
    with caplog.at_level(logging.WARNING):
        stock, ours = train_both(tmp_path, pairs("standard"), stock_peft=explicit, ours_peft=lora, model=path)
    assert "does not train the reward head 'score'" in caplog.text and "modules_to_save=['score']" in caplog.text
    assert lora.modules_to_save is None  # the caller's config is left alone
    assert ours.model.peft_config["default"].modules_to_save == ["score"]
    assert_same_run(stock, ours)
    head = dict(ours.model.named_parameters())["base_model.model.score.modules_to_save.default.weight"]
    assert head.requires_grad and not torch.equal(head, make_reward_model("qwen2", make_tokenizer()).score.weight)
    ours.save_model(str(tmp_path / "saved"))
    reloaded = RewardScorer.from_pretrained(str(tmp_path / "saved"), tokenizer=make_tokenizer())
    trained = RewardScorer(ours.model.eval(), ours.processing_class)
    data = pairs("standard", 4)
    prompts, responses = list(data["prompt"]) * 2, list(data["chosen"]) + list(data["rejected"])
    assert reloaded.score(prompts, responses) == pytest.approx(trained.score(prompts, responses), abs=1e-6)


@pytest.mark.parametrize("task_type", [None, "FEATURE_EXTRACTION"])
def test_lora_head_of_an_encoder_is_its_classifier(tmp_path, task_type, caplog):
    tokenizer = make_tokenizer("bert")
    lora = LoraConfig(r=4, target_modules=["query", "value"], task_type=task_type)
    with caplog.at_level(logging.WARNING):
        trainer = CustomRewardTrainer(
            make_reward_model("bert", tokenizer),
            args=cpu_config(CustomRewardConfig, tmp_path),
            train_dataset=pairs("standard"),
            processing_class=tokenizer,
            peft_config=lora,
        )
    assert "does not train the reward head 'classifier'" in caplog.text
    assert trainer.model.peft_config["default"].modules_to_save == ["classifier"]
    trainable = [name for name, p in trainer.model.named_parameters() if p.requires_grad]
    assert any("classifier.modules_to_save" in name for name in trainable)


# ---------------------------------------------------------------------------------------------------- not silent
def test_what_embedding_mode_needs_from_a_callers_collator_and_optimizer(tmp_path):
    tokenizer = make_tokenizer()
    args = cpu_config(CustomRewardConfig, tmp_path, condition_mode="embedding", max_steps=1, max_length=64)
    model = make_reward_model("qwen2", tokenizer)
    optimizers = (torch.optim.SGD(model.parameters(), lr=0.1), None)
    with pytest.raises(ValueError, match="optimizer given in `optimizers` does not hold the soft tokens"):
        CustomRewardTrainer(
            model, args=args, train_dataset=conditioned_pairs(8), processing_class=tokenizer, optimizers=optimizers
        )
    trainer = CustomRewardTrainer(
        make_reward_model("qwen2", tokenizer),
        args=args,
        train_dataset=conditioned_pairs(8),
        processing_class=tokenizer,
        data_collator=DataCollatorForPreference(pad_token_id=tokenizer.pad_token_id),  # TRL's: no condition ids
    )
    with pytest.raises(ValueError, match="The batch has no 'condition_ids'.*Leave `data_collator` unset"):
        trainer.train()


# ---------------------------------------------------------------------------------------------------- condition mode
def test_auto_mode_with_the_column_conditions_as_text(tmp_path, caplog):
    tokenizer = make_tokenizer()
    args = cpu_config(CustomRewardConfig, tmp_path, max_steps=2, logging_steps=1)
    assert args.condition_mode == "auto"
    with caplog.at_level(logging.WARNING):
        trainer = CustomRewardTrainer(
            make_reward_model("qwen2", tokenizer),
            args=args,
            train_dataset=conditioned_pairs(16),
            eval_dataset=conditioned_pairs(6, seed=1),
            processing_class=tokenizer,
        )
    assert "Conditioning is off" not in caplog.text
    assert trainer.conditioning.mode == "text" and trainer.conditioning.conditions == ["casual", "formal"]
    row = conditioned_pairs(16)[0]
    text = f"Preference domain: {row['domain']}.\n\n{row['prompt']}{row['chosen']}<eos>"
    assert trainer.train_dataset[0]["chosen_ids"] == tokenizer(text).input_ids
    trainer.train()
    assert {"accuracy/formal", "accuracy/casual", "ranking_loss"} <= set(trainer.state.log_history[0])
    metrics = trainer.evaluate(trainer.eval_dataset)  # an already prepared dataset is left as it is
    assert {"eval_accuracy/formal", "eval_accuracy/casual"} <= set(metrics)


def trained_embedding_model(tmp_path):
    """A tiny reward model trained one step in embedding mode (its trainer), to be saved and continued."""
    tokenizer = make_tokenizer()
    trainer = CustomRewardTrainer(
        make_reward_model("qwen2", tokenizer),
        args=cpu_config(CustomRewardConfig, tmp_path, condition_mode="embedding", max_steps=1, max_length=64),
        train_dataset=conditioned_pairs(8),
        processing_class=tokenizer,
    )
    trainer.train()
    return trainer


def test_auto_mode_continues_a_saved_embedding_model_in_embedding_mode(tmp_path):
    first = trained_embedding_model(tmp_path)
    first.save_model(str(tmp_path / "stage"))
    second = CustomRewardTrainer(
        str(tmp_path / "stage"),
        args=cpu_config(CustomRewardConfig, tmp_path, max_length=64),
        train_dataset=conditioned_pairs(8),
        processing_class=make_tokenizer(),
    )
    assert second.conditioning.mode == "embedding"
    assert torch.equal(second.soft_tokens.table.detach(), first.soft_tokens.table.detach())


def test_a_saved_conditioned_folder_loads_with_trls_model_init_kwargs(tmp_path, caplog):
    """A folder with a condition table is loaded by our trainer, with what TRL applies to a string model."""
    first = trained_embedding_model(tmp_path)
    first.model.to(torch.bfloat16)
    first.save_model(str(tmp_path / "stage"))
    stock = RewardTrainer(
        str(tmp_path / "stage"),
        args=cpu_config(RewardConfig, tmp_path, max_length=64),
        train_dataset=conditioned_pairs(8).remove_columns("domain"),
        processing_class=make_tokenizer(),
    )
    assert stock.model.dtype == torch.float32  # TRL's default for a string model, whatever the saved dtype

    def load(**config):
        return CustomRewardTrainer(
            str(tmp_path / "stage"),
            args=cpu_config(CustomRewardConfig, tmp_path, max_length=64, **config),
            train_dataset=conditioned_pairs(8),
            processing_class=make_tokenizer(),
        )

    assert load().model.dtype == torch.float32
    with caplog.at_level(logging.WARNING):
        second = load(model_init_kwargs={"dtype": "bfloat16"})
    assert second.model.dtype == torch.bfloat16
    assert "will be ignored" not in caplog.text  # TRL's warning for an instantiated model: they were used
    assert torch.equal(second.soft_tokens.table.detach().float(), first.soft_tokens.table.detach().float())
    from transformers import BitsAndBytesConfig

    with pytest.raises(ValueError, match="`quantization_config` both as a trainer argument and in `args.model_init"):
        CustomRewardTrainer(
            str(tmp_path / "stage"),
            args=cpu_config(
                CustomRewardConfig, tmp_path, max_length=64, model_init_kwargs={"quantization_config": {}}
            ),
            train_dataset=conditioned_pairs(8),
            processing_class=make_tokenizer(),
            quantization_config=BitsAndBytesConfig(load_in_4bit=True),
        )


def test_lora_on_a_saved_embedding_folder_trains_its_condition_table(tmp_path):
    """The reloaded table is attached before PEFT wraps the model (which freezes the base): it must still train."""
    first = trained_embedding_model(tmp_path)
    first.save_model(str(tmp_path / "stage"))
    second = CustomRewardTrainer(
        str(tmp_path / "stage"),
        args=cpu_config(CustomRewardConfig, tmp_path, max_steps=2, max_length=64),
        train_dataset=conditioned_pairs(8),
        processing_class=make_tokenizer(),
        peft_config=LoraConfig(task_type="SEQ_CLS", r=4, target_modules=["q_proj", "v_proj"]),
    )
    saved = second.soft_tokens.table.detach().clone()
    assert torch.equal(saved, first.soft_tokens.table.detach())
    second.train()
    assert not torch.equal(second.soft_tokens.table.detach(), saved)


def test_a_saved_lora_customized_folder_keeps_training_its_adapter(tmp_path):
    """Continuing from an adapter folder (its record beside it) trains the adapter, head and table."""
    lora = LoraConfig(task_type="SEQ_CLS", r=4, target_modules=["q_proj", "v_proj"])
    first = CustomRewardTrainer(
        save_reward_model(tmp_path),
        args=cpu_config(CustomRewardConfig, tmp_path, condition_mode="embedding", max_steps=1, max_length=64),
        train_dataset=conditioned_pairs(8),
        processing_class=make_tokenizer(),
        peft_config=lora,
    )
    first.save_model(str(tmp_path / "adapter"))
    second = CustomRewardTrainer(
        str(tmp_path / "adapter"),
        args=cpu_config(CustomRewardConfig, tmp_path, max_steps=2, max_length=64),
        train_dataset=conditioned_pairs(8),
        processing_class=make_tokenizer(),
    )
    before = {n: p.detach().clone() for n, p in second.model.named_parameters()}
    second.train()
    changed = {n for n, p in second.model.named_parameters() if not torch.equal(p.detach(), before[n])}
    assert any("lora_B" in n for n in changed) and any("score" in n for n in changed), sorted(changed)
    assert any("soft_tokens" in n for n in changed)


@pytest.mark.parametrize("mode", ["text", "embedding"])
def test_explicit_mode_without_the_column_is_refused(tmp_path, mode):
    tokenizer = make_tokenizer()
    with pytest.raises(ValueError, match=f"no 'domain' column.*condition_mode='{mode}' conditions on it"):
        CustomRewardTrainer(
            make_reward_model("qwen2", tokenizer),
            args=cpu_config(CustomRewardConfig, tmp_path, condition_mode=mode),
            train_dataset=pairs("standard"),
            processing_class=tokenizer,
        )


def test_auto_mode_config_checks(tmp_path):
    assert cpu_config(CustomRewardConfig, tmp_path, condition_mode=None).condition_mode == "auto"
    with pytest.raises(ValueError, match="condition_dropout only applies to condition_mode='embedding' \\(got 'auto'"):
        cpu_config(CustomRewardConfig, tmp_path, condition_dropout=0.1)
    with pytest.raises(ValueError, match="has no '\\{condition\\}' field"):
        cpu_config(CustomRewardConfig, tmp_path, condition_template="Domain:")
