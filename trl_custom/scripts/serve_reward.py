# Copyright 2026 The trl-custom authors. Licensed under the Apache License, Version 2.0.
"""
`trl-custom serve-reward`: serve a reward model over HTTP for online-RL workers (see `trl_custom.serving`).

```bash
trl-custom serve-reward --model_name_or_path outputs/dsp-rm --port 8001
# another machine's workers: bind its address, with an API key (clients send 'Authorization: Bearer KEY')
TRL_CUSTOM_API_KEY=secret trl-custom serve-reward --model_name_or_path outputs/dsp-rm --host 0.0.0.0 --device cuda:0
```

A YAML with the same keys works with `--config`.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..serving.serve_reward_config import ServeRewardConfig
from .trl_parser import StrictTrlParser


def make_parser(prog: str | None = None) -> StrictTrlParser:
    return StrictTrlParser((ServeRewardConfig,), prog=prog)


def main(argv: Sequence[str] | None = None, prog: str | None = None) -> int:
    try:
        (config,) = make_parser(prog).parse_args_and_config(args=argv)
    except ValueError as e:  # the settings' checks (an exposed host without an API key, ...): one line, at once
        raise SystemExit(f"{prog or 'serve-reward'}: error: {e}") from None
    from ..serving.server import serve

    serve(config)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
