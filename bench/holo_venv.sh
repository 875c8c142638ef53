#!/usr/bin/env bash
# Creates .holo-venv with pytorch-holo 0.0.5, the authors' reference library, for benchmarks only.
# It pins numpy<2 and pulls in botorch and wandb, so it never goes into the project's own venv.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .holo-venv/bin/python ] || ! .holo-venv/bin/python -c "import holo" 2>/dev/null; then
  python3 -m venv .holo-venv
  .holo-venv/bin/python -m pip install --quiet --upgrade pip
  .holo-venv/bin/python -m pip install --quiet torch==2.13.0
  .holo-venv/bin/python -m pip install --quiet "pytorch-holo==0.0.5" "numpy<2" "tqdm>=4.66" pandas pyyaml
  # The project itself (no deps) so that one script can time both sides in one process.
  .holo-venv/bin/python -m pip install --quiet --no-deps -e .
fi
echo "$(pwd)/.holo-venv/bin/python"
