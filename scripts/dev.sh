#!/usr/bin/env bash
# One entry point for the README's Quick start and for CI, so they cannot drift.
#
#   scripts/dev.sh main [recipe options]   install, then train the digits CNN
#   scripts/dev.sh test [pytest options]   install, then run the full suite (CI)
#   scripts/dev.sh fast [pytest options]   install, then run the fast lane
#   scripts/dev.sh wheel                   build the wheel, train from it in a new venv
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

# The wheel as a user gets it: built from this tree (a copy, so that no stale
# build/ of the checkout leaks into it), installed into a new virtual
# environment, and `annzoo train digits_mlp --epochs 2` run from an empty
# directory, where only what the wheel ships (the packaged recipes, the
# plain model and dataset tables) can be found. On JAX, and without
# TensorFlow, TensorFlow Datasets, TensorBoard and keras-tuner: these are
# not among this machine's local package files (/opt/pypi*/files), and
# TensorFlow alone is 1.9 GB installed, minutes to download and unpack;
# training needs none of them on JAX, and `import annzoo` needs no
# TensorFlow. Every other requirement is read from the wheel's metadata.
wheel_check() {
    local tmp wheel started
    started=$(date +%s)
    tmp=$(mktemp -d)
    mkdir "$tmp/src" "$tmp/run"
    cp -r annzoo setup.cfg pyproject.toml README.md "$tmp/src/"
    find "$tmp/src" -name __pycache__ -prune -exec rm -rf {} +
    "$py" -m pip wheel --quiet --disable-pip-version-check --no-deps \
        --no-build-isolation -w "$tmp/dist" "$tmp/src" >/dev/null
    wheel=$(ls "$tmp"/dist/annzoo-*.whl)
    local requirements
    requirements=$("$py" - "$wheel" <<'PYTHON'
import email, re, sys, zipfile
wheel = zipfile.ZipFile(sys.argv[1])
meta = next(n for n in wheel.namelist() if n.endswith(".dist-info/METADATA"))
skipped = {"tensorflow", "tensorflow-datasets", "tensorboard", "keras-tuner"}
for requirement in email.message_from_bytes(wheel.read(meta)).get_all("Requires-Dist"):
    name = re.split(r"[ <>=!;\[]", requirement, maxsplit=1)[0].lower()
    if "extra ==" not in requirement and name.replace("_", "-") not in skipped:
        print(requirement.split(";")[0])
print("jax")
PYTHON
)
    # From the local package files where this machine has them (no index
    # queried), else from the configured index.
    local sources=() folder
    for folder in /opt/pypi/files /opt/pypi-more/files /opt/wheels; do
        if [ -d "$folder" ]; then
            sources+=(--find-links "$folder")
        fi
    done
    if [ ${#sources[@]} -gt 0 ]; then
        sources=(--no-index "${sources[@]}")
    fi
    "$python" -m venv "$tmp/venv"
    # --no-compile: the .pyc files are written on first import instead, for the
    # few modules a training run imports, not for all of jax, scipy, sklearn.
    local pip=("$tmp/venv/bin/python" -m pip install --quiet
        --disable-pip-version-check --no-compile)
    # shellcheck disable=SC2086  # one requirement per word
    "${pip[@]}" "${sources[@]}" $requirements
    # --no-warn-conflicts: the four requirements left out above, on purpose.
    "${pip[@]}" --no-deps --no-warn-conflicts "$wheel"
    echo "annzoo: wheel installed into a new venv in $(( $(date +%s) - started )) s" >&2
    (
        cd "$tmp/run"
        KERAS_BACKEND=jax "$tmp/venv/bin/annzoo" train digits_mlp --epochs 2 --quiet
        [ -f runs/digits_mlp/results.json ]
        # The plain tables the wheel ships (models, datasets, recipes).
        "$tmp/venv/bin/annzoo" list >/dev/null
        "$tmp/venv/bin/annzoo" datasets >/dev/null
        "$tmp/venv/bin/annzoo" recipes digits_mlp >/dev/null
    )
    rm -rf "$tmp"
    echo "annzoo: wheel check passed in $(( $(date +%s) - started )) s" >&2
}

# Parallel pytest for every pass (see step 2 of `test`).
xdist=(-n auto --dist worksteal)

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
        # 1b. The wheel, installed into a new venv, trains (see wheel_check).
        wheel_check
        # 2. The whole suite on TensorFlow, notebooks included.
        # xdist: -n auto, one pytest worker per core (most of the time is
        # tracing and compiling, single-threaded work that two workers
        # overlap); --dist worksteal, each worker takes half of the tests in
        # file order, keeping a module's fixtures on one worker, and an idle
        # worker takes over half of the other's remaining tests, so a pass
        # does not end with one worker alone on a long tail.
        KERAS_BACKEND=tensorflow "$py" -m pytest -p no:cacheprovider "${xdist[@]}" \
            --durations=15 "$@"
        # 3. On JAX (the backend the GPU machines use), the tests marked `jax`:
        # conftest.py deselects the rest on any backend but TensorFlow.
        KERAS_BACKEND=jax "$py" -m pytest -p no:cacheprovider "${xdist[@]}" -q "$@"
        # 4. On PyTorch, the tests marked `torch` (every family's smoke model,
        # the presets up to 1M parameters, recipe runs and a resume). torch
        # is pinned to the CPU build that these machines carry as a file: any
        # other release from the index is a CUDA build of several GB.
        "$py" -m pip install --quiet --disable-pip-version-check "torch==2.13.0"
        KERAS_BACKEND=torch "$py" -m pytest -p no:cacheprovider "${xdist[@]}" -q "$@"
        # 5. The model, recipe and tuning tests (marked `speedups_off`) again
        # with every speedup switched off, so annzoo provably works on public
        # Keras API alone: on each backend those not marked slow (every
        # family's smoke model, the small presets, recipe, training and
        # tuning runs, the JAX-only tuning tests); the large presets repeat
        # the same layers at minutes each, and no speedup acts on building.
        ANNZOO_SPEEDUPS=0 KERAS_BACKEND=tensorflow "$py" -m pytest \
            -p no:cacheprovider "${xdist[@]}" -q -m "speedups_off and not slow" "$@"
        ANNZOO_SPEEDUPS=0 KERAS_BACKEND=jax "$py" -m pytest \
            -p no:cacheprovider "${xdist[@]}" -q -m "speedups_off and not slow" "$@"
        ;;
    wheel)
        wheel_check
        ;;
    fast)
        # The fast lane: every test module, without the tests marked `slow`.
        exec "$py" -m pytest -p no:cacheprovider "${xdist[@]}" -m "not slow" "$@"
        ;;
    *)
        echo "usage: scripts/dev.sh main|test|fast|wheel [options]" >&2
        exit 2
        ;;
esac
