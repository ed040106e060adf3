# Sourced by scripts/gpu_*.sh on the GPU machine: install the carried wheels (.whl: diffusers;
# .whl_av: PyAV) once per machine into /tmp/site, put them and src/ on the Python path, number
# the GPUs as nvidia-smi does, and define budget_step.
for wheels in .whl .whl_av; do
  if compgen -G "$wheels/*.whl" > /dev/null && ! [ -e "/tmp/site/$wheels.installed" ]; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
      --target /tmp/site "$wheels"/*.whl && touch "/tmp/site/$wheels.installed"
  fi
done
export PYTHONPATH=/tmp/site:$PWD/src PYTHONUNBUFFERED=1 CUDA_DEVICE_ORDER=PCI_BUS_ID

budget_step() {  # budget_step LIMIT_S LOG COMMAND...: COMMAND under what is left of $budget
  # (seconds, against bash's $SECONDS), at most LIMIT_S, output in LOG; with under 40 s left
  # it is skipped, so a call ends in time. A command that timed out leaves no process on the
  # GPUs of BUDGET_GPUS (nvidia-smi's indexes, e.g. "2,3"; default: every GPU).
  local limit=$1 log=$2
  shift 2
  local name left=$((budget - SECONDS)) start=$SECONDS code
  name=$(basename "$log" .log)
  [ "$left" -lt "$limit" ] && limit=$left
  if [ "$limit" -lt 40 ]; then
    echo "$name: skipped, $left s of the budget left"
    return
  fi
  timeout -k 10 "$limit" "$@" > "$log" 2>&1
  code=$?
  echo "$name: exit $code after $((SECONDS - start)) s (limit $limit s)"
  if [ "$code" -ge 124 ]; then  # no rank of it may run on into the next command
    local pids
    pids=$(nvidia-smi ${BUDGET_GPUS:+-i "$BUDGET_GPUS"} --query-compute-apps=pid --format=csv,noheader 2> /dev/null)
    [ -n "$pids" ] && kill -9 $pids 2> /dev/null
    sleep 2
  fi
  return 0
}
