# Copyright 2026 The trl-custom authors. Licensed under the Apache License, Version 2.0.
"""
`python -m trl_custom <command>`: the `trl-custom` command line ([`trl_custom.cli`]), for an environment whose
scripts folder is not on the `PATH`:

    python -m trl_custom evaluate --model_name_or_path outputs/my-rm --dsp_file dsp_queries.json
    python -m trl_custom reward --config quickstart_minilm --accelerate_config single_cpu

Like the `trl-custom` command, it imports nothing heavy until a command runs.
"""

from .cli import main


if __name__ == "__main__":
    raise SystemExit(main())
