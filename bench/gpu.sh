#!/usr/bin/env bash
# GPU benchmarks in under 5 minutes on an H100-class GPU; needs only torch, numpy, scikit-learn and
# safetensors (no Streamlit, umap or network). Run from anywhere:  bash bench/gpu.sh
# (DEVICE=cpu STEPS=30 REPEATS=1 bash bench/gpu.sh is a CPU smoke test of the same plumbing.)
# Writes bench/out/gpu-<device>.md; `python -m bench --no-run --only <parts>` joins it into BENCHMARKS.md.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
DEVICE="${DEVICE:-cuda}"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
"$PY" -c "import torch; print('torch', torch.__version__, '|', torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no CUDA GPU')"
"$PY" -m bench.gpu --device "$DEVICE" --steps "${STEPS:-3000}" --repeats "${REPEATS:-3}" --precisions "${PRECISIONS:-float32}"
