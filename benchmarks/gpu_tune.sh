#!/usr/bin/env bash
# A small search on the GPU machine: JAX backend, no TensorFlow there.
# Prepare on the CPU machine first (keras-tuner and the dataset packages):
#   ../shared/gpu/prepare-wheels.sh keras-tuner faker babel six
# (keras-tuner imports six without declaring it as a dependency)
# then run this from the project root on the GPU machine with .whl carried along:
#   bash benchmarks/gpu_tune.sh "$OUT"
set -euo pipefail
out="${1:-${OUT:-/tmp/gpu_tune}}"
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl
export PYTHONPATH="/tmp/site:$PWD" KERAS_BACKEND=jax PYTHONUNBUFFERED=1
python3 benchmarks/gpu_tune.py --out "$out" --trials "${TRIALS:-12}"
