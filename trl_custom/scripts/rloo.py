# Copyright 2026 The trl-custom authors. Licensed under the Apache License, Version 2.0.
"""`trl-custom rloo` (`recipes/rloo.py`): personalized RLOO (see `trl_custom.scripts.online_rl`)."""

from __future__ import annotations

from . import online_rl


def make_parser(prog: str | None = None):
    return online_rl.make_parser(prog, trainer="rloo")


main = online_rl.main


if __name__ == "__main__":  # `accelerate launch -m trl_custom.scripts.rloo`, what `trl-custom rloo` runs
    main(*make_parser().parse_args_and_config())
