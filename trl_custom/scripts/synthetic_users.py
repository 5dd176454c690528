# Copyright 2026 The trl-custom authors. Licensed under the Apache License, Version 2.0.
"""
`trl-custom synthetic-users`: write the synthetic short / long / mixed length-preference users
([`trl_custom.personalized_dpo.synthetic_users`]) of a DSP-format prompt file as JSON lines.

    trl-custom synthetic-users --dsp_file dsp_queries.json --output users.jsonl --users_per_group 4
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence

from ..data.demo import make_demo_dsp_queries
from ..data.preferences import load_dsp_queries
from ..data.sources import resolve_data_file
from ..personalized_dpo import synthetic_users
from ..personalized_dpo.synthetic_users import GROUPS, build_length_preference_dataset
from .config_file import ArgumentParser, parse_args_with_config


def main(argv: Sequence[str] | None = None, prog: str | None = None) -> None:
    parser = ArgumentParser(
        prog=prog, description=synthetic_users.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--dsp_file",
        required=True,
        help="Prompt file with several responses per prompt (DSP format): a path or an https:// URL, or 'demo'.",
    )
    parser.add_argument("--output", required=True, help="Output JSON-lines file.")
    parser.add_argument("--users_per_group", type=int, default=4)
    parser.add_argument("--pairs_per_user", type=int, default=40)
    parser.add_argument("--groups", nargs="+", default=list(GROUPS), choices=GROUPS)
    parser.add_argument("--min_ratio", type=float, default=1.5, help="Minimum length ratio long/short.")
    parser.add_argument("--max_chars", type=int, default=None, help="Cut responses to this many characters.")
    parser.add_argument("--seed", type=int, default=0)
    args = parse_args_with_config(parser, argv)
    try:
        queries = (
            make_demo_dsp_queries()
            if args.dsp_file == "demo"
            else load_dsp_queries(resolve_data_file(args.dsp_file, "--dsp_file"))
        )
    except (FileNotFoundError, ConnectionError) as e:
        parser.error(str(e))
    dataset = build_length_preference_dataset(
        queries,
        args.users_per_group,
        args.pairs_per_user,
        args.groups,
        args.min_ratio,
        args.max_chars,
        args.seed,
    )
    with open(args.output, "w", encoding="utf-8") as f:
        for row in dataset:
            f.write(json.dumps(row) + "\n")
    print(f"Wrote {len(dataset)} pairs for {len(set(dataset['user_id']))} users to {args.output}.")


if __name__ == "__main__":
    main()
