#!/usr/bin/env bash
# The GPU suite in one command (see gpu_suite.py): ours against sentence-transformers, one JSON + one table.
# Full suite on a GPU (under 8 minutes on one H200):  bash examples/benchmarks/gpu_suite.sh [OUTPUT.json]
# Reduced mode on any device (what CI runs):          bash examples/benchmarks/gpu_suite.sh OUTPUT.json --reduced
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
output="${1:-gpu_suite.json}"
shift || true
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
export PYTHONPATH="$repo${PYTHONPATH:+:$PYTHONPATH}"
python="${PYTHON:-python}"
if [ -x "$repo/.venv/bin/python" ] && [ -z "${PYTHON:-}" ]; then python="$repo/.venv/bin/python"; fi
exec "$python" "$here/gpu_suite.py" --output "$output" "$@"
