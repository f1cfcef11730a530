#!/usr/bin/env bash
# Build the mmcv 2.1.0 wheel (CPU ops) against the torch of a Python, from
# mmcv's sdist, with its extension stripped of debug information:
#
#   bash tools/build_mmcv_wheel.sh PYTHON OUT_DIR     # prints the wheel
#
# PYTHON must have torch, setuptools<81 (mmcv's setup.py imports
# pkg_resources), wheel and ninja installed: the build runs without
# isolation, against that torch. mmcv 2.1.0 hard-codes C++17; torch 2.14's
# headers need C++20, which older torch headers accept too. About 10-13
# minutes on 2 cores (MAX_JOBS).
set -euo pipefail
if [ $# -ne 2 ]; then
  echo "usage: bash tools/build_mmcv_wheel.sh PYTHON OUT_DIR" >&2
  exit 2
fi
PY=$1
OUT=$2
VERSION=2.1.0
mkdir -p "$OUT"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$PY" -m pip download -q --disable-pip-version-check --no-binary :all: \
  --no-deps "mmcv==$VERSION" -d "$work" >&2
tar -xzf "$work/mmcv-$VERSION.tar.gz" -C "$work"
sed -i 's/-std=c++17/-std=c++20/g' "$work/mmcv-$VERSION/setup.py"
(cd "$work/mmcv-$VERSION" && MMCV_WITH_OPS=1 FORCE_CUDA=0 \
  MAX_JOBS="${MAX_JOBS:-$(nproc)}" \
  "$PY" -m pip wheel -q --disable-pip-version-check --no-build-isolation \
  --no-deps . -w "$work/dist" >&2)
# debug information is 98% of the extension (82 MB -> 1.8 MB)
"$PY" -m wheel unpack "$work"/dist/mmcv-*.whl -d "$work/unpacked" >&2
strip --strip-unneeded "$work"/unpacked/mmcv-*/mmcv/_ext*.so
mkdir -p "$work/stripped"
"$PY" -m wheel pack "$work"/unpacked/mmcv-* -d "$work/stripped" >&2
wheel=$(ls "$work"/stripped/mmcv-*.whl)
cp "$wheel" "$OUT/"
echo "$OUT/$(basename "$wheel")"
