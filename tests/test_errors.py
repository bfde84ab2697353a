"""Bad arguments: every user error is an AnnzooError (a ValueError) that names
the argument, says what was received, and is raised before any layer is built.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest

import annzoo
from annzoo.errors import AnnzooError, UnknownNameError


class _BuiltALayer(AssertionError):
    pass


@pytest.fixture
def no_building(monkeypatch):
    """Makes any attempt to start building a Keras graph fail loudly."""

    def refuse(*args, **kwargs):
        raise _BuiltALayer("keras.Input was called before the argument check")

    monkeypatch.setattr(keras, "Input", refuse)


def mlp(**kw):
    args = dict(input_shape=4, num_outputs=3, compile=False)
    args.update(kw)
    return lambda: annzoo.build_mlp(**args)


def cnn(**kw):
    args = dict(input_shape=(8, 8, 1), num_classes=3, filters=(2, 2), compile=False)
    args.update(kw)
    return lambda: annzoo.build_cnn(**args)


def compile_(**kw):
    return lambda model: annzoo.compile_model(model, **kw)


def create(*args, **kw):
    return lambda: annzoo.create_model(*args, **kw)


def info(name):
    return lambda: annzoo.model_info(name)


# (call, fragments the message must contain). For compile_model cases the
# call takes a model built outside the no-building guard.
CASES = [
    # build_mlp
    pytest.param(mlp(hidden_units=(0,)), ["`hidden_units`"], id="mlp-units-0"),
    pytest.param(mlp(hidden_units=(-3,)), ["`hidden_units`"], id="mlp-units-neg"),
    pytest.param(mlp(hidden_units=(4, 0)), ["`hidden_units`"], id="mlp-units-later-0"),
    pytest.param(mlp(hidden_units=(2.5,)), ["`hidden_units`"], id="mlp-units-float"),
    pytest.param(mlp(hidden_units="64"), ["`hidden_units`"], id="mlp-units-str"),
    pytest.param(mlp(num_outputs=2.0), ["`num_outputs`"], id="mlp-outputs-float"),
    pytest.param(
        mlp(num_outputs=0, task="binary"), ["`num_outputs`"], id="mlp-outputs-0"
    ),
    pytest.param(
        mlp(num_outputs=1), ["`num_outputs`", "multiclass"], id="mlp-multiclass-1"
    ),
    pytest.param(mlp(dropout=-0.1), ["`dropout`"], id="mlp-dropout-neg"),
    pytest.param(mlp(dropout=1.0), ["`dropout`"], id="mlp-dropout-1"),
    pytest.param(mlp(dropout="a"), ["`dropout`"], id="mlp-dropout-str"),
    pytest.param(mlp(activation="rleu"), ["`activation`"], id="mlp-activation"),
    pytest.param(mlp(task="classification"), ["`task`"], id="mlp-task"),
    pytest.param(mlp(input_shape=()), ["`input_shape`"], id="mlp-shape-empty"),
    pytest.param(mlp(input_shape=(-1, 3)), ["`input_shape`"], id="mlp-shape-neg"),
    pytest.param(mlp(input_shape=0), ["`input_shape`"], id="mlp-shape-0"),
    pytest.param(mlp(input_shape="28x28"), ["`input_shape`"], id="mlp-shape-str"),
    pytest.param(mlp(input_shape=(4.0,)), ["`input_shape`"], id="mlp-shape-float"),
    # build_cnn
    pytest.param(
        cnn(input_shape=(28, 28)),
        ["`input_shape`", "3 dimensions"],
        id="cnn-shape-rank",
    ),
    pytest.param(cnn(input_shape=(8, 8, 0)), ["`input_shape`"], id="cnn-shape-0"),
    pytest.param(cnn(num_classes=1), ["`num_classes`"], id="cnn-multiclass-1"),
    pytest.param(cnn(num_classes=0), ["`num_classes`"], id="cnn-classes-0"),
    pytest.param(cnn(filters=()), ["`filters`"], id="cnn-filters-empty"),
    pytest.param(cnn(filters=(8, -8)), ["`filters`"], id="cnn-filters-neg"),
    pytest.param(cnn(depth=(1, 2, 3)), ["`depth`", "per stage"], id="cnn-depth-length"),
    pytest.param(cnn(depth=0), ["`depth`"], id="cnn-depth-0"),
    pytest.param(cnn(kernel_size=0), ["`kernel_size`"], id="cnn-kernel-0"),
    pytest.param(cnn(kernel_size=(3, 3)), ["`kernel_size`"], id="cnn-kernel-tuple"),
    pytest.param(cnn(block="dense"), ["`block`"], id="cnn-block"),
    pytest.param(cnn(pooling="min"), ["`pooling`"], id="cnn-pooling"),
    pytest.param(cnn(stem="big"), ["`stem`"], id="cnn-stem"),
    pytest.param(cnn(head="gap"), ["`head`"], id="cnn-head"),
    pytest.param(cnn(shortcut="option_a"), ["`shortcut`"], id="cnn-shortcut"),
    pytest.param(cnn(padding="full"), ["`padding`"], id="cnn-padding"),
    pytest.param(cnn(activation="nope"), ["`activation`"], id="cnn-activation"),
    pytest.param(cnn(dropout=1.5), ["`dropout`"], id="cnn-dropout"),
    pytest.param(cnn(hidden_units=(0,)), ["`hidden_units`"], id="cnn-units-0"),
    pytest.param(cnn(task="segmentation"), ["`task`"], id="cnn-task"),
    pytest.param(
        cnn(pooling="max", block="basic"),
        ["`pooling`", "block='basic'"],
        id="cnn-pool-residual",
    ),
    pytest.param(
        cnn(pooling="average", block="bottleneck"),
        ["`pooling`"],
        id="cnn-avgpool-bottleneck",
    ),
    pytest.param(
        cnn(batch_norm=False, block="basic"), ["`batch_norm`"], id="cnn-no-bn-residual"
    ),
    pytest.param(
        cnn(input_shape=(4, 4, 1), filters=(2, 2, 2)),
        ["`input_shape`", "block3_pool"],
        id="cnn-too-small-pooled",
    ),
    pytest.param(
        cnn(
            input_shape=(6, 6, 1),
            filters=(2,),
            kernel_size=7,
            padding="valid",
            pooling="none",
        ),
        ["`input_shape`", "block1_conv1"],
        id="cnn-too-small-valid",
    ),
    # compile_model (the model is built beforehand)
    pytest.param(
        compile_(optimizer="adamm"),
        ["`optimizer`", "Did you mean 'adam'"],
        id="compile-optimizer",
    ),
    pytest.param(compile_(optimizer=3), ["`optimizer`"], id="compile-optimizer-int"),
    pytest.param(compile_(learning_rate=0), ["`learning_rate`"], id="compile-lr-0"),
    pytest.param(compile_(learning_rate=-1), ["`learning_rate`"], id="compile-lr-neg"),
    pytest.param(
        compile_(learning_rate="fast"), ["`learning_rate`"], id="compile-lr-str"
    ),
    pytest.param(
        compile_(task="multiclas"),
        ["`task`", "Did you mean 'multiclass'?"],
        id="compile-task",
    ),
    pytest.param(
        compile_(label_format="onehot"), ["`label_format`"], id="compile-label-format"
    ),
    # builders' compile= dict reaches compile_model's checks
    pytest.param(
        mlp(compile={"optimizer": "sgdd"}),
        ["`optimizer`"],
        id="mlp-compile-dict-optimizer",
    ),
    pytest.param(mlp(compile="yes"), ["`compile`"], id="mlp-compile-str"),
    # create_model / model_info
    pytest.param(create("alexnet"), ["`name`"], id="create-unknown"),
    pytest.param(
        create("lenet", compile=False),
        ["`name`", "Did you mean 'lenet5'"],
        id="create-near-miss",
    ),
    pytest.param(
        create("resnet_20", compile=False),
        ["Did you mean 'resnet20'"],
        id="create-near-miss-2",
    ),
    pytest.param(
        create("lenet5", pool_size=2),
        ["'pool_size'", "'cnn' builder"],
        id="create-unknown-argument",
    ),
    pytest.param(
        create("logistic_regression", num_classes=2),
        ["'num_classes'", "'mlp' builder"],
        id="create-argument-other-family",
    ),
    pytest.param(
        create("mlp", input_shape=4, num_outputs=2, kernel_size=3),
        ["'kernel_size'"],
        id="create-family-unknown-argument",
    ),
    pytest.param(info("vgg19"), ["`name`", "Did you mean 'vgg16'?"], id="info-unknown"),
    pytest.param(info(42), ["`name`"], id="info-not-a-string"),
]

# Cases raised after the graph is built (the builder's compile= is applied to
# the finished model); see test_compile_argument_checked_before_building.
_BUILDS_FIRST = {"mlp-compile-dict-optimizer", "mlp-compile-str"}


@pytest.mark.parametrize("call, fragments", CASES)
def test_bad_argument(request, monkeypatch, call, fragments):
    case = request.node.callspec.id
    is_compile = case.startswith("compile-")
    target = None
    if is_compile:
        target = annzoo.build_mlp(3, 3, hidden_units=(), compile=False)
    if case not in _BUILDS_FIRST:
        request.getfixturevalue("no_building")

    with pytest.raises(AnnzooError) as caught:
        call(target) if is_compile else call()

    error = caught.value
    assert isinstance(error, ValueError)
    message = str(error)
    assert "Received" in message, message
    for fragment in fragments:
        assert fragment in message, (fragment, message)
    if is_compile:
        # The model was left as it was.
        assert not target.compiled


@pytest.mark.parametrize(
    "call",
    [
        pytest.param(mlp(activation="rleu"), id="activation"),
        pytest.param(mlp(task="x"), id="task"),
        pytest.param(cnn(block="x"), id="block"),
        pytest.param(create("nothing"), id="name"),
        pytest.param(info("nothing"), id="info"),
    ],
)
def test_unknown_names_are_unknown_name_errors(no_building, call):
    with pytest.raises(UnknownNameError) as caught:
        call()
    # Also a KeyError, with a readable (unquoted) message.
    assert isinstance(caught.value, KeyError)
    assert isinstance(caught.value, ValueError)
    assert not str(caught.value).startswith(("'", '"'))


def test_error_message_shape():
    with pytest.raises(AnnzooError) as caught:
        annzoo.build_mlp(4, 3, dropout=1.0, compile=False)
    assert str(caught.value) == (
        "`dropout` must be a number in [0, 1). Received: dropout=1.0"
    )
    with pytest.raises(AnnzooError) as caught:
        annzoo.build_cnn((8, 8, 1), 3, block="resnet", compile=False)
    message = str(caught.value)
    assert message.startswith(
        "`block` must be one of ['basic', 'bottleneck', 'plain']."
    )
    assert "Received: block='resnet'" in message


def test_except_value_error_catches_annzoo_errors():
    try:
        annzoo.build_mlp(4, 3, hidden_units=(-3,), compile=False)
    except ValueError as error:
        assert isinstance(error, AnnzooError)
    else:
        pytest.fail("no error raised")


def test_valid_arguments_pass_the_guard_to_reach_keras(no_building):
    # Sanity check of the fixture: a valid call does get to keras.Input.
    with pytest.raises(_BuiltALayer):
        annzoo.build_mlp(4, 3, compile=False)
    with pytest.raises(_BuiltALayer):
        annzoo.build_cnn((8, 8, 1), 3, filters=(2, 2), compile=False)


@pytest.mark.parametrize("compile_arg", ["yes", {"optimizer": "sgdd"}])
def test_compile_argument_checked_before_building(no_building, compile_arg):
    with pytest.raises(AnnzooError):
        annzoo.build_mlp(4, 3, compile=compile_arg)


def test_zero_pad_shortcut_cannot_narrow():
    # Stage 2 (4 channels) is narrower than stage 1 (8): option A cannot
    # drop channels. Either an AnnzooError at build time, or a working model.
    try:
        model = annzoo.build_cnn(
            (8, 8, 3),
            2,
            filters=(8, 4),
            block="basic",
            shortcut="zero_pad",
            compile=False,
        )
    except AnnzooError as error:
        assert "Received" in str(error)
        return
    out = model(keras.ops.convert_to_tensor(np.zeros((1, 8, 8, 3), "float32")))
    assert tuple(out.shape) == (1, 2)


# -- Every registered family, from its spec: the hand-written CASES above go
# into the detail of mlp and cnn; these reach every family's builder.

FAMILIES = annzoo.list_families()


def _family_bad_arguments(family):
    """``(argument, bad value)`` pairs made from the family's smoke config and
    builder signature: every positive size negative, every size tuple holding
    a negative size, dropout 1.0, an unknown task."""
    import inspect

    from annzoo import registry

    smoke = registry.family_spec(family).smoke
    parameters = inspect.signature(registry.builder(family)).parameters
    bad = []
    for key, value in smoke.items():
        if isinstance(value, bool):
            continue
        if isinstance(value, int) and value > 0:
            bad.append((key, -value))
        elif (
            isinstance(value, tuple)
            and value
            and all(isinstance(v, int) and not isinstance(v, bool) for v in value)
        ):
            bad.append((key, (*value[:-1], -1)))
    if "dropout" in parameters:
        bad.append(("dropout", 1.0))
    bad.append(("task", "classification"))
    return bad


FAMILY_CASES = [
    pytest.param(family, key, value, id=f"{family}-{key}={value!r}")
    for family in FAMILIES
    for key, value in _family_bad_arguments(family)
]


@pytest.mark.parametrize("family, key, value", FAMILY_CASES)
def test_every_family_names_a_bad_argument_before_building(
    no_building, family, key, value
):
    from annzoo import registry

    arguments = {**registry.family_spec(family).smoke, key: value, "compile": False}
    with pytest.raises(AnnzooError) as caught:
        annzoo.create_model(family, **arguments)
    message = str(caught.value)
    assert f"`{key}`" in message and "Received" in message, message


def test_every_family_has_bad_argument_cases():
    covered = {p.values[0] for p in FAMILY_CASES}
    assert covered == set(FAMILIES)
    for family in FAMILIES:  # more than the task alone
        assert len(_family_bad_arguments(family)) >= 3, family


def test_cli_error_is_one_line_and_debug_shows_the_traceback():
    """README: errors are one sentence and exit status 2; --debug shows the
    traceback."""
    from tests.conftest import run_python

    plain = run_python("-m", "annzoo.cli", "info", "no_such_model")
    assert plain.returncode == 2, plain.stderr[-2000:]
    lines = [line for line in plain.stderr.splitlines() if line.strip()]
    assert lines[-1].startswith("annzoo: error:") and "no_such_model" in lines[-1]
    assert "Traceback" not in plain.stderr
    debug = run_python("-m", "annzoo.cli", "--debug", "info", "no_such_model")
    assert debug.returncode != 0
    assert "Traceback (most recent call last)" in debug.stderr
    assert "UnknownNameError" in debug.stderr, debug.stderr[-2000:]
