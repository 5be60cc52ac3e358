#!/usr/bin/env bash
# GPU check for a lent GPU machine (torch 2.11 + CUDA 13, Python 3.12, no internet; see
# ../shared/ARCHITECTURE.md "The GPU machine"). First send the wheel parts (fbgemm-gpu 1.6.0,
# torchrec 1.6.1, hydra; ../shared/tools/gpu-wheels.sh) in consecutive device calls, then run
#   eval "$(bash .gpu/gpu-wheels.sh --install .gpu | tail -1)" && bash scripts/gpu_check.sh
# in the same call. Budget: under 8 minutes. It runs
#   1. the gpu-marked tests (device=cuda training/evaluation, no host sync in the forward pass);
#   2. single-GPU Kaggle DLRM throughput (full Kaggle cardinalities, batch 2048, all tables in GPU
#      memory) through recsys-train, samples/s from its report.
# Not measured yet: uvm_cache placement and its hit rates (placement is not built; see issue 7).
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD:${PYTHONPATH:-}"
PY=${PYTHON:-python3}
OUT=${OUT:-/tmp/gpu_check}
mkdir -p "$OUT"
echo "== environment"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
$PY - <<'PY'
import importlib
for name in ["torch", "fbgemm_gpu", "torchrec", "hydra", "omegaconf", "pyarrow", "numpy", "tqdm", "pytest"]:
    try:
        module = importlib.import_module(name)
        print(f"{name} {getattr(module, '__version__', '?')}")
    except Exception as error:  # report every missing piece, then fail below
        print(f"MISSING {name}: {error}")
import torch
assert torch.cuda.is_available(), "no CUDA device visible"
PY
echo "== gpu tests"
timeout 240 $PY -m pytest -q -m gpu tests/gpu -p no:cacheprovider 2>&1 | tail -15
echo "== Kaggle DLRM on one GPU (all tables in GPU memory)"
DATA="$OUT/kaggle_synth"
[[ -f "$DATA/meta.json" ]] || timeout 180 $PY -m recsys.cli.synth output="$DATA" profile=kaggle rows=600000 \
  hydra.run.dir="$OUT/synth_run" 2>&1 | tail -2
timeout 200 $PY -m recsys.cli.train +experiment=kaggle data.path="$DATA" device=cuda trainer.max_steps=200 \
  trainer.eval_every_steps=0 trainer.checkpoint_every_steps=0 trainer.progress=false trainer.tensorboard=false \
  eval.max_batches=20 hydra.run.dir="$OUT/train_device" 2>&1 | tail -3
$PY - "$OUT/train_device/eval.json" <<'PY'
import json, sys
report = json.load(open(sys.argv[1]))
print(f"device placement: {report['train']['samples_per_s']:,.0f} samples/s over {report['train']['steps']} steps")
PY
