"""
The recipes launched for real with `accelerate launch` on tiny offline models, on the CPU: two processes (gloo DDP)
against one with the same global batch, DeepSpeed ZeRO-2/3 against plain training, QLoRA (bitsandbytes 4-bit on the
CPU), and recipes that must fail early.
"""

import importlib.util
import json
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from toy import WORDS, conditioned_pairs, cpu_config, make_causal_lm, make_reward_model, make_tokenizer

from trl_custom.scripts.config_file import ACCELERATE_CONFIGS, RECIPES


ROOT = Path(__file__).resolve().parents[1]
# Losses of the same global batch agree to float32 rounding (gloo sums the two halves' gradients).
LOSS_TOLERANCE = 1e-5


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    """Tiny Llama reward model and causal LM (hidden 64: bitsandbytes' CPU 4-bit kernels need blocks of 64), data."""
    root = tmp_path_factory.mktemp("launch")
    tokenizer = make_tokenizer("causal")
    paths = {}
    for name, model in (
        ("reward", make_reward_model("llama", tokenizer, hidden_size=64, intermediate_size=128)),
        ("causal", make_causal_lm("llama", tokenizer, hidden_size=64, intermediate_size=128)),
    ):
        paths[name] = str(root / name)
        model.save_pretrained(paths[name])
        tokenizer.save_pretrained(paths[name])
    rng = random.Random(0)
    domains = ["academy", "business", "entertainment", "literature", "normal"]
    queries = [
        {
            "query": f"question about t{i % 20}",
            "responses": {
                d: f"answer {WORDS[j]} " + " ".join(f"w{rng.randrange(40)}" for _ in range(rng.randrange(1, 6)))
                for j, d in enumerate(domains)
            },
        }
        for i in range(24)
    ]
    paths["dsp"] = str(root / "dsp.json")
    Path(paths["dsp"]).write_text(json.dumps(queries))
    paths["root"] = root
    return paths


def launch(accelerate_config, script, recipe, args, num_processes=1, check=True):
    """`accelerate launch --config_file trl_custom/accelerate_configs/<x>.yaml recipes/<script>.py --config
    trl_custom/recipes/<y>.yaml`."""
    # DeepSpeed configs ask for bf16; DeepSpeed's CPU accelerator trains in fp32, the recipe must leave use_cpu off.
    deepspeed = str(accelerate_config).startswith("deepspeed")
    config_file = Path(accelerate_config) if Path(accelerate_config).is_file() else None
    command = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--config_file",
        str(config_file or ACCELERATE_CONFIGS / f"{accelerate_config}.yaml"),
        "--num_processes",
        str(num_processes),
        *(["--mixed_precision", "no"] if deepspeed else []),
        str(ROOT / "recipes" / f"{script}.py"),
        "--config",
        str(RECIPES / f"{recipe}.yaml"),
        "--disable_tqdm",
        "true",
        *(["--use_cpu", "false"] if deepspeed else []),
        *args,
    ]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600, env=env)
    if check:
        assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    return result


def logged_losses(output_dir):
    history = json.loads((Path(output_dir) / "trainer_state.json").read_text())["log_history"]
    return [entry["loss"] for entry in history if "loss" in entry]


def reward_args(assets, output_dir, batch_size, *extra):
    return [
        "--model_name_or_path", assets["reward"], "--dsp_file", assets["dsp"], "--output_dir", str(output_dir),
        "--condition_mode", "embedding", "--per_device_train_batch_size", str(batch_size), "--max_steps", "3",
        "--logging_steps", "1", "--learning_rate", "1e-2", "--warmup_steps", "0", "--evaluate_before", "false",
        "--max_eval_queries", "2", *extra,
    ]  # fmt: skip


def dpo_args(assets, output_dir, batch_size, *extra):
    return [
        "--model_name_or_path", assets["causal"], "--synthetic_dsp_file", assets["dsp"], "--output_dir",
        str(output_dir), "--per_device_train_batch_size", str(batch_size), "--per_device_eval_batch_size",
        str(batch_size), "--max_steps", "3", "--logging_steps", "1", "--learning_rate", "1e-2", "--warmup_steps", "0",
        "--generic_loss_mode", "exact", "--lora_dropout", "0", *extra,
    ]  # fmt: skip


@pytest.fixture(scope="module")
def one_process_runs(assets):
    """The 1-process references: reward (embedding mode) and P-DPO (LoRA), global batch 4."""
    root = assets["root"]
    launch("single_cpu", "reward", "quickstart_minilm", reward_args(assets, root / "reward-1", 4))
    launch("single_cpu", "dpo", "pdpo_lora_smollm2", dpo_args(assets, root / "dpo-1", 4))
    return {"reward": root / "reward-1", "dpo": root / "dpo-1"}


def test_reward_recipe_two_processes_match_one(assets, one_process_runs):
    out = assets["root"] / "reward-2"
    launch("multi_cpu", "reward", "quickstart_minilm", reward_args(assets, out, 2), num_processes=2)
    reference = logged_losses(one_process_runs["reward"])
    assert len(reference) == 3 and reference[0] != reference[-1]  # it trains (lr 1e-2), so a missed sync shows
    assert logged_losses(out) == pytest.approx(reference, rel=LOSS_TOLERANCE)


def test_dpo_recipe_two_processes_match_one(assets, one_process_runs):
    out = assets["root"] / "dpo-2"
    result = launch("multi_cpu", "dpo", "pdpo_lora_smollm2", dpo_args(assets, out, 2), num_processes=2)
    reference = logged_losses(one_process_runs["dpo"])
    assert len(reference) == 3 and reference[0] != reference[-1]
    assert logged_losses(out) == pytest.approx(reference, rel=LOSS_TOLERANCE)
    assert "held-out implicit-reward accuracy" in result.stdout and "rewards/accuracies/short" in result.stdout


deepspeed_installed = pytest.mark.skipif(
    importlib.util.find_spec("deepspeed") is None,
    reason='deepspeed is not installed: pip install --no-build-isolation -e ".[deepspeed]"',
)


@deepspeed_installed
@pytest.mark.parametrize("stage", ["deepspeed_zero2", "deepspeed_zero3"])
def test_reward_recipe_deepspeed_matches_plain(assets, one_process_runs, stage, tmp_path):
    """ZeRO-2/3 through accelerate (DeepSpeed's CPU accelerator, fp32): same losses, and a model that reloads."""
    out = tmp_path / stage
    launch(stage, "reward", "quickstart_minilm", reward_args(assets, out, 4))
    assert logged_losses(out) == pytest.approx(logged_losses(one_process_runs["reward"]), rel=LOSS_TOLERANCE)
    # The gathered weights and the condition table were saved: the reloaded model scores the held-out queries as the
    # in-memory model did at the end of training.
    evaluation = subprocess.run(
        [
            sys.executable,
            "-m",
            "trl_custom",
            "evaluate",
            "--model_name_or_path",
            str(out),
            "--dsp_file",
            str(out / "held_out" / "dsp_queries.json"),
            "--output_json",
            str(tmp_path / "reload.json"),
        ],  # fmt: skip
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert evaluation.returncode == 0, evaluation.stderr[-3000:]
    after = json.loads((out / "eval_results.json").read_text())["after"]
    assert json.loads((tmp_path / "reload.json").read_text())["dsp"] == after["dsp"]


@deepspeed_installed
def test_dpo_recipe_deepspeed_zero3_matches_plain(assets, tmp_path):
    """alpha=1 (one policy pass): ZeRO-3 refuses the two passes of the exact α-mix (tested below)."""
    plain, out = tmp_path / "plain", tmp_path / "zero3"
    launch("single_cpu", "dpo", "pdpo_lora_smollm2", dpo_args(assets, plain, 4, "--alpha", "1.0"))
    launch("deepspeed_zero3", "dpo", "pdpo_lora_smollm2", dpo_args(assets, out, 4, "--alpha", "1.0"))
    reference = logged_losses(plain)
    assert len(reference) == 3 and reference[0] != reference[-1]
    assert logged_losses(out) == pytest.approx(reference, rel=LOSS_TOLERANCE)
    assert (out / "soft_tokens.safetensors").exists() and (out / "adapter_model.safetensors").exists()


@deepspeed_installed
def test_exact_generic_loss_under_zero3_fails_early_with_the_fix(assets, tmp_path):
    result = launch("deepspeed_zero3", "dpo", "pdpo_lora_smollm2", dpo_args(assets, tmp_path / "o", 4), check=False)
    assert result.returncode != 0
    assert "ZeRO-3 cannot reduce" in result.stderr and "generic_loss_mode='sampled'" in result.stderr


@deepspeed_installed
def test_imitation_under_zero3_fails_early_with_the_fix(assets, tmp_path):
    result = launch(
        "deepspeed_zero3",
        "reward",
        "quickstart_minilm",
        reward_args(assets, tmp_path / "out", 4, "--imitation_coef", "0.1"),
        check=False,
    )
    assert result.returncode != 0
    assert "ZeRO-3" in result.stderr and "--accelerate_config deepspeed_zero2" in result.stderr


def bitsandbytes_cpu_reason():
    if importlib.util.find_spec("bitsandbytes") is None:
        return 'bitsandbytes is not installed (pip install -e ".[quantization]")'
    try:
        import bitsandbytes.functional as F

        weight = torch.randn(64, 64)
        quantized, state = F.quantize_4bit(weight, quant_type="nf4")
        F.dequantize_4bit(quantized, state)
    except Exception as error:  # the CPU backend is missing on this platform
        return f"bitsandbytes cannot run 4-bit on this CPU: {error}"
    return None


@pytest.mark.skipif(bitsandbytes_cpu_reason() is not None, reason=str(bitsandbytes_cpu_reason()))
@pytest.mark.parametrize(
    "script, recipe",
    [("reward", "dsp_stage3_customized_llama8b_qlora"), ("dpo", "pdpo_llama8b_qlora")],
)
def test_qlora_recipes_train_on_cpu(assets, tmp_path, script, recipe):
    """The GPU QLoRA recipes, shrunk to the tiny models and the CPU (bitsandbytes nf4 runs there)."""
    out = tmp_path / "out"
    common = ["--output_dir", str(out), "--use_cpu", "true", "--bf16", "false", "--max_steps", "2"]
    common += ["--logging_steps", "1", "--per_device_train_batch_size", "2", "--max_length", "64"]
    common += ["--learning_rate", "1e-3", "--gradient_checkpointing", "false"]
    if script == "reward":
        data = ["--model_name_or_path", assets["reward"], "--dsp_file", assets["dsp"], "--evaluate_before", "false"]
        data += ["--max_eval_queries", "2"]
    else:
        data = ["--model_name_or_path", assets["causal"], "--synthetic_dsp_file", assets["dsp"]]
        data += ["--users_per_group", "2", "--pairs_per_user", "8", "--per_device_eval_batch_size", "2"]
    launch("single_cpu", script, recipe, data + common)
    losses = logged_losses(out)
    assert len(losses) == 2 and all(loss == loss for loss in losses)  # finite, not NaN
    saved = {p.name for p in out.iterdir()}
    assert "adapter_model.safetensors" in saved
    assert ("soft_tokens.safetensors" if script == "reward" else "soft_tokens.safetensors") in saved
    assert json.loads((out / "adapter_config.json").read_text())["base_model_name_or_path"]


@pytest.mark.skipif(bitsandbytes_cpu_reason() is not None, reason=str(bitsandbytes_cpu_reason()))
def test_qlora_continues_a_customized_folder_quantized(assets, tmp_path):
    """
    Continuing a customized RM (a folder with a record, which our trainer loads, not TRL) with QLoRA: the base
    is loaded in 4 bits, as TRL loads a plain path, with its saved condition table, and trains.
    """
    from peft import LoraConfig
    from transformers import BitsAndBytesConfig

    from trl_custom import CustomRewardConfig, CustomRewardTrainer
    from trl_custom.models import unwrap_peft

    first = CustomRewardTrainer(
        assets["reward"],
        args=cpu_config(CustomRewardConfig, tmp_path, condition_mode="embedding", max_length=64),
        train_dataset=conditioned_pairs(8),
        processing_class=make_tokenizer(),
    )
    first.save_model(str(tmp_path / "customized"))
    trainer = CustomRewardTrainer(
        str(tmp_path / "customized"),
        args=cpu_config(
            CustomRewardConfig,
            tmp_path,
            condition_mode="embedding",
            max_steps=2,
            max_length=64,
            model_init_kwargs={"dtype": "bfloat16"},  # as the QLoRA recipes (TRL's get_quantization_config)
        ),
        train_dataset=conditioned_pairs(8),
        processing_class=make_tokenizer(),
        quantization_config=BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_compute_dtype=torch.bfloat16,
            bnb_4bit_quant_storage=torch.bfloat16,
        ),
        peft_config=LoraConfig(task_type="SEQ_CLS", r=4, target_modules=["q_proj", "v_proj"]),
    )
    assert unwrap_peft(trainer.model).is_loaded_in_4bit
    table = trainer.soft_tokens.table.detach().clone()
    assert torch.equal(table, first.soft_tokens.table.detach().to(table.dtype))  # the saved table, in bf16
    trainer.train()
    assert not torch.equal(trainer.soft_tokens.table.detach(), table)


@pytest.fixture(scope="module")
def fsdp2_cpu_config(tmp_path_factory):
    """The shipped fsdp2.yaml on the CPU: 2 processes, fp32 (the file itself asks for bf16 on 8 GPUs)."""
    text = (ACCELERATE_CONFIGS / "fsdp2.yaml").read_text()
    text = text.replace("use_cpu: false", "use_cpu: true").replace("mixed_precision: bf16", 'mixed_precision: "no"')
    path = tmp_path_factory.mktemp("fsdp2") / "fsdp2_cpu.yaml"
    path.write_text(text.replace("num_processes: 8", "num_processes: 2"))
    return path


@pytest.mark.parametrize("script", ["reward", "dpo"])
def test_recipes_under_fsdp2_match_one_process(assets, one_process_runs, fsdp2_cpu_config, script, tmp_path):
    """FSDP2 shards the model over 2 gloo processes: the condition table / user model still see the same batches."""
    out = tmp_path / "fsdp2"
    if script == "reward":
        launch(fsdp2_cpu_config, "reward", "quickstart_minilm", reward_args(assets, out, 2), num_processes=2)
    else:
        launch(fsdp2_cpu_config, "dpo", "pdpo_lora_smollm2", dpo_args(assets, out, 2), num_processes=2)
    assert logged_losses(out) == pytest.approx(logged_losses(one_process_runs[script]), rel=LOSS_TOLERANCE)


def resume_matches_uninterrupted(accelerate_config, script, recipe, args_of, tmp_path, num_processes, attached_file):
    """
    4 steps with a checkpoint every 2 (the uninterrupted run), then a new launch resumed from its `checkpoint-2/`
    alone (`--resume_from_checkpoint true` in a folder holding only that checkpoint, as a preempted run leaves it):
    the same per-step losses and the same final weights, the attached module (`attached_file`) included.
    """
    from safetensors.torch import load_file

    steps = ["--max_steps", "4", "--save_strategy", "steps", "--save_steps", "2"]
    full, stopped = tmp_path / "full", tmp_path / "stopped"
    launch(accelerate_config, script, recipe, args_of(full, *steps), num_processes=num_processes)
    stopped.mkdir()
    shutil.copytree(full / "checkpoint-2", stopped / "checkpoint-2")
    result = launch(
        accelerate_config,
        script,
        recipe,
        args_of(stopped, *steps, "--resume_from_checkpoint", "true"),
        num_processes=num_processes,
    )
    assert "missing keys" not in result.stdout + result.stderr
    reference = logged_losses(full)
    assert len(reference) == 4 and reference[1] != reference[-1]
    assert logged_losses(stopped) == pytest.approx(reference, abs=1e-6)
    weights = "adapter_model.safetensors" if (full / "adapter_model.safetensors").exists() else "model.safetensors"
    for name in (attached_file, weights):
        expected, got = load_file(str(full / name)), load_file(str(stopped / name))
        assert got.keys() == expected.keys()
        for key, value in expected.items():
            torch.testing.assert_close(got[key], value, atol=1e-6, rtol=0, msg=f"{name}: {key}")


def test_dpo_recipe_two_processes_resume_equals_uninterrupted(assets, tmp_path):
    """DDP (gloo, 2 processes), P-DPO with LoRA: the adapter and the user model come back from the checkpoint."""
    resume_matches_uninterrupted(
        "multi_cpu",
        "dpo",
        "pdpo_lora_smollm2",
        lambda out, *extra: dpo_args(assets, out, 2, *extra),
        tmp_path,
        2,
        "soft_tokens.safetensors",
    )


@deepspeed_installed
def test_reward_recipe_zero3_resume_equals_uninterrupted(assets, tmp_path):
    """ZeRO-3, full fine-tuning in embedding mode: DeepSpeed's checkpoint restores the table with the weights."""
    resume_matches_uninterrupted(
        "deepspeed_zero3",
        "reward",
        "quickstart_minilm",
        lambda out, *extra: reward_args(assets, out, 4, *extra),
        tmp_path,
        1,
        "soft_tokens.safetensors",
    )


def grpo_args(assets, output_dir, *extra):
    return [
        "--model_name_or_path", assets["causal"], "--synthetic_dsp_file", assets["dsp"], "--output_dir",
        str(output_dir), "--per_device_train_batch_size", "4", "--num_generations", "2", "--max_completion_length",
        "6", "--max_steps", "3", "--logging_steps", "1", "--learning_rate", "1e-2", "--prompts_per_user", "4",
        "--use_peft", "false", "--beta", "0.1", *extra,
    ]  # fmt: skip


def test_personalized_grpo_two_processes_resume_equals_uninterrupted(assets, tmp_path):
    """Personalized GRPO under DDP (gloo, 2 processes): each process generates for its users, the per-user rewards
    are gathered from both, and a run resumed from its checkpoint equals the uninterrupted one (the user model
    included)."""
    resume_matches_uninterrupted(
        "multi_cpu",
        "grpo",
        "pgrpo_demo_cpu",
        lambda out, *extra: grpo_args(assets, out, *extra),
        tmp_path,
        2,
        "soft_tokens.safetensors",
    )
    history = json.loads((tmp_path / "full" / "trainer_state.json").read_text())["log_history"]
    assert {"user_reward/short", "user_reward/long"} <= {key for entry in history for key in entry}


# ---------------------------------------------------------------------------------------------------- several machines
MULTI_NODE = ROOT / "examples" / "multi_node"


@pytest.fixture(scope="module")
def multi_node_cpu_config(tmp_path_factory):
    """The shipped multi_node_ddp.yaml on the CPU (gloo, fp32); machines, ranks and ports come from the launchers."""
    text = (ACCELERATE_CONFIGS / "multi_node_ddp.yaml").read_text()
    text = text.replace("use_cpu: false", "use_cpu: true").replace("mixed_precision: bf16", 'mixed_precision: "no"')
    path = tmp_path_factory.mktemp("multi_node") / "multi_node_ddp_cpu.yaml"
    path.write_text(text)
    return path


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_machines(*launches, timeout=400):
    """
    Run the `(command, environment)` `launches` (one per "machine", or one SLURM job that starts them) at once on
    127.0.0.1, each in a session of its own; every one must succeed. On a failure or a timeout all their processes
    (launchers, torchrun agents, workers) are killed.
    """
    import signal

    processes = [
        subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            start_new_session=True,
        )
        for command, env in launches
    ]  # fmt: skip
    outputs = []
    try:
        for process in processes:
            outputs.append(process.communicate(timeout=timeout))
    finally:
        for process in processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.communicate()
    for process, (out, err) in zip(processes, outputs, strict=True):
        assert process.returncode == 0, out[-2000:] + err[-4000:]
    return outputs


def machines_env(tmp_path, port):
    """What both launchers read: 2 machines of 1 CPU process, the head node 127.0.0.1:`port`, fake `srun` and
    `scontrol` (SLURM's own commands, standing in for an allocation: `srun` starts its command once per node here,
    with that node's SLURM_NODEID)."""
    bin_dir = tmp_path / "fake-slurm"
    bin_dir.mkdir(parents=True)
    (bin_dir / "srun").write_text(
        "#!/bin/bash\nwhile [[ $1 == --* ]]; do shift; done\npids=()\n"
        'for ((i = 0; i < SLURM_NNODES; i++)); do SLURM_NODEID=$i SLURM_PROCID=$i "$@" & pids+=($!); done\n'
        'status=0\nfor pid in "${pids[@]}"; do wait "$pid" || status=$?; done\nexit $status\n'
    )
    (bin_dir / "scontrol").write_text('#!/bin/bash\n[[ "$1 $2" == "show hostnames" ]] && echo 127.0.0.1\n')
    for name in ("srun", "scontrol"):
        (bin_dir / name).chmod(0o755)
    return {
        **os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "TRL_CUSTOM": f"{sys.executable} -m trl_custom.cli", "PROCESSES_PER_MACHINE": "1", "NUM_MACHINES": "2",
        "MAIN_PROCESS_IP": "127.0.0.1", "MAIN_PROCESS_PORT": str(port), "SLURM_NNODES": "2",
        "SLURM_JOB_NODELIST": "node[1-2]", "SLURM_SUBMIT_DIR": str(ROOT),
    }  # fmt: skip


def test_launchers_parse_and_refuse_missing_machine_flags(tmp_path):
    for script in ("launch.slurm", "launch_host.sh"):
        done = subprocess.run(["bash", "-n", str(MULTI_NODE / script)], capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
    env = {k: v for k, v in os.environ.items() if k not in ("MACHINE_RANK", "MAIN_PROCESS_IP", "SLURM_NNODES")}
    done = subprocess.run(
        ["bash", str(MULTI_NODE / "launch_host.sh"), "reward"], capture_output=True, text=True, env=env
    )
    assert done.returncode != 0 and "set MACHINE_RANK" in done.stderr
    done = subprocess.run(
        ["bash", str(MULTI_NODE / "launch.slurm"), "reward"], capture_output=True, text=True, env=env
    )
    assert done.returncode != 0 and "inside a SLURM allocation" in done.stderr


@pytest.mark.parametrize("name", ["multi_node_ddp", "multi_node_zero3", "multi_node_fsdp2"])
def test_multi_node_configs_take_the_machine_flags_from_the_command_line(name):
    """accelerate's own launch preparation of each shipped multi-node config, with the machine values overridden:
    torchrun's nodes, rank, processes per node and the head node's address come from the flags."""
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser
    from accelerate.utils.launch import prepare_deepspeed_cmd_env, prepare_multi_gpu_env

    flags = ["--config_file", str(ACCELERATE_CONFIGS / f"{name}.yaml"), "--num_machines", "4", "--num_processes"]
    flags += ["32", "--machine_rank", "3", "--main_process_ip", "10.1.2.3", "--main_process_port", "29600", "x.py"]
    args, defaults, _ = _validate_launch_command(launch_command_parser().parse_args(flags))
    if name == "multi_node_zero3":
        args.deepspeed_fields_from_accelerate_config = ",".join(defaults.deepspeed_config)
        _, env = prepare_deepspeed_cmd_env(args)
        assert env["ACCELERATE_DEEPSPEED_ZERO_STAGE"] == "3" and args.deepspeed_multinode_launcher == "standard"
    else:
        env = prepare_multi_gpu_env(args)
        assert env.get("FSDP_VERSION", "2") == "2" and ("fsdp" in name) == (env.get("ACCELERATE_USE_FSDP") == "true")
    assert (args.nnodes, args.node_rank, args.nproc_per_node) == ("4", 3, "8")
    assert args.rdzv_endpoint == "10.1.2.3:29600" and env["ACCELERATE_MIXED_PRECISION"] == "bf16"


def test_multi_node_launch_without_machine_flags_fails_with_the_fix(capsys):
    from trl_custom import cli

    reward = ["reward", "--config", "quickstart_minilm", "--accelerate_config", "multi_node_ddp"]
    with pytest.raises(SystemExit, match="needs --machine_rank and --main_process_ip on each machine"):
        cli.main(reward)
    with pytest.raises(SystemExit, match="--num_processes 3 counts the processes of all machines"):
        cli.main(reward + ["--machine_rank", "0", "--main_process_ip", "10.0.0.1", "--num_processes", "3"])
    dpo = [
        "dpo",
        "--config",
        "pdpo_lora_smollm2",
        "--synthetic_dsp_file",
        "demo",
        "--accelerate_config",
        "multi_node_zero3",
    ]
    with pytest.raises(SystemExit, match="--machine_rank 2: the machines of this launch are numbered 0 to 1"):
        cli.main(dpo + ["--machine_rank", "2", "--main_process_ip", "head-node"])


def test_reward_recipe_on_two_machines_under_slurm_matches_one_process_and_resumes(
    assets, one_process_runs, multi_node_cpu_config, tmp_path
):
    """
    examples/multi_node/launch.slurm in a stand-in allocation of 2 nodes (both on 127.0.0.1: fake `srun` runs
    launch_host.sh twice, ranks 0 and 1): 2 `accelerate launch` of 1 gloo process each give the one-process run's
    losses (same global batch); then, from its checkpoint-2 alone, a new 2-machine launch resumes to the same losses
    and the same final weights and condition table.
    """
    from safetensors.torch import load_file

    def slurm(out, *extra):
        args = reward_args(assets, out, 2, "--save_strategy", "steps", "--save_steps", "2", "--disable_tqdm", "true")
        command = ["reward", "--config", "quickstart_minilm", "--accelerate_config", str(multi_node_cpu_config)]
        return ["bash", str(MULTI_NODE / "launch.slurm"), *command, *args, *extra]

    full, resumed = tmp_path / "full", tmp_path / "resumed"
    ((out, err),) = run_machines((slurm(full), machines_env(tmp_path, free_port())))
    assert "machine 0 of 2" in err and "machine 1 of 2" in err
    reference = logged_losses(one_process_runs["reward"])
    assert logged_losses(full) == pytest.approx(reference, rel=LOSS_TOLERANCE)
    resumed.mkdir()
    shutil.copytree(full / "checkpoint-2", resumed / "checkpoint-2")
    run_machines((slurm(resumed, "--resume_from_checkpoint", "true"), machines_env(tmp_path / "again", free_port())))
    assert logged_losses(resumed) == pytest.approx(logged_losses(full), abs=1e-6)
    for name in ("soft_tokens.safetensors", "model.safetensors"):
        expected, got = load_file(str(full / name)), load_file(str(resumed / name))
        assert got.keys() == expected.keys()
        for key, value in expected.items():
            torch.testing.assert_close(got[key], value, atol=1e-6, rtol=0, msg=f"{name}: {key}")


def test_dpo_recipe_on_two_hosts_matches_one_process(assets, one_process_runs, multi_node_cpu_config, tmp_path):
    """examples/multi_node/launch_host.sh started on two "hosts" (MACHINE_RANK 0 and 1, 127.0.0.1), P-DPO with LoRA:
    the one-process run's losses."""
    out = tmp_path / "dpo"
    env = machines_env(tmp_path, free_port())
    command = ["bash", str(MULTI_NODE / "launch_host.sh"), "dpo", "--config", "pdpo_lora_smollm2"]
    command += ["--accelerate_config", str(multi_node_cpu_config), *dpo_args(assets, out, 2), "--disable_tqdm", "true"]
    run_machines(*((command, {**env, "MACHINE_RANK": str(rank)}) for rank in (0, 1)))
    reference = logged_losses(one_process_runs["dpo"])
    assert logged_losses(out) == pytest.approx(reference, rel=LOSS_TOLERANCE)
