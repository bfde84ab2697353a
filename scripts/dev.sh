#!/usr/bin/env bash
# One entry point for the README's Quick start and for CI, so they cannot drift.
#
#   scripts/dev.sh main [recipe options]   install, then train the digits CNN
#   scripts/dev.sh test [pytest options]   install, then run the full suite (CI)
#   scripts/dev.sh fast [pytest options]   install, then run the fast lane
#
# Installs annzoo (editable) with its test extras into ./.venv, created on the
# first run with the python3 on PATH (3.11 or newer). Set ANNZOO_PYTHON to use
# another interpreter.
set -euo pipefail
cd "$(dirname "$0")/.."

python=${ANNZOO_PYTHON:-python3}
venv=.venv
if [ ! -x "$venv/bin/python" ]; then
    echo "annzoo: creating $venv with $($python --version 2>&1)" >&2
    "$python" -m venv "$venv"
fi
py="$venv/bin/python"
echo "annzoo: installing annzoo and its dependencies into $venv (first run: a few minutes)" >&2
"$py" -m pip install --quiet --disable-pip-version-check -e ".[test]"

export TF_CPP_MIN_LOG_LEVEL=${TF_CPP_MIN_LOG_LEVEL:-2}
export PYTHONUNBUFFERED=1

command=${1:-}
[ $# -gt 0 ] && shift
case "$command" in
    main)
        exec "$py" recipes/digits_cnn.py "$@"
        ;;
    test)
        # What CI runs, in order; each step stops the script when it fails.
        # The markers are declared in setup.cfg, the backend selection is in
        # tests/conftest.py.
        # 1. The import layers and contracts of .importlinter.
        "$venv/bin/lint-imports"
        # 2. The whole suite on TensorFlow, notebooks included.
        # -n auto: one pytest worker per core (most of the time is tracing and
        # compiling, single-threaded work that two workers overlap).
        KERAS_BACKEND=tensorflow "$py" -m pytest -p no:cacheprovider -n auto \
            --durations=15 "$@"
        # 3. On JAX (the backend the GPU machines use), the tests marked `jax`:
        # conftest.py deselects the rest on any backend but TensorFlow.
        KERAS_BACKEND=jax "$py" -m pytest -p no:cacheprovider -n auto -q "$@"
        # 4. On PyTorch, the tests marked `torch` (every family's smoke model,
        # the presets up to 1M parameters, recipe runs and a resume). torch
        # is pinned to the CPU build that these machines carry as a file: any
        # other release from the index is a CUDA build of several GB.
        "$py" -m pip install --quiet --disable-pip-version-check "torch==2.13.0"
        KERAS_BACKEND=torch "$py" -m pytest -p no:cacheprovider -n auto -q "$@"
        # 5. The model, recipe and tuning tests (marked `speedups_off`) again
        # with every speedup switched off, so annzoo provably works on public
        # Keras API alone: on each backend those not marked slow (every
        # family's smoke model, the small presets, recipe, training and
        # tuning runs, the JAX-only tuning tests); the large presets repeat
        # the same layers at minutes each, and no speedup acts on building.
        ANNZOO_SPEEDUPS=0 KERAS_BACKEND=tensorflow "$py" -m pytest \
            -p no:cacheprovider -n auto -q -m "speedups_off and not slow" "$@"
        ANNZOO_SPEEDUPS=0 KERAS_BACKEND=jax "$py" -m pytest \
            -p no:cacheprovider -n auto -q -m "speedups_off and not slow" "$@"
        ;;
    fast)
        # The fast lane: every test module, without the tests marked `slow`.
        exec "$py" -m pytest -p no:cacheprovider -n auto -m "not slow" "$@"
        ;;
    *)
        echo "usage: scripts/dev.sh main|test|fast [options]" >&2
        exit 2
        ;;
esac
