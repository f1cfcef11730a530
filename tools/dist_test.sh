#!/usr/bin/env bash
# Distributed evaluation:
#   bash tools/dist_test.sh CONFIG CHECKPOINT GPUS [test.py options]
# (NNODES, NODE_RANK, MASTER_ADDR, PORT, PYTHON: see dist_run.sh)
if [ $# -lt 3 ]; then
  echo "error: expected CONFIG CHECKPOINT GPUS [test.py options], got $#" \
       "argument(s)" >&2
  exit 2
fi
# checked here, or each process says it and torchrun adds its traceback
case "$2" in
  *://*) ;;
  *) if [ ! -f "$2" ]; then
       echo "error: checkpoint $2 does not exist" >&2
       exit 2
     fi ;;
esac
exec bash "$(dirname "$0")/dist_run.sh" test.py "$3" "$1" "$2" \
    --launcher pytorch "${@:4}"
