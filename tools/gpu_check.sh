#!/usr/bin/env bash
# One GPU check of mmcot: install, build, test and measure, into OUT_DIR.
#
#   bash tools/gpu_check.sh OUT_DIR [--quick] [--wheelhouse DIR]
#   bash tools/gpu_check.sh OUT_DIR --cpu-smoke      # the script itself, on a CPU
#
# On a GPU node whose Python (PYTHON, default python3) holds its own torch:
#   1. install: tools/install.sh --wheelhouse DIR (default ./wheelhouse, made
#      by tools/build_wheelhouse.sh), mmcot._ext with the CUDA kernels for
#      the visible GPU; skipped when DIR does not exist and mmcot already
#      imports with its CUDA kernels;
#   2. tests_ops: the op tests on CPU and GPU (fp32/fp64 against the
#      reference, fp16/bf16 against fp32, autocast, determinism, bad inputs)
#      and torch.compile (inductor) of CoTNet-50 on the GPU against eager;
#   3. op_benchmark: tools/analysis/benchmark_op.py --device cuda, float32,
#      float16 and bfloat16 at CoTNet-50's stage shapes, batch 64: time,
#      floor_ratio (time over bytes to move / copy bandwidth), memory, ratio
#      to the unfold reference, and to the previous kernels of PREVIOUS_EXT
#      or, if it loads, build/previous_kernels/mmcot_previous_ext.so (made
#      by tools/analysis/build_previous_kernels.py), and to the variants in
#      build/kernel_variants (tools/analysis/build_kernel_variants.py) that
#      load; on the GPU, the kernels' own device time beside the wall time;
#   4. model_benchmark (not with --quick): tools/analysis/benchmark.py
#      --device cuda, CoTNet-50, CoTNeXt-50, SE-CoTNetD-50 against ResNet-50,
#      ResNeXt-50 and ResNeSt-50, fp32 and fp16 inference and training step,
#      batch 64, img/s and peak memory, one run, with the 12 kernels of the
#      largest device time in each model's inference (--profile);
#   5. train: 100 iterations of AMP training of a CoTNet-50 classifier on the
#      generated shapes images through tools/train.py (MMEngine's runner):
#      the loss must stay finite and fall;
#   6. summary.json: device, torch / CUDA versions, each step's status and
#      time, every figure, and the project's GPU goals against them.
# Each step writes its log (and JSON) to OUT_DIR; a failed step is recorded
# and the next one runs; the exit status is 1 if any step failed. About 6-8
# minutes on an H100 (the model benchmark takes 2-3 of them).
# --cpu-smoke runs every step on the CPU at toy sizes, without installing,
# to check the script before a GPU run. OUT_DIR holds about a dozen files:
# tar it where a lent machine hands back only a few.
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
usage() {
  sed -n '2,35p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
  exit "${1:-0}"
}
OUT=
QUICK=0
SMOKE=0
WHEELHOUSE=wheelhouse
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) QUICK=1; shift ;;
    --cpu-smoke) SMOKE=1; shift ;;
    --wheelhouse) WHEELHOUSE=${2:?--wheelhouse needs a folder}; shift 2 ;;
    -h|--help) usage ;;
    -*) echo "error: unknown option $1 (see --help)" >&2; exit 2 ;;
    *) [ -z "$OUT" ] || { echo "error: one OUT_DIR only" >&2; exit 2; }
       OUT=$1; shift ;;
  esac
done
[ -n "$OUT" ] || { echo "error: OUT_DIR is required (see --help)" >&2; exit 2; }
mkdir -p "$OUT" || exit 1
OUT=$(cd "$OUT" && pwd)
PY="${PYTHON:-python3}"
export PYTHONUNBUFFERED=1
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
: > "$OUT/steps.tsv"

# step NAME COMMAND...: run, log to OUT/NAME.log, record status and seconds
step() {
  local name=$1 start status
  shift
  echo "[gpu_check] $name"
  start=$(date +%s)
  "$@" > "$OUT/$name.log" 2>&1
  status=$?
  printf '%s\t%s\t%s\n' "$name" "$status" "$(( $(date +%s) - start ))" \
    >> "$OUT/steps.tsv"
  [ $status -eq 0 ] || { echo "[gpu_check] $name failed ($status):"; \
                         tail -n 5 "$OUT/$name.log"; }
  return 0
}

if [ $SMOKE -eq 1 ]; then
  DEVICE=cpu BATCH=2 REPEATS=1 DTYPES=float32 MODEL_DTYPES=fp32
  ITERS_PER_CLASS=4 TRAIN_BATCH=4 AMP=
  OP_TESTS=(-k cuda)  # the CUDA cases, collected and skipped on a CPU
else
  DEVICE=cuda BATCH=64 REPEATS=20 DTYPES="float32 float16 bfloat16"
  MODEL_DTYPES="fp32 fp16" ITERS_PER_CLASS=400 TRAIN_BATCH=24 AMP=--amp
  OP_TESTS=()
  if [ -d "$WHEELHOUSE" ]; then
    step install bash tools/install.sh --wheelhouse "$WHEELHOUSE"
  elif ! "$PY" -c 'import sys; from mmcot.ops import ext_with_cuda
sys.exit(not ext_with_cuda())' 2>/dev/null; then
    echo "error: no wheelhouse at $WHEELHOUSE and mmcot is not installed" \
         "with its CUDA kernels (see --help)" >&2
    exit 1
  fi
  if ! "$PY" -c 'import sys, torch; sys.exit(not torch.cuda.is_available())'
  then
    echo "error: no GPU is visible to $PY" >&2
    exit 1
  fi
fi

# the kernels' CPU simulation and PTX checks run in CI, not on device time
step tests_ops env MMCOT_REQUIRE_EXT=1 "$PY" -m pytest \
  tests/test_ops/test_local_aggregation.py \
  tests/test_ops/test_local_aggregation_group_normed.py \
  tests/test_models/test_compile_export.py::test_compile_fullgraph_inductor_cuda \
  -q -p no:cacheprovider \
  --junitxml "$OUT/tests_ops.xml" ${OP_TESTS[@]+"${OP_TESTS[@]}"}
# the kernels timed beside the current ones: PREVIOUS_EXT, or the previous
# kernels (build_previous_kernels.py) and the variants
# (build_kernel_variants.py) that load in $PY (one that does not is said)
DEFAULT_PREVIOUS=build/previous_kernels/mmcot_previous_ext.so
CANDIDATES=()
[ -n "${PREVIOUS_EXT:-}" ] || [ ! -f "$DEFAULT_PREVIOUS" ] ||
  CANDIDATES+=("$DEFAULT_PREVIOUS")
for so in build/kernel_variants/mmcot_kernels_*.so; do
  [ -f "$so" ] && CANDIDATES+=("$so")
done
LOADABLE=()
if [ ${#CANDIDATES[@]} -gt 0 ]; then
  mapfile -t LOADABLE < <("$PY" -c 'import sys; sys.path.insert(0, "tools/analysis")
from benchmark_op import load_module
for path in sys.argv[1:]:
    try:
        load_module(path)
        print(path)
    except (ImportError, OSError) as e:
        print(f"[gpu_check] {path} does not load in {sys.executable} (built "
              f"for another Python or torch?), not timed: {e}",
              file=sys.stderr)' "${CANDIDATES[@]}")
fi
PREVIOUS=()
VARIANTS=()
[ -z "${PREVIOUS_EXT:-}" ] || PREVIOUS=(--previous-ext "$PREVIOUS_EXT")
for so in ${LOADABLE[@]+"${LOADABLE[@]}"}; do
  if [ "$so" = "$DEFAULT_PREVIOUS" ]; then
    PREVIOUS=(--previous-ext "$so")
  else
    VARIANTS+=("$so")
  fi
done
[ ${#VARIANTS[@]} -eq 0 ] || VARIANTS=(--variant-ext "${VARIANTS[@]}")
# shellcheck disable=SC2086
step op_benchmark "$PY" tools/analysis/benchmark_op.py --device "$DEVICE" \
  --batch "$BATCH" --repeats "$REPEATS" --dtypes $DTYPES \
  ${PREVIOUS[@]+"${PREVIOUS[@]}"} ${VARIANTS[@]+"${VARIANTS[@]}"} \
  --json "$OUT/op_benchmark.json"
if [ $QUICK -eq 0 ]; then
  # shellcheck disable=SC2086
  step model_benchmark "$PY" tools/analysis/benchmark.py --device "$DEVICE" \
    --models ResNet-50 'ResNeXt-50 (32x4d)' ResNeSt-50 CoTNet-50 \
    CoTNeXt-50 SE-CoTNetD-50 --dtypes $MODEL_DTYPES --batch "$BATCH" \
    --train-batch "$BATCH" --repeats "$REPEATS" --profile 12 \
    --json "$OUT/model_benchmark.json"
fi

# CoTNet-50 (full depth and width) on the shapes images: 6 classes x
# ITERS_PER_CLASS images at TRAIN_BATCH, one epoch
cat > "$WORK/cotnet50_shapes.py" <<EOF
_base_ = '$ROOT/configs/cotnet/cotnet-tiny_1xb32-15e_shapes.py'
model = dict(
    backbone=dict(stage_blocks=None, stem_channels=64, base_channels=64),
    head=dict(in_channels=2048))
data_root = '$WORK/shapes'
train_dataloader = dict(
    batch_size=$TRAIN_BATCH, num_workers=2, persistent_workers=False,
    dataset=dict(data_root=data_root))
val_dataloader = dict(
    num_workers=2, persistent_workers=False,
    dataset=dict(data_root=data_root))
test_dataloader = val_dataloader
train_cfg = dict(by_epoch=True, max_epochs=1, val_interval=1)
default_hooks = dict(logger=dict(interval=1))
EOF
train() {
  "$PY" -c "from mmcot.datasets import make_shapes_classification as make
make('$WORK/shapes', train_per_class=$ITERS_PER_CLASS, val_per_class=20)" &&
  "$PY" tools/train.py "$WORK/cotnet50_shapes.py" $AMP \
    --work-dir "$WORK/train" &&
  cp "$WORK"/train/*/vis_data/scalars.json "$OUT/train_scalars.json"
}
step train train

# a few toy iterations need not lower the loss
"$PY" tools/analysis/gpu_check_summary.py "$OUT" \
  $([ $SMOKE -eq 1 ] && echo --loss-may-rise)
