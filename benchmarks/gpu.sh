#!/usr/bin/env bash
# annzoo's GPU benchmark (benchmarks/gpu_bench.py) on the GPU machine: JAX
# backend, no TensorFlow or Keras there; PyTorch, timm and JAX with CUDA are.
# Prepare on the CPU machine first, from the project root (Keras and its
# pure-Python dependencies as wheels in .whl/; annzoo imports nothing else on
# this path: faker and babel serve only the text datasets, keras-tuner only
# the searches):
#   ../shared/gpu/prepare-wheels.sh
# then run this from the project root on the GPU machine with .whl carried along:
#   bash benchmarks/gpu.sh "$OUT" [gpu_bench.py options, e.g. --only transformer]
# --profile adds each contender's device time per step by operation (JAX's
# and PyTorch's profilers) to the JSON: where (a) and (b) lose time.
# It stays under 8 minutes: the benchmark skips a part that would not fit in
# BUDGET_S (default 420) and is killed after LIMIT_S (default 450). OUT gets
# gpu_bench.json (whatever parts finished, even after a kill) and
# gpu_bench.md (the table and the log).
set -uo pipefail
out="${1:-${OUT:-/tmp/gpu_bench}}"
work="$(mktemp -d /tmp/gpu_bench.XXXXXX)"
mkdir -p "$out"
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl || exit
export PYTHONPATH="/tmp/site:$PWD" KERAS_BACKEND=jax PYTHONUNBUFFERED=1
# JAX and PyTorch share the GPU: JAX allocates as it goes, up to 45% of it.
export XLA_PYTHON_CLIENT_PREALLOCATE=false XLA_PYTHON_CLIENT_MEM_FRACTION=0.45
status=0
timeout -k 10 "${LIMIT_S:-450}" python3 benchmarks/gpu_bench.py --out "$work" \
  --budget-s "${BUDGET_S:-420}" "${@:2}" 2>&1 | tee "$out/gpu_bench.md" || status=$?
if [ -f "$work/gpu_bench.json" ]; then
  cp "$work/gpu_bench.json" "$out/gpu_bench.json"
else
  echo "gpu.sh: no gpu_bench.json was written" >&2
  [ "$status" -eq 0 ] && status=1
fi
echo "gpu.sh: exit status $status; results in $out" >&2
exit "$status"
