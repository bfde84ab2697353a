"""CIFAR-10 ResNet-20, trained as in He et al. 2016 (Sec. 4.2).

45k/5k train/validation split, 4-pixel pad-and-crop plus horizontal flips,
SGD with momentum 0.9, weight decay 1e-4, batch 128, learning rate 0.1
divided by 10 at 32k and 48k iterations and stopped at 64k (epochs 91, 136
and 182 at 352 steps per epoch). The paper reports 8.75% test error.
Downloads cifar10 through TensorFlow Datasets on first use (about 160 MB).

    python recipes/cifar10_resnet20.py --set model.name=resnet56
"""

import sys

from annzoo.cli import recipe_main
from annzoo.training import Recipe

RECIPE = Recipe(
    name="cifar10_resnet20",
    description=__doc__,
    model=dict(name="resnet20"),
    data=dict(dataset="tfds:cifar10", batch_size=128),
    augment=dict(ops="cifar"),
    compile=dict(
        optimizer="momentum",
        learning_rate=0.1,
        weight_decay=1e-4,
        schedule=dict(boundaries=[91, 136], values=[0.1, 0.01, 0.001]),
    ),
    fit=dict(epochs=182),
    callbacks=dict(monitor="val_accuracy", early_stopping=None),
)

if __name__ == "__main__":
    sys.exit(recipe_main(RECIPE))
