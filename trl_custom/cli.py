# Copyright 2026 The trl-custom authors. Licensed under the Apache License, Version 2.0.
"""
The `trl-custom` command, shaped like TRL's `trl`:

    trl-custom reward --config recipes/quickstart_minilm.yaml [--any_key value] [accelerate launch flags]
    trl-custom dpo --config recipes/pdpo_lora_smollm2.yaml --accelerate_config multi_cpu --num_processes 2
    trl-custom evaluate --model_name_or_path outputs/my-rm --dataset_name my/prefs --condition_column domain ...
    trl-custom augment --config augment.yaml
    trl-custom synthetic-users --dsp_file demo --output users.jsonl
    trl-custom fit-condition --model_name_or_path outputs/my-rm --condition legal --pairs_file legal.jsonl ...

`reward` and `dpo` run the same code as `recipes/reward.py` and `recipes/dpo.py` (`trl_custom.scripts.reward` /
`.dpo`) through `accelerate launch`, as `trl reward` does: arguments the recipe does not know go to `accelerate
launch` (`--num_processes 2`, `--config_file x.yaml`), and `--accelerate_config NAME_OR_PATH` picks one of the
repository's `accelerate_configs/` by name (`single_cpu`, `multi_gpu`, `deepspeed_zero3`, ...) or a file. The other
commands run in this process. `--config x.yaml` reads any command's arguments from a YAML file.
"""

from __future__ import annotations

import argparse
import importlib
import os
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path


# name: (module, help, launched through accelerate)
COMMANDS = {
    "reward": ("trl_custom.scripts.reward", "Train a (conditioned) reward model (recipes/reward.py)", True),
    "dpo": ("trl_custom.scripts.dpo", "Train a personalized DPO policy (recipes/dpo.py)", True),
    "augment": ("trl_custom.scripts.augment", "Add judge agreement and margins to preference pairs", False),
    "evaluate": ("trl_custom.scripts.evaluate", "Evaluate a reward model per domain / condition", False),
    "synthetic-users": ("trl_custom.scripts.synthetic_users", "Write synthetic length-preference users", False),
    "fit-condition": ("trl_custom.scripts.fit_condition", "Add a condition to an embedding RM from k pairs", False),
}
ACCELERATE_CONFIGS = Path(__file__).resolve().parents[1] / "accelerate_configs"


def _subtract_subsequence(items: list[str], subsequence: list[str]) -> list[str]:
    """`items` without the ordered `subsequence` (as TRL's CLI separates the script's and accelerate's flags)."""
    remaining = iter(subsequence)
    current = next(remaining, None)
    out = []
    for item in items:
        if current is not None and item == current:
            current = next(remaining, None)
        else:
            out.append(item)
    return out


def resolve_accelerate_config(launch_args: list[str]) -> list[str]:
    """`--accelerate_config NAME_OR_PATH` -> `--config_file PATH` (a file, or `accelerate_configs/<NAME>.yaml`)."""
    if "--accelerate_config" not in launch_args:
        return launch_args
    index = launch_args.index("--accelerate_config")
    if index + 1 >= len(launch_args):
        raise SystemExit("trl-custom: --accelerate_config needs a value (a file or a name in accelerate_configs/).")
    value = launch_args[index + 1]
    path = Path(value) if Path(value).is_file() else ACCELERATE_CONFIGS / f"{value}.yaml"
    if not path.is_file():
        names = sorted(p.stem for p in ACCELERATE_CONFIGS.glob("*.yaml")) if ACCELERATE_CONFIGS.is_dir() else []
        raise SystemExit(
            f"trl-custom: --accelerate_config {value}: neither a file nor one of the configs in {ACCELERATE_CONFIGS} "
            f"({', '.join(names) or 'none found'}). Give a path to an accelerate config file."
        )
    return ["--config_file", str(path)] + launch_args[:index] + launch_args[index + 2 :]


def launch(name: str, argv: list[str]) -> int:
    """Run the `name` training script through `accelerate launch -m`, splitting its flags from accelerate's."""
    module_name = COMMANDS[name][0]
    module = importlib.import_module(module_name)
    parser = module.make_parser(prog=f"trl-custom {name}")
    # Handles --help (and exits); flags the recipe does not know are accelerate's. Unknown YAML keys are errors, as
    # when the recipe runs directly.
    *_, config_remaining, cli_remaining = parser.parse_args_and_config(
        argv, return_remaining_strings=True, separate_remaining_strings=True
    )
    if config_remaining:
        keys = [key[2:] for key in config_remaining if key.startswith("--")]
        raise SystemExit(f"trl-custom {name}: unknown key(s) in the --config file: {keys}. Fix or remove them.")
    launch_args = resolve_accelerate_config(cli_remaining)
    script_args = _subtract_subsequence(argv, cli_remaining)
    from accelerate.commands.launch import launch_command, launch_command_parser

    accelerate_args = launch_command_parser().parse_args(launch_args + ["--module", module_name] + script_args)
    # the model card's "How it was made" shows the command as typed
    os.environ["TRL_CUSTOM_COMMAND"] = " ".join(["trl-custom", name] + [shlex.quote(a) for a in argv])
    launch_command(accelerate_args)
    return 0


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="trl-custom",
        description="Customized and personalized reward models on top of TRL. `trl-custom <command> --help` lists "
        "a command's arguments; every command reads them from `--config x.yaml` too.",
        allow_abbrev=False,
    )
    subparsers = parser.add_subparsers(title="commands", dest="command", metavar="COMMAND")
    for name, (_, help_text, launched) in COMMANDS.items():
        suffix = " (through accelerate launch)" if launched else ""
        subparsers.add_parser(name, help=help_text + suffix, add_help=False)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the `trl-custom` command line."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = make_parser()
    args, _ = parser.parse_known_args(argv[:1])
    if args.command is None:
        parser.print_help()
        return 0
    name, rest = argv[0], argv[1:]
    module_name, _, launched = COMMANDS[name]
    if launched:
        return launch(name, rest)
    importlib.import_module(module_name).main(rest, prog=f"trl-custom {name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
