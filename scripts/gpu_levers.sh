#!/usr/bin/env bash
# What each lever of the fast path buys (issue 6): `anchorgen bench` runs one after another on
# one GPU (GPU=0 unless set; only its processes are stopped at a time limit), each NAME with its own bench options, under one time budget; each
# run writes $OUT/levers/NAME.json (+ .log) and the call ends with a table of all of them
# (total and stage seconds, frames/s, peak GPU memory per stage, setup/compile seconds).
# A run is given what is left of BUDGET_S (at most its own LIMIT_S); with under 40 s left the
# rest is skipped, so the call ends in time. Runs never overlap: the numbers are side by side.
# Inputs (carried): .whl (diffusers), .whl_av (PyAV, for H.264; else OpenCV encodes, and the
# JSON's "encoder" says so).
# Usage: bash scripts/gpu_levers.sh BUDGET_S NAME:LIMIT_S='bench options' ...
#   e.g. bash scripts/gpu_levers.sh 560 base:200='--preset sd15' \
#          compiled:300='--preset sd15 --set compile=default'
# CPU rehearsal: OUT=/tmp/levers bash scripts/gpu_levers.sh 300 a:100='--frames 8 --set num_inference_steps=1'
set -uo pipefail
budget=${1:?budget in seconds}
shift
source scripts/gpu_env.sh
mkdir -p "$OUT/levers"
export CUDA_VISIBLE_DEVICES=${GPU:-0} BUDGET_GPUS=${GPU:-0}
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2> /dev/null
for run in "$@"; do
  head=${run%%=*}
  options=${run#*=}
  # shellcheck disable=SC2086  # the options are words on purpose
  budget_step "${head#*:}" "$OUT/levers/${head%%:*}.log" python3 -m anchorgen bench \
    --reference-frames 0 $options --out "$OUT/levers/${head%%:*}.json"
done
python3 - "$OUT/levers" << 'EOF'
import json, sys
from pathlib import Path

print("| run | preset | frames | total s | denoise | decode | face | encode | frames/s | peak GiB (per stage) | setup s (compile in warmup) |")
print("|---|---|---|---|---|---|---|---|---|---|---|")
for path in sorted(Path(sys.argv[1]).glob("*.json"), key=lambda p: p.stat().st_mtime):
    r = json.loads(path.read_text())
    st = r["stages_seconds"]
    peaks = r.get("stages_peak_gpu_gib") or {}
    per_stage = ", ".join(f"{k[:6]} {v:.1f}" for k, v in peaks.items())
    setup = r["setup_seconds"]
    peak = "n/a" if r["peak_gpu_gib"] is None else f"{r['peak_gpu_gib']:.2f}"
    print(f"| {path.stem} | {r['preset']} | {r['frames']} | {r['total_seconds']:.1f} | {st['body_denoise']:.1f} | "
          f"{st['decode']:.1f} | {st['face']:.1f} | {st['encode']:.1f} | {r['frames_per_second']:.2f} | "
          f"{peak} ({per_stage}) | {sum(setup.values()):.0f} ({setup.get('warmup', 0):.0f}) |")
EOF
