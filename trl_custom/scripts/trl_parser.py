# Copyright 2026 The trl-custom authors. Licensed under the Apache License, Version 2.0.
"""`StrictTrlParser`: TRL's `TrlParser` with exact names and one-line errors, for the recipes and the dataclass
commands, and the split of `trl-custom reward/dpo`'s arguments between the recipe and `accelerate launch`."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable, Sequence

import yaml
from trl import TrlParser

from .config_file import CONFIG_HELP, RECIPES, OneLineErrors, closest, did_you_mean, long_flags, packaged_file


def accelerate_launch_flags() -> dict[str, bool]:
    """The flags of `accelerate launch` (both spellings), each with whether it takes a value."""
    from accelerate.commands.launch import launch_command_parser

    parser = launch_command_parser()
    return {flag: action.nargs != 0 for action in parser._actions for flag in action.option_strings if flag != "-h"}


def check_machines(launch_args) -> None:
    """
    A launch over several machines (`num_machines > 1`, from `--num_machines` or the accelerate config) names, on the
    command line or in its config, this machine's `--machine_rank` and the head node's `--main_process_ip`; the rank
    is below `num_machines` and the processes split evenly over the machines. Otherwise a `ValueError` with the fix
    (accelerate would assume rank 0 on every machine, or stop on an assertion).

    Args:
        launch_args (`argparse.Namespace`): The parsed arguments of `accelerate launch`.
    """
    config = {}
    if launch_args.config_file is not None:
        with open(launch_args.config_file, encoding="utf-8") as f:
            config = yaml.safe_load(f) or {}

    def value(name):
        given = getattr(launch_args, name, None)
        return given if given is not None else config.get(name)

    num_machines = int(value("num_machines") or 1)
    if num_machines <= 1:
        return
    where = f" (num_machines={num_machines})"
    missing = [f"--{name}" for name in ("machine_rank", "main_process_ip") if value(name) is None]
    if missing:
        raise ValueError(
            f"A launch over several machines{where} needs {' and '.join(missing)} on each machine: --machine_rank 0 "
            "on the head node, 1, 2, ... on the others, and --main_process_ip the head node's address (the same on "
            "every machine); the repository's examples/multi_node/ has a SLURM and a two-host launcher that set them."
        )
    rank, num_processes = int(value("machine_rank")), int(value("num_processes") or num_machines)
    if not 0 <= rank < num_machines:
        raise ValueError(f"--machine_rank {rank}: the machines of this launch are numbered 0 to {num_machines - 1}.")
    if num_processes % num_machines:
        raise ValueError(
            f"--num_processes {num_processes} counts the processes of all machines{where}: give a multiple of "
            f"{num_machines} (machines x processes per machine, e.g. {num_machines * 8} for 8 GPUs each)."
        )


class StrictTrlParser(OneLineErrors, TrlParser):
    """
    TRL's [`~trl.TrlParser`] (dataclasses, `--config x.yaml`, `--key value` overrides of its keys), stricter:

    - an abbreviated flag is unknown (`--condition_colum` does not stand for `--condition_column`);
    - an unknown flag or YAML key is a one-line error with the closest name, before any dataclass is built:
      `unknown argument --condtion_column; did you mean --condition_column?`; a flag of `accelerate launch` given
      after the script says where it goes;
    - `--config NAME` (no such file, no `.yaml`) is the recipe of that name shipped in `trl_custom/recipes/`
      (`--config quickstart_minilm`);
    - errors are one line, without the usage of hundreds of flags.

    `trl-custom reward/dpo` pass the flags of `accelerate launch` on to it: [`~StrictTrlParser.split_launch_args`].
    """

    def __init__(self, dataclass_types=None, **kwargs):
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(dataclass_types, **kwargs)
        # in the help (TrlParser takes `--config` out of the arguments before parsing, so it never reaches argparse)
        self.add_argument("--config", default=argparse.SUPPRESS, metavar="YAML_OR_NAME", help=CONFIG_HELP)

    def parse_args_and_config(
        self,
        args: Iterable[str] | None = None,
        return_remaining_strings: bool = False,
        fail_with_unknown_args: bool = True,
        separate_remaining_strings: bool = False,
    ) -> tuple:
        """
        TRL's `parse_args_and_config`, after checking every name (see the class docstring). With
        `return_remaining_strings=True`, the unknown command-line strings are returned (and the config file's are
        always refused), as with TRL; otherwise they are an error.
        """
        args = self.resolve_config(list(sys.argv[1:] if args is None else args))
        unknown = self.unknown_strings(args)
        if not return_remaining_strings:
            self.refuse_unknown(unknown)
        output = super().parse_args_and_config(args, return_remaining_strings=True, separate_remaining_strings=True)
        if not return_remaining_strings:
            return output[:-2]
        return output[:-2] + (([], output[-1]) if separate_remaining_strings else (output[-1],))

    def resolve_config(self, args: list[str]) -> list[str]:
        """`args` with `--config NAME` (or `--config=NAME`) replaced by `--config PATH`, PATH the shipped recipe NAME
        (a file stays as it is)."""
        args = [part for arg in args for part in (arg.split("=", 1) if arg.startswith("--config=") else [arg])]
        if "--config" not in args:
            return args
        index = args.index("--config")
        if index + 1 >= len(args) or args[index + 1].startswith("--"):
            self.error("--config needs a YAML file or the name of a recipe shipped with trl-custom.")
        try:
            path = packaged_file(args[index + 1], RECIPES, "--config")
        except ValueError as e:
            self.error(str(e))
        return args[: index + 1] + [path] + args[index + 2 :]

    def unknown_strings(self, args: list[str]) -> list[str]:
        """
        The command-line strings no argument of the parser takes (parsed over the config file's values); an unknown
        key of the config file is an error.
        """
        config, rest = {}, list(args)
        if "--config" in rest:
            index = rest.index("--config")
            path = rest[index + 1]
            del rest[index : index + 2]
            with open(path, encoding="utf-8") as f:
                config = yaml.safe_load(f) or {}
            if not isinstance(config, dict):
                self.error(f"--config {path} must hold a YAML mapping of argument names to values.")
            config = {key: value for key, value in config.items() if key != "env"}  # TRL's environment variables
            dests = {action.dest for action in self._actions if action.dest != "help"}
            for key in config:
                if key not in dests:
                    self.error(f"--config {path}: unknown key {key}{did_you_mean(key, dests)}")
        self.set_defaults_with_config(**config)
        return self.parse_known_args(rest)[1]

    def refuse_unknown(self, unknown: Sequence[str], launch_flags: dict[str, bool] | None = None) -> None:
        """
        A one-line error for the first unknown string: the closest name among the parser's flags and `launch_flags`
        (or, outside `trl-custom`, accelerate's, which then belong before the script).
        """
        if not unknown:
            return
        first = unknown[0]
        if not first.startswith("-"):
            self.error(f"unexpected argument {first!r}")
        flag = first.split("=", 1)[0]
        launcher = launch_flags if launch_flags is not None else accelerate_launch_flags()
        if launch_flags is None and flag in launcher:
            self.error(
                f"{flag} is a flag of `accelerate launch`: give it before the script (`accelerate launch {flag} ... "
                f"recipes/<script>.py ...`) or to `trl-custom reward/dpo`"
            )
        match = closest(flag, long_flags(self) + [f for f in launcher if f.startswith("--")])
        hint = f"; did you mean {match}?" if match else ""
        if launch_flags is None and match in launcher:
            hint += " (a flag of `accelerate launch`: give it before the script)"
        self.error(f"unknown argument {flag}{hint}")

    def split_launch_args(self, args: Sequence[str], launch_flags: dict[str, bool]) -> tuple[list[str], list[str]]:
        """
        `(script_args, launch_args)`: the strings of `args` the recipe takes (checked and parsed here, so bad input
        fails before anything is launched; `--help` prints the recipe's help), and the flags of `launch_flags` (flag:
        takes a value) with their values. Any other string is a one-line error with the closest flag of either.
        """
        args = self.resolve_config(list(args))
        unknown = self.unknown_strings(args)
        launch_args, script_args, position = [], [], 0
        index = 0
        while index < len(unknown):
            flag = unknown[index].split("=", 1)[0]
            if flag not in launch_flags:
                self.refuse_unknown(unknown[index:], launch_flags)
            takes_value = launch_flags[flag] and "=" not in unknown[index]
            end = index + 1 + (takes_value and index + 1 < len(unknown) and not unknown[index + 1].startswith("-"))
            launch_args += unknown[index:end]
            index = end
        for item in args:  # the recipe's strings: `args` without `launch_args` (an ordered subsequence of it)
            if position < len(launch_args) and item == launch_args[position]:
                position += 1
            else:
                script_args.append(item)
        self.parse_args_and_config(script_args)  # the dataclasses' own checks (data files, values), before launching
        return script_args, launch_args
