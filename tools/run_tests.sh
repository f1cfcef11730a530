#!/usr/bin/env bash
# Install mmcot (tools/install.sh) and run the whole test suite.
#   bash tools/run_tests.sh [pytest args]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
bash tools/install.sh
VENV="${VENV:-.venv}"
exec "$VENV/bin/python" -m pytest tests "$@"
