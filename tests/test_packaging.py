"""#29.15: the wheel ships the accelerate configs and the recipes' YAMLs inside the package (one place: nothing left
beside it), so `--accelerate_config NAME` and `--config NAME` work from an installed trl-custom. The install itself,
outside the clone, with a 2-step run: `.ci/wheel_check.sh` (run by `.ci/run`)."""

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

from trl_custom.scripts.config_file import ACCELERATE_CONFIGS, RECIPES


ROOT = Path(__file__).resolve().parents[1]


def test_configs_and_recipes_live_in_the_package_only():
    assert ACCELERATE_CONFIGS == RECIPES.parent / "accelerate_configs" == ROOT / "trl_custom" / "accelerate_configs"
    assert (ACCELERATE_CONFIGS / "single_cpu.yaml").is_file() and (RECIPES / "quickstart_minilm.yaml").is_file()
    assert not (ROOT / "accelerate_configs").exists()
    assert sorted(p.name for p in (ROOT / "recipes").iterdir() if p.name != "__pycache__") == [
        "dpo.py",
        "grpo.py",
        "reward.py",
        "rloo.py",
    ]


def test_wheel_holds_the_accelerate_configs_and_recipes(tmp_path):
    """Builds the wheel from a copy of the sources (pip, no dependencies, a few seconds) and lists it."""
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    shutil.copytree(ROOT / "trl_custom", source / "trl_custom", ignore=shutil.ignore_patterns("__pycache__"))
    command = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(tmp_path)]
    done = subprocess.run([*command, str(source)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    (wheel,) = tmp_path.glob("trl_custom-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for folder in (ACCELERATE_CONFIGS, RECIPES):
        shipped = {f"trl_custom/{folder.name}/{path.name}" for path in folder.glob("*.yaml")}
        assert shipped and shipped <= names, sorted(shipped - names)
    assert "trl_custom/cli.py" in names and "trl_custom/scripts/trl_parser.py" in names
    entry_points = next(name for name in names if name.endswith(".dist-info/entry_points.txt"))
    assert "trl-custom = trl_custom.cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()
