"""The listwise (Plackett–Luce top-1) reward objective: a list of rejected responses per row."""

import pytest
import torch
import torch.nn.functional as F
from datasets import Dataset, IterableDataset
from toy import conditioned_pairs, cpu_config, make_reward_model, make_tokenizer

from trl_custom import CustomRewardConfig, CustomRewardTrainer
from trl_custom.conditioned_rm.listwise import plackett_luce_top1_loss


def listwise_rows(n=16, seed=0, extra=2):
    """Toy conditioned pairs with `extra` more rejected responses per row (other fillers of the losing answer)."""
    rows = []
    for i, row in enumerate(conditioned_pairs(n, seed=seed)):
        others = [row["rejected"] + f" w{(i + j) % 40}" for j in range(1, extra + 1)]
        rows.append({**row, "rejected": [row["rejected"], *others]})
    return rows


def train(tmp_path, name, data, kind="causal", arch="qwen2", **kwargs):
    tokenizer = make_tokenizer(kind)
    model = make_reward_model(arch, tokenizer)
    defaults = dict(
        max_steps=3, logging_steps=1, seed=0, per_device_train_batch_size=4, learning_rate=5e-2, max_length=64
    )
    args = cpu_config(CustomRewardConfig, tmp_path / name, **{**defaults, **kwargs})
    trainer = CustomRewardTrainer(model, args=args, train_dataset=data, processing_class=tokenizer)
    trainer.train()
    return trainer


def test_plackett_luce_equals_the_softmax_and_the_pairwise_loss():
    chosen = torch.randn(3, dtype=torch.float64, requires_grad=True)
    rejected = torch.randn(6, dtype=torch.float64, requires_grad=True)
    group, margin = torch.tensor([0, 0, 1, 1, 1, 2]), torch.rand(6, dtype=torch.float64)
    loss = plackett_luce_top1_loss(chosen, rejected, group, margin)
    for row in range(3):
        logits = torch.cat([chosen[row : row + 1], rejected[group == row] + margin[group == row]])
        assert loss[row].item() == pytest.approx(-torch.log_softmax(logits, 0)[0].item(), abs=1e-12)
    loss.sum().backward()
    assert (rejected.grad > 0).all() and (chosen.grad < 0).all()  # every rejected response is pushed down
    one = plackett_luce_top1_loss(chosen, rejected[:3], torch.arange(3), margin[:3])
    torch.testing.assert_close(one, -F.logsigmoid(chosen - rejected[:3] - margin[:3]), rtol=0, atol=1e-12)


@pytest.mark.parametrize("kind,arch,mode", [("causal", "qwen2", "text"), ("bert", "bert", "embedding")])
def test_one_rejected_in_a_list_trains_as_the_pairwise_loss(tmp_path, kind, arch, mode):
    pairs = conditioned_pairs(12)
    listwise = Dataset.from_list([{**row, "rejected": [row["rejected"]]} for row in pairs])
    options = dict(condition_mode=mode)
    with_margin = lambda d: d.add_column("margin", [0.1 * (i % 3) for i in range(len(d))])  # noqa: E731
    pairwise = train(tmp_path, "pairwise", with_margin(pairs), kind, arch, **options)
    ours = train(tmp_path, "listwise", with_margin(listwise), kind, arch, **options)
    assert isinstance(ours.train_dataset[0]["rejected_ids"][0], list)
    logs = [[h for h in t.state.log_history if "loss" in h] for t in (pairwise, ours)]
    for a, b in zip(*logs, strict=True):
        for key in ("loss", "grad_norm", "accuracy", "margin", "ranking_loss", "mean_reward"):
            assert b[key] == pytest.approx(a[key], rel=1e-6, abs=1e-6), key
        assert b["top1_accuracy"] == pytest.approx(a["accuracy"], abs=1e-6)  # one rejected: top-1 is pairwise
    for (name, p), (_, q) in zip(pairwise.model.named_parameters(), ours.model.named_parameters(), strict=True):
        torch.testing.assert_close(q, p, rtol=1e-6, atol=1e-6, msg=name)


def test_listwise_trains_every_rejected_response_and_per_condition(tmp_path):
    data = Dataset.from_list(listwise_rows(32))
    data = data.add_column("margin", [[0.0, 0.1, 0.2]] * len(data))  # one margin per rejected response
    trainer = train(tmp_path, "l", data, condition_mode="embedding", max_steps=40, logging_steps=10)
    logs = [h for h in trainer.state.log_history if "loss" in h]
    assert logs[-1]["loss"] < logs[0]["loss"] and "accuracy/formal" in logs[-1] and "top1_accuracy" in logs[-1]
    batch = trainer._prepare_inputs(trainer.data_collator([trainer.train_dataset[i] for i in range(4)]))
    assert batch["input_ids"].shape[0] == 4 + 12
    assert batch["rejected_group"].tolist() == [row for row in range(4) for _ in range(3)]
    # the gradient reaches every sequence: each rejected one's reward pushes the loss up
    trainer.model.train()
    embeddings = trainer.model.get_input_embeddings()
    grads = {}

    def keep_gradient(module, args, output):
        output.register_hook(lambda grad: grads.setdefault("g", grad))

    hook = embeddings.register_forward_hook(keep_gradient)
    try:
        trainer.compute_loss(trainer.model, dict(batch)).backward()
    finally:
        hook.remove()
    per_sequence = grads["g"].abs().sum(dim=(1, 2))
    assert (per_sequence > 0).all()


def test_listwise_errors_name_the_row_and_the_fix(tmp_path):
    rows = listwise_rows(4)
    bad = [dict(r) for r in rows]
    bad[2]["rejected"] = [bad[2]["rejected"][0], "  "]
    with pytest.raises(ValueError, match="Row 2 of the train dataset has an empty rejected response at position 1"):
        train(tmp_path, "a", Dataset.from_list(bad))
    margins = Dataset.from_list(rows).add_column("margin", [[0.1, 0.2, 0.3]] * 3 + [[0.1]])
    with pytest.raises(ValueError, match="Row 3 of the train dataset has 1 margins for 3 rejected responses"):
        train(tmp_path, "b", margins)
    with pytest.raises(ValueError, match="padding_free batches do not support yet"):
        train(tmp_path, "c", Dataset.from_list(rows), padding_free=True)
    with pytest.raises(ValueError, match="streamed \\(IterableDataset\\) and listwise"):
        train(tmp_path, "d", IterableDataset.from_generator(lambda: iter(rows)))
