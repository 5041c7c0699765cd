#!/usr/bin/env bash
# Set up (scripts/setup.sh) and run the main job: train recipes/quickstart.yaml on the bundled real data
# (all-MiniLM-L6-v2, minutes on 2 CPU cores), evaluate base and trained model on data/eval, print the table.
# Extra arguments go to `embedforge quickstart` (e.g. --fresh to retrain).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
.venv/bin/embedforge quickstart "$@"
