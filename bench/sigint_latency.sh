#!/usr/bin/env bash
# How long retrain takes to stop after Ctrl-C during bottleneck creation.
# Usage: bench/sigint_latency.sh [MODEL_DIR] [BATCH] [DELAY_S] [RUNS]
# Starts retrain on ../shared/datasets/flowers-dev, waits until two batches of
# bottleneck files exist plus DELAY_S seconds, sends SIGINT, and prints the time to exit.
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL=${1:-../shared/models/mobilenet_v2_100_224}
BATCH=${2:-16}
DELAY=${3:-0.5}
RUNS=${4:-3}
for run in $(seq "$RUNS"); do
  dir=$(mktemp -d)
  node bin/retrain.js --image_dir ../shared/datasets/flowers-dev --tfhub_module "$MODEL" --bottleneck_dir "$dir/bn" \
    --output_graph "$dir/graph" --output_labels "$dir/labels.txt" --bottleneck_batch_size "$BATCH" 2>"$dir/err" &
  pid=$!
  while [ "$(find "$dir/bn" -name '*.bin' 2>/dev/null | wc -l)" -lt $((BATCH * 2)) ]; do sleep 0.02; done
  sleep "$DELAY"
  t0=$(date +%s%N)
  kill -INT "$pid"
  status=0
  wait "$pid" || status=$?
  t1=$(date +%s%N)
  echo "model=$(basename "$MODEL") batch=$BATCH delay=${DELAY}s run=$run exit=$status stop_ms=$(((t1 - t0) / 1000000)) kept=$(find "$dir/bn" -name '*.bin' | wc -l)"
  rm -rf "$dir"
done
