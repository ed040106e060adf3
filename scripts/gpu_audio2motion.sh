#!/usr/bin/env bash
# GPU run behind docs/BENCHMARKS.md ("Speech to motion"): the `audio2motion` preset trained on a
# clip pack (anchorgen.motion.audio2motion.train.save_clip_pack: every speech clip of
# ../shared/data encoded, the identity = first 16 s of the primary clip), so the GPU machine
# needs neither PyAV nor MediaPipe. The run comes back as $OUT/a2m (model/, config.yaml,
# identity_landmarks.npz, log.jsonl; every file under 16 MiB); evaluate it on the CPU machine
# with anchorgen.motion.audio2motion.evaluate_run.
# Inputs (carried): .whl (diffusers), gpu_data/pack/a2m. Usage: bash scripts/gpu_audio2motion.sh
set -euo pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
export PYTHONPATH=/tmp/site:$PWD/src PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
python3 - <<'PY'
import os, time
from anchorgen.motion.audio2motion.train import PRESETS, train_on_pack
config = PRESETS["audio2motion"].replace(output_dir=os.path.join(os.environ["OUT"], "a2m"), device="cuda")
tick = time.perf_counter()
train_on_pack(config, "gpu_data/pack/a2m")
print(f"trained in {time.perf_counter() - tick:.0f} s")
PY
tail -n 2 $OUT/a2m/log.jsonl
ls -la $OUT/a2m $OUT/a2m/model
