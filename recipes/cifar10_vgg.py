"""CIFAR-10 VGG: a VGG-style convnet with batch norm and dropout.

Three stages of two 3x3 convolutions (64, 128, 256 filters) with batch norm
and max pooling, a 512-unit dense layer with dropout 0.5, pad-and-crop and
flip augmentation, Adam with learning-rate reduction on plateaus. Downloads
cifar10 through TensorFlow Datasets on first use (about 160 MB).

    python recipes/cifar10_vgg.py --set model.dropout=0.3
"""

import sys

from annzoo.cli import recipe_main
from annzoo.training import Recipe

RECIPE = Recipe(
    name="cifar10_vgg",
    description=__doc__,
    model=dict(
        name="cnn",
        filters=[64, 128, 256],
        depth=2,
        batch_norm=True,
        hidden_units=[512],
        dropout=0.5,
    ),
    data=dict(dataset="tfds:cifar10", batch_size=128),
    augment=dict(ops="cifar"),
    compile=dict(optimizer="adam", learning_rate=0.001),
    fit=dict(epochs=100),
    callbacks=dict(
        monitor="val_accuracy",
        early_stopping=dict(patience=12),
        reduce_lr=dict(factor=0.5, patience=5),
    ),
)

if __name__ == "__main__":
    sys.exit(recipe_main(RECIPE))
