"""Digits CNN: a small convnet on scikit-learn's 8x8 handwritten digits.

Two 3x3 convolution stages (32 and 64 filters, batch norm, max pooling), a
128-unit dense layer with dropout, Adam, early stopping on the validation
loss and a best-model checkpoint. Runs in well under two minutes on a laptop
CPU with no download.

    python recipes/digits_cnn.py --epochs 40 --output-dir runs
"""

import sys

from annzoo.training import TrainConfig, main

RECIPE = TrainConfig(
    name="digits_cnn",
    model="cnn",
    dataset="digits",
    model_args=dict(
        filters=(32, 64),
        kernel_size=3,
        batch_norm=True,
        hidden_units=(128,),
        dropout=0.3,
    ),
    epochs=60,
    batch_size=32,
    patience=10,
)

if __name__ == "__main__":
    sys.exit(main(RECIPE, description=__doc__))
