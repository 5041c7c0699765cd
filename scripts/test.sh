#!/usr/bin/env bash
# Set up (scripts/setup.sh) and run the whole test suite: fast tier and slow tier (real models, real data).
# Extra arguments go to pytest, e.g. `bash scripts/test.sh -m "not slow"` for the fast tier only.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
# pytest exits 5 when it collects no tests: with `set -e` that fails this script, as it should.
.venv/bin/python -m pytest --timeout=900 "$@"
