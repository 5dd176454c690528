# Copyright 2026 The trl-custom authors. Licensed under the Apache License, Version 2.0.
"""The by-hand baseline of `dsp_kfold.py`: stock TRL `RewardTrainer` on what a TRL user writes by hand, `"[domain: <d>]
<query> [SEP] <response>"`, and its scorer."""

import time
from types import SimpleNamespace

import torch
from _shared import ON_GPU
from transformers import AutoModelForSequenceClassification, AutoTokenizer
from trl import RewardConfig, RewardTrainer

from trl_custom.data import DSP_DOMAINS


def by_hand_text(prompt, response, domain):
    return f"[domain: {domain}] {prompt} [SEP] {response}"


def train_by_hand(dataset, out_dir, model_path, config: dict):
    """Stock `RewardTrainer` on pre-tokenized `[domain: d] query [SEP] response` (what a TRL user writes)."""
    tokenizer = AutoTokenizer.from_pretrained(model_path)

    def tokenize(row):
        ids = [
            tokenizer(
                by_hand_text(row["prompt"], row[side], row["domain"]), truncation=True, max_length=config["max_length"]
            )
            for side in ("chosen", "rejected")
        ]
        return {"chosen_ids": ids[0]["input_ids"], "rejected_ids": ids[1]["input_ids"]}

    tokenized = dataset.map(tokenize, remove_columns=dataset.column_names)
    trainer = RewardTrainer(
        model_path, args=RewardConfig(out_dir, **config), train_dataset=tokenized, processing_class=tokenizer
    )
    start = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - start
    trainer.save_model(out_dir)
    return seconds, trainer.state.global_step


class ByHandScorer:
    """
    Scores `(prompt, response, domain)` as `by_hand_text`, for `evaluate_reward_model`: it duck-types
    `RewardScorer` with a text-mode spec, so the evaluation keys its score cache by domain (the domain is in the text).
    """

    def __init__(self, path, max_length, batch_size=64):
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=1).eval()
        if ON_GPU:
            self.model.to("cuda")
        self.conditioning = SimpleNamespace(mode="text", conditions=list(DSP_DOMAINS))
        self.max_length, self.batch_size = max_length, batch_size

    def encode(self, prompt, response, condition):
        """Token ids as `score` reads them (the evaluation counts the pairs they make identical)."""
        text = by_hand_text(prompt, response, condition)
        return self.tokenizer(text, truncation=True, max_length=self.max_length)["input_ids"]

    @torch.no_grad()
    def score(self, prompts, responses, conditions, progress=False, desc=""):
        texts = [by_hand_text(p, r, c) for p, r, c in zip(prompts, responses, conditions, strict=True)]
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        rewards = [0.0] * len(texts)
        for start in range(0, len(order), self.batch_size):
            rows = order[start : start + self.batch_size]
            batch = self.tokenizer(
                [texts[i] for i in rows],
                truncation=True,
                max_length=self.max_length,
                padding=True,
                return_tensors="pt",
            ).to(self.model.device)
            logits = self.model(**batch).logits[:, 0].float().tolist()
            for i, value in zip(rows, logits, strict=True):
                rewards[i] = value
        return rewards
