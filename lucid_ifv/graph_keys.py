"""Hashable descriptions of what determines a compiled graph, for caching traced functions.

A compiled function (a render step, a Jacobian block) can serve a later call when everything
its trace closed over computes the same thing. `state_key` describes values by content
(numbers, strings, arrays by a hash of their bytes, nested lists/tuples/dicts, parametrizations
by `Param.structure_key`) and raises `NoKey` for anything it cannot describe (callables,
`tf.Variable`s). `key_or_identity` falls back to the object's identity for those: safe only
while the cache entry keeps the object alive (so no other object can reuse its id), which every
cache in lucid-ifv does by holding what its trace closes over. Objects that know their own
structure (objectives and transforms built by lucid-ifv's factories) carry it as ``.key``.
"""

from __future__ import annotations

import hashlib

import numpy as np
import tensorflow as tf


class NoKey(Exception):
    """`state_key` cannot describe a value (the value is the exception's argument)."""


def state_key(value):
    """Hashable description of ``value`` by content; `NoKey` when there is none."""
    if value is None or isinstance(value, (bool, int, float, complex, str, bytes)):
        return (type(value).__name__, value)
    if callable(getattr(value, "structure_key", None)):  # a parametrization (`Param`)
        key = value.structure_key()
        if key is None:
            raise NoKey(value)
        return ("param", key)
    if isinstance(value, (np.ndarray, np.generic)) or (isinstance(value, tf.Tensor) and hasattr(value, "numpy")):
        array = np.ascontiguousarray(value.numpy() if isinstance(value, tf.Tensor) else value)
        if array.dtype == object:
            raise NoKey(value)
        return ("array", array.dtype.str, array.shape, hashlib.sha1(array.tobytes()).hexdigest())
    if isinstance(value, (list, tuple)):
        return (type(value).__name__, tuple(state_key(v) for v in value))
    if isinstance(value, dict):
        return ("dict", tuple(sorted((repr(k), state_key(v)) for k, v in value.items())))
    own = getattr(value, "key", None)
    if own is not None and callable(value):  # an objective or transform that knows its structure
        return ("own", own)
    raise NoKey(value)  # callables, tf.Variables (a trace reading one captures *that* variable), ...


def key_or_identity(value):
    """`state_key` of ``value``, or ``("identity", id(value))`` where it has none (see the
    module docstring: the caller must keep ``value`` alive while the key is in use)."""
    try:
        return state_key(value)
    except NoKey:
        pass
    if isinstance(value, (list, tuple)):
        return (type(value).__name__, tuple(key_or_identity(v) for v in value))
    if isinstance(value, dict):
        return ("dict", tuple(sorted((repr(k), key_or_identity(v)) for k, v in value.items())))
    return ("identity", id(value))
