"""Swap TensorFlow's registered gradient functions while a graph is traced.

TensorFlow looks a gradient function up in its registry (by op type) when a backward graph
is *built*: by ``tape.gradient``, and for a graph function such as a frozen graph when its
forward pass first runs under a tape. `overridden_gradients({op type: fn})` puts ``fn`` in
place for the block and restores TensorFlow's own after, also on errors; one thread at a
time (the registry is global). The Jacobian's vectorizable gradients
(`lucid_ifv.ifv.lean_gradients`) and the render step's convolution gradient
(`lucid_ifv.conv_gradient`) are installed this way.

A frozen graph keeps the backward function it built first. `active_key()` names the
overrides in effect, so that `modelzoo.graph.GraphModel` can keep one graph function per set
of overrides (each then builds its backward function under its own).
"""

from __future__ import annotations

import contextlib
import contextvars
import threading

from tensorflow.python.framework import ops

_LOCK = threading.RLock()
_ACTIVE: contextvars.ContextVar = contextvars.ContextVar("lucid_ifv_gradient_overrides", default=())


def active_key() -> tuple:
    """A hashable name of the overrides in effect: ``((op type, function), ...)``, sorted;
    ``()`` outside any `overridden_gradients` block."""
    return _ACTIVE.get()


@contextlib.contextmanager
def overridden_gradients(gradients: dict):
    """Within the block, gradients built for the op types in ``gradients`` (``{op type:
    fn(op, *output_grads)}``) use those functions; nested blocks add to (and may replace)
    the outer ones."""
    registry = ops._gradient_registry._registry  # {op type: {"type": fn, "location": ...}}
    with _LOCK:
        saved = {name: registry.get(name) for name in gradients}
        merged = dict(_ACTIVE.get())
        merged.update(gradients)
        token = _ACTIVE.set(tuple(sorted(merged.items(), key=lambda item: item[0])))
        try:
            for name, fn in gradients.items():
                registry[name] = {"type": fn, "location": saved[name]["location"] if saved[name] else None}
            yield
        finally:
            _ACTIVE.reset(token)
            for name, entry in saved.items():
                if entry is None:
                    registry.pop(name, None)
                else:
                    registry[name] = entry
