#!/usr/bin/env bash
# One machine's share of a trl-custom run over several machines, torchrun-style: start it on every machine with the
# same arguments and that machine's MACHINE_RANK (0 on the head node). It runs `trl-custom reward|dpo ...` through
# `accelerate launch` with the machine flags of accelerate's own multi-node support; use a multi-node accelerate
# config (multi_node_ddp, multi_node_zero3, multi_node_fsdp2).
#
#   # on host A (10.0.0.1, the head node) and on host B, 8 GPUs each:
#   MACHINE_RANK=0 MAIN_PROCESS_IP=10.0.0.1 bash examples/multi_node/launch_host.sh reward \
#       --config dsp_stage3_customized_llama8b_full --accelerate_config multi_node_zero3
#   MACHINE_RANK=1 MAIN_PROCESS_IP=10.0.0.1 bash examples/multi_node/launch_host.sh reward \
#       --config dsp_stage3_customized_llama8b_full --accelerate_config multi_node_zero3
#
# Environment:
#   MACHINE_RANK           this machine: 0 (head node), 1, ..., NUM_MACHINES - 1 (required)
#   MAIN_PROCESS_IP        the head node's address, reachable from every machine (required)
#   NUM_MACHINES           machines in the run (default 2)
#   PROCESSES_PER_MACHINE  processes per machine (default: this machine's GPUs, from nvidia-smi)
#   MAIN_PROCESS_PORT      a free port of the head node (default 29500)
#   TRL_CUSTOM             the command to run (default trl-custom)
# The run's output_dir must be on a file system every machine sees (checkpoints and resume read it), or pass
# --save_on_each_node true.
set -euo pipefail

: "${MACHINE_RANK:?set MACHINE_RANK: 0 on the head node, 1, 2, ... on the others}"
: "${MAIN_PROCESS_IP:?set MAIN_PROCESS_IP: the head node address, the same on every machine}"
NUM_MACHINES=${NUM_MACHINES:-2}
if [[ -z "${PROCESSES_PER_MACHINE:-}" ]]; then
    if ! command -v nvidia-smi > /dev/null; then
        echo "launch_host.sh: set PROCESSES_PER_MACHINE (no nvidia-smi here to count the GPUs)" >&2
        exit 2
    fi
    PROCESSES_PER_MACHINE=$(nvidia-smi --list-gpus | wc -l)
fi
if (( $# < 1 )); then
    echo "usage: MACHINE_RANK=R MAIN_PROCESS_IP=ADDRESS bash launch_host.sh reward|dpo [trl-custom flags]" >&2
    exit 2
fi
COMMAND=$1
shift

echo "launch_host.sh: machine ${MACHINE_RANK} of ${NUM_MACHINES}, ${PROCESSES_PER_MACHINE} processes, head node" \
    "${MAIN_PROCESS_IP}:${MAIN_PROCESS_PORT:-29500}" >&2
# TRL_CUSTOM may be a command with arguments (`python -m trl_custom.cli`): split on purpose
# shellcheck disable=SC2086
exec ${TRL_CUSTOM:-trl-custom} "$COMMAND" "$@" \
    --num_machines "$NUM_MACHINES" \
    --num_processes $((NUM_MACHINES * PROCESSES_PER_MACHINE)) \
    --machine_rank "$MACHINE_RANK" \
    --main_process_ip "$MAIN_PROCESS_IP" \
    --main_process_port "${MAIN_PROCESS_PORT:-29500}"
