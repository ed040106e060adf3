# Sourced by scripts/gpu_*.sh on the GPU machine: install the carried wheels (.whl: diffusers;
# .whl_av: PyAV) once per machine into /tmp/site, and put them and src/ on the Python path.
for wheels in .whl .whl_av; do
  if compgen -G "$wheels/*.whl" > /dev/null && ! [ -e "/tmp/site/$wheels.installed" ]; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
      --target /tmp/site "$wheels"/*.whl && touch "/tmp/site/$wheels.installed"
  fi
done
export PYTHONPATH=/tmp/site:$PWD/src PYTHONUNBUFFERED=1
