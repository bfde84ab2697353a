"""Tuning overhead at a recipe's own size: a search as users run one.

The ``tuning`` benchmark's search is about the smallest there is (digits
MLPs, under a second of training per trial), so each trial's new network
costs more to trace and compile than to train. This one measures the same
share, with the same timers and the same parts, on a search of the size the
recipes are written for: a 20-trial random search (seed 0) of the
``surnames_char_rnn`` recipe's default space (its GRU of 128 units kept, as
for every preset: dropout, optimizer, learning rate and batch size) on the
embedded surnames (7,168 training names, 1,536 for validation), with the
recipe's own epochs (60 at most) and early stopping (patience 8).

One search, no warm-up and no plain keras-tuner beside it: the share is a
ratio within the one search, and a second search of this size would double
a run of about ten minutes. ``--quick`` runs one trial of one epoch on 256
names (a harness check).

Target: at most 10% of the wall time outside training steps.
"""

from __future__ import annotations

from bench import core, tuning, zoo

RECIPE = "surnames_char_rnn"
TRIALS = 20


def run(settings: core.Settings) -> core.Section:
    quick = settings.quick
    trials = 1 if quick else TRIALS
    epochs = 1 if quick else None  # None: the recipe's own
    recipe = zoo.recipe(RECIPE, ["data.limit=256"] if quick else [])
    most = epochs or int(recipe.fit["epochs"])
    patience = int(recipe.callbacks["early_stopping"]["patience"])
    core.say(
        f"tuning_recipe: {trials}-trial random search of {RECIPE}, at most {most} "
        f"epochs per trial (early stopping, patience {patience}); one search"
    )
    result, totals, wall = tuning._annzoo_search(
        recipe, trials, epochs, settings.work_dir / "tuning_recipe"
    )
    split = tuning._split_time(totals, wall)
    parts = tuning.breakdown(result, totals, split)
    rows, outside, growth = parts["rows"], parts["outside"], parts["growth"]
    step_s = split["step_s"]
    count = max(len(rows), 1)
    trained = [float(t["train_s"]) for t in rows]
    core.say(
        f"tuning_recipe: {len(rows)} trials in {wall:.1f} s, {outside:.1%} "
        "outside training steps"
    )
    length = (
        "1 epoch (quick mode)" if quick else f"the recipe's own epochs ({most} at most)"
    )
    body = "\n".join(
        [
            f"A {trials}-trial random search (`annzoo.tune`, seed 0) of the "
            f"`{RECIPE}` recipe's default space on the embedded surnames, with "
            f"{length} and early stopping (patience {patience}): the size the "
            "recipes are written for, where "
            "the `tuning` benchmark above is the smallest search there is. "
            f"{tuning._feeding()} The timers and parts are the `tuning` "
            "benchmark's; one search, no warm-up (the share is a ratio within it). "
            "Shares of the search's wall time:",
            "",
            core.table(
                ["part of the search", "share of wall time"],
                [[k, f"{v:.1%}"] for k, v in parts["shares"].items()],
            ),
            "",
            f"Outside training steps: **{outside:.1%}**; {len(rows)} trials "
            f"completed in {wall:.1f} s, {parts['epochs']:,} epochs "
            f"({parts['epochs'] / count:.1f} per trial), {totals['steps']:,} "
            f"steps at {step_s * 1e3:.3f} ms in {totals['calls']:,} calls; a "
            f"trial's epochs took {min(trained, default=0):.1f} to "
            f"{max(trained, default=0):.1f} s. Per trial, everything but the "
            f"training steps took {parts['per_trial_overhead']:.2f} s "
            f"(tracing {split['tracing_s'] / max(totals['fits'], 1):.2f} s of "
            f"it). {growth['text']}",
        ]
    )
    data = {
        "recipe": RECIPE,
        "trials": trials,
        "completed": len(rows),
        "epochs_max": most,
        "epochs": parts["epochs"],
        "wall_s": round(wall, 2),
        "share_outside_steps": round(outside, 4),
        "shares": {k: round(v, 4) for k, v in parts["shares"].items()},
        "steps": totals["steps"],
        "calls": totals["calls"],
        "fits": totals["fits"],
        "seconds_per_step": round(step_s, 6) if step_s else None,
        "per_trial_outside_s": round(parts["per_trial_overhead"], 4),
        "growth": {k: v for k, v in growth.items() if k != "text"},
        "best_score": result.best_score,
    }
    checks = [
        core.Check(
            f"tuning: share of search wall time outside training steps, "
            f"{RECIPE} recipe search",
            outside, f"<= {tuning.TARGET}", outside <= tuning.TARGET,
        )
    ]  # fmt: skip
    return core.Section(
        "tuning_recipe",
        "Tuning overhead at a recipe's own size",
        body,
        data,
        checks,
    )
