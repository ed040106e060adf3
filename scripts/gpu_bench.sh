#!/usr/bin/env bash
# GPU run of `anchorgen bench` (issue 6): sd15, then scratch-256, 300 frames each; JSON results
# and progress logs go to $OUT. Each run writes its JSON once the fast path is timed and again
# when the naive reference is done, so a run stopped by its time limit still leaves numbers.
# Inputs (carried): .whl with the diffusers wheel (add a PyAV wheel for H.264; without PyAV the
# encode stage uses OpenCV's MPEG-4 Part 2 and the JSON says so).
# Usage: bash scripts/gpu_bench.sh [SD15_REFERENCE_FRAMES=16] [SD15_LIMIT_S=225] [SCRATCH_LIMIT_S=75]
set -uo pipefail
reference=${1:-16}
sd15_limit=${2:-225}
scratch_limit=${3:-75}
source scripts/gpu_env.sh
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
timeout "$sd15_limit" python3 -m anchorgen bench --preset sd15 --frames 300 \
  --reference-frames "$reference" --out "$OUT/bench_sd15.json" 2> "$OUT/bench_sd15.log"
echo "sd15 exit code $?"
timeout "$scratch_limit" python3 -m anchorgen bench --preset scratch-256 --frames 300 \
  --out "$OUT/bench_scratch256.json" 2> "$OUT/bench_scratch256.log"
echo "scratch-256 exit code $?"
tail -c 600 "$OUT/bench_sd15.log" "$OUT/bench_scratch256.log"
