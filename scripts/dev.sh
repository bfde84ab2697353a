#!/usr/bin/env bash
# One entry point for the README's Quick start and for CI, so they cannot drift.
#
#   scripts/dev.sh main [recipe options]   install, then train the digits CNN
#   scripts/dev.sh test [pytest options]   install, then run the whole test suite
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
        # The whole suite on the TensorFlow backend, then the backend-agnostic
        # parts again on JAX (the backend the GPU machines use). On JAX every
        # registered model builds, trains a step and reloads, except the three
        # keras.applications backbones (Keras' own code, tested by Keras on
        # every backend) and the deeper CIFAR ResNets (resnet44/56/110: the
        # builder and blocks of resnet20/32, with more of them); parameter
        # counts are backend-independent (TF pass).
        # -n auto: one pytest worker per core (most of the time is tracing and
        # compiling, single-threaded work that two workers overlap).
        KERAS_BACKEND=tensorflow "$py" -m pytest -p no:cacheprovider -n auto \
            --durations=15 "$@"
        KERAS_BACKEND=jax "$py" -m pytest -p no:cacheprovider -n auto -q \
            -k "not parameter_count and not imagenet and not resnet44 and not resnet56 and not resnet110" \
            tests/test_all_models.py tests/test_augment.py tests/test_data.py \
            tests/test_recipe.py tests/test_attention.py tests/test_crf.py \
            tests/test_decode.py tests/test_seq2seq.py tests/test_host_init.py \
            tests/test_tuning_jax.py tests/test_fused_steps.py \
            tests/test_training.py::test_nan_guard_lets_keras_dispatch_steps_ahead_and_keeps_the_first_nan \
            tests/test_recipes.py::test_nan_loss_stops_with_epoch_and_step_and_saves_no_nan \
            "$@"
        ;;
    *)
        echo "usage: scripts/dev.sh main|test [options]" >&2
        exit 2
        ;;
esac
