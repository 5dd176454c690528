# Copyright 2026 The trl-custom authors. Licensed under the Apache License, Version 2.0.
"""Personalized RLOO: TRL's RLOOTrainer with a user model in generation and in every log-prob pass.

    accelerate launch --config_file trl_custom/accelerate_configs/single_cpu.yaml recipes/rloo.py \
        --config trl_custom/recipes/prloo_lora_smollm2.yaml [--any_yaml_key value ...]

(`trl-custom rloo --config prloo_lora_smollm2 --accelerate_config single_cpu` is the same run.) The code is
`trl_custom.scripts.online_rl`.
"""

from trl_custom.scripts.rloo import main, make_parser


if __name__ == "__main__":
    main(*make_parser().parse_args_and_config())
