"""Loads .keras files and writes predictions; driven line by line by conftest.

Each input line is ``MODEL_PATH<TAB>INPUTS_NPZ<TAB>OUTPUT_NPY`` (the archive
holds ``x``, or one array per named model input; a ``.npy`` is one array); each output
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
        if inputs_path.endswith(".npy"):
            inputs = np.load(inputs_path)
        else:
            with np.load(inputs_path) as archive:
                inputs = {key: archive[key] for key in archive.files}
            if list(inputs) == ["x"]:
                inputs = inputs["x"]
        np.save(output_path, keras.ops.convert_to_numpy(model(inputs, training=False)))
        reply = "ok"
    except Exception as error:  # report, keep serving
        reply = "error: " + repr(error).replace("\n", " ")
        traceback.print_exc()
    print(reply, flush=True)
