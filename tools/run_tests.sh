#!/usr/bin/env bash
# Install mmcot (tools/install.sh) and run the whole test suite, with
# MMCOT_REQUIRE_EXT=1: a broken mmcot._ext fails the run rather than
# skipping the kernel tests.
#   bash tools/run_tests.sh [pytest args]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
bash tools/install.sh
VENV="${VENV:-.venv}"
MMCOT_REQUIRE_EXT="${MMCOT_REQUIRE_EXT:-1}" exec "$VENV/bin/python" -m pytest tests "$@"
