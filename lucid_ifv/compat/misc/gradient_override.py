"""``lucid.misc.gradient_override``: `gradient_override_map` with Python gradient functions."""

from __future__ import annotations

import contextlib

import tensorflow as tf


@contextlib.contextmanager
def gradient_override_map(override_dict):
    """Inside the block, ops of the given types created in the current graph (a TF1 graph or
    the graph a `tf.function` is being traced into) get the given gradient functions
    ``fn(op, grad)``, as Lucid's. Symbolic gradients (``tf.gradients``, what TF1 optimizers
    use, and the gradients of a traced function called under a tape) honour it; a
    ``GradientTape`` recording the ops directly does not, and eager ops have no graph.
    (`lucid_ifv.redirected_relu` uses the same mechanism for frozen graphs.)"""
    names = {}
    for op_type, fn in override_dict.items():
        name = f"lucid_ifv_override_{op_type}_{fn.__module__}.{fn.__qualname__}_{id(fn)}"
        with contextlib.suppress(KeyError):  # registered by an earlier block
            tf.RegisterGradient(name)(fn)
        names[op_type] = name
    with tf.compat.v1.get_default_graph().gradient_override_map(names):
        yield
