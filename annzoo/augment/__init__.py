"""Image augmentation presets for recipes, built from Keras preprocessing layers.

A *spec* says which augmentations to apply, as data a recipe can store::

    "cifar"                                     # a preset name
    ["flip", {"name": "pad_crop", "padding": 4}]  # or a list of ops

and :func:`resolve` turns it into the normalised, JSON-serialisable list with
every parameter filled in (`annzoo.augment.specs`). The same spec can then
run in one of two places:

* on the accelerator, inside the model: :func:`in_model` returns
  ``augmentation layers -> model``, augmenting only in training
  (`annzoo.augment.per_sample`);
* in the input pipeline (CPU): :func:`pipeline_fn` for the per-sample ops
  (`annzoo.augment.pipeline`) and :func:`batch_mix_fn` for mixup/cutmix
  (`annzoo.augment.mixing`), on ``tf.data`` or numpy batches.

:func:`preview` draws a spec's effect on some images (`annzoo.augment.previews`).

Image contract: float images in [0, 1], channels last, ``(batch, height,
width, channels)``. Model code here is ``keras``/``keras.ops`` only; nothing
imports TensorFlow.
"""

from annzoo.augment.mixing import batch_mix_fn
from annzoo.augment.per_sample import in_model, layers
from annzoo.augment.pipeline import pipeline_fn
from annzoo.augment.previews import preview
from annzoo.augment.specs import MIXING_OPS, OPS, PRESETS, Spec, mixing_ops, resolve

__all__ = [
    "MIXING_OPS",
    "OPS",
    "PRESETS",
    "Spec",
    "batch_mix_fn",
    "in_model",
    "layers",
    "mixing_ops",
    "pipeline_fn",
    "preview",
    "resolve",
]
