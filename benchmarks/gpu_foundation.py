"""Foundation check on an accelerator, JAX backend, no TensorFlow.

1. ``import annzoo`` with TensorFlow absent; every preset builds, runs a
   forward pass and one training step on the device.
2. The main job (``recipes/digits_cnn.py``'s recipe) trains on the device:
   test accuracy and wall time.
3. Training throughput of annzoo's ``resnet50`` against
   ``keras.applications.ResNet50`` with the same compile settings, measured
   alternately in the same process (mixed_bfloat16, synthetic data already on
   the device), as a ratio.

    KERAS_BACKEND=jax python benchmarks/gpu_foundation.py --out OUT_DIR [--smoke]

Writes ``OUT_DIR/gpu_foundation.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _device() -> str:
    import jax

    device = jax.devices()[0]
    return f"{device.platform}:{getattr(device, 'device_kind', '?')}"


def check_presets(smoke: bool) -> dict:
    import keras
    import numpy as np

    import annzoo

    report = {}
    for name in annzoo.list_models():
        info = annzoo.model_info(name)
        shape = info.input_shape
        if smoke and shape[0] == 224:
            shape = (64, 64, 3)
        start = time.perf_counter()
        keras.utils.set_random_seed(0)
        # No network on the GPU machine: keras.applications backbones untrained.
        offline = {"weights": None} if info.family == "applications" else {}
        model = annzoo.create_model(name, input_shape=shape, **offline)
        x = np.random.default_rng(0).random((8, *shape), dtype=np.float32)
        width = info.output_shape[-1]
        y = (
            (np.arange(8) % width)
            if info.task == "multiclass"
            else (np.arange(8)[:, None] % 2).astype("float32")
        )
        loss = model.train_on_batch(x, y, return_dict=True)["loss"]
        report[name] = {
            "loss": float(loss),
            "finite": bool(np.isfinite(loss)),
            "params": model.count_params(),
            "seconds": round(time.perf_counter() - start, 2),
        }
        keras.backend.clear_session()
    return report


def main_job(smoke: bool, out: Path) -> dict:
    from annzoo.training import train

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "recipes"))
    from digits_cnn import RECIPE

    recipe = RECIPE.override(["fit.epochs=2"] if smoke else [])
    result = train(recipe, output_dir=out / "runs", verbose=2)
    return {
        "test": result.test_metrics,
        "best_epoch": result.best_epoch,
        "epochs_run": result.epochs_run,
        "wall_time_s": round(result.wall_time_s, 2),
    }


def resnet50_ratio(smoke: bool) -> dict:
    import jax
    import keras
    import numpy as np

    import annzoo

    batch, size, steps, repeats = (8, 64, 3, 2) if smoke else (256, 224, 20, 3)
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    rng = np.random.default_rng(0)
    x = jax.device_put(rng.random((batch, size, size, 3), dtype=np.float32))
    y = jax.device_put(rng.integers(0, 1000, size=(batch,)))

    class OnDevice(keras.utils.PyDataset):
        def __len__(self):
            return steps

        def __getitem__(self, index):
            return x, y

    def make(kind):
        if kind == "annzoo":
            model = annzoo.create_model(
                "resnet50", input_shape=(size, size, 3), compile=False
            )
        else:
            model = keras.applications.ResNet50(
                weights=None, input_shape=(size, size, 3), classes=1000
            )
        model.compile(
            optimizer=keras.optimizers.SGD(0.1, momentum=0.9),
            loss="sparse_categorical_crossentropy",
        )
        model.fit(OnDevice(), epochs=1, verbose=0)  # trace and compile
        return model

    models = {"annzoo": make("annzoo"), "keras_applications": make("keras")}
    rates: dict[str, list[float]] = {k: [] for k in models}
    for _ in range(repeats):  # alternate, so drift hits both alike
        for kind, model in models.items():
            start = time.perf_counter()
            model.fit(OnDevice(), epochs=1, verbose=0)
            rates[kind].append(batch * steps / (time.perf_counter() - start))
    keras.mixed_precision.set_global_policy("float32")
    median = {k: statistics.median(v) for k, v in rates.items()}
    return {
        "batch": batch,
        "image_size": size,
        "steps_per_repeat": steps,
        "images_per_s": {k: [round(r, 1) for r in v] for k, v in rates.items()},
        "median_images_per_s": {k: round(v, 1) for k, v in median.items()},
        "ratio_annzoo_over_keras_applications": round(
            median["annzoo"] / median["keras_applications"], 3
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes (CPU check)")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    tensorflow_absent = True
    try:
        import tensorflow  # noqa: F401

        tensorflow_absent = False
    except ModuleNotFoundError:
        pass
    import keras

    results = {
        "keras": keras.__version__,
        "backend": keras.backend.backend(),
        "device": _device(),
        "tensorflow_absent": tensorflow_absent,
    }
    for step, run in (
        ("presets", lambda: check_presets(args.smoke)),
        ("main_job", lambda: main_job(args.smoke, args.out)),
        ("resnet50", lambda: resnet50_ratio(args.smoke)),
    ):
        start = time.perf_counter()
        try:
            results[step] = run()
        except Exception as error:  # keep what the other steps measured
            results[step] = {"error": repr(error)}
        results[f"{step}_seconds"] = round(time.perf_counter() - start, 1)
        print(f"{step}: done in {results[f'{step}_seconds']} s", flush=True)
        (args.out / "gpu_foundation.json").write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    os.environ.setdefault("KERAS_BACKEND", "jax")
    main()
