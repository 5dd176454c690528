"""The `trl-custom` command: its subcommands and their help, the entry point, `--config` YAML files for every
command, `--accelerate_config` names, and errors before anything is launched."""

import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from trl_custom import cli
from trl_custom.scripts.config_file import ACCELERATE_CONFIGS, RECIPES


ROOT = Path(__file__).resolve().parents[1]
HEAVY = ["accelerate", "bitsandbytes", "torch", "transformers", "trl"]
SUBCOMMANDS = [
    "reward", "dpo", "grpo", "rloo", "augment", "evaluate", "synthetic-users", "fit-condition", "serve-reward",
    "label-pairs", "evaluate-policy",
]  # fmt: skip


def test_entry_points_in_pyproject():
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["trl-custom"] == "trl_custom.cli:main"
    assert list(scripts) == ["trl-custom"]  # one command; `python -m trl_custom` runs the same
    module, _, function = scripts["trl-custom"].partition(":")
    assert callable(getattr(__import__(module, fromlist=[function]), function))


def test_help_lists_every_subcommand():
    done = subprocess.run([sys.executable, "-m", "trl_custom.cli", "--help"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: trl-custom")
    for name in SUBCOMMANDS:
        assert f"\n    {name}" in done.stdout, name
    assert list(cli.COMMANDS) == SUBCOMMANDS


@pytest.mark.parametrize(
    "name, flags",
    [
        ("reward", ["--dataset_name", "--condition_column", "--datasets", "--dsp_file", "--learning_rate"]),
        ("dpo", ["--dataset_name", "--condition_column", "--datasets", "--synthetic_dsp_file", "--beta"]),
        ("augment", ["--input_file", "--rm_judges", "--lm_judges"]),
        ("evaluate", ["--dataset_name", "--condition_column", "--dsp_file", "--config"]),
        ("synthetic-users", ["--dsp_file", "--users_per_group", "--config"]),
        ("fit-condition", ["--model_name_or_path", "--condition", "--pairs_file", "--max_pairs"]),
        ("serve-reward", ["--model_name_or_path", "--host", "--port", "--api_key", "--max_batch_size", "--config"]),
        (
            "label-pairs",
            ["--reward_model", "--policy", "--conditions", "--num_candidates", "--pair_strategy", "--config"],
        ),
        ("evaluate-policy", ["--policy", "--judge", "--base_policy", "--condition_mode", "--dsp_file", "--config"]),
    ],
)
def test_subcommand_help_shows_its_arguments(name, flags, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main([name, "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: trl-custom {name}")
    for flag in flags:
        assert flag in out, flag


def test_top_level_help_imports_nothing_heavy():
    """#29.12: `trl-custom --help`, `trl-custom` alone and an unknown command import neither torch, TRL nor
    bitsandbytes (so no third-party warning either: stderr holds the one error line)."""
    code = (
        "import sys\nfrom trl_custom.cli import main\n"
        "codes = [main(['--help']), main([]), main(['sft'])]\n"
        f"print(codes, sorted(set({HEAVY!r}) & set(sys.modules)))"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.stdout.startswith("usage: trl-custom") and done.stdout.endswith("[0, 0, 2] []\n"), done.stdout
    assert done.stderr == f"trl-custom: error: unknown command sft (commands: {', '.join(SUBCOMMANDS)})\n"


def test_unknown_subcommand_is_refused(capsys):
    assert cli.main(["rewrd"]) == 2
    assert capsys.readouterr().err.startswith("trl-custom: error: unknown command rewrd; did you mean reward?")


@pytest.mark.parametrize(
    "typed, expected",
    [
        ("--condtion_column", "unknown argument --condtion_column; did you mean --condition_column?"),
        ("--condition_colum", "unknown argument --condition_colum; did you mean --condition_column?"),  # no prefixes
        ("--num_proceses", "unknown argument --num_proceses; did you mean --num_processes?"),  # accelerate's flag
        ("--condition-colum=domain", "unknown argument --condition-colum; did you mean --condition_column?"),
    ],
)
def test_misspelled_or_abbreviated_flag_is_refused_in_one_line_before_launching(typed, expected, capsys):
    """#29.13: the recipe's arguments are parsed before `accelerate launch`; abbreviations are refused, and the
    error is one line with the closest flag of the recipe or of accelerate, no usage dump."""
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["reward", "--config", "quickstart_minilm", typed, "domain", "--accelerate_config", "single_cpu"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.endswith(f"trl-custom reward: error: {expected}\n") and "usage" not in err


def test_accelerate_flags_go_to_accelerate_and_the_rest_to_the_recipe():
    from trl_custom.scripts.reward import make_parser
    from trl_custom.scripts.trl_parser import accelerate_launch_flags

    argv = ["--config", "quickstart_minilm", "--num_processes", "2", "--max_steps", "2", "--mixed_precision=no"]
    argv += ["--accelerate_config", "single_cpu", "--cpu", "--num_condition_tokens", "2"]
    script_args, launch_args = make_parser().split_launch_args(
        argv, {**accelerate_launch_flags(), "--accelerate_config": True}
    )
    accelerate_args = ["--num_processes", "2", "--mixed_precision=no", "--accelerate_config", "single_cpu", "--cpu"]
    assert launch_args == accelerate_args
    config = str(RECIPES / "quickstart_minilm.yaml")
    assert script_args == ["--config", config, "--max_steps", "2", "--num_condition_tokens", "2"]


def test_recipe_run_directly_refuses_misspelled_and_accelerate_flags(capsys):
    """#29.13, `accelerate launch recipes/reward.py ...`: the recipe's parser itself is strict."""
    from trl_custom.scripts.reward import make_parser

    for typed, expected in [
        ("--condition_colum", "unknown argument --condition_colum; did you mean --condition_column?"),
        ("--num_processes", "--num_processes is a flag of `accelerate launch`: give it before the script"),
        ("--max_step", "unknown argument --max_step; did you mean --max_steps?"),
    ]:
        with pytest.raises(SystemExit):
            make_parser(prog="reward.py").parse_args_and_config(["--config", "quickstart_minilm", typed, "2"])
        assert capsys.readouterr().err.startswith(f"reward.py: error: {expected}")


def test_config_names_a_shipped_recipe(capsys):
    """`--config NAME` is the recipe shipped as trl_custom/recipes/NAME.yaml; a wrong name lists the names."""
    from trl_custom.scripts.dpo import make_parser

    for config in (["--config", "pdpo_lora_smollm2"], ["--config=pdpo_lora_smollm2"]):
        parsed = make_parser().parse_args_and_config([*config, "--synthetic_dsp_file", "demo"])
        assert len(parsed) == 4 and parsed[1].output_dir == "outputs/pdpo-lora-smollm2"
    with pytest.raises(SystemExit):
        make_parser(prog="dpo.py").parse_args_and_config(["--config", "pdpo_lora_smolm2"])
    err = capsys.readouterr().err
    assert err.startswith("dpo.py: error: --config pdpo_lora_smolm2: no such file, nor a name shipped with trl-custom")
    assert "did you mean pdpo_lora_smollm2?" in err and "quickstart_minilm" in err


def test_a_failed_run_shows_its_error_once_and_exits_with_its_code(tmp_path):
    """#29.14: the launched run's traceback is the only one (no `CalledProcessError` from the launcher); the exit
    code is the run's. The model folder is empty, so the run fails in the launched process, loading it."""
    (tmp_path / "model").mkdir()
    command = [sys.executable, "-m", "trl_custom.cli", "reward", "--model_name_or_path", str(tmp_path / "model")]
    command += ["--dsp_file", "demo", "--output_dir", str(tmp_path / "out"), "--use_cpu", "true", "--bf16", "false"]
    command += ["--accelerate_config", "single_cpu"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 1
    assert done.stderr.count("Traceback") == 1 and "Unrecognized model in" in done.stderr, done.stderr[-2000:]
    assert "CalledProcessError" not in done.stderr


def test_exit_codes_of_signals_are_the_shells():
    assert [cli.exit_code(code) for code in (0, 1, 3, -9, -15)] == [0, 1, 3, 137, 143]


def test_synthetic_users_reads_a_config_file_and_the_command_line_overrides_it(tmp_path, capsys):
    config = tmp_path / "users.yaml"
    config.write_text(f"dsp_file: demo\noutput: {tmp_path / 'users.jsonl'}\nusers_per_group: 3\npairs_per_user: 4\n")
    assert cli.main(["synthetic-users", "--config", str(config), "--users_per_group", "1"]) == 0
    rows = [json.loads(line) for line in (tmp_path / "users.jsonl").read_text().splitlines()]
    assert len({row["user_id"] for row in rows}) == 3 and len(rows) == 12  # 1 user per group (CLI), 4 pairs (YAML)


def test_config_file_errors_name_the_key(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("dsp_file: demo\noutput: x.jsonl\nuser_per_group: 3\n")
    with pytest.raises(SystemExit):
        cli.main(["synthetic-users", "--config", str(bad)])
    assert "unknown key user_per_group; did you mean users_per_group?" in capsys.readouterr().err
    bad.write_text("dsp_file: demo\noutput: x.jsonl\ngroups: [short, tall]\n")
    with pytest.raises(SystemExit):
        cli.main(["synthetic-users", "--config", str(bad)])
    assert "groups=['short', 'tall'] is not one of ['short', 'long', 'mixed']" in capsys.readouterr().err
    for typed in ("--users_per_grop", "--users_per"):  # a misspelling, a prefix
        with pytest.raises(SystemExit):
            cli.main(["synthetic-users", "--dsp_file", "demo", "--output", "x.jsonl", typed, "1"])
        err = capsys.readouterr().err
        assert err == f"trl-custom synthetic-users: error: unknown argument {typed}; did you mean --users_per_group?\n"


def test_reward_refuses_unknown_yaml_key_before_launching(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text((RECIPES / "quickstart_minilm.yaml").read_text() + "condition_mdoe: text\n")
    with pytest.raises(SystemExit):
        cli.main(["reward", "--config", str(bad)])
    expected = f"trl-custom reward: error: --config {bad}: unknown key condition_mdoe; did you mean condition_mode?\n"
    assert capsys.readouterr().err.endswith(expected)


def test_accelerate_config_names_and_paths():
    resolved = cli.resolve_accelerate_config(["--accelerate_config", "single_cpu", "--num_processes", "1"])
    assert resolved == ["--config_file", str(ACCELERATE_CONFIGS / "single_cpu.yaml"), "--num_processes", "1"]
    path = str(ACCELERATE_CONFIGS / "multi_cpu.yaml")
    assert cli.resolve_accelerate_config(["--accelerate_config", path]) == ["--config_file", path]
    with pytest.raises(SystemExit, match="--accelerate_config nowhere: no such file, nor a name shipped.*single_cpu"):
        cli.resolve_accelerate_config(["--accelerate_config", "nowhere"])
    with pytest.raises(SystemExit, match="--accelerate_config single_cp: .*; did you mean single_cpu?"):
        cli.resolve_accelerate_config(["--accelerate_config", "single_cp"])
    assert cli.resolve_accelerate_config(["--num_processes", "2"]) == ["--num_processes", "2"]
