# Copyright 2026 The trl-custom authors. Licensed under the Apache License, Version 2.0.
"""The part of `benchmarks/many_users.py` that fine-tunes the whole MiniLM reward model: its backbone (`--backbone
dsp`) and the fine-tuned variants on a subsample (`--finetune_users`). See many_users.py's docstring."""

import copy
import json
import os
import shutil
import statistics
import time
import zlib

import torch
from _shared import mean_std, run_args
from datasets import Dataset
from transformers import AutoTokenizer
from trl import RewardConfig, RewardTrainer

from trl_custom import CustomRewardConfig, CustomRewardTrainer, RewardScorer, fit_new_condition
from trl_custom.models import resolve_model_path

from .head import HEAD_VARIANTS, accuracy, train_head, unseen_accuracy
from .population import STYLES, group


def alias(user_id: str) -> str:
    """An opaque alias of a user id for the by-hand text ("seen-3" / "test-3" would name the user's group)."""
    return f"u{zlib.crc32(user_id.encode()) % 100_000:05d}"


def by_hand_text(prompt: str, response: str, user: str) -> str:
    """What a TRL user writes by hand to condition a stock reward model on a user: the id in the text."""
    return f"[user: {alias(user)}] {prompt} [SEP] {response}"


def pair_row(queries, user, pair) -> dict:
    q, a, b, _ = pair
    responses = queries[q]["responses"]
    return {"prompt": queries[q]["query"], "chosen": responses[STYLES[a]], "rejected": responses[STYLES[b]],
            "user_id": user["id"]}  # fmt: skip


def common(args, out: str) -> dict:
    """The fine-tunes' trainer arguments (every benchmark's `run_args`, then this section's sizes)."""
    return run_args(
        output_dir=out,
        max_length=args.max_length,
        per_device_train_batch_size=args.batch_size,
        learning_rate=args.finetune_learning_rate,
        num_train_epochs=args.finetune_epochs,
        logging_steps=10,
    )


class ByHandScorer:
    """Scores `(prompt, response, user)` as the by-hand text, with the stock model (truncation keeps the start)."""

    def __init__(self, model, tokenizer, max_length: int, batch_size: int = 64):
        self.model, self.tokenizer, self.max_length, self.batch_size = model.eval(), tokenizer, max_length, batch_size

    @torch.no_grad()
    def score(self, prompts, responses, users):
        texts = [by_hand_text(p, r, u) for p, r, u in zip(prompts, responses, users, strict=True)]
        rewards = []
        for start in range(0, len(texts), self.batch_size):
            batch = self.tokenizer(
                texts[start : start + self.batch_size],
                truncation=True,
                max_length=self.max_length,
                padding=True,
                return_tensors="pt",
            ).to(self.model.device)
            rewards += self.model(**batch).logits[:, 0].float().tolist()
        return rewards


def accuracy_of(scorer, rows: list[dict]) -> float:
    prompts, users = [r["prompt"] for r in rows], [r["user_id"] for r in rows]
    chosen = scorer.score(prompts, [r["chosen"] for r in rows], users)
    rejected = scorer.score(prompts, [r["rejected"] for r in rows], users)
    return sum(c > r for c, r in zip(chosen, rejected, strict=True)) / len(rows)


def train_by_hand(rows, model_path, args, out):
    tokenizer = AutoTokenizer.from_pretrained(model_path)

    def tokenize(row):
        ids = [
            tokenizer(by_hand_text(row["prompt"], row[side], row["user_id"]), truncation=True,
                      max_length=args.max_length)["input_ids"]
            for side in ("chosen", "rejected")
        ]  # fmt: skip
        return {"chosen_ids": ids[0], "rejected_ids": ids[1]}

    data = Dataset.from_list(rows)
    tokenized = data.map(tokenize, remove_columns=data.column_names)
    trainer = RewardTrainer(model_path, args=RewardConfig(**common(args, out)), train_dataset=tokenized,
                            processing_class=tokenizer)  # fmt: skip
    trainer.train()
    return ByHandScorer(trainer.model, tokenizer, args.max_length), trainer.state.global_step


def train_input_side(rows, model_path, kind, setting, args, out):
    config = CustomRewardConfig(
        **common(args, out),
        condition_mode="embedding",
        condition_column="user_id",
        condition_model=kind,
        condition_placement="input",
        condition_dim=setting.get("rank", 32),
        num_prototypes=setting.get("prototypes", 8),
        condition_learning_rate=args.finetune_user_learning_rate,
        condition_dropout=args.condition_dropout,
        pooling="model" if args.backbone == "dsp" else "mean",
        truncation_mode="keep_start",
    )
    trainer = CustomRewardTrainer(model_path, args=config, train_dataset=Dataset.from_list(rows))
    trainer.train()
    trainer.model.eval()
    scorer = RewardScorer(trainer.model, trainer.processing_class, trainer.conditioning, batch_size=64)
    return scorer, trainer.state.global_step


def train_backbone(queries, args) -> str:
    """The benchmark's backbone: `--model` fine-tuned as a DSP domain-conditioned reward model (a reward-head vector
    per domain, `condition_placement="reward_head"`) on the DSP pairs of `queries`, saved as a plain model (reused)."""
    from trl_custom.data import dsp_pairs

    key = zlib.crc32(json.dumps([args.model, args.max_length, args.backbone_epochs, args.backbone_learning_rate,
                                 [q["query"] for q in queries]]).encode())  # fmt: skip
    path = os.path.join(args.output_dir, f"backbone-{key:08x}")
    if os.path.isfile(os.path.join(path, "config.json")):
        return path
    config = CustomRewardConfig(
        **{
            **common(args, path + "-run"),
            "learning_rate": args.backbone_learning_rate,
            "num_train_epochs": args.backbone_epochs,
            "per_device_train_batch_size": 16,
        },  # fmt: skip
        condition_mode="embedding",
        condition_column="domain",
        condition_placement="reward_head",
        condition_learning_rate=1e-2,
        truncation_mode="keep_start",
    )
    trainer = CustomRewardTrainer(resolve_model_path(args.model), args=config, train_dataset=dsp_pairs(queries))
    start = time.perf_counter()
    trainer.train()
    print(f"backbone: {len(trainer.train_dataset)} DSP pairs of {len(queries)} queries, "
          f"{trainer.state.global_step} steps, {time.perf_counter() - start:.0f}s", flush=True)  # fmt: skip
    trainer.model.save_pretrained(path)  # the plain model: backbone and head, without the domain vectors
    trainer.processing_class.save_pretrained(path)
    shutil.rmtree(path + "-run", ignore_errors=True)
    return path


def finetune_section(queries, model_path, features, populations, results, args) -> dict:
    """Fine-tuned variants (from the benchmark's backbone) against the head-side ones on the first `finetune_users`
    seen users."""
    k = args.finetune_k
    cells = {}  # variant -> {"seen": [...], "unseen k=0": [...], f"unseen k={k}": [...], "steps": [...]}

    def record(variant, **values):
        for key, value in values.items():
            cells.setdefault(variant, {}).setdefault(key, []).append(value)

    seeds = args.finetune_seeds or list(populations)
    for seed, population in ((seed, populations[seed]) for seed in seeds):
        seen = group(population, "seen")[: args.finetune_users]
        tests = group(population, "test")[: args.finetune_unseen]
        train_rows = [pair_row(queries, u, p) for u in seen for p in u["train"]]
        seen_rows = [pair_row(queries, u, p) for u in seen for p in u["test"]]
        print(f"fine-tune section, seed {seed}: {len(seen)} users, {len(train_rows)} pairs", flush=True)
        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # tiny head-side models
        for variant in HEAD_VARIANTS:
            selection = results["head"]["selection"][variant]
            model, user_index = train_head(features, population, variant, selection["train"], args, seed, seen)
            seen_acc = accuracy(model, features, [(u, p) for u in seen for p in u["test"]], user_index)
            unseen = {}
            for shots in (0, k):
                fitted = [unseen_accuracy(copy.deepcopy(model), features, u, shots, selection["fit"], seed)
                          for u in tests]  # fmt: skip
                unseen[shots] = statistics.mean(fitted)
            record(f"head {variant} (frozen)", seen=seen_acc, unseen0=unseen[0], unseenk=unseen[k])
        torch.set_num_threads(threads)
        for variant in args.finetune_variants:
            out = os.path.join(args.output_dir, "finetune", f"{variant}-{seed}")
            start = time.perf_counter()
            if variant == "text":
                scorer, steps = train_by_hand(train_rows, model_path, args, out)
            else:
                setting = results["head"]["selection"][variant]["train"]
                scorer, steps = train_input_side(train_rows, model_path, variant, setting, args, out)
            seconds = time.perf_counter() - start
            seen_acc = accuracy_of(scorer, seen_rows)
            unseen0 = statistics.mean(accuracy_of(scorer, [pair_row(queries, u, p) for p in u["eval"]]) for u in tests)
            unseenk = float("nan")
            if variant != "text":  # a new user's row from k pairs (the text model reads an unseen id zero-shot)
                fitted = []
                for u in tests:
                    shots = [pair_row(queries, u, p) for p in u["shots"][:k]]
                    fit_new_condition(scorer, u["id"], shots, num_epochs=args.finetune_fit_epochs, seed=seed)
                    fitted.append(accuracy_of(scorer, [pair_row(queries, u, p) for p in u["eval"]]))
                unseenk = statistics.mean(fitted)
            name = "user id as text (by hand)" if variant == "text" else f"input {variant} (fine-tuned)"
            record(name, seen=seen_acc, unseen0=unseen0, unseenk=unseenk, steps=steps, seconds=seconds)
            print(f"  {name}: seen {seen_acc:.3f}, unseen k=0 {unseen0:.3f}, k={k} {unseenk:.3f} ({steps} steps, "
                  f"{seconds:.0f}s)", flush=True)  # fmt: skip
            shutil.rmtree(out, ignore_errors=True)
    summary = {v: {key: mean_std(values) for key, values in c.items()} for v, c in cells.items()}
    lines = [
        f"Fine-tune section: first {args.finetune_users} seen users, first {args.finetune_unseen} unseen test users, "
        f"seeds {seeds} (mean ± std); fine-tunes: {args.finetune_epochs} epochs, backbone lr "
        f"{args.finetune_learning_rate}",
        "",
        f"| variant | seen users | unseen k=0 | unseen k={k} | steps |",
        "|---|---|---|---|---|",
    ]
    for variant, row in summary.items():
        cols = [row[key] for key in ("seen", "unseen0", "unseenk")]
        text = [f"{c['mean']:.3f} ± {c['std']:.3f}" if c["mean"] == c["mean"] else "n/a" for c in cols]
        steps = f"{row['steps']['mean']:.0f}" if "steps" in row else "(head only)"
        lines.append(f"| {variant} | " + " | ".join(text) + f" | {steps} |")
    return {"cells": cells, "summary": summary, "markdown": "\n".join(lines)}
