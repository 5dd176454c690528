"""`trl-custom augment`: judges → agreement, margin and subjectivity flags; margin-regularized training."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from datasets import Dataset
from toy import make_reward_model, make_tokenizer, save_reward_model

from trl_custom import (
    ConditioningSpec,
    CustomRewardConfig,
    CustomRewardTrainer,
    ModelRecord,
    RewardScorer,
    SoftTokenConfig,
    SoftTokens,
)
from trl_custom.margin.agreement import augment_pairs, load_pairs_file, margin_from_agreement
from trl_custom.margin.judges import RewardModelJudge
from trl_custom.margin.similarity import MeanPooledEmbedder, response_similarities
from trl_custom.scripts.augment import AugmentConfig, main


ROOT = Path(__file__).resolve().parents[1]
ROWS = [
    {"prompt": "question about t1 ", "chosen": "answer alpha w1 w2", "rejected": "answer beta w3", "id": 0},
    {"prompt": "question about t2 ", "chosen": "answer beta", "rejected": "answer alpha w4 w5 w6", "id": 1},
    {"prompt": "tell me ", "chosen": "short answer", "rejected": "short answer", "id": 2},  # identical responses
    {"prompt": "explain topic ", "chosen": "gamma delta w7", "rejected": "very long answer w8 w9", "id": 3},
]


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def tiny_judges(tmp_path):
    """Two unconditioned tiny BERT RMs and one text-conditioned one (2 conditions → 2 annotators)."""
    a = save_reward_model(tmp_path / "a", "bert", seed=0)
    b = save_reward_model(tmp_path / "b", "bert", seed=1)
    c = save_reward_model(tmp_path / "c", "bert", seed=2)
    spec = ConditioningSpec(mode="text", conditions=["formal", "casual"], template="domain is {condition} ")
    ModelRecord(conditioning=spec, max_length=64).save(c)
    return a, b, c


def test_augment_cli_end_to_end(tmp_path):
    a, b, c = tiny_judges(tmp_path)
    data = write_jsonl(tmp_path / "pairs.jsonl", ROWS)
    out, cache = tmp_path / "out.jsonl", tmp_path / "cache"
    argv = [
        "--input_file", str(data), "--output_file", str(out), "--rm_judges", a, f"{b}@none", c,
        "--embedding_model", a, "--similarity_threshold", "0.99", "--cache_dir", str(cache), "--keep_judgments",
        "--max_length", "64",
    ]  # fmt: skip
    result = subprocess.run(
        [sys.executable, "-m", "trl_custom", "augment", *argv], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Judging 4 pairs with 4 judges" in result.stdout
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["id"] for r in rows] == [0, 1, 2, 3] and rows[0]["prompt"] == ROWS[0]["prompt"]  # same rows, same order
    names = [f"rm:{a}", f"rm:{b}", f"rm:{c}@formal", f"rm:{c}@casual"]
    for row in rows:
        assert list(row["judgments"]) == names
        votes = [1.0 if p > 0.5 else 0.5 if p == 0.5 else 0.0 for p in row["judgments"].values()]
        assert row["agreement"] == pytest.approx(sum(votes) / 4)
        assert row["margin"] == pytest.approx(margin_from_agreement(row["agreement"], 4))
        assert row["plurality"] == (abs(row["agreement"] - 0.5) <= 0.2)
    assert rows[2]["agreement"] == 0.5 and rows[2]["margin"] == 0.0  # identical responses: every judge ties
    assert rows[2]["similarity"] == pytest.approx(1.0, abs=1e-5) and rows[2]["indistinguishable"]
    assert not rows[0]["indistinguishable"]
    assert len(os.listdir(cache)) == 4

    # Rerun in-process on the same cache: every judgment comes from disk (the cache files do not grow).
    sizes = {f: os.path.getsize(cache / f) for f in os.listdir(cache)}
    again = main([*argv[:3], str(tmp_path / "again.json"), *argv[4:]])
    assert {f: os.path.getsize(cache / f) for f in os.listdir(cache)} == sizes
    assert again["agreement"] == [r["agreement"] for r in rows]
    assert json.loads((tmp_path / "again.json").read_text())[3]["margin"] == rows[3]["margin"]


def test_augment_cli_refuses_missing_text(tmp_path):
    a, _, _ = tiny_judges(tmp_path)
    bad = write_jsonl(tmp_path / "bad.jsonl", ROWS[:2] + [{"prompt": "q", "chosen": "a"}])
    with pytest.raises(ValueError, match="Row 2 of bad.jsonl has no 'rejected' response"):
        main(["--input_file", str(bad), "--output_file", str(tmp_path / "o.jsonl"), "--rm_judges", a])
    with pytest.raises(ValueError, match="Give at least one judge"):
        main(["--input_file", str(bad), "--output_file", str(tmp_path / "o.jsonl")])
    embedding_rm = save_reward_model(tmp_path / "e", "bert", seed=2)
    tokens = SoftTokenConfig(num_tokens=1, hidden_size=16)
    spec = ConditioningSpec(mode="embedding", conditions=["formal", "casual"], tokens=tokens)
    ModelRecord(conditioning=spec, max_length=64).save(embedding_rm)
    SoftTokens(tokens, num_conditions=2).save(embedding_rm)
    good = write_jsonl(tmp_path / "ok.jsonl", ROWS)
    with pytest.raises(ValueError, match="unknown conditions \\['legal'\\]; known: \\['formal', 'casual'\\]"):
        main(["--input_file", str(good), "--output_file", "x.jsonl", "--rm_judges", embedding_rm + "@legal"])


def test_load_pairs_file_reads_general_format(tmp_path):
    general = tmp_path / "helpful.json"
    general.write_text(
        json.dumps(
            [
                {"text": ["\n\nHuman: hi\n\nAssistant: good", "\n\nHuman: hi\n\nAssistant: bad"], "score": [0, 1]},
                {"text": ["\n\nHuman: yo\n\nAssistant: x", "\n\nHuman: yo\n\nAssistant: "], "score": [1, 0]},
            ]
        )
    )
    pairs = load_pairs_file(general, skip_empty=True)
    assert pairs.to_list() == [{"prompt": "\n\nHuman: hi\n\nAssistant:", "chosen": " bad", "rejected": " good"}]
    with pytest.raises(ValueError, match="item 1 has an empty final assistant response"):
        load_pairs_file(general)


def test_augment_pairs_refuses_existing_output_columns():
    tokenizer = make_tokenizer("causal")
    judge = RewardModelJudge(RewardScorer(make_reward_model("qwen2", tokenizer), tokenizer))
    data = Dataset.from_list([{"chosen": "a", "rejected": "b", "margin": 1.0}])
    with pytest.raises(ValueError, match="already has the column\\(s\\) \\['margin'\\]"):
        augment_pairs(data, [judge], AugmentConfig(embedding_model=None), progress=False)
    with pytest.raises(ValueError, match="Give at least one judge"):
        augment_pairs(data, [], AugmentConfig(embedding_model=None))


def test_response_similarity_is_mean_pooled_cosine(tmp_path):
    from transformers import AutoModel

    path = save_reward_model(tmp_path, "bert")
    embedder = MeanPooledEmbedder(AutoModel.from_pretrained(path), make_tokenizer("bert"))
    sims = response_similarities(embedder, ["alpha beta", "alpha beta", "gamma"], ["alpha beta", "beta alpha", "w1"])
    assert sims[0] == pytest.approx(1.0, abs=1e-5)
    assert all(-1.0 <= s <= 1.0 + 1e-6 for s in sims) and sims[2] < 0.999
    emb = embedder.embed(["alpha beta"])
    assert emb.norm(dim=-1).item() == pytest.approx(1.0, abs=1e-5)


# ---------------------------------------------------------------------------------------------------- training
def test_margin_trained_rm_gap_grows_with_margin(tmp_path):
    """
    Same pairs, steps and init: the larger the margin, the larger the learned reward gap, and every run's ranking
    loss falls. The loss is -logsigmoid(gap - margin): a margin raises the gap it asks for.
    """
    rows = [
        {"prompt": "question about topic ", "chosen": f"answer alpha w{i % 8}", "rejected": f"answer beta w{i % 8}"}
        for i in range(32)
    ]
    data = Dataset.from_list(rows)

    def train(margin):
        tokenizer = make_tokenizer("causal")
        args = CustomRewardConfig(
            str(tmp_path / "out"),
            condition_mode="none",
            use_cpu=True,
            bf16=False,
            report_to="none",
            save_strategy="no",
            per_device_train_batch_size=8,
            optim="sgd",  # Adam would normalize away a margin shared by every pair
            learning_rate=0.05,
            max_steps=12,
            logging_steps=4,
            max_length=32,
            disable_tqdm=True,
            seed=0,
        )
        model = make_reward_model("qwen2", tokenizer)
        dataset = data if margin is None else data.add_column("margin", [margin] * len(data))
        trainer = CustomRewardTrainer(model, args=args, train_dataset=dataset, processing_class=tokenizer)
        trainer.train()
        losses = [log["loss"] for log in trainer.state.log_history if "loss" in log]  # TRL's loss: the ranking loss
        assert losses[-1] < losses[0], losses
        rewards = RewardScorer(model.eval(), tokenizer).score(
            list(data["prompt"]) * 2, list(data["chosen"]) + list(data["rejected"])
        )
        return sum(rewards[i] - rewards[32 + i] for i in range(32)) / 32

    contested, plain, zero, agreed = train(-2.0), train(None), train(0.0), train(2.0)
    assert plain == pytest.approx(zero, abs=1e-5)  # margin 0 is plain Bradley-Terry
    assert contested < plain < agreed
