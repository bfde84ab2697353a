"""Digits transfer: pretrained on digits 0-4, can it learn 5-9 from a few examples?

The pretraining is the recipe annzoo/recipes/digits_transfer.yaml (installed
with annzoo; `annzoo train digits_transfer` runs it), whose description
says what this script adds: the few-shot comparison of fine-tuning against
training from scratch on digits 5-9.

    python recipes/digits_transfer.py [--seeds 5] [--sizes 10 50] [--output-dir runs]
    python recipes/digits_transfer.py train [options of annzoo train]
"""

import argparse
import json
import statistics
import sys
from pathlib import Path

from annzoo.cli import recipe_main, script_recipe

RECIPE = script_recipe("digits_transfer", __name__)  # starts the backend first
from annzoo.training import Recipe, train  # noqa: E402

CNN = RECIPE.model  # the digits_cnn network
FIRST = RECIPE.data["options"]["classes"]  # digits 0-4
SECOND = [c for c in range(10) if c not in FIRST]


def few_shot(per_class: int, seed: int, source: str | None) -> Recipe:
    """The few-shot run on digits 5-9: fine-tuned from ``source``, or from scratch."""
    kind = "finetuned" if source else "scratch"
    return Recipe(
        name=f"digits_{kind}_{per_class}_seed{seed}",
        model=CNN,
        data=dict(
            dataset="digits",
            batch_size=16,
            options=dict(classes=SECOND, per_class=per_class),
        ),
        fit=dict(epochs=60, seed=seed),
        callbacks=dict(early_stopping=dict(patience=10), tensorboard=False),
        # The settings recipes/README.md's table was measured with (the head
        # at the recipe's rate), not the fine-tuning defaults.
        finetune=dict(
            source=source,
            head_epochs=10,
            head_learning_rate_scale=1.0,
            learning_rate_scale=0.1,
        )
        if source
        else {},
    )


def compare(output_dir="runs", seeds=5, sizes=(10, 50), overrides=(), verbose=0):
    """Pretrains, then fine-tunes and trains from scratch per seed and size."""
    from annzoo import io as aio
    from annzoo import plots

    output_dir = Path(output_dir)
    folder = output_dir / "digits_transfer_comparison"
    pretrained = train(RECIPE.override(overrides), output_dir=folder, verbose=verbose)
    source = str(pretrained.run_dir / "best.keras")
    accuracy = {"fine-tuned": {}, "from scratch": {}}
    for per_class in sizes:
        for seed in range(seeds):
            for label, start in (("fine-tuned", source), ("from scratch", None)):
                recipe = few_shot(per_class, seed, start).override(overrides)
                result = train(recipe, output_dir=folder, verbose=verbose)
                scores = accuracy[label].setdefault(per_class, [])
                scores.append(result.test_metrics["accuracy"])
                print(f"{label:>12}, {per_class} per class, seed {seed}: "
                      f"{scores[-1]:.4f}", flush=True)  # fmt: skip
    lines = [
        "| examples per class | fine-tuned | from scratch |",
        "| --- | --- | --- |",
    ]
    summary = {}
    for per_class in sizes:
        cells = []
        for label in ("fine-tuned", "from scratch"):
            values = accuracy[label][per_class]
            mean = statistics.fmean(values)
            spread = statistics.stdev(values) if len(values) > 1 else 0.0
            summary.setdefault(label, {})[per_class] = {
                "mean": mean, "std": spread, "runs": values}  # fmt: skip
            cells.append(f"{mean:.4f} +- {spread:.4f}")
        lines.append(f"| {per_class} | {cells[0]} | {cells[1]} |")
    table = "\n".join(lines) + "\n"
    aio.write_text(folder / "transfer.md", table)
    aio.write_json(folder / "transfer.json", {
        "pretrained": {"test": pretrained.test_metrics, "run": str(pretrained.run_dir)},
        "seeds": seeds, "accuracy": summary})  # fmt: skip
    plots.plot_spread(
        {label: accuracy[label] for label in accuracy},
        folder / "transfer.png",
        xlabel="labelled examples per class (digits 5-9)",
        ylabel="test accuracy",
        title=f"Transfer from digits 0-4, mean and std over {seeds} seeds",
    )
    print(table)
    return summary


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "train":  # the pretraining alone
        sys.exit(recipe_main(RECIPE, sys.argv[2:]))
    parser = argparse.ArgumentParser(
        description=RECIPE.description,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10, 50])
    parser.add_argument("--output-dir", default="runs")
    parser.add_argument("--set", action="append", default=[])
    args = parser.parse_args()
    result = compare(args.output_dir, args.seeds, args.sizes, args.set)
    print(json.dumps(result, indent=1)[:2000])
