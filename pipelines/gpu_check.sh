#!/usr/bin/env bash
# One prepared GPU check (issue 14 §6), at most 10 minutes on one GPU: a paper-sized tokenizer step at
# 512 x 512 x 241 in bf16, the LoRA + FSDP2 report step with a small local LM, and the tokenizer's
# flat-memory ratio on the GPU; prints JSON and writes it to $OUT/gpu_check.json (or runs/gpu_check/).
# Uses the repository's .venv when there is one, else the machine's python3 with the repo on PYTHONPATH.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=python3
[ -x .venv/bin/python ] && PY=.venv/bin/python
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
export PYTORCH_CUDA_ALLOC_CONF="${PYTORCH_CUDA_ALLOC_CONF:-expandable_segments:True}"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
timeout 590 "$PY" pipelines/gpu_check.py --device cuda --steps 3 --out "${OUT:-runs/gpu_check}" "$@"
