#!/usr/bin/env bash
# GPU run behind docs/BENCHMARKS.md ("Speech to motion"): the `audio2motion` preset trained on a
# clip pack (anchorgen.motion.audio2motion.train.save_clip_pack: every speech clip of
# ../shared/data encoded, the identity = first 16 s of the primary clip), so the GPU machine
# needs neither PyAV nor MediaPipe. The run (model/, config.yaml, identity_landmarks.npz,
# log.jsonl; every file under 16 MiB) is evaluated on the CPU machine with
# anchorgen.motion.audio2motion.evaluate_run. `scripts/gpu_kitchen.sh train` runs this beside
# the body and face models when the pack is there.
# Inputs (carried): .whl (diffusers, unless installed already), gpu_data/pack/a2m.
# GESTURE_SWAP (the preset's gesture_swap_prob unless given; 0 = the recipe before it) is the
# probability that a training window's head, body and hands come from another window of the
# same clip (docs/BENCHMARKS.md, "Speech to motion").
# Usage: bash scripts/gpu_audio2motion.sh [OUT_DIR=$OUT/a2m] [PACK=gpu_data/pack/a2m] [FINETUNE_STEPS=600] [GESTURE_SWAP]
set -euo pipefail
out=${1:-$OUT/a2m}
pack=${2:-gpu_data/pack/a2m}
finetune_steps=${3:-600}
gesture_swap=${4:-}
source scripts/gpu_env.sh
python3 - "$out" "$pack" "$finetune_steps" "$gesture_swap" <<'PY'
import sys, time
from anchorgen.motion.audio2motion.train import PRESETS, train_on_pack
out, pack, finetune_steps, swap = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
config = PRESETS["audio2motion"].replace(output_dir=out, device="cuda", finetune_steps=finetune_steps)
if swap:
    config = config.replace(gesture_swap_prob=float(swap))
print(f"gesture_swap_prob {config.gesture_swap_prob}")
tick = time.perf_counter()
train_on_pack(config, pack)
print(f"trained in {time.perf_counter() - tick:.0f} s")
PY
tail -n 2 "$out/log.jsonl"
ls -la "$out" "$out/model"
