"""`fit_new_condition`: one new row of a reward model's soft tokens, fitted from k pairs."""

import json

import pytest
import torch
from toy import conditioned_pairs, cpu_config, make_tokenizer, save_reward_model

from trl_custom import (
    ConditionedRewardFunction,
    CustomRewardConfig,
    CustomRewardTrainer,
    RewardScorer,
    fit_new_condition,
)
from trl_custom import (
    save_reward_model as export_reward_model,
)
from trl_custom.soft_tokens import get_soft_tokens


def trained(tmp_path, mode="embedding", steps=60):
    """A tiny RM trained on the toy `formal` (alpha wins) / `casual` (beta wins) conditions."""
    args = cpu_config(
        CustomRewardConfig,
        tmp_path,
        condition_mode=mode,
        condition_template="{condition} ",
        condition_learning_rate=5e-2 if mode == "embedding" else None,
        max_length=64,
        max_steps=steps,
        learning_rate=1e-2,
    )
    trainer = CustomRewardTrainer(
        save_reward_model(tmp_path),
        args=args,
        train_dataset=conditioned_pairs(256),
        processing_class=make_tokenizer(),
    )
    trainer.train()
    trainer.model.eval()
    return RewardScorer(trainer.model, trainer.processing_class, trainer.conditioning, batch_size=32)


def casual_like(n, seed):
    """Pairs of a new condition `chatty` that prefers what `casual` prefers (beta wins)."""
    rows = conditioned_pairs(2 * n, seed=seed).filter(lambda r: r["domain"] == "casual")
    return [{"prompt": r["prompt"], "chosen": r["chosen"], "rejected": r["rejected"]} for r in rows][:n]


def accuracy(scorer, pairs, condition):
    prompts = [p["prompt"] for p in pairs]
    chosen = scorer.score(prompts, [p["chosen"] for p in pairs], [condition] * len(pairs))
    rejected = scorer.score(prompts, [p["rejected"] for p in pairs], [condition] * len(pairs))
    return sum(c > r for c, r in zip(chosen, rejected)) / len(pairs)


def all_scores(scorer, conditions):
    rows = conditioned_pairs(16, seed=9)
    return {c: scorer.score(rows["prompt"], rows["chosen"], [c] * len(rows)) for c in conditions}


def test_fits_only_its_row_and_learns_the_new_condition(tmp_path):
    scorer = trained(tmp_path)
    held_out = casual_like(40, seed=3)
    before_acc = accuracy(scorer, held_out, "chatty")  # unknown: the generic entry
    table = get_soft_tokens(scorer.model)
    old_table = table.table.detach().clone()
    backbone = {n: p.detach().clone() for n, p in scorer.model.named_parameters() if "soft_tokens" not in n}
    old_scores = all_scores(scorer, [None, "formal", "casual"])

    index = fit_new_condition(scorer, "chatty", casual_like(16, seed=1), num_epochs=15, learning_rate=5e-2)

    assert index == 3 and scorer.conditioning.conditions == ["casual", "formal", "chatty"]
    assert table.table.shape[0] == 4 and torch.equal(table.table[:3], old_table)  # other rows bit-identical
    for name, p in scorer.model.named_parameters():
        if "soft_tokens" not in name:
            assert torch.equal(p, backbone[name]), name  # backbone and head bit-identical
            assert p.requires_grad  # unfrozen again
    assert all_scores(scorer, [None, "formal", "casual"]) == old_scores  # other conditions score exactly as before
    after_acc = accuracy(scorer, held_out, "chatty")
    assert after_acc >= 0.9 and after_acc > before_acc + 0.2, (before_acc, after_acc)


def test_deterministic_round_trip_and_reward_function(tmp_path):
    scorer = trained(tmp_path, steps=20)
    pairs = casual_like(8, seed=1)
    fit_new_condition(scorer, "chatty", pairs, num_epochs=2)
    fitted = get_soft_tokens(scorer.model).table[-1].detach().clone()

    export_reward_model(scorer.model, scorer.tokenizer, tmp_path / "adapted")
    reloaded = RewardScorer.from_pretrained(tmp_path / "adapted", tokenizer=make_tokenizer(), batch_size=32)
    assert reloaded.conditioning.conditions == ["casual", "formal", "chatty"]
    for condition, scores in all_scores(scorer, ["chatty", "formal"]).items():
        assert all_scores(reloaded, [condition])[condition] == pytest.approx(scores, abs=1e-6)
    reward = ConditionedRewardFunction.from_pretrained(tmp_path / "adapted", tokenizer=make_tokenizer())
    rows = conditioned_pairs(4, seed=9)
    assert reward(prompts=rows["prompt"], completions=rows["chosen"], domain=["chatty"] * 4) == pytest.approx(
        reloaded.score(rows["prompt"], rows["chosen"], ["chatty"] * 4)
    )

    again = trained(tmp_path / "again", steps=20)  # same seed, same data: the same fit
    fit_new_condition(again, "chatty", pairs, num_epochs=2)
    assert torch.equal(get_soft_tokens(again.model).table[-1], fitted)
    assert (
        fit_new_condition(again, "quiet", []) == 0 and "quiet" not in again.conditioning.conditions
    )  # k = 0: generic


def test_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="text-mode model reads the condition as text: score the new name directly"):
        fit_new_condition(trained(tmp_path / "text", mode="text", steps=1), "chatty", casual_like(2, seed=1))
    scorer = trained(tmp_path, steps=1)
    with pytest.raises(ValueError, match="already knows condition 'formal' \\(row 2\\)"):
        fit_new_condition(scorer, "formal", casual_like(2, seed=1))
    with pytest.raises(ValueError, match="'generic' is the name of the generic entry"):
        fit_new_condition(scorer, "generic", casual_like(2, seed=1))
    with pytest.raises(ValueError, match="Pair 1 has an empty 'rejected'"):
        fit_new_condition(scorer, "chatty", [casual_like(1, seed=1)[0], {"chosen": "a", "rejected": "  "}])
    with pytest.raises(ValueError, match="init_from='nope' is not a known condition"):
        fit_new_condition(scorer, "chatty", casual_like(2, seed=1), init_from="nope")
    assert scorer.conditioning.conditions == ["casual", "formal"]  # nothing added by a refused call


def test_cli_fits_and_saves(tmp_path):
    from trl_custom.scripts.fit_condition import main

    scorer = trained(tmp_path, steps=5)
    export_reward_model(scorer.model, scorer.tokenizer, tmp_path / "rm")
    pairs = tmp_path / "chatty.jsonl"
    pairs.write_text("".join(json.dumps(p) + "\n" for p in casual_like(6, seed=1)))
    argv = ["--model_name_or_path", str(tmp_path / "rm"), "--condition", "chatty", "--pairs_file", str(pairs)]
    argv += ["--output_dir", str(tmp_path / "out"), "--max_pairs", "4", "--num_epochs", "1"]
    assert main(argv) == 3
    reloaded = RewardScorer.from_pretrained(tmp_path / "out", tokenizer=make_tokenizer())
    assert reloaded.conditioning.conditions == ["casual", "formal", "chatty"]
    assert json.loads((tmp_path / "out" / "fit_condition.json").read_text())["fit_pairs"] == 4
    assert "chatty" in (tmp_path / "out" / "README.md").read_text()
    with pytest.raises(FileNotFoundError, match="--pairs_file: file not found"):
        main(argv[:5] + [str(tmp_path / "missing.jsonl")] + argv[6:])
