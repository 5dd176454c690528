# Copyright 2026 The trl-custom authors. Licensed under the Apache License, Version 2.0.
"""
The `trl-custom` command, shaped like TRL's `trl`:

    trl-custom reward --config quickstart_minilm --accelerate_config single_cpu [--any_key value] [accelerate flags]
    trl-custom dpo --config pdpo_lora_smollm2 --accelerate_config multi_cpu --num_processes 2
    trl-custom evaluate --model_name_or_path outputs/my-rm --dataset_name my/prefs --condition_column domain ...
    trl-custom augment --config augment.yaml
    trl-custom synthetic-users --dsp_file demo --output users.jsonl
    trl-custom fit-condition --model_name_or_path outputs/my-rm --condition legal --pairs_file legal.jsonl ...
    trl-custom serve-reward --model_name_or_path outputs/my-rm --port 8001
    trl-custom label-pairs --config label_pairs_dsp_smollm2 --reward_model outputs/my-rm ...
    trl-custom evaluate-policy --policy outputs/my-policy --judge outputs/other-rm --dsp_file held_out.json ...

`reward` and `dpo` run the same code as `recipes/reward.py` and `recipes/dpo.py` (`trl_custom.scripts.reward` /
`.dpo`) through `accelerate launch`, as `trl reward` does. Their arguments are checked here first, so a misspelled
flag or YAML key fails at once, in one line, with the closest name; the flags of `accelerate launch` go to it
(`--num_processes 2`, `--config_file x.yaml`), and `--accelerate_config NAME_OR_PATH` picks one of the accelerate
configs shipped in `trl_custom/accelerate_configs/` by name (`single_cpu`, `multi_gpu`, `deepspeed_zero3`, ...) or a
file. `--config NAME` names a recipe shipped in `trl_custom/recipes/` (`quickstart_minilm`), or is a YAML file. The
other commands run in this process. A failing run shows its own error once and exits with its exit code.

Importing this module imports neither torch nor TRL: `trl-custom --help` answers at once; a command imports what it
needs when it runs.
"""

from __future__ import annotations

import argparse
import importlib
import os
import shlex
import subprocess
import sys
from collections.abc import Sequence

from .scripts.config_file import ACCELERATE_CONFIGS, did_you_mean, packaged_file


# name: (module, help, launched through accelerate)
COMMANDS = {
    "reward": ("trl_custom.scripts.reward", "Train a (conditioned) reward model", True),
    "dpo": ("trl_custom.scripts.dpo", "Train a personalized DPO policy", True),
    "grpo": ("trl_custom.scripts.grpo", "Train a personalized policy online with GRPO", True),
    "rloo": ("trl_custom.scripts.rloo", "Train a personalized policy online with RLOO", True),
    "augment": ("trl_custom.scripts.augment", "Add judge agreement and margins to preference pairs", False),
    "evaluate": ("trl_custom.scripts.evaluate", "Evaluate a reward model per domain / condition", False),
    "synthetic-users": ("trl_custom.scripts.synthetic_users", "Write synthetic length-preference users", False),
    "fit-condition": ("trl_custom.scripts.fit_condition", "Add a condition to an embedding RM from k pairs", False),
    "serve-reward": ("trl_custom.scripts.serve_reward", "Serve a reward model over HTTP for online RL", False),
    "label-pairs": ("trl_custom.scripts.label_pairs", "Label pairs per condition with a conditioned RM", False),
    "evaluate-policy": ("trl_custom.scripts.evaluate_policy", "Win rates of a policy per condition, judge RM", False),
}

LAUNCH_HELP = (
    "The flags of `accelerate launch` (--num_processes N, --config_file FILE, --mixed_precision, ...) go to it; "
    f"--accelerate_config NAME_OR_PATH is --config_file with a file or a name of {ACCELERATE_CONFIGS.name}/ shipped "
    "with trl-custom (single_cpu, multi_cpu, single_gpu, multi_gpu, deepspeed_zero2, deepspeed_zero3, fsdp2, ...; "
    "several machines: multi_node_ddp, multi_node_zero3, multi_node_fsdp2, with --machine_rank --main_process_ip)."
)


def resolve_accelerate_config(launch_args: list[str]) -> list[str]:
    """`--accelerate_config NAME_OR_PATH` -> `--config_file PATH` (a file, or a config shipped with trl-custom)."""
    if "--accelerate_config" not in launch_args:
        return launch_args
    index = launch_args.index("--accelerate_config")
    if index + 1 >= len(launch_args) or launch_args[index + 1].startswith("--"):
        raise SystemExit(f"trl-custom: --accelerate_config needs a file or a name of {ACCELERATE_CONFIGS}.")
    try:
        path = packaged_file(launch_args[index + 1], ACCELERATE_CONFIGS, "--accelerate_config")
    except ValueError as e:
        raise SystemExit(f"trl-custom: {e}") from None
    return ["--config_file", path] + launch_args[:index] + launch_args[index + 2 :]


def exit_code(returncode: int) -> int:
    """A child's return code as a shell reports it: a process killed by signal N exits with 128 + N."""
    return 128 - returncode if returncode < 0 else returncode


def launch(name: str, argv: list[str]) -> int:
    """
    Run the `name` training script through `accelerate launch -m`, after checking its arguments; returns the run's
    exit code. The run prints its own error: no second traceback from the launcher.
    """
    module_name = COMMANDS[name][0]
    from .scripts.trl_parser import accelerate_launch_flags, check_machines

    parser = importlib.import_module(module_name).make_parser(prog=f"trl-custom {name}")
    parser.epilog = LAUNCH_HELP
    try:
        script_args, launch_args = parser.split_launch_args(
            argv, {**accelerate_launch_flags(), "--accelerate_config": True}
        )
    except (ValueError, OSError) as e:  # the dataclasses' checks of the arguments (values, data files)
        raise SystemExit(f"trl-custom {name}: error: {e}") from None
    from accelerate.commands.launch import launch_command, launch_command_parser

    launch_args = resolve_accelerate_config(launch_args)
    accelerate_args = launch_command_parser().parse_args(launch_args + ["--module", module_name] + script_args)
    try:
        check_machines(accelerate_args)
    except ValueError as e:
        raise SystemExit(f"trl-custom {name}: error: {e}") from None
    # the model card's "How it was made" shows the command as typed
    os.environ["TRL_CUSTOM_COMMAND"] = " ".join(["trl-custom", name] + [shlex.quote(a) for a in argv])
    try:
        launch_command(accelerate_args)
    except subprocess.CalledProcessError as e:  # one process (accelerate's simple launcher)
        return exit_code(e.returncode)
    except Exception as e:  # several processes: torchrun's ChildFailedError (each rank printed its own error)
        from torch.distributed.elastic.multiprocessing.errors import ChildFailedError

        if not isinstance(e, ChildFailedError):
            raise
        return exit_code(e.get_first_failure()[1].exitcode)
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
    """Run the `trl-custom` command line; returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        make_parser().print_help()
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        what = "argument" if name.startswith("-") else "command"
        hint = did_you_mean(name, COMMANDS)
        print(f"trl-custom: error: unknown {what} {name}{hint} (commands: {', '.join(COMMANDS)})", file=sys.stderr)
        return 2
    module_name, _, launched = COMMANDS[name]
    if launched:
        return launch(name, rest)
    importlib.import_module(module_name).main(rest, prog=f"trl-custom {name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
