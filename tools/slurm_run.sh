#!/usr/bin/env bash
# The srun job of tools/slurm_train.sh and tools/slurm_test.sh:
#   bash tools/slurm_run.sh TOOL PARTITION JOB_NAME [TOOL arguments]
# runs tools/TOOL with PYTHON (default python) as GPUS tasks (default 8),
# GPUS_PER_NODE per node (8) with CPUS_PER_TASK cores each (5), adding
# SRUN_ARGS to srun's options.
if ! command -v srun > /dev/null; then
  echo "error: srun not found: the slurm_*.sh tools run on a Slurm" \
       "cluster (dist_train.sh / dist_test.sh run on one machine)" >&2
  exit 2
fi
set -x
TOOL=$1
PARTITION=$2
JOB_NAME=$3
shift 3
TOOLS="$(dirname "$0")"
GPUS=${GPUS:-8}
GPUS_PER_NODE=${GPUS_PER_NODE:-8}
CPUS_PER_TASK=${CPUS_PER_TASK:-5}
SRUN_ARGS=${SRUN_ARGS:-""}
PYTHON=${PYTHON:-python}

# shellcheck disable=SC2086
PYTHONPATH="$TOOLS/..":$PYTHONPATH \
srun -p "${PARTITION}" \
    --job-name="${JOB_NAME}" \
    --gres=gpu:"${GPUS_PER_NODE}" \
    --ntasks="${GPUS}" \
    --ntasks-per-node="${GPUS_PER_NODE}" \
    --cpus-per-task="${CPUS_PER_TASK}" \
    --kill-on-bad-exit=1 \
    ${SRUN_ARGS} \
    "$PYTHON" -u "$TOOLS/$TOOL" "$@"
