#!/usr/bin/env bash
# Install mmcot and its dependencies.
#
#   bash tools/install.sh                     # verified stack, venv ./.venv
#   bash tools/install.sh --wheelhouse DIR    # offline node, its own Python
#
# Without options: a virtual environment (VENV, default .venv, made with
# PYTHON, default python3.11) receives the verified stack from the package
# index (torch 2.14.1, mmcv 2.1.0 built from source once and cached in
# MMCOT_CACHE, default ~/.cache/mmcot: about 13 minutes on 2 cores) and
# mmcot in editable mode.
#
# --wheelhouse DIR (made by tools/build_wheelhouse.sh): no index is used and
# no environment is made: the Python given by PYTHON (default python3),
# which must hold the torch the wheelhouse was built for, receives the
# wheels of DIR, never a torch; then mmcot is built in editable mode.
#
# Either way mmcot._ext gets the CUDA kernels when a GPU is visible or
# TORCH_CUDA_ARCH_LIST is set and nvcc is found (FORCE_CUDA=1 / 0 decides
# instead), and the install fails if the extension does not load. MAX_JOBS
# sets the compile jobs.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
WHEELHOUSE=
while [ $# -gt 0 ]; do
  case "$1" in
    --wheelhouse) WHEELHOUSE=${2:?--wheelhouse needs a folder}; shift 2 ;;
    -h|--help) sed -n '2,22p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
               exit 0 ;;
    *) echo "error: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
export MAX_JOBS="${MAX_JOBS:-$(nproc)}"

install_verified_stack() {
  VENV="${VENV:-.venv}"
  case "$VENV" in /*) ;; *) VENV="$ROOT/$VENV" ;; esac
  local python="${PYTHON:-$(command -v python3.11 || command -v python3)}"
  local wheels="${MMCOT_CACHE:-$HOME/.cache/mmcot}/wheels"
  if [ ! -x "$VENV/bin/python" ]; then
    echo "[install] creating virtual environment $VENV with $python"
    "$python" -m venv "$VENV"
  fi
  PY="$VENV/bin/python"
  pip_install() {
    "$PY" -m pip install -q --disable-pip-version-check \
      -c requirements/constraints.txt "$@"
  }
  echo "[install] torch 2.14.1 + torchvision 0.29.1"
  pip_install torch==2.14.1 torchvision==0.29.1
  pip_install -r requirements/build.txt
  if ! "$PY" -c "import mmcv, sys; sys.exit(mmcv.__version__ != '2.1.0')" \
      2>/dev/null || ! "$PY" -c "import mmcv.ops" 2>/dev/null; then
    local wheel
    wheel=$(ls "$wheels"/mmcv-2.1.0-*.whl 2>/dev/null | head -n 1 || true)
    if [ -z "$wheel" ]; then
      echo "[install] building mmcv 2.1.0 from source (once; cached in" \
           "$wheels)"
      pip_install numpy pyyaml addict yapf packaging pillow regex
      wheel=$(bash tools/build_mmcv_wheel.sh "$PY" "$wheels")
    fi
    echo "[install] mmcv from $wheel"
    pip_install "$wheel"
  fi
  echo "[install] runtime, deployment, tools and test requirements"
  pip_install -r requirements/runtime.txt -r requirements/deployment.txt \
    -r requirements/tools.txt -r requirements/tests.txt
}

fail() { echo "error: $*" >&2; exit 1; }

install_wheelhouse() {
  PY="${PYTHON:-python3}"
  local dir="$WHEELHOUSE"
  [ -d "$dir" ] || fail "wheelhouse $dir is not a folder"
  [ -f "$dir/WHEELHOUSE" ] && [ -f "$dir/requirements.txt" ] \
    || fail "$dir has no WHEELHOUSE / requirements.txt: make it with" \
            "tools/build_wheelhouse.sh"
  command -v "$PY" >/dev/null || fail "no Python $PY (set PYTHON=...)"
  local want_python want_torch have_python have_torch
  want_python=$(awk '$1 == "python" {print $2}' "$dir/WHEELHOUSE")
  want_torch=$(awk '$1 == "torch" {print $2}' "$dir/WHEELHOUSE")
  have_python=$("$PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
  [ "$have_python" = "$want_python" ] \
    || fail "the wheelhouse is for Python $want_python, $PY is" \
            "$have_python: rebuild it with tools/build_wheelhouse.sh DIR" \
            "--python $have_python"
  have_torch=$("$PY" -c 'import torch; print(torch.__version__.split("+")[0])' \
               2>/dev/null) \
    || fail "$PY has no torch: the node's own torch $want_torch is expected"
  [ "$have_torch" = "$want_torch" ] \
    || fail "the wheelhouse's mmcv is built for torch $want_torch, this" \
            "Python has torch $have_torch: rebuild it with" \
            "tools/build_wheelhouse.sh DIR --torch $have_torch"
  local missing=()
  while read -r requirement; do
    case "$requirement" in ''|'#'*) continue ;; esac
    local name=${requirement%%==*}
    local stem=${name//-/_}
    ls "$dir" | grep -iq "^${stem}-${requirement##*==}-.*\.whl$" \
      || missing+=("$requirement")
  done < "$dir/requirements.txt"
  [ ${#missing[@]} -eq 0 ] \
    || fail "the wheelhouse lacks ${missing[*]}: rebuild it with" \
            "tools/build_wheelhouse.sh"
  echo "[install] wheels from $dir into $PY (Python $have_python, torch" \
       "$have_torch), no index"
  "$PY" -m pip install -q --disable-pip-version-check --no-index --no-deps \
    --find-links "$dir" -r "$dir/requirements.txt"
  # build tools for mmcot._ext, unless the node has them
  "$PY" -c 'import setuptools, wheel' 2>/dev/null \
    || "$PY" -m pip install -q --disable-pip-version-check --no-index \
         --no-deps --find-links "$dir" "setuptools>=64" wheel
  "$PY" -c 'import ninja' 2>/dev/null \
    || "$PY" -m pip install -q --disable-pip-version-check --no-index \
         --no-deps --find-links "$dir" ninja
  "$PY" -c 'import mmengine, mmcv.ops, mmpretrain, mmdet, pycocotools' \
    || fail "the installed packages do not import (above)"
}

if [ -n "$WHEELHOUSE" ]; then
  install_wheelhouse
  index=(--no-index)
else
  install_verified_stack
  index=(-c requirements/constraints.txt)
fi

# CUDA kernels: for a visible GPU or TORCH_CUDA_ARCH_LIST, when nvcc is found
cuda_wanted() {
  { [ -n "${TORCH_CUDA_ARCH_LIST:-}" ] \
    || "$PY" -c 'import sys, torch; sys.exit(not torch.cuda.is_available())'
  } && { command -v nvcc || [ -x "${CUDA_HOME:-/usr/local/cuda}/bin/nvcc" ]
  } >/dev/null 2>&1
}
if [ -z "${FORCE_CUDA:-}" ]; then
  FORCE_CUDA=$(cuda_wanted && echo 1 || echo 0)
fi
export FORCE_CUDA
echo "[install] mmcot (compiling mmcot._ext, FORCE_CUDA=$FORCE_CUDA)"
# --use-pep517: pip 23's legacy editable path would rebuild in isolation
"$PY" -m pip install -q --disable-pip-version-check "${index[@]}" --no-deps \
  --use-pep517 --no-build-isolation -e .
"$PY" - <<'EOF'
import os, sys
import mmcot
from mmcot.ops import ext_available
if os.getenv('MMCOT_WITH_OPS', '1') != '0' and not ext_available():
    sys.exit('error: mmcot._ext was built but does not load: the op would '
             'silently fall back to its reference (see the build log)')
import torch
from mmcot.ops import ext_with_cuda
if os.getenv('FORCE_CUDA') == '1' and not ext_with_cuda():
    sys.exit('error: FORCE_CUDA=1 but mmcot._ext has no CUDA kernels')
print(f'[install] mmcot {mmcot.__version__} | compiled op: {ext_available()}'
      f' | CUDA kernels: {ext_with_cuda()} | torch {torch.__version__}, '
      f'Python {sys.version.split()[0]}')
EOF
