"""`CustomRewardConfig.pooling`: the reward head reading the mean of an encoder's hidden states (`"mean"`)."""

import json

import pytest
import torch
from peft import LoraConfig
from toy import conditioned_pairs, cpu_config, make_reward_model, make_tokenizer
from toy import save_reward_model as save_toy_model
from transformers import AutoModelForSequenceClassification

from trl_custom import CustomRewardConfig, CustomRewardTrainer, RewardScorer, fit_new_condition, save_reward_model
from trl_custom.conditioned_rm.reward_head import apply_pooling, get_pooling
from trl_custom.downstream.export import write_model_card


def alpha_wins():
    """`conditioned_pairs` with the `alpha` answer chosen under every condition (a task a tiny BERT learns fast)."""

    def swap(row):
        alpha_first = "alpha" in row["chosen"]
        return {k: row[k] if alpha_first else row[o] for k, o in (("chosen", "rejected"), ("rejected", "chosen"))}

    return conditioned_pairs().map(swap)


def batch(tokenizer, texts):
    encoded = tokenizer(texts, padding=True, return_tensors="pt")
    return encoded["input_ids"], encoded["attention_mask"]


def test_mean_pooling_is_the_masked_mean_read_by_the_head():
    tokenizer = make_tokenizer("bert")
    model = make_reward_model("bert", tokenizer).eval()
    texts = ["question about t1 answer alpha", "question about t2 answer beta w1 w2 w3 w4 w5 w6"]
    input_ids, attention_mask = batch(tokenizer, texts)
    assert attention_mask[0].sum() < attention_mask.shape[1]  # the first row is padded
    with torch.no_grad():
        cls_rewards = model(input_ids=input_ids, attention_mask=attention_mask).logits[:, 0]
        hidden = model.bert(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        apply_pooling(model, "mean")
        apply_pooling(model, "mean")  # idempotent: one hook
        rewards = model(input_ids=input_ids, attention_mask=attention_mask).logits[:, 0]
        alone = model(*batch(tokenizer, texts[:1])).logits[:, 0]
    mask = attention_mask.unsqueeze(-1).float()
    expected = model.classifier((hidden * mask).sum(1) / mask.sum(1))[:, 0]
    torch.testing.assert_close(rewards, expected, rtol=0, atol=1e-6)
    torch.testing.assert_close(alone, rewards[:1], rtol=0, atol=1e-5)  # padding is not averaged in
    assert not torch.allclose(rewards, cls_rewards)  # not the [CLS] pooler any more
    assert len(model.bert._forward_hooks) == 1
    assert get_pooling(model) == "mean"
    assert not any(p.requires_grad for p in model.bert.pooler.parameters())


@pytest.mark.parametrize("mode", ["text", "embedding"])
def test_mean_pooling_trains_saves_and_reloads(tmp_path, mode):
    tokenizer = make_tokenizer("bert")
    model = make_reward_model("bert", tokenizer)
    pooler_before = {k: v.clone() for k, v in model.bert.pooler.state_dict().items()}
    head_before = model.classifier.weight.detach().clone()
    args = cpu_config(
        CustomRewardConfig,
        tmp_path,
        condition_mode=mode,
        pooling="mean",
        num_train_epochs=4,
        learning_rate=1e-2,
        per_device_train_batch_size=8,
        logging_steps=1,
        max_length=64,
    )
    trainer = CustomRewardTrainer(model, args=args, train_dataset=alpha_wins(), processing_class=tokenizer)
    trainer.train()
    losses = [log["loss"] for log in trainer.state.log_history if "loss" in log]
    assert sum(losses[-4:]) / 4 < sum(losses[:4]) / 4 - 0.2  # the loss falls
    assert not torch.equal(model.classifier.weight, head_before)
    for key, value in model.bert.pooler.state_dict().items():  # unused, so left untouched
        assert torch.equal(value, pooler_before[key])

    path = str(tmp_path / "rm")
    trainer.save_model(path)
    with open(f"{path}/trl_custom.json") as f:
        assert json.load(f)["pooling"] == "mean"
    prompts = ["question about t3 "] * 4
    responses = ["answer alpha w1", "answer beta w1 w2 w3", "answer alpha", "answer beta"]
    conditions = ["formal", "formal", "casual", "casual"]
    trained = RewardScorer(trainer.model.eval(), tokenizer, trainer.conditioning, max_length=args.max_length)
    reloaded = RewardScorer.from_pretrained(path, tokenizer=tokenizer, max_length=args.max_length)
    expected = trained.score(prompts, responses, conditions)
    assert reloaded.score(prompts, responses, conditions) == pytest.approx(expected, abs=1e-5)
    if mode == "text":
        plain = AutoModelForSequenceClassification.from_pretrained(path).eval()  # reads the [CLS] pooler
        ids = torch.tensor([trained.encode(prompts[0], responses[0], conditions[0])])
        assert plain(input_ids=ids).logits[0, 0].item() != pytest.approx(expected[0], abs=1e-4)
        with pytest.raises(ValueError, match="pools with pooling='mean', which a transformers text pipeline"):
            reloaded.render_text(prompts[0], responses[0], conditions[0])
        write_model_card(path)
        with open(f"{path}/README.md") as f:
            assert "reads the mean of the encoder's last hidden states" in f.read()
    else:  # a fitted row of a mean-pooled model: saved and reloaded with its pooling
        fit_new_condition(reloaded, "legal", conditioned_pairs(8).select_columns(["prompt", "chosen", "rejected"]))
        save_reward_model(reloaded.model, tokenizer, str(tmp_path / "rm-legal"))
        again = RewardScorer.from_pretrained(str(tmp_path / "rm-legal"), tokenizer=tokenizer)
        scores = reloaded.score(prompts, responses, ["legal"] * 4)
        assert again.score(prompts, responses, ["legal"] * 4) == pytest.approx(scores, abs=1e-5)


def test_pooling_options_are_checked(tmp_path):
    with pytest.raises(ValueError, match="pooling='max': choose one of"):
        cpu_config(CustomRewardConfig, tmp_path, pooling="max")
    with pytest.raises(ValueError, match="pooling='mean' averages over each padded sequence's attention mask"):
        cpu_config(CustomRewardConfig, tmp_path, pooling="mean", padding_free=True)
    tokenizer = make_tokenizer("causal")
    args = cpu_config(CustomRewardConfig, tmp_path, pooling="mean", max_steps=1)
    with pytest.raises(ValueError, match="LlamaForSequenceClassification has none"):
        model = make_reward_model("llama", tokenizer)
        CustomRewardTrainer(model, args=args, train_dataset=conditioned_pairs(), processing_class=tokenizer)


def test_mean_pooling_with_a_lora_adapter_is_saved_beside_it(tmp_path):
    """An adapter folder has no config.json of its own: the pooling is in the record beside it."""
    tokenizer = make_tokenizer("bert")
    args = cpu_config(CustomRewardConfig, tmp_path, pooling="mean", max_steps=2, max_length=64, learning_rate=1e-2)
    trainer = CustomRewardTrainer(
        save_toy_model(tmp_path, "bert"),  # a path: the adapter folder names its base model
        args=args,
        train_dataset=alpha_wins(),
        processing_class=tokenizer,
        peft_config=LoraConfig(task_type="SEQ_CLS", target_modules=["query", "value"]),
    )
    trainer.train()
    path = str(tmp_path / "rm")
    trainer.save_model(path)
    with open(f"{path}/trl_custom.json") as f:
        assert json.load(f)["pooling"] == "mean"
    prompts, responses = ["question about t3 "] * 2, ["answer alpha w1", "answer beta w1 w2 w3"]
    trained = RewardScorer(trainer.model.eval(), tokenizer, max_length=64).score(prompts, responses)
    reloaded = RewardScorer.from_pretrained(path, tokenizer=tokenizer, max_length=64)
    assert reloaded.score(prompts, responses) == pytest.approx(trained, abs=1e-5)
