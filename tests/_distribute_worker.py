"""Trains one small recipe several ways in this process and compares weights.

Usage: python tests/_distribute_worker.py MODE RECIPE.json OUTPUT_DIR
  MODE "mirrored": TensorFlow, MirroredStrategy over 2 logical CPU devices,
                   against one device with the same global batch.
  MODE "jax":      JAX with 2 host devices (XLA_FLAGS set by the caller),
                   DataParallel and ModelParallel against one device.
Prints one JSON line: {"<strategy>": max abs weight difference, ...}.
"""

import json
import sys
import time
from pathlib import Path

mode, recipe_path, output_dir = sys.argv[1:4]
if mode == "mirrored":
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration()] * 2
    )

# Keras and annzoo after the logical devices exist (TensorFlow fixes them on
# first use).
import keras  # noqa: E402
import numpy as np  # noqa: E402

from annzoo.training import train  # noqa: E402

base = json.loads(Path(recipe_path).read_text())


WALL = {}


def weights(strategy, batch_size, **extra):
    started = time.perf_counter()
    recipe = json.loads(json.dumps(base))
    recipe["name"] = f"{base['name']}_{strategy}"
    recipe["data"]["batch_size"] = batch_size
    recipe["distribute"] = {"strategy": strategy, **extra}
    result = train(recipe, output_dir=output_dir, verbose=0)
    saved = json.loads((result.run_dir / "recipe.json").read_text())["distribute"]
    model = keras.saving.load_model(result.run_dir / "final.keras")
    WALL[strategy] = round(time.perf_counter() - started, 2)
    return saved, [np.asarray(w) for w in model.weights]


def gap(a, b):
    return max(float(np.abs(x - y).max()) for x, y in zip(a, b, strict=True))


per_replica = base["data"]["batch_size"]
_, single = weights("none", 2 * per_replica)
report = {}
strategies = (
    [("mirrored", {})]
    if mode == "mirrored"
    else [("data-parallel", {}), ("model-parallel", {"model_axis": 2})]
)
for strategy, extra in strategies:
    # model-parallel keeps one data replica: the whole batch on the 2 devices.
    batch = 2 * per_replica if strategy == "model-parallel" else per_replica
    saved, spread = weights(strategy, batch, **extra)
    report[strategy] = {"gap": gap(single, spread), "saved": saved}
report["wall_s"] = WALL
print(json.dumps(report))
