#!/usr/bin/env bash
# The README's main job on a fresh machine: install mmcot (tools/install.sh),
# generate the embedded shapes dataset, train the CoTNet demo classifier on
# it through MMEngine's runner, and evaluate the final checkpoint.
#   bash tools/run_demo.sh [train.py options]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
bash tools/install.sh
PY="${VENV:-.venv}/bin/python"
CONFIG=configs/cotnet/cotnet-tiny_1xb32-15e_shapes.py
WORK_DIR=work_dirs/cotnet-tiny_1xb32-15e_shapes
"$PY" tools/dataset_converters/make_shapes.py cls data/shapes_cls
"$PY" tools/train.py "$CONFIG" --work-dir "$WORK_DIR" "$@"
"$PY" tools/test.py "$CONFIG" "$WORK_DIR/epoch_15.pth" --work-dir "$WORK_DIR"
