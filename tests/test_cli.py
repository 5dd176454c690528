"""The `trl-custom` command: its subcommands and their help, the entry point, `--config` YAML files for every
command, `--accelerate_config` names, and errors before anything is launched."""

import json
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from trl_custom import cli


ROOT = Path(__file__).resolve().parents[1]
SUBCOMMANDS = ["reward", "dpo", "augment", "evaluate", "synthetic-users", "fit-condition"]


def test_entry_points_in_pyproject():
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["trl-custom"] == "trl_custom.cli:main"
    assert scripts["trl-custom-evaluate"] == "trl_custom.scripts.evaluate:main"
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


def test_unknown_subcommand_is_refused(capsys):
    with pytest.raises(SystemExit):
        cli.main(["sft"])
    assert "invalid choice: 'sft'" in capsys.readouterr().err


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
    assert "unknown key(s) ['user_per_group']" in capsys.readouterr().err
    bad.write_text("dsp_file: demo\noutput: x.jsonl\ngroups: [short, tall]\n")
    with pytest.raises(SystemExit):
        cli.main(["synthetic-users", "--config", str(bad)])
    assert "groups=['short', 'tall'] is not one of ['short', 'long', 'mixed']" in capsys.readouterr().err


def test_reward_refuses_unknown_yaml_key_before_launching(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text((ROOT / "recipes/quickstart_minilm.yaml").read_text() + "condition_mdoe: text\n")
    with pytest.raises(SystemExit, match=r"unknown key\(s\) in the --config file: \['condition_mdoe'\]"):
        cli.main(["reward", "--config", str(bad)])


def test_accelerate_config_names_and_paths():
    resolved = cli.resolve_accelerate_config(["--accelerate_config", "single_cpu", "--num_processes", "1"])
    assert resolved == ["--config_file", str(ROOT / "accelerate_configs/single_cpu.yaml"), "--num_processes", "1"]
    path = str(ROOT / "accelerate_configs/multi_cpu.yaml")
    assert cli.resolve_accelerate_config(["--accelerate_config", path]) == ["--config_file", path]
    with pytest.raises(SystemExit, match="--accelerate_config nowhere: neither a file nor.*single_cpu"):
        cli.resolve_accelerate_config(["--accelerate_config", "nowhere"])
    assert cli.resolve_accelerate_config(["--num_processes", "2"]) == ["--num_processes", "2"]
