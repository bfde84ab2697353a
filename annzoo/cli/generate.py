"""``annzoo generate``: images or text from a generative run's model.

Every argument, the run directory and the output's suffix are checked from
plain files (``recipe.json``, ``vocabulary.json``) before the backend starts;
then the run's model is loaded and `annzoo.generate` makes the samples:
a PNG grid of images, or texts one per line (to stdout without ``--output``).
"""

from __future__ import annotations

import argparse
import json
import math
import secrets
import sys
from pathlib import Path
from typing import Any

import numpy as np

from annzoo import registry
from annzoo._checks import check_output_path
from annzoo.cli import _startup
from annzoo.errors import AnnzooError, CheckpointError
from annzoo.text import Vocabulary

__all__ = ["OUTPUTS", "add_commands"]

# What a run of each generating task writes, and the modes it takes: the
# table of annzoo.generation.dispatch.GENERATORS, read here without Keras so
# that every usage error starts no backend (tests/test_generate.py checks that
# the two agree).
OUTPUTS: dict[str, tuple[str, tuple[str, ...]]] = {
    "adversarial": ("images", ("sample",)),
    "bernoulli": ("images", ("sample", "reconstruct", "interpolate")),
    "reconstruction": ("images", ("sample", "reconstruct", "interpolate")),
    "generation": ("text", ("sample",)),
}
SUFFIXES = {"images": ".png", "text": ".txt"}
# Options of runs that write text only, with their command-line names.
TEXT_OPTIONS = {
    "prompt": "--prompt",
    "temperature": "--temperature",
    "top_k": "--top-k",
    "top_p": "--top-p",
    "max_length": "--max-length",
}


def add_commands(commands) -> None:
    """Adds the ``generate`` subcommand."""
    parser = commands.add_parser(
        "generate",
        help="images or text from a generative run's model",
        description=(
            "Images (a GAN's or a VAE's) or texts (a language model's) from the "
            "model of RUN_DIR: best.keras, or final.keras where the run keeps no "
            "best model (a GAN run such as digits_gan keeps final.keras only). "
            "Images go to a PNG grid, texts to a .txt file one per line, or to "
            "stdout without --output. The same --seed gives the same samples."
        ),
    )
    parser.add_argument("run_dir")
    parser.add_argument(
        "--num", type=int, help="how many samples (default 16; interpolation: 8)"
    )
    parser.add_argument(
        "--label",
        help=(
            "the class of every sample, for a model conditioned on classes: an "
            "id, or a class name of the run's vocabulary.json (a language for "
            "surnames); default: the classes in turn"
        ),
    )
    parser.add_argument("--prompt", help="the beginning of every text")
    parser.add_argument(
        "--temperature", type=float, help="> 0; 1 samples the model (text)"
    )
    parser.add_argument("--top-k", type=int, help="keep the k likeliest tokens")
    parser.add_argument(
        "--top-p", type=float, help="keep the likeliest tokens up to p, in (0, 1]"
    )
    parser.add_argument("--max-length", type=int, help="longest text, in tokens")
    parser.add_argument(
        "--seed", type=int, help="seed of the draws (default: a new one, printed)"
    )
    parser.add_argument(
        "--mode",
        choices=("sample", "reconstruct", "interpolate"),
        default="sample",
        help="autoencoder runs: reconstruct --inputs, or interpolate between two",
    )
    parser.add_argument(
        "--inputs",
        nargs="+",
        help="images for --mode reconstruct or interpolate (.npy, .npz, .csv or "
        "image files, read as `annzoo predict` reads them)",
    )
    parser.add_argument(
        "--which",
        choices=("best", "final"),
        help="best.keras or final.keras (default: best.keras if the run has it)",
    )
    parser.add_argument(
        "--output",
        help=(
            "a .png for images (default RUN_DIR/generated/samples.png), a .txt "
            "for texts (default: stdout)"
        ),
    )
    parser.set_defaults(run=_generate)


def _option(name: str, value: Any) -> str:
    return f"{TEXT_OPTIONS.get(name, '--' + name.replace('_', '-'))} {value}"


def _check_numbers(args: argparse.Namespace) -> None:
    if args.num is not None and args.num < 1:
        raise AnnzooError(
            f"`--num` must be an integer >= 1. Received: {_option('num', args.num)}"
        )
    temperature = args.temperature
    if temperature is not None and not 0.0 < temperature < math.inf:
        raise AnnzooError(
            "`--temperature` must be a finite number > 0 (1 samples the model's "
            f"distribution, lower is greedier). Received: --temperature {temperature}"
        )
    if args.top_p is not None and not 0.0 < args.top_p <= 1.0:
        raise AnnzooError(
            f"`--top-p` must be a number in (0, 1]. Received: --top-p {args.top_p}"
        )
    for name in ("top_k", "max_length"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise AnnzooError(
                f"`{TEXT_OPTIONS[name]}` must be an integer >= 1. Received: "
                f"{_option(name, value)}"
            )
    if args.seed is not None and args.seed < 0:
        raise AnnzooError(
            f"`--seed` must be an integer >= 0. Received: --seed {args.seed}"
        )


def _read_json(path: Path, what: str) -> dict:
    try:
        parsed = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise CheckpointError(
            f"{str(path)!r} must be the {what} annzoo wrote, a JSON object. "
            f"Received: a file that does not read as one ({type(error).__name__}); "
            "the run directory is damaged."
        ) from None
    if not isinstance(parsed, dict):
        raise CheckpointError(
            f"{str(path)!r} must be the {what} annzoo wrote, a JSON object. "
            f"Received: a JSON {type(parsed).__name__}."
        )
    return parsed


def _run_task(run_dir: Path) -> tuple[str, str]:
    """``(model name, task)`` of the run, from its recipe.json."""
    path = run_dir / "recipe.json"
    if not run_dir.is_dir() or not path.is_file():
        raise AnnzooError(
            "`RUN_DIR` must be an annzoo run directory (with recipe.json and "
            f"best.keras or final.keras). Received: {str(run_dir)!r}"
        )
    model = _read_json(path, "recipe").get("model")
    name = model.get("name") if isinstance(model, dict) else None
    if not isinstance(name, str):
        raise CheckpointError(
            f"{str(path)!r} must name the run's model under model.name. "
            f"Received: model={model!r:.80}"
        )
    task = model.get("task") or registry.plain_info(name).task
    return name, task


def _model_path(run_dir: Path, which: str | None) -> Path:
    names = [f"{which}.keras"] if which else ["best.keras", "final.keras"]
    for name in names:
        if (run_dir / name).is_file():
            return run_dir / name
    raise AnnzooError(
        f"`RUN_DIR` must hold the run's model, {' or '.join(names)} (a run that "
        f"has finished training). Received: {str(run_dir)!r}, which has none"
    )


def _vocabulary(run_dir: Path) -> dict:
    path = run_dir / "vocabulary.json"
    if not path.is_file():
        return {}
    saved = _read_json(path, "vocabulary")
    if "inputs" in saved and not isinstance(saved["inputs"], list):
        raise CheckpointError(
            f"{str(path)!r} must list the input tokens under 'inputs'. Received: "
            f"inputs={saved['inputs']!r:.80}"
        )
    return saved


def _check_prompt(prompt: str, saved: dict, run_dir: Path) -> None:
    if not saved.get("inputs"):
        raise AnnzooError(
            "`RUN_DIR` must hold the language model's vocabulary.json, with its "
            f"'inputs' tokens. Received: {str(run_dir)!r}, which has none"
        )
    vocabulary = Vocabulary(saved["inputs"])
    characters = saved.get("tokenizer", "characters") == "characters"
    tokens = list(prompt) if characters else prompt.split()
    unknown = sorted({t for t in tokens if t not in vocabulary or t.startswith("<")})
    if unknown:
        what = "characters" if characters else "words"
        raise AnnzooError(
            f"`--prompt` must use only {what} of the run's vocabulary; "
            f"{', '.join(map(repr, unknown))} {'is' if len(unknown) == 1 else 'are'} "
            f"not in it. Received: --prompt {prompt!r}"
        )


def _label_id(label: str, names: list | None) -> int | str:
    """``--label`` as a class id (or as given, for a name checked later)."""
    text = label.strip()
    if text.lstrip("-").isdigit():
        return int(text)
    if names and label in names:
        return names.index(label)
    listed = f"one of {', '.join(map(str, names))}" if names else "an integer id"
    raise AnnzooError(
        f"`--label` must be a class id or a class name of the run ({listed}). "
        f"Received: --label {label!r}"
    )


def _check_plain(args: argparse.Namespace) -> dict[str, Any]:
    """Everything that can be refused without the backend; what the run is."""
    _check_numbers(args)
    run_dir = Path(args.run_dir)
    name, task = _run_task(run_dir)
    if task not in OUTPUTS:
        tasks = ", ".join(map(repr, OUTPUTS))
        raise AnnzooError(
            f"`RUN_DIR` must be a run of a generative model (tasks {tasks}). "
            f"Received: {str(run_dir)!r}, a {name!r} run of task {task!r}"
        )
    output_kind, modes = OUTPUTS[task]
    if args.mode not in modes:
        raise AnnzooError(
            f"`--mode` must be {' or '.join(map(repr, modes))} for a {task!r} run "
            f"({name!r}). Received: --mode {args.mode}"
        )
    if (args.inputs is not None) != (args.mode != "sample"):
        raise AnnzooError(
            "`--inputs` must be given with --mode reconstruct or interpolate, and "
            f"only then. Received: --mode {args.mode} with "
            f"{len(args.inputs or [])} input files"
        )
    if output_kind != "text":
        for option, flag in TEXT_OPTIONS.items():
            if getattr(args, option) is not None:
                raise AnnzooError(
                    f"`{flag}` is an option of runs that write text; {name!r} "
                    f"(task {task!r}) generates images. Received: "
                    f"{_option(option, getattr(args, option))}"
                )
    suffix = SUFFIXES[output_kind]
    output = args.output
    if output is None and output_kind == "images":
        output = str(run_dir / "generated" / "samples.png")
    if output is not None and Path(output).suffix.lower() != suffix:
        raise AnnzooError(
            f"`--output` must be a {suffix} file for a run of task {task!r} ({name!r} "
            f"generates {output_kind}). Received: --output {output}"
        )
    if output is not None:
        check_output_path("--output", output, directory=False)
    saved = _vocabulary(run_dir)
    if output_kind == "text":
        _check_prompt(args.prompt or "", saved, run_dir)
    label = None if args.label is None else _label_id(args.label, saved.get("classes"))
    return dict(
        run_dir=run_dir,
        name=name,
        task=task,
        output_kind=output_kind,
        output=output,
        model_path=_model_path(run_dir, args.which),
        saved=saved,
        label=label,
    )


def _check_label(label: int | None, classes: int | None, run: dict, mode: str) -> None:
    if label is None:
        if classes is not None and mode != "sample":
            raise AnnzooError(
                f"`--label` must be given for --mode {mode}: the run's model "
                f"({run['name']!r}) is conditioned on {classes} classes and the "
                "inputs' class is not known. Received: no --label"
            )
        return
    if classes is None:
        raise AnnzooError(
            f"`--label` must not be given: the run's model ({run['name']!r}) is "
            f"not conditioned on classes. Received: --label {label}"
        )
    if not 0 <= label < classes:
        names = run["saved"].get("classes")
        also = f" or one of the names {', '.join(map(str, names))}" if names else ""
        raise AnnzooError(
            f"`--label` must be a class id in [0, {classes}){also}. "
            f"Received: --label {label}"
        )


def _generate(args: argparse.Namespace) -> None:
    run = _check_plain(args)
    seed = args.seed
    if seed is None:  # a new one, printed so that the samples can be made again
        seed = secrets.randbelow(2**31)
    _startup.quiet_backend(args)
    # Deferred, as in every command that loads a model: see annzoo.cli.recipes.
    from annzoo import io as aio
    from annzoo.generation.dispatch import conditional_classes, generate
    from annzoo.predict import load_inputs

    model = aio.load_model(run["model_path"])
    classes = conditional_classes(model)
    _check_label(run["label"], classes, run, args.mode)
    inputs = None
    if args.inputs:
        inputs = load_inputs(args.inputs, tuple(model.inputs[0].shape[1:]))
    kind = run["output_kind"]
    vocabulary = Vocabulary(run["saved"]["inputs"]) if kind == "text" else None
    labels = run["label"]
    if labels is None and classes is not None and args.mode == "sample":
        labels = np.arange(args.num or 16) % classes
    samples = generate(
        model,
        args.num,
        mode=args.mode,
        labels=labels,
        seed=seed,
        inputs=inputs,
        **(
            dict(
                vocabulary=vocabulary,
                prompt=args.prompt,
                temperature=args.temperature,
                top_k=args.top_k,
                top_p=args.top_p,
                max_length=args.max_length,
            )
            if kind == "text"
            else {}
        ),
    )
    output = run["output"]
    if kind == "images":
        _draw(samples, output, args, run, labels, classes, inputs, seed)
    else:
        # One sample per line: a line break inside one would split it.
        text = "".join(sample.replace("\n", " ") + "\n" for sample in samples)
        if output is None:
            sys.stdout.write(text)
        else:
            aio.write_text(output, text)
    where = output if output is not None else "stdout"
    # Only sampling draws anything: a reconstruction or a path has no seed.
    drawn = f", seed {seed}" if args.mode == "sample" else ""
    print(
        f"annzoo generate: {len(samples)} {kind} from {run['model_path']} "
        f"(task {run['task']!r}, mode {args.mode}{drawn}) -> {where}",
        file=sys.stderr,
    )


def _draw(samples, output, args, run, labels, classes, inputs, seed) -> None:
    """The PNG: a grid of samples (captioned with their class), the inputs
    above their reconstructions, or an interpolation's path in one row."""
    from annzoo import plots_generative  # deferred with the backend

    name = run["name"]
    if args.mode == "reconstruct":
        plots_generative.plot_reconstructions(
            inputs, samples, output, title=f"{name}: inputs and reconstructions"
        )
        return
    if args.mode == "interpolate":
        plots_generative.plot_samples(
            samples,
            output,
            columns=len(samples),
            title=f"{name}: from the first input's code to the second's",
        )
        return
    captions = None
    if classes is not None:
        names = run["saved"].get("classes")
        ids = np.broadcast_to(np.asarray(labels), (len(samples),))
        named = bool(names) and len(names) == classes
        captions = [str(names[i]) if named else str(i) for i in ids]
    plots_generative.plot_samples(
        samples, output, captions=captions, title=f"{name}: samples, seed {seed}"
    )
