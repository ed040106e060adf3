#!/usr/bin/env bash
# The 2-GPU measurements of issue 6 ("Several GPUs") in ONE `run` call on nvidia-h200-x2 (about
# 9 minutes): `anchorgen bench` at 300 frames on 1 GPU and under torchrun on 2 GPUs, and the
# scratch-256 body's training throughput (stage 1, batch 8 clips of 4 frames per GPU) on 1 GPU
# and with `accelerate launch` on 2 GPUs.
# Order by priority: sd15 bench (the 1.8x target), training throughput, scratch-256 bench. Each
# step runs under a time limit cut to what is left of BUDGET_S; a step with less than 40 s left
# is skipped, so the call ends in time. Nothing runs concurrently: the ratios are clean.
# Inputs (carried): .whl (diffusers), .whl_av (PyAV, for H.264 as in gpu_bench.sh) and
# gpu_data/sample256, the embedded sample clip prepared at 256 px on the CPU machine (the GPU
# machine has no MediaPipe): anchorgen prepare --out gpu_data/sample256 --size 256 --fps 12.5
# Outputs in $OUT: bench_{sd15,scratch256}_{1,2}gpu.json + .log, train_{1,2}gpu.csv + .log,
# summary.md (speed-ups per stage, steady-state samples/s).
# Usage: bash scripts/gpu_multigpu.sh [BUDGET_S=560] [TRAIN_SECONDS=60] (0: no training)
# On a larger machine GPU_PAIR (default 0,1) picks the two GPUs; the others may train meanwhile.
# CPU rehearsal (tiny models, gloo): OUT=/tmp/rehearsal TRAIN_PRESET=tiny \
#   BENCH_EXTRA="--frames 24 --set num_inference_steps=2 --set matmul_size=64" \
#   bash scripts/gpu_multigpu.sh 400 10
set -uo pipefail
budget=${1:-560}
train_seconds=${2:-60}
source scripts/gpu_env.sh
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1  # KINDS.md
DATA=${DATA:-gpu_data/sample256}
TRAIN_PRESET=${TRAIN_PRESET:-scratch-256}
read -r -a bench_extra <<< "${BENCH_EXTRA:-}"  # more bench options (CPU rehearsals)
ROOT=${ANCHORGEN_GPU_ROOT:-/tmp/anchorgen_multigpu}
rm -rf "$ROOT" && mkdir -p "$ROOT" "$OUT"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
nvidia-smi topo -m 2> /dev/null | head -3
cores=$(nproc)
export BUDGET_GPUS=${GPU_PAIR:-0,1}  # a timed-out step stops only what runs on these

one_gpu=(env CUDA_VISIBLE_DEVICES=${BUDGET_GPUS%%,*} "OMP_NUM_THREADS=$cores" python3)
# torchrun and accelerate would set OMP_NUM_THREADS=1: each process gets half the cores
two_gpus=(env "CUDA_VISIBLE_DEVICES=$BUDGET_GPUS" "OMP_NUM_THREADS=$((cores / 2))" python3 -m torch.distributed.run --standalone
  --nproc_per_node 2)
two_gpus_accelerate=(env "CUDA_VISIBLE_DEVICES=$BUDGET_GPUS" "OMP_NUM_THREADS=$((cores / 2))" python3 -m accelerate.commands.launch
  --multi_gpu --num_processes 2 --num_machines 1 --mixed_precision bf16 --dynamo_backend no)

bench() {  # bench PRESET NAME LIMIT_1_GPU LIMIT_2_GPUS
  local args=(-m anchorgen bench --preset "$1" --frames 300 --reference-frames 0 "${bench_extra[@]}")
  budget_step "$3" "$OUT/bench_$2_1gpu.log" "${one_gpu[@]}" "${args[@]}" --out "$OUT/bench_$2_1gpu.json"
  budget_step "$4" "$OUT/bench_$2_2gpu.log" "${two_gpus[@]}" "${args[@]}" --out "$OUT/bench_$2_2gpu.json"
}
train() {  # train N LAUNCHER...: the body for train_seconds -> $OUT/train_Ngpu.csv
  # stage 1 (pretrain): every weight trains, so data parallelism all-reduces the whole model
  local n=$1 run=$ROOT/train_${1}gpu
  shift
  budget_step $((train_seconds + 60)) "$OUT/train_${n}gpu.log" "$@" -m anchorgen train --preset "$TRAIN_PRESET" \
    stage=pretrain "datasets=[$DATA]" "output_dir=$run" steps=1000000 \
    "time_limit_minutes=$(python3 -c "print($train_seconds / 60)")" log_every=10 \
    checkpoint_every=1000000 sample_every=0 num_workers=6
  cp "$run/train_log.csv" "$OUT/train_${n}gpu.csv" 2> /dev/null
}

bench sd15 sd15 200 160
if [ "$train_seconds" != 0 ]; then  # 0: the benches only
  train 1 "${one_gpu[@]}"
  train 2 "${two_gpus_accelerate[@]}"
fi
bench scratch-256 scratch256 80 80

python3 - "$OUT" "$TRAIN_PRESET" << 'EOF' | tee "$OUT/summary.md"
import csv, json, sys
from pathlib import Path

out, train_preset = Path(sys.argv[1]), sys.argv[2]
print("| measurement | 1 GPU | 2 GPUs | speed-up |\n| --- | --- | --- | --- |")
for preset in ("sd15", "scratch256"):
    one, two = (out / f"bench_{preset}_{n}gpu.json" for n in (1, 2))
    if not (one.is_file() and two.is_file()):
        print(f"| bench {preset} | {'ok' if one.is_file() else 'missing'} | {'ok' if two.is_file() else 'missing'} | |")
        continue
    a, b = json.loads(one.read_text()), json.loads(two.read_text())
    rows = [("total", a["total_seconds"], b["total_seconds"])]
    rows += [(s, a["stages_seconds"][s], b["stages_seconds"][s]) for s in a["stages_seconds"]]
    for stage, x, y in rows:
        print(f"| bench {preset} {stage} (s) | {x:.2f} | {y:.2f} | {x / y:.2f}x |")
    peak = lambda gib: "n/a" if gib is None else f"{gib:.2f}"  # noqa: E731
    print(f"| bench {preset} peak GPU memory (GiB) | {peak(a['peak_gpu_gib'])} | {peak(b['peak_gpu_gib'])} (rank 0) | |")
    shares = b["distributed"]["denoise_frames_per_rank"]
    print(f"| bench {preset} denoise frames per rank | | body {shares['body']}, face {shares['face']} | |")
rates = {}
for n in (1, 2):
    path = out / f"train_{n}gpu.csv"
    rows = list(csv.DictReader(path.open())) if path.is_file() else []
    if len(rows) < 2:
        continue
    late = [r for r in rows if float(r["elapsed_s"]) >= 15] or rows
    first, last = (late[0] if late[0] is not rows[-1] else rows[0]), rows[-1]
    samples = lambda r: float(r["samples_per_s"]) * float(r["elapsed_s"])  # noqa: E731
    seconds = float(last["elapsed_s"]) - float(first["elapsed_s"])
    rates[n] = (samples(last) - samples(first)) / seconds  # steady state: after 15 s
    print(f"| train {train_preset} {n} GPU(s): steps, s, peak GiB | step {last['step']}, "
          f"{float(last['elapsed_s']):.0f} s, {last['peak_gpu_mem_gb']} | | |")
if len(rates) == 2:
    print(f"| train {train_preset} samples/s (after 15 s) | {rates[1]:.1f} | {rates[2]:.1f} | {rates[2] / rates[1]:.2f}x |")
EOF
for log in "$OUT"/*.log; do
  echo "== $log"
  tr '\r' '\n' < "$log" | grep -v '^\s*$' | tail -n 3 | cut -c1-240
done
