#!/usr/bin/env bash
# Evaluation on a Slurm cluster:
#   GPUS=16 bash tools/slurm_test.sh PARTITION JOB_NAME CONFIG CHECKPOINT [test.py options]
# (GPUS, GPUS_PER_NODE, CPUS_PER_TASK, SRUN_ARGS, PYTHON: see slurm_run.sh)
if [ $# -lt 4 ]; then
  echo "error: expected PARTITION JOB_NAME CONFIG CHECKPOINT [test.py options]," \
       "got $# argument(s)" >&2
  exit 2
fi
exec bash "$(dirname "$0")/slurm_run.sh" test.py "$1" "$2" "$3" "$4" \
    --launcher=slurm "${@:5}"
