#!/usr/bin/env bash
# Regenerates the TypeScript for the TFLite flatbuffer schemas with flatc (Debian's
# flatbuffers-compiler 2.0.8, matching the pinned `flatbuffers` npm runtime 2.0.7).
# Usage: scripts/gen-fbs.sh [OUT_DIR]   (default: src/export/tflite/generated)
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-src/export/tflite/generated}"
schemas=(src/export/tflite/schema/schema.fbs src/export/tflite/schema/metadata_schema.fbs)
rm -rf "$out"
mkdir -p "$out"
flatc --ts --gen-object-api -o "$out" "${schemas[@]}"
# flatc 2.0.8 writes extension-less relative imports; Node's ES modules (NodeNext) need '.js'.
find "$out" -name '*.ts' -print0 | xargs -0 sed -i -E "s#(from '\.{1,2}/[^']*)';#\1.js';#"
