"""
Checkpoints restore everything (issue 18): a run stopped after its checkpoint at step K and resumed to step N logs the
same per-step metrics and ends with the same weights, condition table / user model included, as N uninterrupted
steps; any `checkpoint-N/` loads for use like a final folder; checkpoints that do not fit the trainer are refused.
"""

import contextlib
import copy
import importlib.util
import json
import logging
import os

import pytest
import torch
from peft import LoraConfig
from safetensors.torch import save_file
from toy import (
    conditioned_pairs,
    cpu_config,
    make_causal_lm,
    make_tokenizer,
    save_reward_model,
    user_pairs,
)
from transformers import TrainerCallback

from trl_custom import (
    CustomRewardConfig,
    CustomRewardTrainer,
    PersonalizedDPOConfig,
    PersonalizedDPOTrainer,
    RewardScorer,
)
from trl_custom.conditioned_rm.scoring import load_reward_model
from trl_custom.downstream.reward_functions import ConditionedRewardFunction
from trl_custom.personalized_dpo.inference import load_personalized_model, sequence_log_probs
from trl_custom.scripts.evaluate import main as evaluation_cli
from trl_custom.soft_tokens import get_soft_tokens
from trl_custom.soft_tokens.module import SOFT_TOKENS_FILE


TOLERANCE = 1e-6
STEPS, STOP = 6, 3  # 4 batches per epoch: the resume lands mid-epoch and the run crosses an epoch
COMPARED_LOGS = ("loss", "grad_norm", "learning_rate", "num_tokens")


class StopAt(TrainerCallback):
    """Stops training after step `step` (after its checkpoint is written), as a preempted run would."""

    def __init__(self, step):
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            control.should_training_stop = True


@contextlib.contextmanager
def captured_warnings(name="transformers.trainer"):
    """Messages the `name` logger emits at WARNING and above (transformers' loggers do not propagate to caplog)."""
    records = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = records.append
    logger = logging.getLogger(name)
    logger.addHandler(handler)
    try:
        yield records
    finally:
        logger.removeHandler(handler)


def logged(trainer):
    """Per-step training logs: `{step: {key: value}}` for the compared keys."""
    return {
        entry["step"]: {key: entry[key] for key in COMPARED_LOGS if key in entry}
        for entry in trainer.state.log_history
        if "loss" in entry
    }


def assert_same_run(resumed, uninterrupted):
    expected, got = logged(uninterrupted), logged(resumed)
    assert sorted(got) == list(range(1, STEPS + 1)) == sorted(expected)
    for step, values in expected.items():
        assert got[step].keys() == values.keys()
        for key, value in values.items():
            assert got[step][key] == pytest.approx(value, abs=TOLERANCE), (step, key)
    assert len({round(v["loss"], 6) for v in expected.values()}) > 1  # it trains, so a reset shows
    reference = uninterrupted.accelerator.unwrap_model(uninterrupted.model).state_dict()
    weights = resumed.accelerator.unwrap_model(resumed.model).state_dict()
    assert weights.keys() == reference.keys()
    for name, value in reference.items():
        torch.testing.assert_close(weights[name], value, atol=TOLERANCE, rtol=0, msg=name)


def stop_and_resume(make, tmp_path, resume_from=True):
    """(uninterrupted, stopped, resumed) trainers: N steps; K steps then stop; a new trainer resumed to N."""
    uninterrupted = make(tmp_path / "full")
    uninterrupted.train()
    stopped = make(tmp_path / "stopped", callbacks=[StopAt(STOP)])
    stopped.train()
    assert stopped.state.global_step == STOP and os.path.isdir(tmp_path / "stopped" / f"checkpoint-{STOP}")
    resumed = make(tmp_path / "stopped")
    checkpoint = str(tmp_path / "stopped" / f"checkpoint-{STOP}") if resume_from == "path" else True
    with captured_warnings() as warnings:
        resumed.train(resume_from_checkpoint=checkpoint)
    messages = [record.getMessage() for record in warnings]
    assert not [m for m in messages if "missing keys" in m or "unexpected keys" in m], messages
    return uninterrupted, stopped, resumed


# ---------------------------------------------------------------------------------------------------- reward model
def rm_factory(tmp_path, mode="embedding", lora=False, data=None, eval_data=None, qlora=False, **kwargs):
    path = save_reward_model(tmp_path)
    data = data if data is not None else conditioned_pairs(32)

    def make(output_dir, callbacks=None, **overrides):
        args = cpu_config(
            CustomRewardConfig,
            tmp_path,
            output_dir=str(output_dir),
            max_steps=STEPS,
            logging_steps=1,
            save_strategy="steps",
            save_steps=STOP,
            max_length=64,
            condition_mode=mode,
            condition_template="{condition} ",
            seed=0,
            **{**kwargs, **overrides},
        )
        peft_config = (
            LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], task_type="SEQ_CLS") if lora else None
        )
        return CustomRewardTrainer(
            path,
            args=args,
            train_dataset=data,
            eval_dataset=eval_data,
            processing_class=make_tokenizer(),
            peft_config=peft_config,
            callbacks=callbacks,
            **({"quantization_config": nf4_config()} if qlora else {}),
        )

    return make


def nf4_config():
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch.bfloat16)


RM_CASES = {
    "text": dict(mode="text"),
    "embedding": dict(condition_learning_rate=5e-2, condition_dropout=0.3),  # own LR group; dropout draws the RNG
    "embedding-lora": dict(lora=True, condition_learning_rate=5e-2),
    # bitsandbytes nf4 on the CPU; bf16 outside the 4-bit layers, as in recipes/*_qlora.yaml
    "embedding-qlora": dict(
        lora=True, qlora=True, condition_learning_rate=5e-2, model_init_kwargs={"dtype": "bfloat16"}
    ),
    "margin": dict(),
    "imitation": dict(imitation_coef=0.5),
}


@pytest.mark.parametrize("case", list(RM_CASES))
def test_reward_model_resume_equals_uninterrupted(tmp_path, case):
    if case.endswith("qlora") and importlib.util.find_spec("bitsandbytes") is None:
        pytest.skip('bitsandbytes is not installed (pip install -e ".[quantization]")')
    kwargs = dict(RM_CASES[case])
    if case == "margin":
        data = conditioned_pairs(32)
        kwargs["data"] = data.add_column("margin", [0.5 * (i % 3) for i in range(len(data))])
    uninterrupted, stopped, resumed = stop_and_resume(
        rm_factory(tmp_path, **kwargs), tmp_path, resume_from="path" if case == "text" else True
    )
    assert_same_run(resumed, uninterrupted)
    if resumed.soft_tokens is not None:
        torch.testing.assert_close(resumed.soft_tokens.table, uninterrupted.soft_tokens.table, atol=1e-6, rtol=0)
        assert not torch.allclose(resumed.soft_tokens.table, stopped.soft_tokens.table)


def rm_scores(scorer):
    data = conditioned_pairs(8, seed=3)
    prompts, responses = list(data["prompt"]) * 2, list(data["chosen"]) + list(data["rejected"])
    return scorer.score(prompts, responses, list(data["domain"]) * 2)


@pytest.mark.parametrize("lora", [False, True])
def test_reward_checkpoint_loads_and_scores_as_the_model_at_that_step(tmp_path, lora):
    """`checkpoint-K/` of an embedding-mode run loads with every loader, and scores as the in-memory model at K."""
    make = rm_factory(tmp_path, lora=lora)
    stopped = make(tmp_path / "run", callbacks=[StopAt(STOP)])
    stopped.train()
    expected = rm_scores(RewardScorer(stopped.model.eval(), stopped.processing_class, stopped.conditioning))
    assert len({round(r, 6) for r in expected}) > 1
    checkpoint = str(tmp_path / "run" / f"checkpoint-{STOP}")
    tokenizer = make_tokenizer()
    assert rm_scores(RewardScorer.from_pretrained(checkpoint, tokenizer=tokenizer)) == pytest.approx(
        expected, abs=1e-6
    )
    model, _, spec = load_reward_model(checkpoint, tokenizer=tokenizer)
    assert rm_scores(RewardScorer(model, tokenizer, spec)) == pytest.approx(expected, abs=1e-6)
    function = ConditionedRewardFunction.from_pretrained(checkpoint, tokenizer=tokenizer)
    data = conditioned_pairs(8, seed=3)
    rewards = function(prompts=list(data["prompt"]), completions=list(data["chosen"]), domain=list(data["domain"]))
    assert rewards == pytest.approx(expected[:8], abs=1e-6)

    # The evaluation CLI reads the checkpoint as it reads the folder `save_model` writes from the same weights.
    stopped.save_model(str(tmp_path / "saved-at-stop"))
    responses = {"formal": "answer alpha w1", "casual": "answer beta w2"}
    queries = [{"query": f"question about t{i}", "responses": responses} for i in range(3)]
    dsp_file = tmp_path / "dsp.json"
    dsp_file.write_text(json.dumps(queries))
    results = []
    for folder in (checkpoint, str(tmp_path / "saved-at-stop")):
        out = tmp_path / f"{os.path.basename(folder)}.json"
        evaluation_cli(
            [*f"--model_name_or_path {folder} --dsp_file {dsp_file} --output_json {out}".split(), "--no_progress"]
        )
        results.append({k: v for k, v in json.loads(out.read_text()).items() if k != "meta"})
    assert results[0] == results[1] and results[0]


def test_save_model_after_resume_and_best_model_at_end(tmp_path):
    """`load_best_model_at_end` brings back the best checkpoint's table too; `save_model` after a resume is whole."""
    make = rm_factory(
        tmp_path,
        eval_strategy="steps",
        eval_steps=STOP,
        load_best_model_at_end=True,
        metric_for_best_model="eval_loss",
        greater_is_better=True,  # the worst loss: the first checkpoint, not the last weights
        eval_data=conditioned_pairs(8, seed=5),
    )
    stopped = make(tmp_path / "run", callbacks=[StopAt(STOP)])
    stopped.train()
    resumed = make(tmp_path / "run")
    resumed.train(resume_from_checkpoint=True)
    best = resumed.state.best_model_checkpoint
    assert best is not None and best.endswith(f"checkpoint-{STOP}")
    best_model, _, _ = load_reward_model(best, tokenizer=make_tokenizer())
    torch.testing.assert_close(
        resumed.soft_tokens.table, get_soft_tokens(best_model).table.to(resumed.soft_tokens.table)
    )
    last_model, _, _ = load_reward_model(str(tmp_path / "run" / f"checkpoint-{STEPS}"), tokenizer=make_tokenizer())
    assert not torch.allclose(get_soft_tokens(last_model).table, get_soft_tokens(best_model).table)

    resumed.save_model(str(tmp_path / "final"))
    expected = rm_scores(RewardScorer(resumed.model.eval(), resumed.processing_class, resumed.conditioning))
    reloaded = RewardScorer.from_pretrained(str(tmp_path / "final"), tokenizer=make_tokenizer())
    assert rm_scores(reloaded) == pytest.approx(expected, abs=1e-6)


def test_checkpoints_that_do_not_fit_are_refused(tmp_path):
    make = rm_factory(tmp_path)
    make(tmp_path / "run", callbacks=[StopAt(STOP)]).train()
    checkpoint = tmp_path / "run" / f"checkpoint-{STOP}"

    with pytest.raises(ValueError, match=r"trl_custom.json does not match.*conditions: saved \['casual', 'formal'\]"):
        make(tmp_path / "run", conditions=["casual", "formal", "legal"]).train(resume_from_checkpoint=True)
    with pytest.raises(ValueError, match="soft tokens' num_tokens: saved 4, this run 2"):
        make(tmp_path / "run", num_condition_tokens=2).train(resume_from_checkpoint=str(checkpoint))
    with pytest.raises(ValueError, match="mode: saved 'embedding', this run 'text'"):
        rm_factory(tmp_path, mode="text")(tmp_path / "run").train(resume_from_checkpoint=str(checkpoint))

    table = checkpoint / SOFT_TOKENS_FILE
    original = table.read_bytes()
    save_file({"table": torch.zeros(3, 4, 8)}, str(table))
    with pytest.raises(ValueError, match=f"{SOFT_TOKENS_FILE} holds .*differently configured run"):
        make(tmp_path / "run").train(resume_from_checkpoint=True)
    table.unlink()
    with pytest.raises(FileNotFoundError, match=f"{SOFT_TOKENS_FILE} is missing.*Resume with"):
        make(tmp_path / "run").train(resume_from_checkpoint=True)
    table.write_bytes(original)
    with pytest.raises(ValueError, match="holds no checkpoint-N folder"):
        make(tmp_path / "empty").train(resume_from_checkpoint=True)


# ---------------------------------------------------------------------------------------------------- P-DPO
def pdpo_factory(tmp_path, peft=False, **kwargs):
    tokenizer = make_tokenizer()
    base = make_causal_lm("qwen2", tokenizer)
    base.save_pretrained(tmp_path / "base")
    tokenizer.save_pretrained(tmp_path / "base")
    data = user_pairs(32)

    def make(output_dir, callbacks=None, **overrides):
        args = cpu_config(
            PersonalizedDPOConfig,
            tmp_path,
            output_dir=str(output_dir),
            max_steps=STEPS,
            logging_steps=1,
            save_strategy="steps",
            save_steps=STOP,
            beta=0.5,
            seed=0,
            **{**kwargs, **overrides},
        )
        model = type(base).from_pretrained(tmp_path / "base")
        extra = {}
        if peft:
            extra["peft_config"] = LoraConfig(
                r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM"
            )
        else:
            extra["ref_model"] = copy.deepcopy(model)
        return PersonalizedDPOTrainer(
            model, args=args, train_dataset=data, processing_class=make_tokenizer(), callbacks=callbacks, **extra
        )

    return make


@pytest.mark.parametrize("peft", [False, True])
def test_pdpo_resume_equals_uninterrupted(tmp_path, peft):
    # sampled generic loss: a coin per pair, so the RNG must be restored; the user model in its own LR group
    make = pdpo_factory(tmp_path, peft=peft, alpha=0.5, generic_loss_mode="sampled", condition_learning_rate=5e-2)
    uninterrupted, stopped, resumed = stop_and_resume(make, tmp_path)
    assert_same_run(resumed, uninterrupted)
    for name, value in uninterrupted.soft_tokens.state_dict().items():
        torch.testing.assert_close(resumed.soft_tokens.state_dict()[name], value, atol=1e-6, rtol=0)
    assert not torch.allclose(resumed.soft_tokens.basis.weight, stopped.soft_tokens.basis.weight)


def user_log_probs(model, soft_tokens, tokenizer):
    from trl_custom.personalized_dpo.inference import preference_batches
    from trl_custom.record import ModelRecord

    pairs = [{k: row[k] for k in ("prompt", "chosen", "rejected")} for row in user_pairs(4, seed=9)]
    examples, collator = preference_batches(model, tokenizer, pairs)
    batch = collator(examples)
    rows = batch["input_ids"].shape[0]
    spec = ModelRecord.of(model).conditioning
    out = []
    for user in ("u1", "u2", None):
        soft = soft_tokens(torch.tensor([spec.condition_id(user)] * rows))
        out.append(sequence_log_probs(model, batch, soft))
    return torch.stack(out)


@pytest.mark.parametrize("peft", [False, True])
def test_pdpo_checkpoint_loads_as_the_policy_at_that_step(tmp_path, peft):
    make = pdpo_factory(tmp_path, peft=peft, alpha=1.0)
    stopped = make(tmp_path / "run", callbacks=[StopAt(STOP)])
    stopped.train()
    tokenizer = make_tokenizer()
    with torch.no_grad():
        policy = stopped.accelerator.unwrap_model(stopped.model).eval()
        expected = user_log_probs(policy, stopped.soft_tokens, tokenizer)
        model, _, soft_tokens = load_personalized_model(
            str(tmp_path / "run" / f"checkpoint-{STOP}"), tokenizer=tokenizer
        )
        torch.testing.assert_close(user_log_probs(model, soft_tokens, tokenizer), expected, atol=1e-5, rtol=0)
    assert not torch.allclose(expected[0], expected[1])  # the users differ: the user model was restored


def test_pdpo_checkpoints_that_do_not_fit_are_refused(tmp_path):
    make = pdpo_factory(tmp_path)
    make(tmp_path / "run", callbacks=[StopAt(STOP)]).train()
    checkpoint = tmp_path / "run" / f"checkpoint-{STOP}"
    with pytest.raises(
        ValueError, match=r"trl_custom.json does not match.*conditions: saved \['u1', 'u2'\], this run"
    ):
        make(tmp_path / "run", conditions=["u1", "u2", "u3"]).train(resume_from_checkpoint=True)
    with pytest.raises(ValueError, match="soft tokens' num_tokens: saved 4, this run 2"):
        make(tmp_path / "run", num_condition_tokens=2).train(resume_from_checkpoint=True)
    (checkpoint / SOFT_TOKENS_FILE).unlink()
    with pytest.raises(FileNotFoundError, match=f"{SOFT_TOKENS_FILE} is missing"):
        make(tmp_path / "run").train(resume_from_checkpoint=str(checkpoint))
