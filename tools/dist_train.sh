#!/usr/bin/env bash
# Distributed training on one or several nodes:
#   bash tools/dist_train.sh CONFIG GPUS [train.py options]
# On a machine without GPUs, GPUS processes train on the CPU (gloo).
# (NNODES, NODE_RANK, MASTER_ADDR, PORT, PYTHON: see dist_run.sh)
if [ $# -lt 2 ]; then
  echo "error: expected CONFIG GPUS [train.py options], got $# argument(s)" >&2
  exit 2
fi
exec bash "$(dirname "$0")/dist_run.sh" train.py "$2" "$1" --launcher pytorch \
    "${@:3}"
