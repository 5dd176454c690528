# Copyright 2026 The trl-custom authors. Licensed under the Apache License, Version 2.0.
"""Customized / general reward model training (DSP three-stage scheme, or any TRL preference dataset), TRL-style.

    accelerate launch --config_file trl_custom/accelerate_configs/single_cpu.yaml recipes/reward.py \
        --config trl_custom/recipes/dsp_stage3_customized_minilm.yaml [--any_yaml_key value ...]

(`trl-custom reward --config dsp_stage3_customized_minilm --accelerate_config single_cpu` is the same run, also from
an installed wheel.) Every YAML key can be overridden on the command line, e.g. `--dsp_file path/or/https-url.json`, or
`--dataset_name my/dataset --condition_column domain` (TRL's data arguments; a TRL reward YAML runs unchanged). The
code is `trl_custom.scripts.reward` (data, training, evaluation, figures, model card), which `trl-custom reward` runs.
"""

from trl_custom.scripts.reward import main, make_parser


if __name__ == "__main__":
    main(*make_parser().parse_args_and_config())
