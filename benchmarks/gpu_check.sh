#!/usr/bin/env bash
# The GPU check on a node without network whose Python has torch and transformers: installs
# what benchmarks/gpu_check_pack.sh put under .gpu/ into /tmp (nothing else is touched), then
# runs benchmarks/gpu_check.py from this checkout. The report goes to $OUT (or this folder).
# Where pip works, `pip install ".[test]"` and `python benchmarks/gpu_check.py` do the same.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -d .gpu/wheels ]; then
    python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/lampctl-site \
        --upgrade .gpu/wheels/*.whl
    export PYTHONPATH="/tmp/lampctl-site"
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
minilm=()
[ -d .gpu/minilm ] && minilm=(--minilm .gpu/minilm)
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
python3 benchmarks/gpu_check.py --out "${OUT:-.}/gpu_report.json" "${minilm[@]}" "$@"
