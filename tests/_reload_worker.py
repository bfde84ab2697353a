"""Loads .keras files and writes predictions; driven line by line by conftest.

Each input line is ``MODEL_PATH<TAB>INPUTS_NPY<TAB>OUTPUT_NPY``; each output
line is ``ok`` or ``error: ...``. Models load with plain
``keras.saving.load_model`` and no ``custom_objects``.
"""

import sys
import traceback

import keras
import numpy as np

import annzoo  # noqa: F401  (a user imports annzoo; its layers register then)

for line in sys.stdin:
    try:
        model_path, inputs_path, output_path = line.rstrip("\n").split("\t")
        model = keras.saving.load_model(model_path)
        inputs = np.load(inputs_path)
        np.save(output_path, keras.ops.convert_to_numpy(model(inputs, training=False)))
        reply = "ok"
    except Exception as error:  # report, keep serving
        reply = "error: " + repr(error).replace("\n", " ")
        traceback.print_exc()
    print(reply, flush=True)
