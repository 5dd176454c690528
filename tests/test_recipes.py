"""The recipes parse into the right dataclasses and the CPU reward recipe runs end to end."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from toy import run_offline

from trl_custom import CustomRewardConfig, PersonalizedDPOConfig
from trl_custom.scripts.config_file import ACCELERATE_CONFIGS
from trl_custom.scripts.config_file import RECIPES as RECIPES_DIR
from trl_custom.scripts.dpo import make_parser as make_dpo_parser
from trl_custom.scripts.online_rl import CONFIGS as ONLINE_CONFIGS
from trl_custom.scripts.online_rl import make_parser as make_online_parser
from trl_custom.scripts.reward import RewardScriptArguments
from trl_custom.scripts.reward import make_parser as make_reward_parser


ROOT = Path(__file__).resolve().parents[1]
RECIPES = sorted(RECIPES_DIR.glob("*.yaml"))


LAUNCH_LINE = re.compile(
    r"^# trl-custom (reward|dpo|grpo|rloo|label-pairs|evaluate-policy) --config (\S+)(?: --accelerate_config (\S+))?$",
    re.MULTILINE,
)
IN_PROCESS = ("label-pairs", "evaluate-policy")  # commands that run in the process, without accelerate


def launch_line(recipe):
    """The documented command of a recipe: its header line `# trl-custom reward|dpo|grpo|rloo --config NAME
    --accelerate_config NAME` (or `# trl-custom label-pairs|evaluate-policy --config NAME`) -> (command, recipe name,
    accelerate config name or None)."""
    match = LAUNCH_LINE.search(recipe.read_text())
    assert match, f"{recipe.name} has no '# trl-custom <command> --config ... [--accelerate_config ...]' line"
    command, _, accelerate_config = match.groups()
    assert (accelerate_config is None) == (command in IN_PROCESS), recipe.name
    return match.groups()


TRAINING_RECIPES = [r for r in RECIPES if launch_line(r)[0] not in IN_PROCESS]


def parser_for(recipe):
    """The parser of the command the recipe's launch line runs: `trl-custom dpo|grpo|rloo|reward`."""
    command = launch_line(recipe)[0]
    if command == "dpo":
        return make_dpo_parser(), PersonalizedDPOConfig
    if command in ("grpo", "rloo"):
        return make_online_parser(trainer=command), ONLINE_CONFIGS[command]
    return make_reward_parser(), CustomRewardConfig


@pytest.mark.parametrize("recipe", TRAINING_RECIPES, ids=lambda p: p.name)
def test_recipe_launch_line_names_existing_files(recipe):
    command, config, accelerate_config = launch_line(recipe)
    assert (ACCELERATE_CONFIGS / f"{accelerate_config}.yaml").is_file(), accelerate_config
    assert (ROOT / "recipes" / f"{command}.py").is_file(), command
    assert config == recipe.stem


@pytest.mark.parametrize("config", sorted(ACCELERATE_CONFIGS.glob("*.yaml")), ids=lambda p: p.name)
def test_accelerate_config_loads(config):
    """Every accelerate config loads through accelerate, is commented with when to use it, and is used by a recipe
    or by the launch tests."""
    from accelerate.commands.config.config_args import load_config_from_file

    loaded = load_config_from_file(str(config))
    assert loaded.num_processes >= 1 and config.read_text().startswith("# ")
    if loaded.distributed_type == "DEEPSPEED":
        assert loaded.deepspeed_config["zero_stage"] in (2, 3)
    used = [r for r in RECIPES if launch_line(r)[2] == config.stem]
    tested = (ROOT / "tests" / "test_launch.py").read_text()
    assert used or f'"{config.stem}"' in tested, f"{config.name} is used by no recipe and no launch test"


def data_overrides(tmp_path, recipe):
    """Point the recipe's data keys at tiny files (the real DSP data is not part of the repo)."""
    config = yaml.safe_load(recipe.read_text())
    dsp, general = tmp_path / "dsp.json", tmp_path / "general.json"
    dsp.write_text(
        json.dumps(
            [
                {
                    "query": "q",
                    "responses": {d: d for d in ["academy", "business", "entertainment", "literature", "normal"]},
                }
            ]
        )
    )
    general.write_text(
        json.dumps([{"text": ["\n\nHuman: hi\n\nAssistant: a", "\n\nHuman: hi\n\nAssistant: b"], "score": [1, 0]}])
    )
    args = []
    if config.get("dsp_file") not in (None, "demo"):
        args += ["--dsp_file", str(dsp)]
    if config.get("general_files"):
        args += ["--general_files", str(general)]
    if config.get("synthetic_dsp_file") not in (None, "demo"):
        args += ["--synthetic_dsp_file", str(dsp)]
    if config.get("bf16"):  # GPU recipes: transformers refuses bf16 on a CPU-only machine at parse time
        args += ["--bf16", "false"]
    if config.get("train_file"):
        train = tmp_path / "train.jsonl"
        train.write_text(json.dumps({"prompt": "hi ", "chosen": "a", "rejected": "b", "margin": 0.5}) + "\n")
        args += ["--train_file", str(train)]
    return args


@pytest.mark.parametrize("recipe", TRAINING_RECIPES, ids=lambda p: p.name)
def test_recipe_parses(tmp_path, recipe):
    parser, config_class = parser_for(recipe)
    script_args, training_args, model_args, _ = parser.parse_args_and_config(
        ["--config", str(recipe), *data_overrides(tmp_path, recipe)]
    )
    config = yaml.safe_load(recipe.read_text())
    assert type(training_args) is config_class
    assert model_args.model_name_or_path == config["model_name_or_path"]
    assert training_args.output_dir == config["output_dir"]
    for key in (
        "condition_mode",
        "alpha",
        "imitation_coef",
        "enrichment_ratio",
        "load_in_4bit",
        "use_peft",
    ):
        if key in config:
            holder = next(a for a in (script_args, training_args, model_args) if hasattr(a, key))
            assert getattr(holder, key) == config[key], key


@pytest.mark.parametrize("recipe", [r for r in RECIPES if launch_line(r)[0] in IN_PROCESS], ids=lambda p: p.name)
def test_labelling_and_policy_evaluation_recipes_parse(tmp_path, recipe):
    """The `label-pairs` / `evaluate-policy` recipes parse with their command's parser (a local DSP file for the URL),
    every key read into the dataclasses."""
    from trl_custom.scripts import evaluate_policy, label_pairs

    command, config_name, _ = launch_line(recipe)
    assert config_name == recipe.stem
    module = label_pairs if command == "label-pairs" else evaluate_policy
    dsp = tmp_path / "dsp.json"
    dsp.write_text(json.dumps([{"query": "q", "responses": {"academy": "a"}}]))
    parsed = module.make_parser().parse_args_and_config(["--config", recipe.stem, "--dsp_file", str(dsp)])
    config = yaml.safe_load(recipe.read_text())
    values = {k: v for dataclass in parsed for k, v in vars(dataclass).items()}
    for key, value in config.items():
        assert values[key] == (str(dsp) if key == "dsp_file" else value), key
    if command == "label-pairs":  # what it writes, the P-DPO recipe of the same size reads
        follow = {"label_pairs_dsp_smollm2": "pdpo_labelled_lora_smollm2", "label_pairs_dsp_llama8b":
                  "pdpo_labelled_llama8b_lora"}[recipe.stem]  # fmt: skip
        dpo = yaml.safe_load((RECIPES_DIR / f"{follow}.yaml").read_text())
        assert dpo["dataset_name"] == config["output_file"] and dpo["condition_column"] == "domain"


def test_recipe_refuses_missing_data_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="Data file not found: .*nowhere.json"):
        make_reward_parser().parse_args_and_config(
            ["--config", str(RECIPES_DIR / "quickstart_minilm.yaml"), "--dsp_file", str(tmp_path / "nowhere.json")]
        )


def test_recipe_refuses_unknown_key(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text((RECIPES_DIR / "quickstart_minilm.yaml").read_text() + "condition_mdoe: text\n")
    with pytest.raises(SystemExit):
        make_reward_parser().parse_args_and_config(["--config", str(bad)])
    assert "unknown key condition_mdoe; did you mean condition_mode?" in capsys.readouterr().err


def test_quickstart_recipe_runs_on_minilm(tmp_path):
    """`accelerate launch ... recipes/reward.py` on the real MiniLM from PyPI, shortened to a few steps."""
    out = tmp_path / "out"
    command = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--config_file",
        str(ACCELERATE_CONFIGS / "single_cpu.yaml"),
        str(ROOT / "recipes/reward.py"),
        "--config",
        str(RECIPES_DIR / "quickstart_minilm.yaml"),
        "--output_dir",
        str(out),
        "--max_steps",
        "3",
        "--max_eval_queries",
        "2",
        "--max_queries",
        "4",
        "--disable_tqdm",
        "true",
    ]
    result = run_offline(command, ROOT)
    assert "held-out accuracy" in result.stdout and "DSP mean" in result.stdout
    results = json.loads((out / "eval_results.json").read_text())
    assert set(results["before"]["dsp"]) == {"academy", "business", "entertainment", "literature", "mean"}
    assert (out / "trl_custom.json").exists() and (out / "model.safetensors").exists()


def test_build_reward_data_mixes_and_holds_out(tmp_path):
    from trl_custom.scripts.reward import build_reward_data

    dsp, general = tmp_path / "dsp.json", tmp_path / "general.json"
    keys = ["academy", "business", "entertainment", "literature", "normal"]
    dsp.write_text(json.dumps([{"query": f"q{i}", "responses": {k: f"{k} {i}" for k in keys}} for i in range(10)]))
    general.write_text(
        json.dumps(
            [
                {
                    "text": [f"\n\nHuman: h{i}\n\nAssistant: good {i}", f"\n\nHuman: h{i}\n\nAssistant: bad {i}"],
                    "score": [1, 0],
                }
                for i in range(50)
            ]
        )
    )
    args = RewardScriptArguments(
        dsp_file=str(dsp), general_files=[str(general)], test_size=0.2, general_eval_pairs=10, enrichment_ratio=0.2
    )
    data = build_reward_data(args, str(tmp_path / "eval"))
    assert len(data.eval_queries) == 2  # 20% of 10 queries held out
    custom_rows = [c for c in data.train["domain"] if c is not None]
    assert len(custom_rows) == 8 * 4 * 4 and len(data.train) == 128 + 32  # 20% general pairs mixed in
    held_out = json.loads(Path(data.general_eval_files[0]).read_text())
    assert len(held_out) == 10 and held_out[0]["score"] == [1.0, 0.0]
    held_prompts = {item["text"][0].split("Assistant:")[0] for item in held_out}
    general_train = [p for p, c in zip(data.train["prompt"], data.train["domain"]) if c is None]
    assert not held_prompts & set(general_train)  # held-out general pairs are not trained on


def test_lora_with_a_generative_task_type_fails_with_the_fix(tmp_path):
    """PEFT cannot wrap a reward model as CAUSAL_LM (TRL ModelConfig's default): refused before PEFT fails."""
    from peft import LoraConfig
    from toy import conditioned_pairs, make_tokenizer, save_reward_model

    from trl_custom import CustomRewardTrainer

    path = save_reward_model(tmp_path, "llama")
    args = CustomRewardConfig(str(tmp_path / "out"), use_cpu=True, bf16=False, report_to="none")
    with pytest.raises(ValueError, match="task_type='CAUSAL_LM'.*recipes: `lora_task_type: SEQ_CLS`"):
        CustomRewardTrainer(
            path,
            args=args,
            train_dataset=conditioned_pairs(4),
            processing_class=make_tokenizer(),
            peft_config=LoraConfig(r=4, target_modules=["q_proj"], task_type="CAUSAL_LM"),
        )


def test_qlora_recipe_without_bitsandbytes_fails_with_the_fix(monkeypatch):
    from trl_custom.models import check_quantization

    _, _, model_args, _ = make_dpo_parser().parse_args_and_config(
        ["--config", str(RECIPES_DIR / "pdpo_llama8b_qlora.yaml"), "--synthetic_dsp_file", "demo", "--bf16", "false"]
    )
    monkeypatch.setitem(sys.modules, "bitsandbytes", None)  # as if it were not installed
    with pytest.raises(ImportError, match=r'pip install -e "\.\[quantization\]"'):
        check_quantization(model_args)
    model_args.use_peft = False
    with pytest.raises(ValueError, match="add `use_peft: true`"):
        check_quantization(model_args)


def test_synthetic_users_do_not_depend_on_the_hash_seed(tmp_path):
    """Every process of a multi-process run builds the same P-DPO dataset (set order changes with PYTHONHASHSEED)."""
    dsp = tmp_path / "dsp.json"
    keys = ["academy", "business", "entertainment", "literature", "normal"]
    dsp.write_text(json.dumps([{"query": f"q{i}", "responses": {k: f"{k[:3]} {i}" for k in keys}} for i in range(6)]))
    outputs = []
    for seed in ("1", "2"):
        out = tmp_path / f"users-{seed}.jsonl"
        subprocess.run(
            [sys.executable, "-m", "trl_custom", "synthetic-users", "--dsp_file", str(dsp), "--output", str(out),
             "--min_ratio", "1.0", "--users_per_group", "1", "--pairs_per_user", "6"],
            check=True, capture_output=True, env={**os.environ, "PYTHONHASHSEED": seed},
        )  # fmt: skip
        outputs.append(out.read_text())
    assert outputs[0] == outputs[1] and outputs[0].count("\n") == 18


def test_build_reward_data_train_file_keeps_margins(tmp_path):
    """`--train_file` (e.g. written by `trl-custom augment`) trains with its margins; general rows get 0."""
    from trl_custom.scripts.reward import build_reward_data

    train_file, general = tmp_path / "augmented.jsonl", tmp_path / "general.json"
    rows = [
        {"prompt": f"q{i} ", "chosen": f"good {i}", "rejected": f"bad {i}", "margin": 1.5, "agreement": 0.9}
        for i in range(20)
    ]
    train_file.write_text("".join(json.dumps(row) + "\n" for row in rows))
    general.write_text(
        json.dumps(
            [
                {
                    "text": [f"\n\nHuman: h{i}\n\nAssistant: good", f"\n\nHuman: h{i}\n\nAssistant: bad"],
                    "score": [1, 0],
                }
                for i in range(10)
            ]
        )
    )
    args = RewardScriptArguments(train_file=str(train_file), general_files=[str(general)], general_eval_pairs=4)
    data = build_reward_data(args, str(tmp_path / "eval"))
    assert data.train.column_names == ["prompt", "chosen", "rejected", "margin"]
    assert len(data.train) == 16 + 8  # 4 (20 // 5) held out of the train file, 2 (10 // 5) of the general file
    by_prompt = dict(zip(data.train["prompt"], data.train["margin"]))
    assert all(m == (1.5 if p.startswith("q") else 0.0) for p, m in by_prompt.items())
    assert [os.path.basename(f) for f in data.general_eval_files] == ["general.json", "augmented.json"]
    assert len(json.loads(Path(data.general_eval_files[1]).read_text())) == 4


def test_train_file_refuses_empty_response(tmp_path):
    from trl_custom.scripts.reward import build_reward_data

    train_file = tmp_path / "augmented.jsonl"
    rows = [{"prompt": "q ", "chosen": "good", "rejected": "bad"}, {"prompt": "q ", "chosen": " ", "rejected": "b"}]
    train_file.write_text("".join(json.dumps(row) + "\n" for row in rows))
    args = RewardScriptArguments(train_file=str(train_file))
    with pytest.raises(ValueError, match="Row 1 of augmented.jsonl has an empty 'chosen' response"):
        build_reward_data(args, str(tmp_path / "eval"))


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def assert_png(path):
    """A valid PNG image: the signature, and matplotlib reads it as a non-empty RGB(A) picture."""
    import matplotlib.image

    assert path.read_bytes()[:8] == PNG_SIGNATURE, path
    image = matplotlib.image.imread(path)
    assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100 and image.shape[2] in (3, 4)


@pytest.fixture(scope="module")
def tiny_run_assets(tmp_path_factory):
    """Tiny Llama reward model and causal LM, and a local dataset folder in TRL's standard preference format."""
    from toy import conditioned_pairs, make_causal_lm, make_reward_model, make_tokenizer, user_pairs

    root = tmp_path_factory.mktemp("runs")
    tokenizer = make_tokenizer("causal")
    for name, model in (("rm", make_reward_model("llama", tokenizer)), ("lm", make_causal_lm("llama", tokenizer))):
        model.save_pretrained(root / name)
        tokenizer.save_pretrained(root / name)
    (root / "prefs").mkdir()
    conditioned_pairs(48, seed=0).to_json(root / "prefs" / "train.jsonl")
    conditioned_pairs(16, seed=1).to_json(root / "prefs" / "test.jsonl")
    (root / "users").mkdir()
    user_pairs(40, seed=0).to_json(root / "users" / "part-a.jsonl")
    user_pairs(24, seed=1).to_json(root / "users" / "part-b.jsonl")
    return root


def test_trl_reward_yaml_with_dataset_name_runs_through_the_cli(tiny_run_assets):
    """A TRL reward YAML (`dataset_name`, splits) + `condition_column`, run by `trl-custom reward` through accelerate:
    per-condition accuracy on the test split before/after, curves, heatmap and model card in the output folder."""
    root, out = tiny_run_assets, tiny_run_assets / "rm-out"
    config = root / "trl_reward.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "model_name_or_path": str(root / "rm"),
                "dataset_name": str(root / "prefs"),
                "dataset_train_split": "train",
                "dataset_test_split": "test",
                "condition_column": "domain",
                "condition_mode": "embedding",
                "condition_learning_rate": 0.05,
                "output_dir": str(out),
                "use_cpu": True,
                "bf16": False,
                "max_length": 64,
                "per_device_train_batch_size": 8,
                "learning_rate": 0.01,
                "max_steps": 8,
                "logging_steps": 2,
                "save_strategy": "no",
                "report_to": "none",
                "disable_tqdm": True,
            }
        )
    )
    command = [sys.executable, "-m", "trl_custom.cli", "reward", "--config", str(config)]
    result = run_offline([*command, "--accelerate_config", "single_cpu", "--num_processes", "1"], ROOT)
    assert "domain formal" in result.stdout and "domain casual" in result.stdout
    results = json.loads((out / "eval_results.json").read_text())
    for stage in ("before", "after"):
        assert set(results[stage]["pairs"]) == {"casual", "formal", "mean", "all"}
        assert results[stage]["counts"]["pairs"] == {"casual": 8, "formal": 8, "all": 16}  # the test split
    heatmap = results["after"]["heatmap"]
    assert heatmap["rows"] == ["casual", "formal", "generic"] and heatmap["columns"] == ["casual", "formal"]
    assert [heatmap["values"][0][0], heatmap["values"][1][1]] == [
        results["after"]["pairs"][c] for c in heatmap["columns"]
    ]
    assert_png(out / "training_curves.png")
    assert_png(out / "heatmap.png")
    card = (out / "README.md").read_text()
    for text in ("accuracy/domain/formal", "accuracy/domain/casual (before training)", "`train` (48 pairs)",
                 "the `test` split evaluated (16 pairs)", "trl-custom reward --config",
                 "(training_curves.png)"):  # fmt: skip
        assert text in card, text


def test_dpo_recipe_on_a_datasets_mixture_with_user_id(tiny_run_assets):
    """`accelerate launch recipes/dpo.py` with a `datasets:` mixture (TRL's DatasetMixtureConfig) and a held-out
    fraction: per-user accuracy before/after, curves, per-user bars and model card."""
    root, out = tiny_run_assets, tiny_run_assets / "dpo-out"
    config = root / "mixture.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "model_name_or_path": str(root / "lm"),
                "datasets": [
                    {"path": "json", "data_files": str(root / "users" / "part-a.jsonl")},
                    {"path": "json", "data_files": str(root / "users" / "part-b.jsonl"), "split": "train"},
                ],
                "test_split_size": 0.25,
                "condition_column": "user_id",
                "output_dir": str(out),
                "use_cpu": True,
                "bf16": False,
                "max_length": 64,
                "per_device_train_batch_size": 8,
                "per_device_eval_batch_size": 8,
                "max_steps": 3,
                "logging_steps": 1,
                "save_strategy": "no",
                "report_to": "none",
                "disable_tqdm": True,
            }
        )
    )
    command = [sys.executable, "-m", "accelerate.commands.launch", "--config_file"]
    command += [
        str(ACCELERATE_CONFIGS / "single_cpu.yaml"),
        str(ROOT / "recipes/dpo.py"),
        "--config",
        str(config),
    ]
    result = run_offline(command, ROOT)
    assert "rewards/accuracies/u1" in result.stdout
    results = json.loads((out / "eval_results.json").read_text())
    for stage in ("before", "after"):
        assert {"eval_rewards/accuracies/u1", "eval_rewards/accuracies/u2"} <= set(results[stage])
    assert_png(out / "training_curves.png")
    assert_png(out / "user_accuracy.png")
    card = (out / "README.md").read_text()
    for text in ("eval_rewards/accuracies/u1", "(before training)", "mixture of `json`", "48 pairs trained on",
                 "16 held out", "accelerate launch", "(user_accuracy.png)"):  # fmt: skip
        assert text in card, text


def test_reward_recipe_announces_identical_eval_pairs_and_refuses_unseen_strict_conditions(tmp_path, capsys):
    """#29: at the start of a run, an evaluated set that the truncation makes identical (chosen == rejected input) is
    announced with the fix, and its ties show in the results and the model card; a strict model whose evaluated set
    holds condition values it is not trained on fails before training."""
    from datasets import Dataset
    from toy import conditioned_pairs, save_reward_model

    from trl_custom.scripts.reward import main

    model = save_reward_model(tmp_path, "llama")  # AutoTokenizer reads the toy tokenizer of a llama folder as written
    folder = tmp_path / "prefs"
    folder.mkdir()
    conditioned_pairs(16, seed=0).to_json(folder / "train.jsonl")
    test = conditioned_pairs(8, seed=1).to_list()
    for row in test[:4]:  # 4 of 8 held-out pairs: a prompt longer than max_length, keep_start keeps only its start
        row["prompt"] = "question about " + " ".join(f"w{i}" for i in range(12)) + " "
    Dataset.from_list(test).to_json(folder / "test.jsonl")

    def run(out, *extra):
        argv = ["--model_name_or_path", model, "--dataset_name", str(folder), "--dataset_train_split", "train",
                "--dataset_test_split", "test", "--condition_column", "domain", "--condition_mode", "embedding",
                "--output_dir", str(out), "--use_cpu", "true", "--bf16", "false", "--max_length", "10",
                "--truncation_mode", "keep_start", "--max_steps", "1", "--per_device_train_batch_size", "8",
                "--save_strategy", "no", "--report_to", "none", "--disable_tqdm", "true", *extra]  # fmt: skip
        main(*make_reward_parser().parse_args_and_config(argv))

    out = tmp_path / "out"
    run(out)
    printed = capsys.readouterr().out
    assert (
        "⚠️  50% of the evaluation dataset (4 of 8) are the same input for chosen and rejected after truncation "
        "(max_length=10, truncation_mode='keep_start'): the model cannot tell them apart" in printed
    )
    assert printed.index("50% of the evaluation dataset") < printed.index("Model saved to")  # before training
    assert "or use truncation_mode='head_tail'" in printed
    after = json.loads((out / "eval_results.json").read_text())["after"]
    assert after["identical"]["pairs"] == {"casual": 2, "formal": 2, "all": 4} and after["ties"]["pairs"]["all"] >= 4
    assert after["unseen"] == {}
    assert "(ties 50%, 50% identical after truncation)" in printed
    assert (
        "| `ties/domain/formal` | 2 of 4 pairs (50%), 2 identical after truncation |"
        in (out / "README.md").read_text()
    )

    # Strict model, held-out value never trained on: refused before training.
    test[0]["domain"] = "pirate"
    Dataset.from_list(test).to_json(folder / "test.jsonl")
    strict_out = tmp_path / "strict"
    with pytest.raises(ValueError, match=r"The evaluation dataset: domain value\(s\) \['pirate'\] were not seen"):
        run(strict_out, "--strict_conditions", "true")
    assert not (strict_out / "trainer_state.json").exists() and not (strict_out / "model.safetensors").exists()

    # The DSP and general-file sets of a DSP run are checked the same way.
    from toy import make_reward_model, make_tokenizer

    from trl_custom import ConditioningSpec, CustomRewardConfig, RewardScorer
    from trl_custom.scripts.reward import RewardData, check_evaluated_sets

    dsp, general = tmp_path / "dsp.json", tmp_path / "general.json"
    responses = {k: f"answer {k}" for k in ["academy", "business", "entertainment", "literature", "normal"]}
    dsp.write_text(json.dumps([{"query": "question about t1 w1 w2 w3", "responses": responses}]))
    general.write_text(json.dumps([{"text": ["\n\nHuman: hi w1\n\nAssistant: a", "\n\nHuman: hi w1\n\nAssistant: b"],
                                    "score": [1, 0]}]))  # fmt: skip
    data = RewardData(None, json.loads(dsp.read_text()), [str(general)])
    tokenizer = make_tokenizer()
    scorer = RewardScorer(make_reward_model("llama", tokenizer), tokenizer, max_length=4)
    scorer.record.truncation_mode = "keep_start"
    args = CustomRewardConfig(
        str(tmp_path / "x"), max_length=4, truncation_mode="keep_start", use_cpu=True, bf16=False
    )
    assert check_evaluated_sets(scorer, data, args) == {"held-out DSP pairs": 1.0,
                                                         "held-out general pairs of general.json": 1.0}  # fmt: skip
    printed = capsys.readouterr().out
    assert (
        "100% of the held-out DSP pairs (16 of 16)" in printed
        and "of the held-out general pairs of general.json (1 of 1)" in printed
    )
    scorer.conditioning = ConditioningSpec(mode="text", conditions=["academy", "business"], strict=True)
    with pytest.raises(
        ValueError, match=r"The held-out DSP pairs: domain value\(s\) \['entertainment', 'literature'\]"
    ):
        check_evaluated_sets(scorer, data, args)
