#!/usr/bin/env bash
# Build a folder of wheels that completes an offline GPU node for mmcot.
#
#   bash tools/build_wheelhouse.sh DIR [--python 3.12] [--torch 2.11.0]
#
# Run it on a machine with a package index and a pythonX.Y interpreter
# (PYTHON=... to name one). DIR receives, for that Python and torch:
# mmcv 2.1.0 built from source against exactly that torch (CPU ops; built
# once, cached in MMCOT_CACHE), the wheels of requirements/wheelhouse.txt,
# setuptools, wheel and ninja to build mmcot._ext on the node, and the
# files tools/install.sh --wheelhouse reads: WHEELHOUSE (the Python and
# torch it is for) and requirements.txt. No torch. It must stay within
# 60 MiB, so that it travels with the repository to a device machine.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
usage() {
  sed -n '2,13p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
  exit "${1:-0}"
}
DIR=
PY_VERSION=3.12
TORCH=2.11.0
while [ $# -gt 0 ]; do
  case "$1" in
    --python) PY_VERSION=${2:?--python needs a version such as 3.12}; shift 2 ;;
    --torch) TORCH=${2:?--torch needs a version such as 2.11.0}; shift 2 ;;
    -h|--help) usage ;;
    -*) echo "error: unknown option $1" >&2; usage 2 >&2 ;;
    *) [ -z "$DIR" ] || { echo "error: one DIR only" >&2; exit 2; }
       DIR=$1; shift ;;
  esac
done
[ -n "$DIR" ] || { echo "error: DIR is required" >&2; usage 2 >&2; }
case "$PY_VERSION" in
  3.[0-9]|3.[0-9][0-9]) ;;
  *) echo "error: --python must look like 3.12, got $PY_VERSION" >&2; exit 2 ;;
esac
# PYTHON, else pythonX.Y on PATH, else a pyenv installation of X.Y
find_python() {
  local candidate
  for candidate in ${PYTHON:-} "python$PY_VERSION" \
      "${PYENV_ROOT:-$HOME/.pyenv}"/versions/"$PY_VERSION"*/bin/python; do
    if "$candidate" -c "import sys; sys.exit(
        '%d.%d' % sys.version_info[:2] != '$PY_VERSION')" 2>/dev/null; then
      echo "$candidate"
      return
    fi
  done
}
PYTHON=$(find_python)
if [ -z "$PYTHON" ]; then
  echo "error: no Python $PY_VERSION interpreter (python$PY_VERSION on PATH," \
       "or PYTHON=...)" >&2
  exit 1
fi
TAG="cp${PY_VERSION/./}"
CACHE="${MMCOT_CACHE:-$HOME/.cache/mmcot}"
BUILD_VENV="$CACHE/build/$TAG-torch$TORCH"
MMCV_DIR="$CACHE/wheels/$TAG-torch$TORCH"
MAX_MIB=60

if [ ! -x "$BUILD_VENV/bin/python" ]; then
  echo "[wheelhouse] build environment $BUILD_VENV: torch $TORCH"
  "$PYTHON" -m venv "$BUILD_VENV"
fi
BUILD_PY="$BUILD_VENV/bin/python"
pip_build() { "$BUILD_PY" -m pip install -q --disable-pip-version-check "$@"; }
pip_build "torch==$TORCH" "setuptools>=77,<81" wheel ninja numpy packaging \
  pyyaml addict yapf pillow

mmcv=$(ls "$MMCV_DIR"/mmcv-2.1.0-*.whl 2>/dev/null | head -n 1 || true)
if [ -z "$mmcv" ]; then
  echo "[wheelhouse] building mmcv 2.1.0 against torch $TORCH (once;" \
       "cached in $MMCV_DIR)"
  mmcv=$(bash "$ROOT/tools/build_mmcv_wheel.sh" "$BUILD_PY" "$MMCV_DIR")
fi

mkdir -p "$DIR"
echo "[wheelhouse] downloading wheels for Python $PY_VERSION into $DIR"
"$BUILD_PY" -m pip download -q --disable-pip-version-check --no-deps \
  --only-binary :all: --python-version "$PY_VERSION" --implementation cp \
  --abi "$TAG" --platform manylinux2014_x86_64 \
  --platform manylinux_2_17_x86_64 --platform manylinux_2_28_x86_64 \
  -r "$ROOT/requirements/wheelhouse.txt" "setuptools>=77,<81" wheel ninja \
  -d "$DIR"
cp "$mmcv" "$DIR/"
{
  grep -v '^#' "$ROOT/requirements/wheelhouse.txt"
  echo "mmcv==2.1.0"
} > "$DIR/requirements.txt"
printf 'python %s\ntorch %s\n' "$PY_VERSION" "$TORCH" > "$DIR/WHEELHOUSE"

mib=$(du -sm "$DIR" | cut -f1)
echo "[wheelhouse] $DIR: $(ls "$DIR"/*.whl | wc -l) wheels, $mib MiB" \
     "(Python $PY_VERSION, torch $TORCH)"
if [ "$mib" -gt "$MAX_MIB" ]; then
  echo "error: the wheelhouse weighs $mib MiB, over $MAX_MIB MiB" >&2
  exit 1
fi
