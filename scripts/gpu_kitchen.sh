#!/usr/bin/env bash
# GPU run behind docs/BENCHMARKS.md ("kitchen identity"): scratch-256 body + face models trained
# on the first 16 s of the primary clip, then the held-out 4 s rendered (full, no face pass,
# frame-wise) as unmarked JPEG frames (quality 97; the GPU machine has no PyAV) for scoring on
# the CPU machine; the trained runs come back as a split tar (no checkpoints).
# Inputs (carried): .whl (diffusers), gpu_data/pack/kitchen (a prepared dataset without renders),
# gpu_data/pack/talkshow_60s.npz. Usage: bash scripts/gpu_kitchen.sh MINUTES
set -euo pipefail
minutes=${1:-5.5}
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
export PYTHONPATH=/tmp/site:$PWD/src PYTHONUNBUFFERED=1
mkdir -p /root/data /root/runs/kitchen
if [ ! -d /root/data/kitchen/renders ]; then  # a second call on the same machine resumes
  cp -r gpu_data/pack/kitchen /root/data/kitchen && cp gpu_data/pack/talkshow_60s.npz /root/data/
  python3 -c "from anchorgen.prepare.pipeline import rerender; rerender('/root/data/kitchen', progress=False)"
fi
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
common="datasets=[/root/data/kitchen] steps=100000 time_limit_minutes=$minutes ema_decay=0.995 checkpoint_every=1000 sample_every=100000 log_every=25"
python3 -m anchorgen train --preset scratch-256 $common output_dir=/root/runs/kitchen/body > /root/body.log 2>&1 &
python3 -m anchorgen train --preset face $common output_dir=/root/runs/kitchen/face > /root/face.log 2>&1 &
wait
tail -c 300 /root/body.log; tail -c 300 /root/face.log
python3 - <<'PY'
import json, os, time, tempfile
from pathlib import Path
import numpy as np, torch
from anchorgen.generate import GenerateConfig, Identity, generate_frames, load_motion
import cv2
out = Path(os.environ["OUT"])
identity = Identity.load("/root/runs/kitchen", device="cuda")
timings = {}
for name, cfg in {"full": GenerateConfig(), "no_face": GenerateConfig(face_enhance=False),
                  "framewise": GenerateConfig(temporal=False)}.items():
    with tempfile.TemporaryDirectory() as work, torch.inference_mode():
        motion = load_motion("/root/data/kitchen", identity, cfg, Path(work), progress=False)
        torch.cuda.synchronize(); tick = time.perf_counter()
        frames = np.stack(list(generate_frames(identity, motion, cfg, Path(work), progress=False)))
        torch.cuda.synchronize(); timings[name] = time.perf_counter() - tick
    folder = Path("/root/holdout") / name
    folder.mkdir(parents=True, exist_ok=True)
    for i, frame in enumerate(frames):
        cv2.imwrite(str(folder / f"{i:06d}.jpg"), frame[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 97])
timings["peak_gpu_gib"] = torch.cuda.max_memory_allocated() / 2**30
json.dump(timings, open("/root/holdout/timings.json", "w"), indent=1)
print(timings)
PY
tail -n 3 /root/runs/kitchen/body/train_log.csv /root/runs/kitchen/face/train_log.csv
tar -C /root/runs --exclude=checkpoints -cf - kitchen | split -b 15M - $OUT/kitchen_runs.tar.part-
tar -C /root -cf - holdout | split -b 15M - $OUT/holdout.tar.part-  # 16 MiB per returned file
ls -la $OUT
