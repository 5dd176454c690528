"""The package layout: public names, `python -m trl_custom`, module headers and sizes (benchmarks included)."""

import ast
import importlib
import pathlib
import subprocess
import sys

import pytest

import trl_custom


ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "trl_custom"
HEADER = "# Copyright 2026 The trl-custom authors. Licensed under the Apache License, Version 2.0."

# Every public name of trl_custom.
PUBLIC = [
    "AugmentConfig",
    "ConditionedRewardFunction",
    "ConditioningArguments",
    "ConditioningSpec",
    "CustomRewardConfig",
    "CustomRewardTrainer",
    "DataCollatorForConditionedPreference",
    "DataCollatorForPersonalizedPreference",
    "JudgmentCache",
    "LMJudge",
    "LabelConfig",
    "MeanPooledEmbedder",
    "ModelRecord",
    "PairJudge",
    "PersonalizedDPOConfig",
    "PersonalizedDPOTrainer",
    "PersonalizedGRPOConfig",
    "PersonalizedGRPOTrainer",
    "PersonalizedRLOOConfig",
    "PersonalizedRLOOTrainer",
    "RemoteRewardScorer",
    "RewardModelJudge",
    "RewardScorer",
    "RewardServer",
    "ServeRewardConfig",
    "SoftTokenConfig",
    "SoftTokens",
    "augment_pairs",
    "fit_new_condition",
    "fit_new_user",
    "generate_for_user",
    "judge_pairs",
    "label_pairs",
    "load_personalized_model",
    "load_reward_model",
    "push_to_hub",
    "render_reward_text",
    "reward_model_judges",
    "save_personalized_model",
    "save_reward_model",
    "write_model_card",
]


def test_public_names_import_from_the_package():
    assert sorted(trl_custom.__all__) == PUBLIC
    assert len(set(trl_custom.__all__)) == len(trl_custom.__all__)
    for name in PUBLIC:
        assert getattr(trl_custom, name) is not None


def test_lazy_public_names_are_the_folders_and_the_type_checking_imports():
    """`trl_custom` loads its public names lazily from `_import_structure`; its `if TYPE_CHECKING:` imports (for type
    checkers) name the same, and each is public in its folder."""
    tree = ast.parse((PACKAGE / "__init__.py").read_text(encoding="utf-8"))
    block = next(node for node in tree.body if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING")
    imported = {node.module: sorted(alias.name for alias in node.names) for node in block.body}
    assert imported == {folder: sorted(names) for folder, names in trl_custom._import_structure.items()}
    for folder, names in trl_custom._import_structure.items():
        assert set(names) <= set(importlib.import_module(f"trl_custom.{folder}").__all__), folder
    assert set(dir(trl_custom)) >= set(PUBLIC)
    with pytest.raises(AttributeError, match="has no attribute 'CustomRewardTrainr'"):
        trl_custom.CustomRewardTrainr


def test_each_method_has_its_folder():
    for folder in ("conditioned_rm", "margin", "personalized_dpo", "personalized_rl", "soft_tokens"):
        package = __import__(f"trl_custom.{folder}", fromlist=["__all__"])
        assert package.__all__, folder
        for name in package.__all__:
            assert getattr(package, name) is not None


@pytest.mark.parametrize("command", ["evaluate", "augment", "synthetic-users", "fit-condition"])
def test_python_m_trl_custom_runs_the_commands(command):
    """`python -m trl_custom <command>` is `trl-custom <command>` (one name per command: no forwarding modules)."""
    argv = [sys.executable, "-m", "trl_custom", command, "--help"]
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"usage: trl-custom {command}") and "--" in done.stdout


def test_python_m_trl_custom_help_imports_nothing_heavy():
    """`python -m trl_custom --help` answers as `trl-custom --help` does, without torch, transformers or TRL."""
    code = (
        "import runpy, sys\n"
        "sys.argv = ['trl_custom', '--help']\n"
        "try:\n    runpy.run_module('trl_custom', run_name='__main__')\n"
        "except SystemExit as e:\n    print(e.code, sorted({'torch', 'transformers', 'trl'} & set(sys.modules)))"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.stdout.startswith("usage: trl-custom") and done.stdout.endswith("0 []\n"), done.stdout + done.stderr


def test_one_module_per_name_at_the_package_root():
    """The commands live in `scripts/` (their `main`) and their method folders (the library), not in root modules."""
    root = sorted(path.stem for path in PACKAGE.glob("*.py"))
    for name in ("augment", "evaluate", "fit_condition", "synthetic_users"):
        assert name not in root, f"trl_custom/{name}.py: run `trl-custom {name.replace('_', '-')}`"


def python_files():
    """The package's modules and the benchmarks' (scripts and their shared modules)."""
    return sorted(PACKAGE.rglob("*.py")) + sorted((ROOT / "benchmarks").rglob("*.py"))


def test_modules_have_the_project_header_and_stay_small():
    for path in python_files():
        lines = path.read_text(encoding="utf-8").splitlines()
        assert lines and lines[0] == HEADER, f"{path.relative_to(ROOT)}: first line must be the project header"
        assert not any(line.startswith("# Licensed under") for line in lines), f"{path}: copied licence block"
        assert len(lines) <= 500, f"{path.relative_to(ROOT)} has {len(lines)} lines: split it along its subjects"


def test_soft_tokens_enter_models_in_one_place():
    """One injection and one cold-start fitter: no module outside `trl_custom/soft_tokens/` builds input embeddings
    or fits a soft-token row."""
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.parent.name == "soft_tokens":
            continue
        code = "\n".join(line.split("#")[0] for line in path.read_text(encoding="utf-8").splitlines())
        for name in ("inputs_embeds=", "plan_insertion(", "torch.optim.Adam(", ".add_row("):
            assert name not in code, f"{path.relative_to(ROOT)} uses {name}: go through trl_custom.soft_tokens"
    injections = [p for p in PACKAGE.rglob("*.py") if "def plan_insertion(" in p.read_text(encoding="utf-8")]
    fitters = [p for p in PACKAGE.rglob("*.py") if "def fit_new_row(" in p.read_text(encoding="utf-8")]
    assert [p.name for p in injections] == ["injection.py"] and [p.name for p in fitters] == ["fitting.py"]
