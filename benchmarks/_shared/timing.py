# Copyright 2026 The trl-custom authors. Licensed under the Apache License, Version 2.0.
"""
Timing trainers side by side: every variant steps on the same batches, interleaved in a rotating order so that a
shared machine's load hits them alike, warm-up steps left out; ratios to a reference variant, overall and paired
batch by batch.
"""

import statistics
import time
from collections.abc import Callable

import torch

from .device import ON_GPU, allocated, gib, sync


class Stepper:
    """
    One variant stepped by hand: `build()` gives its trainer; `step` runs forward + backward + optimizer step on a
    batch and records its time and (on a GPU) memory. `static` is the memory the trainer took when it was built
    (weights, condition table, user model, LoRA) plus the optimizer states created at its first step, so that
    `static` + the highest step peak is what the variant would take alone.
    """

    def __init__(self, name: str, build: Callable):
        self.name, self.seconds, self.step_peaks, self.error = name, [], [], None
        before = allocated()
        self.trainer = build()
        self.trainer.create_optimizer()
        self.trainer.current_gradient_accumulation_steps = 1  # set by `train()`'s loop, which is stepped by hand
        self.static = allocated() - before
        self.steps = 0

    def collate(self, indices):
        trainer = self.trainer
        return trainer.data_collator([trainer.train_dataset[i] for i in indices])

    def step(self, batch, timed: bool = True):
        trainer = self.trainer
        sync()
        before = allocated()
        if ON_GPU:
            torch.cuda.reset_peak_memory_stats()
        start = time.perf_counter()
        trainer.training_step(trainer.model, batch)
        trainer.optimizer.step()
        trainer.optimizer.zero_grad(set_to_none=True)
        sync()
        elapsed = time.perf_counter() - start
        if self.steps == 0:
            self.static += allocated() - before  # the optimizer states, created at the first step
        self.steps += 1
        if timed:
            self.seconds.append(elapsed)
            if ON_GPU:
                self.step_peaks.append(torch.cuda.max_memory_allocated() - before)

    def summary(self, real_tokens: int) -> dict:
        if self.error or not self.seconds:
            return {"error": self.error or "no timed step"}
        total = sum(self.seconds)
        peak = self.static + max(self.step_peaks) if self.step_peaks else None
        return {
            "tokens_per_s": real_tokens / total,
            "seconds": total,
            "median_step_s": statistics.median(self.seconds),
            "step_seconds": self.seconds,
            "peak_memory_gib": gib(peak),
            "static_memory_gib": gib(self.static) if ON_GPU else None,
        }


def run_interleaved(steppers: dict, batches, warmup: int, count_tokens: Callable, deadline: float = float("inf")):
    """
    Each batch (a list of row indices) through every variant, the order rotating per batch; the first `warmup`
    batches are not timed; stops at `deadline` (`time.perf_counter()`, after warm-up). A variant that fails (e.g. out
    of memory) is recorded and left out, the others go on. Returns the real tokens of the timed batches
    (`count_tokens(indices)`) and their number.
    """
    names = list(steppers)
    real_tokens, done = 0, 0
    for step, indices in enumerate(batches):
        if step > warmup and time.perf_counter() > deadline:
            print(f"  time budget reached after {done} timed steps", flush=True)
            break
        timed = step >= warmup
        order = names[step % len(names) :] + names[: step % len(names)]
        for name in order:
            stepper = steppers[name]
            if stepper.error:
                continue
            batch = stepper.collate(indices)
            try:
                stepper.step(batch, timed)
            except (RuntimeError, ValueError) as error:  # e.g. out of memory: the other variants go on
                stepper.error = f"{type(error).__name__}: {str(error)[:300]}"
                print(f"  {name} failed: {stepper.error}", flush=True)
                stepper.trainer.optimizer.zero_grad(set_to_none=True)
                if ON_GPU:
                    torch.cuda.empty_cache()
        if timed:
            real_tokens += count_tokens(indices)
            done += 1
        print(
            f"  step {step}{'' if timed else ' (warm-up)'}: "
            + ", ".join(f"{n} {steppers[n].seconds[-1]:.3f}s" for n in names if timed and steppers[n].seconds),
            flush=True,
        )
    return real_tokens, done


def add_ratios(variants: dict, base: str, memory: str = "peak_memory_gib"):
    """
    Adds to each variant's summary its ratios to variant `base`: `speedup_vs_<base>` (tokens/s),
    `median_batch_speedup_vs_<base>` (the median over batches of base's step time over the variant's on the same
    batch) and `memory_vs_<base>` (of the `memory` key, where both have it).
    """
    if "tokens_per_s" not in variants.get(base, {}):
        return
    reference = variants[base]
    for values in variants.values():
        if "tokens_per_s" not in values:
            continue
        values[f"speedup_vs_{base}"] = values["tokens_per_s"] / reference["tokens_per_s"]
        paired = [a / b for a, b in zip(reference["step_seconds"], values["step_seconds"])]
        values[f"median_batch_speedup_vs_{base}"] = statistics.median(paired)
        if values.get(memory) and reference.get(memory):
            values[f"memory_vs_{base}"] = values[memory] / reference[memory]


def first_batch(trainer, size: int) -> dict:
    """The trainer's first `size` training rows collated as one batch, on the model's device (a fixed batch to time
    steps on)."""
    return trainer._prepare_inputs(trainer.data_collator([trainer.train_dataset[i] for i in range(size)]))


def median_step_seconds(steps: dict, reps: int, before: Callable | None = None) -> dict:
    """
    Median seconds of each of `steps` (name: a function running one step, e.g. forward + backward on a fixed batch):
    one untimed round first, then `reps` rounds in which each runs once, in turn; `before(name)` runs untimed before
    each step (e.g. zeroing gradients).
    """
    times = {name: [] for name in steps}
    for rep in range(reps + 1):
        for name, step in steps.items():
            if before is not None:
                before(name)
            sync()
            start = time.perf_counter()
            step()
            sync()
            if rep:  # the first round warms up
                times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}
