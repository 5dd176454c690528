# Copyright 2026 The trl-custom authors. Licensed under the Apache License, Version 2.0.
"""`results.md` of `gpu_scale.py`: one table per section (failed variants and skipped sections named)."""

from trl_custom.data import DSP_DOMAINS


def fmt(value, spec=".3f"):
    return "-" if value is None else format(value, spec)


def markdown(results):
    env = results["environment"]
    lines = [
        f"# GPU scale (issue #21): {env['device']}",
        "",
        f"torch {env['torch']}, transformers {env['transformers']}, trl {env['trl']}, peft {env['peft']}; "
        f"attention {env['attention']}, {env['dtype']}; peak for MFU {results['peak_tflops']:g} TFLOP/s "
        f"(dense bf16, {'used' if env['cuda'] else 'n/a on CPU'}); smoke: {results['smoke']}; "
        f"wall {results['wall_s']:.0f} s.",
    ]
    rm = results["sections"].get("rm_scale")
    if rm and "variants" in rm:
        lines += [
            "",
            f"## Reward model, {rm['shape']} shape ({rm['parameters'] / 1e9:.2f}B, random weights), {rm['data']}: "
            f"{rm['timed_steps']} timed steps of {rm['batch_size_pairs']} pairs after {rm['warmup_steps']} warm-up, "
            f"{rm['real_tokens']} real tokens",
            "",
            "| variant | tokens/s | x stock | median per-batch x stock | median step (s) | MFU | peak memory (GiB) "
            "| memory x stock |",
            "|---|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for name, v in rm["variants"].items():
            if "error" in v:
                lines.append(f"| {name} | failed: {v['error'][:80]} |||||||")
                continue
            lines.append(
                f"| {name} | {v['tokens_per_s']:.0f} | {fmt(v.get('speedup_vs_stock'), '.2f')} | "
                f"{fmt(v.get('median_batch_speedup_vs_stock'), '.2f')} | {v['median_step_s']:.3f} | "
                f"{fmt(v['mfu'], '.1%')} | {fmt(v['peak_memory_gib'], '.1f')} | "
                f"{fmt(v.get('memory_vs_stock'), '.2f')} |"
            )
    po = results["sections"].get("dpo")
    if po and "variants" in po:
        lines += [
            "",
            f"## DPO, {po['shape']} shape ({po['parameters'] / 1e6:.0f}M, random weights), LoRA {po['lora']}: "
            f"{po['timed_steps']} timed steps of {po['batch_size_pairs']} pairs, {po['real_tokens']} real tokens",
            "",
            "| variant | tokens/s | x TRL DPOTrainer | median per-batch x TRL | median step (s) | peak memory (GiB) |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        for name, v in po["variants"].items():
            if "error" in v:
                lines.append(f"| {name} | failed: {v['error'][:80]} |||||")
                continue
            lines.append(
                f"| {name} | {v['tokens_per_s']:.0f} | {fmt(v.get('speedup_vs_TRL DPOTrainer'), '.2f')} | "
                f"{fmt(v.get('median_batch_speedup_vs_TRL DPOTrainer'), '.2f')} | {v['median_step_s']:.3f} | "
                f"{fmt(v['peak_memory_gib'], '.1f')} |"
            )
    ds = results["sections"].get("dsp")
    if ds and "models" in ds:
        general = sorted({g for row in ds["models"].values() for g in row["general"]})
        lines += [
            "",
            f"## DSP customized RM, {ds['model']}: {ds['train_queries']} training queries ({ds['train_pairs']} "
            f"pairs), {ds['test_queries']} held-out queries, {ds['general_train_pairs']} general training pairs",
            "",
            "| model | " + " | ".join(DSP_DOMAINS) + " | DSP mean | " + " | ".join(general) + " | steps | train s |",
            "|---" * (len(DSP_DOMAINS) + len(general) + 4) + "|",
        ]
        for name, row in ds["models"].items():
            lines.append(
                f"| {name} | "
                + " | ".join(fmt(row["dsp"].get(d)) for d in DSP_DOMAINS)
                + f" | {fmt(row['dsp'].get('mean'))} | "
                + " | ".join(fmt(row["general"].get(g)) for g in general)
                + f" | {row['steps']}{' (time budget)' if row['stopped_by_time_budget'] else ''} | "
                + f"{row['train_s']:.0f} |"
            )
    for name, section in results["sections"].items():
        if "skipped" in section or "error" in section:
            lines += ["", f"## {name}: {section.get('skipped') or section.get('error')}"]
    return "\n".join(lines) + "\n"
