#!/usr/bin/env bash
# GPU check for a lent GPU machine (torch 2.11 + CUDA 13, Python 3.12, no internet; see
# ../shared/ARCHITECTURE.md "The GPU machine"). First send the wheel parts (fbgemm-gpu 1.6.0,
# torchrec 1.6.1, hydra; ../shared/tools/gpu-wheels.sh) in consecutive device calls, then run
#   eval "$(bash .gpu/gpu-wheels.sh --install .gpu | tail -1)" && bash scripts/gpu_check.sh
# in the same call. Budget: about 6 minutes. Every step has its own time limit and runs even when
# an earlier one failed; logs and JSON go to $OUT (default /tmp/gpu_check). It runs
#   1. the gpu-marked tests (device=cuda training/evaluation, every GPU placement against device
#      memory, no host sync in the forward pass);
#   2. bench_scale's gpu section: the Kaggle DLRM (full Kaggle cardinalities, batch 2048) with the
#      tables in GPU memory, in uvm_cache (cache_load_factor 0.2, LRU and LFU) and in host memory,
#      samples/s and hit rates;
#   3. recsys-train itself on a 1M-row Kaggle-profile synthetic set, tables in GPU memory and in
#      uvm_cache at 0.2, $REPEATS (3) times each, interleaved: samples/s, hit rate and AUC from
#      its report, one JSON line per run in $OUT/train_runs.jsonl;
#   4. a torchrun (nccl, 1 rank) run through DistributedModelParallel on the GPU;
#   5. kernels: bench_kernels_gpu: recsys::transform_ids_masked (Triton) against the per-feature
#      modules, and each compressed method's DLRM step against full tables;
#   6. md_train: recsys-train with full tables and with mixed-dimension tables at budget 1/16,
#      $REPEATS times each, interleaved.
# STEPS picks some of them (default: all): STEPS="tests kernels md_train" runs 1, 5 and 6.
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD:$PWD/kernels:${PYTHONPATH:-}" PYTHONUNBUFFERED=1
PY=${PYTHON:-python3}
OUT=${OUT:-/tmp/gpu_check}
WORK=/tmp/gpu_check_work
mkdir -p "$OUT" "$WORK"
status=0
step() {  # step NAME SECONDS COMMAND...: run with a time limit, log to $OUT/NAME.log, remember failures
  local name=$1 limit=$2; shift 2
  echo "== $name ($(date +%T), limit ${limit}s)"
  timeout "$limit" "$@" > "$WORK/$name.log" 2>&1
  local rc=$?
  tail -n 25 "$WORK/$name.log"
  echo "== $name: exit $rc"
  [[ $rc == 0 ]] || { status=1; cp "$WORK/$name.log" "$OUT/"; }  # $OUT brings back at most 8 files
}
echo "== environment"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
$PY - <<'PY'
import importlib
for name in ["torch", "fbgemm_gpu", "torchrec", "hydra", "omegaconf", "pyarrow", "numpy", "tqdm", "pytest"]:
    try:
        module = importlib.import_module(name)
        print(f"{name} {getattr(module, '__version__', '?')}")
    except Exception as error:  # report every missing piece; the steps below fail on it
        print(f"MISSING {name}: {error}")
import torch
print("cuda", torch.version.cuda, torch.cuda.get_device_name() if torch.cuda.is_available() else "NOT AVAILABLE")
PY
STEPS=${STEPS:-"tests placements train torchrun kernels md_train"}
wants() { [[ " $STEPS " == *" $1 "* ]]; }
if wants tests; then
  step gpu_tests 150 $PY -m pytest -v -m gpu tests/gpu -p no:cacheprovider -W ignore::DeprecationWarning
  cp "$WORK/gpu_tests.log" "$OUT/"
fi
wants placements && step bench_gpu 200 $PY benchmarks/bench_scale.py --sections gpu --steps 30 --repeats 5 --gpu-warmup 60 --gpu-batches 2048 65536 --json "$OUT/scale_gpu.json"
DATA="$WORK/kaggle_synth"
{ wants train || wants torchrun || wants md_train; } && [[ ! -d $DATA ]] && \
  step synth 90 $PY -m recsys.cli.synth output="$DATA" profile=kaggle rows=1000000 hydra.run.dir="$WORK/synth_run"
runs_file="$OUT/train_runs.jsonl"
train() {  # train NAME OVERRIDES...: recsys-train on the GPU, 300 steps; a line of its report into $runs_file
  local name=$1; shift
  step "$name" 100 $PY -m recsys.cli.train +experiment=kaggle data.path="$DATA" device=cuda trainer.max_steps=300 \
    trainer.eval_every_steps=0 trainer.checkpoint_every_steps=0 trainer.progress=false trainer.tensorboard=false \
    eval.max_batches=20 hydra.run.dir="$WORK/$name" "$@"
  $PY - "$WORK/$name/eval.json" "$name" >> "$runs_file" <<'PY'
import json, sys
try:
    report = json.load(open(sys.argv[1]))
except OSError:
    sys.exit(f"{sys.argv[1]}: no report")
tiers = report.get("memory", {}).get("placement") or {}
line = {"run": sys.argv[2], "samples_per_s": report["train"]["samples_per_s"], "steps": report["train"]["steps"],
        "test_auc": report["metrics"]["auc"], "tier": tiers.get("tier", "device"), "hit_rate": tiers.get("hit_rate"),
        "dense_precision": report["train"].get("dense_precision")}
print(json.dumps(line))
print(line, file=sys.stderr)
PY
}
if wants train; then
  for repeat in $(seq 1 "${REPEATS:-3}"); do  # interleaved: device, uvm_cache, device, ...
    train "train_device_$repeat"
    train "train_uvm_cache_$repeat" placement.hot_tier=uvm_cache placement.cache_load_factor=0.2
  done
fi
wants torchrun && step torchrun_nccl 100 $PY -m torch.distributed.run --nproc_per_node=1 -m recsys.cli.train +experiment=kaggle \
  data.path="$DATA" device=cuda trainer.max_steps=100 trainer.eval_every_steps=0 trainer.checkpoint_every_steps=0 \
  trainer.progress=false trainer.tensorboard=false eval.max_batches=10 hydra.run.dir="$WORK/torchrun"
# the recsys-train runs beside the bench's figures: commit $OUT/scale_gpu.json as benchmarks/results/scale_gpu.json
if wants placements && wants train; then
  $PY benchmarks/gpu_train_summary.py "$OUT/train_runs.jsonl" --into "$OUT/scale_gpu.json" || status=1
fi
wants kernels && step kernels_gpu 200 $PY benchmarks/bench_kernels_gpu.py --json "$OUT/kernels_gpu.json"
if wants md_train; then
  runs_file="$OUT/kernels_runs.jsonl"
  for repeat in $(seq 1 "${REPEATS:-3}"); do  # interleaved: full, md@1/16, full, ...
    train "train_full_$repeat"
    train "train_md_$repeat" embedding=md embedding.budget=0.0625
  done
  if wants kernels; then  # the runs beside the bench's figures
    $PY benchmarks/gpu_train_summary.py "$runs_file" --into "$OUT/kernels_gpu.json" --group-runs train_full train_md || status=1
  fi
fi
exit $status
