#!/usr/bin/env bash
# Install mmcot and its verified dependency stack into a virtual environment.
#
#   bash tools/install.sh            # venv at ./.venv, CPU build (CUDA kernels too if a GPU is seen)
#   FORCE_CUDA=1 bash tools/install.sh   # also compile the CUDA kernels without a GPU
#
# Environment: VENV (default .venv), PYTHON (default python3.11 or python3),
# MMCOT_CACHE (default ~/.cache/mmcot): the mmcv 2.1.0 wheel is built there once
# (about 13 minutes on 2 cores) and reused by every later install.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
VENV="${VENV:-.venv}"
case "$VENV" in /*) ;; *) VENV="$ROOT/$VENV" ;; esac
PYTHON="${PYTHON:-$(command -v python3.11 || command -v python3)}"
CACHE="${MMCOT_CACHE:-$HOME/.cache/mmcot}"
MMCV_VERSION=2.1.0
WHEELS="$CACHE/wheels"
CONSTRAINTS="$ROOT/requirements/constraints.txt"
mkdir -p "$WHEELS"

if [ ! -x "$VENV/bin/python" ]; then
  echo "[install] creating virtual environment $VENV with $PYTHON"
  "$PYTHON" -m venv "$VENV"
fi
PY="$VENV/bin/python"
pip_install() { "$PY" -m pip install -q --disable-pip-version-check -c "$CONSTRAINTS" "$@"; }

echo "[install] torch 2.14.1 + torchvision 0.29.1"
pip_install torch==2.14.1 torchvision==0.29.1
pip_install -r requirements/build.txt

if ! "$PY" -c "import mmcv, sys; sys.exit(mmcv.__version__ != '$MMCV_VERSION')" 2>/dev/null \
   || ! "$PY" -c "import mmcv.ops" 2>/dev/null; then
  wheel=$(ls "$WHEELS"/mmcv-$MMCV_VERSION-*.whl 2>/dev/null | head -n 1 || true)
  if [ -z "$wheel" ]; then
    echo "[install] building mmcv $MMCV_VERSION from source (once; cached in $WHEELS)"
    work=$(mktemp -d)
    "$PY" -m pip download -q --no-binary :all: --no-deps "mmcv==$MMCV_VERSION" -d "$work"
    tar -xzf "$work"/mmcv-$MMCV_VERSION.tar.gz -C "$work"
    # torch 2.14's headers need C++20; mmcv 2.1.0 hard-codes C++17.
    sed -i 's/-std=c++17/-std=c++20/g' "$work/mmcv-$MMCV_VERSION/setup.py"
    pip_install numpy pyyaml addict yapf packaging pillow regex
    (cd "$work/mmcv-$MMCV_VERSION" && MAX_JOBS="${MAX_JOBS:-$(nproc)}" \
      "$PY" -m pip wheel -q --no-build-isolation --no-deps . -w "$work/dist")
    cp "$work"/dist/mmcv-*.whl "$WHEELS/"
    wheel=$(ls "$WHEELS"/mmcv-$MMCV_VERSION-*.whl | head -n 1)
    rm -rf "$work"
  fi
  echo "[install] mmcv from $wheel"
  pip_install "$wheel"
fi

echo "[install] runtime and test requirements"
pip_install -r requirements/runtime.txt -r requirements/tests.txt

echo "[install] mmcot (compiling mmcot._ext)"
# --use-pep517: pip 23's legacy editable path would rebuild in isolation, without torch
MAX_JOBS="${MAX_JOBS:-$(nproc)}" pip_install --use-pep517 --no-build-isolation -e .
"$PY" -c "import mmcot; from mmcot.ops import ext_available; print('[install] mmcot', mmcot.__version__, '| compiled op:', ext_available())"
