"""TensorFlow process settings, applied before TensorFlow starts its runtime.

The hub runs several workers on a small shared CPU, so each worker takes the
thread counts the hub gives it (TF_NUM_INTRAOP_THREADS / TF_NUM_INTEROP_THREADS)
instead of one thread pool per core. Import this module before `tensorflow`.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402 - the log level must be set first


def thread_counts(environ: dict[str, str] | None = None) -> tuple[int, int]:
    """(intra-op, inter-op) threads from the environment, 2 and 1 by default."""
    environ = os.environ if environ is None else environ
    return int(environ.get("TF_NUM_INTRAOP_THREADS") or 2), int(environ.get("TF_NUM_INTEROP_THREADS") or 1)


def configure() -> tuple[int, int]:
    """Set the thread pools once; later calls (runtime already started) are no-ops."""
    intra, inter = thread_counts()
    try:
        tf.config.threading.set_intra_op_parallelism_threads(intra)
        tf.config.threading.set_inter_op_parallelism_threads(inter)
    except RuntimeError:
        pass  # TensorFlow already ran an op in this process (tests, notebooks)
    return intra, inter
