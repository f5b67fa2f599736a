#!/usr/bin/env bash
# One mcl run on a Slurm GPU cluster: one JAX process per GPU.
#
#   sbatch --nodes=2 --ntasks-per-node=4 --gpus-per-task=1 \
#     launch/slurm.sh --config=configs/mtat_short_chunk_cnn.py \
#     --workdir=/shared/runs/scnn --config.data.manual_dir=/shared/mtat
#
# srun starts one task per GPU; each runs `python -m mcl.main`, which calls
# `jax.distributed.initialize()` (mcl.trainer.parallel.initialize: SLURM_NTASKS > 1),
# joins the ("data",) mesh over every GPU of every node and feeds its rows
# of each global batch. The workdir and the records' data_dir must be on a
# file system every node sees; the global batch (config.train.batch_size)
# must divide over the GPUs. Set up .venv once on that file system first
# (`bash launch/setup.sh`, then `.venv/bin/pip install "jax[cuda12]==V"`
# with V the jax version of launch/requirements.lock, so jax stays locked).
#SBATCH --job-name=mcl
#SBATCH --output=mcl-%j.out
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
exec srun --kill-on-bad-exit=1 .venv/bin/python -m mcl.main "$@"
