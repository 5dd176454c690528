# Copyright 2026 The trl-custom authors. Licensed under the Apache License, Version 2.0.
"""
Argument helpers every command shares, light enough for `trl-custom --help` (no torch, no TRL):

- `--config x.yaml` for the argparse commands (`evaluate`, `synthetic-users`), as TRL's `TrlParser` does it for the
  dataclass ones: the YAML's keys are the flags without `--`, and flags on the command line override them;
- "did you mean" for unknown flags, YAML keys and commands ([`did_you_mean`], with difflib);
- the files shipped inside the package: the accelerate configs (`trl_custom/accelerate_configs/`) and the recipes'
  YAMLs (`trl_custom/recipes/`), found by name ([`packaged_file`]).
"""

from __future__ import annotations

import argparse
import difflib
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path

import yaml


CONFIG_HELP = (
    "YAML file of arguments (keys: the flag names without '--'; for `trl-custom reward/dpo` also the name of a recipe "
    "shipped in trl_custom/recipes/, e.g. quickstart_minilm); flags on the command line override it."
)
PACKAGE_DIR = Path(__file__).resolve().parents[1]
ACCELERATE_CONFIGS = PACKAGE_DIR / "accelerate_configs"
RECIPES = PACKAGE_DIR / "recipes"


def _canonical(name: str) -> str:
    """A flag or key with `_` for `-` past its leading dashes (`--condition-column` -> `--condition_column`)."""
    body = name.lstrip("-")
    return name[: len(name) - len(body)] + body.replace("-", "_")


def closest(word: str, candidates: Iterable[str]) -> str | None:
    """
    The candidate closest to `word` (difflib), or None when none is close. Spellings that differ only in `-` / `_`
    count as one candidate, given with `_` (as the help shows the flags).
    """
    match = difflib.get_close_matches(_canonical(word), sorted({_canonical(c) for c in candidates}), n=1, cutoff=0.6)
    return match[0] if match else None


def did_you_mean(word: str, candidates: Iterable[str]) -> str:
    """`"; did you mean X?"` with the [`closest`] candidate to `word`, or `""`."""
    match = closest(word, candidates)
    return f"; did you mean {match}?" if match else ""


class OneLineErrors:
    """Parser errors in one line, `<prog>: error: <message>`, without argparse's usage (hundreds of flags for the
    recipes)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message}\n")


class ArgumentParser(OneLineErrors, argparse.ArgumentParser):
    """The argparse commands' parser: one-line errors, and no abbreviated flags (`--condition_colum` is unknown)."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)


def packaged_names(folder: Path) -> list[str]:
    """The names (file stems) of the YAML files in a packaged folder."""
    return sorted(path.stem for path in folder.glob("*.yaml"))


def packaged_file(value: str, folder: Path, flag: str) -> str:
    """
    `value` itself when it is a file, else `folder/<value>.yaml` when `value` names a file shipped there (a name, no
    `.yaml`), else a `ValueError` naming `flag`, the folder's names and the closest one.
    """
    path = Path(value)
    if path.is_file():
        return value
    if path.suffix not in (".yaml", ".yml") and (folder / f"{value}.yaml").is_file():
        return str(folder / f"{value}.yaml")
    names = packaged_names(folder)
    hint = did_you_mean(value, names) if path.suffix not in (".yaml", ".yml") else ""
    raise ValueError(
        f"{flag} {value}: no such file, nor a name shipped with trl-custom{hint} (names: {', '.join(names)}; they "
        f"are the files of {folder})."
    )


def add_config_argument(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("--config", default=None, metavar="YAML", help=CONFIG_HELP)
    return parser


def long_flags(parser: argparse.ArgumentParser) -> list[str]:
    """The `--flags` of a parser, `--help` aside."""
    return [flag for action in parser._actions for flag in action.option_strings if flag.startswith("--")]


def refuse_unknown_flags(parser: argparse.ArgumentParser, unknown: Sequence[str]) -> None:
    """A one-line parser error for the first unknown command-line string: an unknown flag with the closest known one,
    or an unexpected value."""
    if not unknown:
        return
    first = unknown[0]
    if first.startswith("-"):
        flag = first.split("=", 1)[0]
        parser.error(f"unknown argument {flag}{did_you_mean(flag, long_flags(parser))}")
    parser.error(f"unexpected argument {first!r}")


def parse_args_with_config(parser: argparse.ArgumentParser, argv: Sequence[str] | None = None) -> argparse.Namespace:
    """
    Parse `argv` with `parser` (an [`ArgumentParser`]), taking defaults from the YAML file of `--config` (added to the
    parser if missing). An unknown key or flag, or a value outside an argument's choices, is a parser error naming it
    and the closest valid name.
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
            parser.error(f"--config {path}: unknown key {unknown[0]}{did_you_mean(unknown[0], actions)}")
        for key, value in config.items():
            action = actions[key]
            values = value if isinstance(value, list) else [value]
            if action.choices is not None and any(v not in action.choices for v in values):
                parser.error(f"--config {path}: {key}={value!r} is not one of {list(action.choices)}.")
            action.default = value
            action.required = False
    args, unknown = parser.parse_known_args(argv)
    refuse_unknown_flags(parser, unknown)
    return args
