#!/usr/bin/env bash
# `make demo`: the main job end to end on embedded defaults, in demo_runs/.
#  1. ingest the bundled real Criteo 1TB sample (1,000 rows) and train a tiny DLRM on it (smoke run);
#  2. generate a Criteo-Kaggle-shaped synthetic set with a planted click model;
#  3. train the Kaggle DLRM with full embedding tables on it, evaluate on its test split
#     beside the Bayes-optimal figures;
#  4. score the trained model again with recsys-eval, keeping per-row predictions, which writes
#     the HTML report (curves, calibration, per-feature breakdowns); print where it is.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
OUT=demo_runs
SYNTH_ROWS=${DEMO_ROWS:-1500000}

echo "== 1/4 real Criteo sample: ingest + smoke training"
$BIN/recsys-preprocess input=datasets/criteo_1tb_sample_1k.tsv output=$OUT/data/criteo_sample_1k \
  hydra.run.dir=$OUT/logs/preprocess
$BIN/recsys-train data.path=$OUT/data/criteo_sample_1k model=tiny data.batch_size=128 trainer.epochs=2 \
  hydra.run.dir=$OUT/runs/criteo_sample_1k

echo "== 2/4 synthetic Criteo-Kaggle-shaped data ($SYNTH_ROWS rows)"
if [ ! -f $OUT/data/synth_kaggle/bayes.json ]; then
  $BIN/recsys-synth output=$OUT/data/synth_kaggle profile=kaggle rows=$SYNTH_ROWS cardinality_scale=0.05 \
    hydra.run.dir=$OUT/logs/synth
fi

echo "== 3/4 DLRM with full tables: train, validate, evaluate"
$BIN/recsys-train +experiment=demo hydra.run.dir=$OUT/runs/synth_kaggle_full

echo "== 4/4 HTML evaluation report"
$BIN/recsys-eval checkpoint=$OUT/runs/synth_kaggle_full hydra.run.dir=$OUT/runs/synth_kaggle_full/eval

echo
cat $OUT/runs/synth_kaggle_full/eval.md
echo "Report: $OUT/runs/synth_kaggle_full/eval/report.html"
