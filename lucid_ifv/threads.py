"""Thread settings made explicit: TensorFlow's op pools and the BLAS pool NumPy/SciPy use.

Left to chance, TensorFlow sizes its pools from the core count and OpenBLAS runs its own
threads beside them; on a small shared machine timings then swing with the load. Here:

- `configure_threads(threads, inter_op=None)`: TensorFlow intra-op pool = ``threads``,
  inter-op pool = ``inter_op`` (default 1 when ``threads`` is given: the graphs here are
  chains of large ops), and the BLAS pools (OpenBLAS/MKL, through ``threadpoolctl``) =
  ``threads``. TensorFlow's pools can only be set before it runs its first operation; a
  later call that would change them raises ValueError naming that.
- ``LUCID_IFV_THREADS=N`` (environment): `configure_from_env` applies it; the CLI calls it
  at start-up (``lucid-ifv --threads N`` overrides it), and so do the benchmarks.
- `thread_settings()`: what is in effect, for benchmark and experiment records.
"""

from __future__ import annotations

import os

ENV_VAR = "LUCID_IFV_THREADS"


def _check_count(value, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{what} must be an integer >= 1, got {value!r}")
    return value


def configure_threads(threads: int, inter_op: int | None = None) -> dict:
    """Set TensorFlow's intra-op (``threads``) and inter-op (``inter_op``, default 1) pools and
    the BLAS pools (``threads``). Returns `thread_settings()`."""
    import tensorflow as tf
    from threadpoolctl import threadpool_limits

    threads = _check_count(threads, "threads")
    inter_op = _check_count(1 if inter_op is None else inter_op, "inter_op")
    wanted = {"intra_op": threads, "inter_op": inter_op}
    current = {"intra_op": tf.config.threading.get_intra_op_parallelism_threads(),
               "inter_op": tf.config.threading.get_inter_op_parallelism_threads()}
    if current != wanted:
        try:
            tf.config.threading.set_intra_op_parallelism_threads(threads)
            tf.config.threading.set_inter_op_parallelism_threads(inter_op)
        except RuntimeError:
            raise ValueError(
                f"TensorFlow's thread pools are fixed once it has run an operation (now {current}); "
                f"call configure_threads({threads}) or set {ENV_VAR} before any TensorFlow work"
            ) from None
    threadpool_limits(threads)  # stays in effect (not used as a context manager)
    return thread_settings()


def configure_from_env() -> dict | None:
    """Apply ``LUCID_IFV_THREADS`` if it is set (ValueError naming it when it is not an integer
    >= 1); None when it is not set."""
    value = os.environ.get(ENV_VAR)
    if value is None or value == "":
        return None
    try:
        threads = int(value)
    except ValueError:
        raise ValueError(f"{ENV_VAR} must be an integer >= 1, got {value!r}") from None
    if threads < 1:
        raise ValueError(f"{ENV_VAR} must be an integer >= 1, got {value!r}")
    return configure_threads(threads)


def thread_settings() -> dict:
    """TensorFlow's pool sizes (0: TensorFlow's own choice), the BLAS libraries with their
    thread counts, ``os.cpu_count()`` and the thread-related environment variables."""
    import tensorflow as tf
    from threadpoolctl import threadpool_info

    env = {k: os.environ[k] for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                                      "OPENBLAS_CORETYPE", ENV_VAR) if k in os.environ}
    return {
        "tf_intra_op": tf.config.threading.get_intra_op_parallelism_threads(),
        "tf_inter_op": tf.config.threading.get_inter_op_parallelism_threads(),
        "blas": [{"library": i.get("internal_api"), "threads": i.get("num_threads")} for i in threadpool_info()
                 if i.get("user_api") == "blas"],
        "cpu_count": os.cpu_count(),
        "env": env,
    }
