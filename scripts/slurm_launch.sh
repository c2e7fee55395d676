#!/usr/bin/env bash
# Multi-node training under SLURM: one `accelerate launch` per node, all pointing at node 0.
#   sbatch --nodes=2 --gres=gpu:8 scripts/slurm_launch.sh recipes/orpheus/pretrain_dialects.py \
#          --config recipes/orpheus/configs/catalan_dialects.yaml
# ACCELERATE_CONFIG picks the engine (default fsdp2); GPUS_PER_NODE the processes per node.
#SBATCH --job-name=tts-recipes
#SBATCH --ntasks-per-node=1
#SBATCH --exclusive
#SBATCH --output=logs/%x-%j.out
set -euo pipefail
ACCELERATE_CONFIG=${ACCELERATE_CONFIG:-accelerate_configs/fsdp2.yaml}
GPUS_PER_NODE=${GPUS_PER_NODE:-8}
MAIN_ADDR=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)
MAIN_PORT=${MAIN_PORT:-29500}
NUM_NODES=${SLURM_NNODES:-1}
mkdir -p logs
# srun starts this once per node; SLURM_PROCID is the node rank because ntasks-per-node=1.
srun bash -c "source .venv/bin/activate && accelerate launch \
  --config_file $ACCELERATE_CONFIG \
  --num_machines $NUM_NODES --num_processes $((NUM_NODES * GPUS_PER_NODE)) \
  --machine_rank \$SLURM_PROCID --main_process_ip $MAIN_ADDR --main_process_port $MAIN_PORT \
  --rdzv_backend c10d $*"
