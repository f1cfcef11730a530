#!/usr/bin/env bash
# The torchrun launch of tools/dist_train.sh and tools/dist_test.sh:
#   bash tools/dist_run.sh TOOL GPUS CONFIG [TOOL arguments]
# runs tools/TOOL with PYTHON (default python) as GPUS processes on each of
# NNODES nodes (default 1; NODE_RANK, MASTER_ADDR, PORT for several). On a
# machine without GPUs, the processes run on the CPU (gloo).
TOOL=$1
GPUS=$2
shift 2
case "$GPUS" in
  '' | *[!0-9]* | 0)
    echo "error: GPUS must be a positive number of processes, got '$GPUS'" >&2
    exit 2 ;;
esac
# checked here, or each process says it and torchrun adds its traceback
if [ ! -f "$1" ]; then
  echo "error: config $1 does not exist" >&2
  exit 2
fi
NNODES=${NNODES:-1}
NODE_RANK=${NODE_RANK:-0}
PORT=${PORT:-29500}
MASTER_ADDR=${MASTER_ADDR:-"127.0.0.1"}
PYTHON=${PYTHON:-python}
TOOLS="$(dirname "$0")"

PYTHONPATH="$TOOLS/..":$PYTHONPATH \
exec "$PYTHON" -m torch.distributed.run \
    --nnodes="$NNODES" \
    --node_rank="$NODE_RANK" \
    --master_addr="$MASTER_ADDR" \
    --nproc_per_node="$GPUS" \
    --master_port="$PORT" \
    "$TOOLS/$TOOL" "$@"
