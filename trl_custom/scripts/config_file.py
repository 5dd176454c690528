# Copyright 2026 The trl-custom authors. Licensed under the Apache License, Version 2.0.
"""`--config x.yaml` for the argparse commands (`evaluate`, `synthetic-users`), as TRL's `TrlParser` does it for the
dataclass ones: the YAML's keys are the flags without `--`, and flags on the command line override them."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import yaml


CONFIG_HELP = "YAML file of arguments (keys: the flag names without '--'); flags on the command line override it."


def add_config_argument(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("--config", default=None, metavar="YAML", help=CONFIG_HELP)
    return parser


def parse_args_with_config(parser: argparse.ArgumentParser, argv: Sequence[str] | None = None) -> argparse.Namespace:
    """
    Parse `argv` with `parser`, taking defaults from the YAML file of `--config` (added to the parser if missing).
    An unknown key or a value outside an argument's choices is a parser error naming the key and the fix.
    """
    if not any(action.dest == "config" for action in parser._actions):
        add_config_argument(parser)
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--config" in argv:
        index = argv.index("--config")
        if index + 1 >= len(argv):
            parser.error("--config needs a YAML file.")
        path = argv[index + 1]
        del argv[index : index + 2]
        try:
            with open(path, encoding="utf-8") as f:
                config = yaml.safe_load(f) or {}
        except OSError as e:
            parser.error(f"--config {path}: {e.strerror}.")
        if not isinstance(config, dict):
            parser.error(f"--config {path} must hold a YAML mapping of argument names to values.")
        actions = {action.dest: action for action in parser._actions if action.dest not in ("help", "config")}
        unknown = sorted(set(config) - set(actions))
        if unknown:
            parser.error(f"--config {path}: unknown key(s) {unknown}. Valid keys: {', '.join(sorted(actions))}.")
        for key, value in config.items():
            action = actions[key]
            values = value if isinstance(value, list) else [value]
            if action.choices is not None and any(v not in action.choices for v in values):
                parser.error(f"--config {path}: {key}={value!r} is not one of {list(action.choices)}.")
            action.default = value
            action.required = False
    return parser.parse_args(argv)
