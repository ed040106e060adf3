#!/usr/bin/env bash
# The GPU session behind docs/BENCHMARKS.md ("kitchen identity"): scratch-256 models of the
# primary clip trained two-stage, the held-out 4 s rendered for every ablation, a 60 s
# cross-person render and speech-driven renders. One warm machine, several `run` calls in a row
# (each at most 10 minutes; training runs on in the background between calls):
#
#   bash scripts/gpu_kitchen.sh setup          install carried wheels, copy carried data packs to
#                                              $ROOT/data, re-render their conditions, and train
#                                              the sd15 preset (random weights) for one 512 px step
#   bash scripts/gpu_kitchen.sh train P F      in the background: body stage 1 (news + talkshow +
#                                              kitchen, matted) for P minutes, then stage 2 on
#                                              kitchen for F minutes; a fine-tune-only body
#                                              (Setting I) and the face model for P + F minutes
#                                              (TRAIN_FACE=0: the bodies only, e.g. a retry);
#                                              beside them the codec study (CODEC_MINUTES,
#                                              default 8; 0 skips it)
#   bash scripts/gpu_kitchen.sh wait SECONDS   follow the logs until training ends or SECONDS pass
#                                              (then the speech-to-motion run -> $OUT)
#   bash scripts/gpu_kitchen.sh evaluate       held-out frames of every variant -> $OUT (JPEG, to
#                                              be scored with `anchorgen evaluate --renders`)
#   bash scripts/gpu_kitchen.sh export         the identity (body + face, no checkpoints) -> $OUT
#   bash scripts/gpu_kitchen.sh cross          60 s render driven by another person -> $OUT
#   bash scripts/gpu_kitchen.sh speech [DIR]   renders driven by unseen speech -> $OUT; with DIR,
#                                              each DIR/NAME/landmarks.npz (`anchorgen motion`
#                                              run on the CPU) is rendered with DIR/NAME/NAME.wav
#                                              by the identity MODEL (default runs/kitchen)
#   bash scripts/gpu_kitchen.sh refine MINUTES in the background: the face model fine-tuned
#                                              from runs/kitchen/face with the face preset's
#                                              current recipe -> runs/kitchen_refined (body
#                                              linked); with a carried gpu_data/pack/a2m, the
#                                              speech model retrained beside it -> runs/a2m
#   bash scripts/gpu_kitchen.sh compare SECONDS after `refine`: cross-person renders of
#                                              SECONDS with the old and the refined face, the
#                                              refined held-out frames, speech renders -> $OUT
#   bash scripts/gpu_kitchen.sh variants MINUTES NAME=OVERRIDES ...
#                                              in the background: a Setting-I body per NAME
#                                              (kitchen, the preset plus its space-separated
#                                              OVERRIDES) -> runs/var_NAME, each with the face
#                                              model of runs/kitchen/face (or the carried
#                                              runs/v3/kitchen/face); side by side on one GPU, or
#                                              one per GPU of VARIANT_GPUS (e.g. "0 1 2")
#   bash scripts/gpu_kitchen.sh variants-resume MINUTES NAME ...
#                                              in the background: each variant's training
#                                              resumed from its last checkpoint for MINUTES more
#                                              (then variants-evaluate again: a learning curve)
#   bash scripts/gpu_kitchen.sh variants-evaluate NAME ...
#                                              wait for `variants`, then the held-out frames of
#                                              each with and without the face pass, and with the
#                                              face pass at each guidance scale of GUIDANCE
#                                              (e.g. "1.5 2.5") and each temporal window
#                                              SIZE/OVERLAP of WINDOWS (e.g. "8/2 4/1"),
#                                              each variant on its training
#                                              GPU -> $OUT (names get TAG appended, e.g.
#                                              TAG=_24min after a resume; FACE_PASSES=true
#                                              skips the renders without the face pass)
#   bash scripts/gpu_kitchen.sh variants-average NAME ...
#                                              wait for `variants`, then for each AVERAGE@STEP of
#                                              AVERAGES (e.g. "ema@3500 power:3@4000
#                                              uniform:2000@4000") a model with the variant's
#                                              weights averaged over its checkpoints up to STEP
#                                              (scripts/ema_posthoc.py; train the variants with
#                                              checkpoint_every=250 keep_checkpoints=100) and
#                                              its held-out frames with the face pass -> $OUT
#   bash scripts/gpu_kitchen.sh sweep RUN NAME='--set K=V ...' ...
#                                              held-out frames of the identity RUN once per
#                                              NAME with its generate settings -> $OUT
#
# Carried paths (ignored, never committed: derived from ../shared/data): .whl (diffusers),
# .whl_av (PyAV, for the MP4 outputs), gpu_data/pack/{kitchen,news,talkshow} (prepared
# datasets without renders), gpu_data/pack/talkshow_60s.npz (the driver's tracked landmarks,
# played forwards and backwards to 60 s), gpu_data/pack/speech (wavs + an audio2motion run),
# gpu_data/pack/a2m (speech clip pack: an audio2motion model trains beside the body).
# The GPU machine has no MediaPipe: everything that tracks or scores runs on the CPU machine.
set -euo pipefail
ROOT=${ANCHORGEN_GPU_ROOT:-/root/anchorgen}
BODY_PRESET=${BODY_PRESET:-scratch-256}
FACE_PRESET=${FACE_PRESET:-face}
EXTRA=${EXTRA:-}  # more key=value overrides for every training run (CPU rehearsals)
GENERATE_SET=${GENERATE_SET:-}  # more --set options for the renders (CPU rehearsals)
OUT=${OUT:-$ROOT/out}
source scripts/gpu_env.sh
mkdir -p "$ROOT/data" "$ROOT/runs" "$OUT"
anchorgen() { python3 -m anchorgen "$@"; }
# every training run here: time-limited (steps only bounds it), EMA, checkpoints to resume
RUN_OPTIONS="steps=100000 ema_decay=0.998 checkpoint_every=500 sample_every=100000 log_every=50"
holdout() {  # holdout MODEL NAME SET...: the kitchen held-out frames -> variants_holdout/NAME
  local model=$1 name=$2
  shift 2
  anchorgen evaluate --model "$model" --dataset "$ROOT/data/kitchen" \
    --out "$ROOT/variants_holdout/$name" --render-only --frame-format jpg \
    --overwrite "$@" $GENERATE_SET
}
return_holdout() {  # every rendered held-out folder -> $OUT, in parts of 15 MiB
  tar -C "$ROOT" -cf - variants_holdout | split -b 15M - "$OUT/variants_holdout.tar.part-"
  ls -la "$OUT"
}
await_variants() {  # until the last `variants` launch has finished; then variants_holdout/
  local done_marker
  done_marker=$ROOT/variants.done.$(cat "$ROOT/variants.launch")
  while ! [ -e "$done_marker" ]; do sleep 5; done
  mkdir -p "$ROOT/variants_holdout"
}
variant_gpu() {  # variant_gpu NAME: the GPU the variant trained on (0 if unrecorded)
  cat "$ROOT/runs/var_$1/gpu" 2> /dev/null || echo 0
}
driver_motion() {  # the carried cross-person motion, copied into $ROOT/data if not there yet
  [ -e "$ROOT/data/talkshow_60s.npz" ] || cp gpu_data/pack/talkshow_60s.npz "$ROOT/data/"
}

case "${1:-}" in
setup)
  for pack in gpu_data/pack/*; do
    name=$(basename "$pack")
    [ -e "$ROOT/data/$name" ] || cp -r "$pack" "$ROOT/data/$name"
    if [ -f "$ROOT/data/$name/meta.json" ] && ! [ -d "$ROOT/data/$name/renders" ]; then
      python3 -c "from anchorgen.prepare.pipeline import rerender; rerender('$ROOT/data/$name', progress=False)"
    fi
  done
  ls "$ROOT/data"
  if [ "${SD15_STEP:-1}" = 1 ]; then
    rm -rf "$ROOT/runs/sd15_step"
    # one logged step is the measurement; the 2 B-parameter checkpoint and export are not needed
    log=$ROOT/runs/sd15_step/train_log.csv
    anchorgen train --preset sd15 model.pretrained=false steps=100 log_every=1 \
      "datasets=[$ROOT/data/kitchen]" "output_dir=$ROOT/runs/sd15_step" > "$ROOT/sd15.log" 2>&1 &
    pid=$!
    while kill -0 $pid 2> /dev/null && [ "$(cat "$log" 2> /dev/null | wc -l)" -lt 3 ]; do
      sleep 1
    done
    kill $pid 2> /dev/null || true
    grep -v Warning "$ROOT/sd15.log" | tail -c 1500
    cat "$log"
    rm -rf "$ROOT/runs/sd15_step"
  fi
  ;;
train)
  stage1=${2:?minutes of stage 1}
  stage2=${3:?minutes of stage 2}
  total=$(python3 -c "print($stage1 + $stage2)")
  train_face=${TRAIN_FACE:-1}  # TRAIN_FACE=0: retry the bodies only, keeping a trained face
  launch=$(date +%s)
  rm -rf "$ROOT/runs/stage1" "$ROOT/runs/kitchen/body" "$ROOT/runs/setting1"  # fresh bodies
  # the preset's batch of 8 clips: at 16 the motion modules' attention batch (16 x 64 x 64)
  # passed the fused kernels' 65,535 limit (BENCHMARKS.md); predict() now splits such
  # batches, which would only halve their speed
  body="$RUN_OPTIONS num_workers=6 $EXTRA"
  cat > "$ROOT/train.sh" <<EOF
set -x
cd $PWD
export PYTHONPATH=$PYTHONPATH PYTHONUNBUFFERED=1
( python3 -m anchorgen train --preset $BODY_PRESET stage=pretrain $body \
    "datasets=[$ROOT/data/news,$ROOT/data/talkshow,$ROOT/data/kitchen]" \
    time_limit_minutes=$stage1 output_dir=$ROOT/runs/stage1 > $ROOT/stage1.log 2>&1 &&
  python3 -m anchorgen train --preset $BODY_PRESET stage=finetune $body \
    "datasets=[$ROOT/data/kitchen]" init_from=$ROOT/runs/stage1 \
    time_limit_minutes=$stage2 output_dir=$ROOT/runs/kitchen/body > $ROOT/stage2.log 2>&1 ) &
python3 -m anchorgen train --preset $BODY_PRESET stage=finetune freeze_temporal=false $body \
  "datasets=[$ROOT/data/kitchen]" time_limit_minutes=$total \
  output_dir=$ROOT/runs/setting1/body > $ROOT/setting1.log 2>&1 &
if [ "$train_face" = 1 ]; then
  python3 -m anchorgen train --preset $FACE_PRESET $RUN_OPTIONS num_workers=3 $EXTRA \
    "datasets=[$ROOT/data/kitchen]" time_limit_minutes=$total \
    output_dir=$ROOT/runs/kitchen/face > $ROOT/face.log 2>&1 &
fi
if [ "${CODEC_MINUTES:-8}" != 0 ]; then  # pixel or latent space: the autoencoder's ceiling
  python3 -m anchorgen codec-study --holdout $ROOT/data/kitchen --dataset $ROOT/data/news \
    --dataset $ROOT/data/talkshow --minutes ${CODEC_MINUTES:-8} --out $ROOT/codec_study.json \
    > $ROOT/codec.log 2>&1 &
fi
if [ -d $ROOT/data/a2m ] && ! [ -e $ROOT/runs/a2m/model ]; then  # speech-to-motion beside them
  bash scripts/gpu_audio2motion.sh $ROOT/runs/a2m $ROOT/data/a2m 1200 > $ROOT/a2m.log 2>&1 &
fi
wait
touch $ROOT/train.done.$launch
EOF
  echo "$launch" > "$ROOT/train.launch"  # an earlier launch still running cannot end this one
  setsid nohup bash "$ROOT/train.sh" > "$ROOT/train.log" 2>&1 < /dev/null &
  echo "training started: stage 1 $stage1 min, stage 2 $stage2 min; logs in $ROOT/*.log"
  ;;
wait)
  deadline=$((SECONDS + ${2:-540}))
  done_marker=$ROOT/train.done.$(cat "$ROOT/train.launch")
  while ! [ -e "$done_marker" ] && [ $SECONDS -lt $deadline ]; do
    sleep 30
    for log in stage1 stage2 setting1 face codec a2m; do
      [ -f "$ROOT/$log.log" ] && printf '%s: %s\n' "$log" "$(tail -c 2000 "$ROOT/$log.log" | tr '\r' '\n' | grep -v '^\s*$' | tail -n 1 | cut -c1-160)"
    done
    nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader 2>/dev/null || true
  done
  if [ -e "$done_marker" ]; then
    echo "training finished"
    for run in stage1 kitchen/body setting1/body kitchen/face; do
      echo "== $run"; tail -n 2 "$ROOT/runs/$run/train_log.csv"
    done
    tail -n 5 "$ROOT/stage2.log" "$ROOT/face.log"
    [ -e "$ROOT/codec_study.json" ] && tail -n 12 "$ROOT/codec.log" && cp "$ROOT/codec_study.json" "$OUT/"
    if [ -e "$ROOT/runs/a2m/model" ]; then  # small: returned by the call that sees training end
      tail -n 4 "$ROOT/a2m.log"
      tar -C "$ROOT/runs" -cf "$OUT/a2m.tar" a2m
    fi
  else
    echo "still training"
    exit 1
  fi
  ;;
evaluate)
  ln -sfn "$ROOT/runs/kitchen/face" "$ROOT/runs/setting1/face"  # Setting I differs in the body only
  anchorgen evaluate --model "$ROOT/runs/kitchen" --dataset "$ROOT/data/kitchen" \
    --out "$ROOT/holdout" --ablations --setting1-model "$ROOT/runs/setting1" \
    --render-only --frame-format jpg --overwrite
  tar -C "$ROOT" -cf - holdout | split -b 15M - "$OUT/holdout.tar.part-"
  ls -la "$OUT"
  ;;
export)
  tar -C "$ROOT/runs" --exclude=checkpoints --exclude=audio2motion -cf - kitchen |
    split -b 15M - "$OUT/kitchen_runs.tar.part-"
  ls -la "$OUT"
  ;;
cross)
  driver_motion
  anchorgen generate --model "$ROOT/runs/kitchen" --dataset "$ROOT/data/kitchen" \
    --motion "$ROOT/data/talkshow_60s.npz" --out "$ROOT/cross_60s.mp4" --set windows_per_batch=8 $GENERATE_SET
  split -b 15M "$ROOT/cross_60s.mp4" "$OUT/cross_60s.mp4.part-"  # 16 MiB per returned file
  ls -la "$OUT"
  ;;
speech)
  if [ -n "${2:-}" ]; then  # motion made on the CPU machine
    for motion in "$2"/*/landmarks.npz; do
      name=$(basename "$(dirname "$motion")")
      anchorgen generate --model "${MODEL:-$ROOT/runs/kitchen}" --dataset "$ROOT/data/kitchen" \
        --motion "$motion" --audio "$(dirname "$motion")/$name.wav" --out "$OUT/$name.mp4" \
        --set windows_per_batch=7 $GENERATE_SET
    done
    ls -la "$OUT"
    exit 0
  fi
  # the run trained beside the body (`train`), else the carried one
  speech_run=$ROOT/runs/a2m
  [ -e "$speech_run/model" ] || speech_run=$ROOT/data/speech/audio2motion
  rm -rf "$ROOT/runs/kitchen/audio2motion" && cp -r "$speech_run" "$ROOT/runs/kitchen/audio2motion"
  for speech in radio_speech talkshow_speech; do
    anchorgen generate --model "$ROOT/runs/kitchen" --dataset "$ROOT/data/kitchen" \
      --audio "$ROOT/data/speech/$speech.wav" --out "$OUT/$speech.mp4" --set windows_per_batch=8 $GENERATE_SET
  done
  ls -la "$OUT"
  ;;
refine)
  minutes=${2:?minutes of face fine-tuning}
  refined=$ROOT/runs/kitchen_refined
  rm -rf "$refined" "$ROOT/runs/a2m" && mkdir -p "$refined"
  ln -s "$ROOT/runs/kitchen/body" "$refined/body"
  launch=$(date +%s)
  cat > "$ROOT/refine.sh" <<EOF
cd $PWD
export PYTHONPATH=$PYTHONPATH PYTHONUNBUFFERED=1
python3 -m anchorgen train --preset $FACE_PRESET init_from=$ROOT/runs/kitchen/face \\
  "datasets=[$ROOT/data/kitchen]" output_dir=$refined/face time_limit_minutes=$minutes \\
  steps=100000 lr_warmup_steps=50 learning_rate=0.0001 checkpoint_every=100000 \\
  sample_every=100000 log_every=50 num_workers=6 $EXTRA > $ROOT/refine.log 2>&1 &
if [ -d $ROOT/data/a2m ]; then
  bash scripts/gpu_audio2motion.sh $ROOT/runs/a2m $ROOT/data/a2m 1200 > $ROOT/a2m.log 2>&1 &
fi
wait
touch $ROOT/refine.done.$launch
EOF
  echo "$launch" > "$ROOT/refine.launch"
  setsid nohup bash "$ROOT/refine.sh" > /dev/null 2>&1 < /dev/null &
  echo "face fine-tuning started: $minutes min; logs in $ROOT/refine.log, $ROOT/a2m.log"
  ;;
compare)
  seconds=${2:?seconds of cross-person motion}
  done_marker=$ROOT/refine.done.$(cat "$ROOT/refine.launch")
  while ! [ -e "$done_marker" ]; do sleep 5; done
  tail -n 2 "$ROOT/runs/kitchen_refined/face/train_log.csv"
  if [ -e "$ROOT/runs/a2m/model" ]; then
    tail -n 3 "$ROOT/a2m.log"
    tar -C "$ROOT/runs" -cf - a2m | split -b 15M - "$OUT/a2m.tar.part-"  # 16 MiB per file
  fi
  driver_motion
  for model in kitchen kitchen_refined; do
    anchorgen generate --model "$ROOT/runs/$model" --dataset "$ROOT/data/kitchen" \
      --motion "$ROOT/data/talkshow_60s.npz" --out "$OUT/cross_${seconds}s_$model.mp4" \
      --set windows_per_batch=8 --set motion_seconds="$seconds" $GENERATE_SET
  done
  anchorgen evaluate --model "$ROOT/runs/kitchen_refined" --dataset "$ROOT/data/kitchen" \
    --out "$ROOT/holdout_refined" --render-only --frame-format jpg --overwrite
  tar -C "$ROOT" -cf "$OUT/holdout_refined.tar" holdout_refined
  if [ -e "$ROOT/runs/a2m/model" ]; then
    rm -rf "$ROOT/runs/kitchen_refined/audio2motion"
    cp -r "$ROOT/runs/a2m" "$ROOT/runs/kitchen_refined/audio2motion"
    for speech in radio_speech talkshow_speech; do
      anchorgen generate --model "$ROOT/runs/kitchen_refined" --dataset "$ROOT/data/kitchen" \
        --audio "$ROOT/data/speech/$speech.wav" --out "$OUT/${speech}_refined.mp4" \
        --set windows_per_batch=8 $GENERATE_SET
    done
  fi
  ls -la "$OUT"
  ;;
variants)
  minutes=${2:?minutes of training}
  shift 2
  launch=$(date +%s)
  face=$ROOT/runs/kitchen/face
  [ -d "$face/unet" ] || face=$PWD/runs/v3/kitchen/face
  read -r -a gpus <<< "${VARIANT_GPUS:-0}"
  echo "cd $PWD; export PYTHONPATH=$PYTHONPATH PYTHONUNBUFFERED=1" > "$ROOT/variants.sh"
  index=0
  for variant in "$@"; do
    name=${variant%%=*}
    overrides=${variant#*=}
    run=$ROOT/runs/var_$name
    gpu=${gpus[$((index % ${#gpus[@]}))]}
    index=$((index + 1))
    rm -rf "$run" && mkdir -p "$run" && ln -s "$face" "$run/face" && echo "$gpu" > "$run/gpu"
    # the command without its time limit, for variants-resume (the same command resumes a run)
    echo "CUDA_VISIBLE_DEVICES=$gpu python3 -m anchorgen train --preset $BODY_PRESET stage=finetune \
  freeze_temporal=false $RUN_OPTIONS num_workers=6 $overrides $EXTRA 'datasets=[$ROOT/data/kitchen]' \
  output_dir=$run/body" > "$run/train.cmd"
    echo "$(cat "$run/train.cmd") time_limit_minutes=$minutes > $ROOT/var_$name.log 2>&1 &" >> "$ROOT/variants.sh"
  done
  echo "wait; touch $ROOT/variants.done.$launch" >> "$ROOT/variants.sh"
  echo "$launch" > "$ROOT/variants.launch"
  setsid nohup bash "$ROOT/variants.sh" > "$ROOT/variants.out" 2>&1 < /dev/null &
  echo "training $# body variants for $minutes min on GPU(s) ${gpus[*]}; logs in $ROOT/var_*.log"
  ;;
variants-resume)
  minutes=${2:?minutes of further training}
  shift 2
  launch=$(date +%s)
  echo "cd $PWD; export PYTHONPATH=$PYTHONPATH PYTHONUNBUFFERED=1" > "$ROOT/variants.sh"
  for name in "$@"; do
    echo "$(cat "$ROOT/runs/var_$name/train.cmd") time_limit_minutes=$minutes >> $ROOT/var_$name.log 2>&1 &" >> "$ROOT/variants.sh"
  done
  echo "wait; touch $ROOT/variants.done.$launch" >> "$ROOT/variants.sh"
  echo "$launch" > "$ROOT/variants.launch"
  setsid nohup bash "$ROOT/variants.sh" > "$ROOT/variants.out" 2>&1 < /dev/null &
  echo "resuming $# body variants for $minutes more min; logs in $ROOT/var_*.log"
  ;;
variants-evaluate)
  shift
  await_variants
  for name in "$@"; do
    tail -n 1 "$ROOT/runs/var_$name/body/train_log.csv"
    (
      export CUDA_VISIBLE_DEVICES
      CUDA_VISIBLE_DEVICES=$(variant_gpu "$name")
      model=$ROOT/runs/var_$name
      for face_pass in ${FACE_PASSES:-true false}; do
        holdout "$model" "${name}${TAG:-}_face_$face_pass" --set face_enhance="$face_pass"
      done
      for scale in ${GUIDANCE:-}; do
        holdout "$model" "${name}${TAG:-}_guidance_$scale" --set face_enhance=true --set guidance_scale="$scale"
      done
      for window in ${WINDOWS:-}; do  # SIZE/OVERLAP; frames per forward: generate's default
        size=${window%/*} overlap=${window#*/}
        holdout "$model" "${name}${TAG:-}_ws${size}_os${overlap}" --set face_enhance=true \
          --set window_size="$size" --set window_overlap="$overlap"
      done
    ) > "$ROOT/variants_holdout/$name.log" 2>&1 &
  done
  wait
  tail -n 3 "$ROOT"/variants_holdout/*.log
  return_holdout
  ;;
variants-average)
  shift
  await_variants
  for name in "$@"; do
    (
      export CUDA_VISIBLE_DEVICES
      CUDA_VISIBLE_DEVICES=$(variant_gpu "$name")
      for spec in ${AVERAGES:?AVERAGE@STEP ...}; do
        average=${spec%@*} until=${spec#*@}
        label=${name}_${average/:/}_${until}
        model=$ROOT/runs/avg_$label
        rm -rf "$model" && mkdir -p "$model" && ln -s "$ROOT/runs/var_$name/face" "$model/face"
        python3 scripts/ema_posthoc.py "$ROOT/runs/var_$name/body" "$model/body" \
          --average "$average" --until "$until"
        holdout "$model" "$label" --set face_enhance=true
      done
    ) > "$ROOT/variants_holdout/$name.average.log" 2>&1 &
  done
  wait
  tail -n 3 "$ROOT"/variants_holdout/*.average.log
  return_holdout
  ;;
sweep)
  model=${2:?identity run directory}
  shift 2
  mkdir -p "$ROOT/variants_holdout"
  for setting in "$@"; do
    # shellcheck disable=SC2086  # the settings are words on purpose
    if holdout "$model" "${setting%%=*}" ${setting#*=} >> "$ROOT/variants_holdout/sweep.log" 2>&1; then
      echo "${setting%%=*}: rendered"
    else
      echo "${setting%%=*}: failed (variants_holdout/sweep.log)"
    fi
  done
  return_holdout
  ;;
*)
  sed -n '2,73p' "$0"
  exit 2
  ;;
esac
