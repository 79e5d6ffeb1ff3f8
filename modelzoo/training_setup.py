"""What every training script of the shipped models shares, and nothing model-specific: the
deterministic TensorFlow setup, where Keras weights go, and the provenance of an exported file.

`modelzoo.train` (the classifiers) and `modelzoo.srnet` (the geometry network) both use it, so
neither needs the other (nor `modelzoo.shipped`, which loads what they export).
"""

from __future__ import annotations

import datetime
import os
import platform
from pathlib import Path

import numpy as np

DEFAULT_KERAS_DIR = Path("/tmp/lucid_ifv_train")


def setup_tensorflow(seed: int, threads: int | None):
    """Seed everything, turn on op determinism and, when `threads` is set, pin TensorFlow to
    `threads` intra-op threads (1 inter-op). Returns the ``tensorflow`` module."""
    import tensorflow as tf

    if threads:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    tf.keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()
    return tf


def provenance(path: Path) -> dict:
    """Size, date and software environment of an exported model file, for its JSON record."""
    import tensorflow as tf

    return {
        "size_bytes": Path(path).stat().st_size,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "environment": {"tensorflow": tf.__version__, "keras": tf.keras.__version__, "numpy": np.__version__,
                        "python": platform.python_version(), "cpu_count": os.cpu_count()},
    }
