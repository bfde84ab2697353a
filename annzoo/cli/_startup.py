"""The backend's start, quiet unless ``-v`` or ``--debug`` asks for its lines.

Importing TensorFlow (``import keras`` on its backend) logs through absl
before ``absl::InitializeLog()`` is called, where ``TF_CPP_MIN_LOG_LEVEL``
does not reach: the "All log messages before absl::InitializeLog()" warning,
a oneDNN notice and the CUDA stub's "Could not find cuda drivers", once per
TensorFlow library loaded. Later, on a machine without a GPU, TensorFlow's
own logging reports an error-looking "failed call to cuInit", which
``TF_CPP_MIN_LOG_LEVEL=3`` silences (``2`` does not: it is an error line).

`quiet_backend` sets that level (over any lower one the environment sets)
and imports Keras with the process's standard error (file descriptor 2, where
the C++ side writes) sent to a temporary file, then writes back every line of
it that is not one of those start-up lines, so that a real warning or an
import error still shows.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
import tempfile
from collections.abc import Iterator

__all__ = ["quiet_backend", "STARTUP_NOISE"]

# absl's pre-initialization warning, absl-format INFO lines ("I0000 00:00:...
# port.cc:153] oneDNN custom operations are on..."), and the continuation of
# the CPU-feature notice TensorFlow prints at TF_CPP_MIN_LOG_LEVEL=0.
STARTUP_NOISE = re.compile(
    r"^(WARNING: All log messages before absl::InitializeLog\(\) is called"
    r"|I\d{4} [\d:.]+ +\d+ \S+\.cc:\d+\]"
    r"|To enable the following instructions: )"
)


def verbose(args) -> bool:
    """Whether the parsed arguments ask for the backend's own lines."""
    return bool(getattr(args, "verbose", False) or getattr(args, "debug", False))


@contextlib.contextmanager
def _filtered_stderr() -> Iterator[None]:
    sys.stderr.flush()
    try:
        saved = os.dup(2)
    except OSError:  # no file descriptor 2 (a closed or unusual stderr)
        yield
        return
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            text = captured.read().decode("utf-8", errors="replace")
            kept = [
                line
                for line in text.splitlines(keepends=True)
                if not STARTUP_NOISE.match(line)
            ]
            if kept:
                sys.stderr.write("".join(kept))
                sys.stderr.flush()


def quiet_backend(args=None) -> None:
    """Starts Keras and its backend without their start-up lines.

    Does nothing when ``args`` asks for them (``-v``, ``--debug``) or when
    Keras is already imported. Call it before anything imports Keras.
    """
    if args is not None and verbose(args):
        return
    # Read by TensorFlow when it is imported: errors (cuInit) and below silenced,
    # whatever lower level the environment sets (2 lets cuInit through); -v
    # leaves the environment's level alone.
    if os.environ.get("TF_CPP_MIN_LOG_LEVEL", "") not in ("3", "4"):
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    if "keras" in sys.modules:
        return
    with _filtered_stderr():
        import keras  # noqa: F401  (deferred: this is the backend's start)
    if "tensorflow" in sys.modules:
        # TensorFlow's Python warnings (a tf.function retraced for each trial
        # of a search, each new model) are for -v: they print between annzoo's
        # lines and need no action from a user.
        logging.getLogger("tensorflow").setLevel(logging.ERROR)
