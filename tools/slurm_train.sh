#!/usr/bin/env bash
# Training on a Slurm cluster:
#   GPUS=16 bash tools/slurm_train.sh PARTITION JOB_NAME CONFIG WORK_DIR [train.py options]
# (GPUS, GPUS_PER_NODE, CPUS_PER_TASK, SRUN_ARGS, PYTHON: see slurm_run.sh)
if [ $# -lt 4 ]; then
  echo "error: expected PARTITION JOB_NAME CONFIG WORK_DIR [train.py options]," \
       "got $# argument(s)" >&2
  exit 2
fi
exec bash "$(dirname "$0")/slurm_run.sh" train.py "$1" "$2" "$3" \
    --work-dir="$4" --launcher=slurm "${@:5}"
