# Copyright 2026 The trl-custom authors. Licensed under the Apache License, Version 2.0.
"""Customized / general reward model training (DSP three-stage scheme), TRL-style.

    accelerate launch --config_file accelerate_configs/single_cpu.yaml recipes/reward.py \
        --config recipes/dsp_stage3_customized_minilm.yaml [--any_yaml_key value ...]

Every YAML key can be overridden on the command line (TrlParser), e.g. `--dsp_file path/to/dsp_queries.json`.
"""

import json
import os

from trl import ModelConfig, TrlParser, get_peft_config, get_quantization_config

from trl_custom import CustomRewardConfig, CustomRewardTrainer, RewardScorer
from trl_custom.evaluation import evaluate_reward_model
from trl_custom.models import check_quantization, resolve_model_path
from trl_custom.scripts.reward import RewardScriptArguments, build_reward_data, print_before_after


def main(script_args: RewardScriptArguments, training_args: CustomRewardConfig, model_args: ModelConfig):
    check_quantization(model_args)
    model_path = resolve_model_path(model_args.model_name_or_path)
    training_args.model_init_kwargs = {
        "revision": model_args.model_revision,
        "attn_implementation": model_args.attn_implementation,
        "dtype": model_args.dtype,
        **(training_args.model_init_kwargs or {}),
    }
    held_out_dir = os.path.join(training_args.output_dir, "held_out")
    data = build_reward_data(script_args, held_out_dir, training_args.condition_column, training_args.seed)
    trainer = CustomRewardTrainer(
        model=model_path,
        args=training_args,
        train_dataset=data.train,
        quantization_config=get_quantization_config(model_args),
        peft_config=get_peft_config(model_args),
    )

    def evaluate():
        scorer = RewardScorer(
            trainer.model,
            trainer.processing_class,
            trainer.conditioning,
            max_length=training_args.max_length,
            batch_size=training_args.per_device_eval_batch_size,
        )
        trainer.model.eval()
        results = evaluate_reward_model(
            scorer, data.eval_queries or None, data.general_eval_files, progress=not training_args.disable_tqdm
        )
        trainer.model.train()
        return results

    main_process = trainer.accelerator.is_main_process
    before = evaluate() if script_args.evaluate_before and main_process else None
    trainer.train(resume_from_checkpoint=training_args.resume_from_checkpoint)
    trainer.save_model(training_args.output_dir)
    trainer.save_state()  # trainer_state.json: the logged losses and metrics
    trainer.accelerator.print(f"💾 Model saved to {training_args.output_dir}.")
    if main_process:
        after = evaluate()
        print(print_before_after(before, after))
        results_file = script_args.results_file or os.path.join(training_args.output_dir, "eval_results.json")
        with open(results_file, "w", encoding="utf-8") as f:
            json.dump({"before": before, "after": after}, f, indent=2)
        print(f"Held-out accuracies written to {results_file}.")
    trainer.end()


if __name__ == "__main__":
    parser = TrlParser((RewardScriptArguments, CustomRewardConfig, ModelConfig))
    main(*parser.parse_args_and_config())
