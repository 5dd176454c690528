# Copyright 2026 The trl-custom authors. Licensed under the Apache License, Version 2.0.
"""Personalized DPO (P-DPO), TRL-style.

    accelerate launch --config_file trl_custom/accelerate_configs/single_cpu.yaml recipes/dpo.py \
        --config trl_custom/recipes/pdpo_lora_smollm2.yaml [--any_yaml_key value ...]

(`trl-custom dpo --config pdpo_lora_smollm2 --accelerate_config single_cpu` is the same run.)

TRL's data arguments work as in `trl dpo` (`--dataset_name my/dataset --condition_column user_id`, or a `datasets:`
mixture); the code is `trl_custom.scripts.dpo` (data, training, evaluation, figures, model card), which
`trl-custom dpo` runs.
"""

from trl_custom.scripts.dpo import main, make_parser


if __name__ == "__main__":
    main(*make_parser().parse_args_and_config())
