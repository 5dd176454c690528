# Copyright 2026 The trl-custom authors. Licensed under the Apache License, Version 2.0.
"""Personalized GRPO: TRL's GRPOTrainer with a user model in generation and in every log-prob pass.

    accelerate launch --config_file trl_custom/accelerate_configs/single_cpu.yaml recipes/grpo.py \
        --config trl_custom/recipes/pgrpo_lora_smollm2.yaml [--any_yaml_key value ...]

(`trl-custom grpo --config pgrpo_lora_smollm2 --accelerate_config single_cpu` is the same run.) The code is
`trl_custom.scripts.online_rl`.
"""

from trl_custom.scripts.grpo import main, make_parser


if __name__ == "__main__":
    main(*make_parser().parse_args_and_config())
