# Copyright 2026 The trl-custom authors. Licensed under the Apache License, Version 2.0.
"""Personalized DPO (P-DPO), TRL-style.

    accelerate launch --config_file accelerate_configs/single_cpu.yaml recipes/dpo.py \
        --config recipes/pdpo_lora_smollm2.yaml [--any_yaml_key value ...]
"""

from trl import ModelConfig, TrlParser, get_peft_config, get_quantization_config

from trl_custom import PersonalizedDPOConfig, PersonalizedDPOTrainer
from trl_custom.models import check_quantization, resolve_model_path
from trl_custom.scripts.dpo import DPOScriptArguments, build_dpo_data


def main(script_args: DPOScriptArguments, training_args: PersonalizedDPOConfig, model_args: ModelConfig):
    check_quantization(model_args)
    training_args.model_init_kwargs = {
        "revision": model_args.model_revision,
        "attn_implementation": model_args.attn_implementation,
        "dtype": model_args.dtype,
        **(training_args.model_init_kwargs or {}),
    }
    # The "before" numbers are measured inside train(), once the model is wrapped for distributed training: calling
    # trainer.evaluate() before trainer.train() leaves it unwrapped, and under DDP the gradients are never averaged.
    training_args.eval_on_start = True
    train, held_out = build_dpo_data(script_args, seed=training_args.seed)
    trainer = PersonalizedDPOTrainer(
        model=resolve_model_path(model_args.model_name_or_path),
        args=training_args,
        train_dataset=train,
        eval_dataset=held_out,
        quantization_config=get_quantization_config(model_args),
        peft_config=get_peft_config(model_args),
    )
    trainer.train(resume_from_checkpoint=training_args.resume_from_checkpoint)
    before = next((log for log in trainer.state.log_history if "eval_loss" in log), {})
    after = trainer.evaluate()
    trainer.save_model(training_args.output_dir)
    trainer.save_state()  # trainer_state.json: the logged losses and metrics
    trainer.accelerator.print(f"💾 Model and user model saved to {training_args.output_dir}.")
    trainer.accelerator.print(f"{'held-out implicit-reward accuracy':<44}{'before':>8}{'after':>8}")
    for key in sorted(k for k in after if k.startswith("eval_rewards/accuracies")):
        trainer.accelerator.print(f"{key[len('eval_') :]:<44}{before.get(key, float('nan')):8.3f}{after[key]:8.3f}")
    trainer.end()


if __name__ == "__main__":
    parser = TrlParser((DPOScriptArguments, PersonalizedDPOConfig, ModelConfig))
    main(*parser.parse_args_and_config())
