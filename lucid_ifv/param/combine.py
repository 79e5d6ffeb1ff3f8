"""Lazy arithmetic and slicing of parametrizations, as Lucid users write them on tensors.

In Lucid a parametrization is a tensor, so users compose them with tensor arithmetic::

    unique = param.fft_image((6, 128, 128, 3))
    shared = [param.lowres_tensor((6, 128, 128, 3), (1, 64, 64, 3)), ...]
    images = param.to_valid_rgb(unique + sum(shared), decorrelate=True)

Here `Param` supports ``+ - * /`` (with another Param, a number or an array, on either side),
unary ``-`` and ``t[...]`` over the non-batch axes; each returns a `CombinedParam`. Its
variables are the union of its inputs' (a Param used twice, e.g. ``t * t`` or a shared
low-res tensor in two sums, is counted once: matched by identity), and ``forward(params)``
hands each input its own variables' tensors and applies the operation. A combination maps
many parameter values to one image, so it has no inverse.
"""

from __future__ import annotations

import numbers

import numpy as np
import tensorflow as tf

from lucid_ifv.param.base import Param

#: operation name -> (TF function, symbol for repr); "getitem" is slicing.
OPS = {
    "add": (tf.add, "+"),
    "sub": (tf.subtract, "-"),
    "mul": (tf.multiply, "*"),
    "truediv": (tf.truediv, "/"),
    "pow": (tf.pow, "**"),
    "neg": (tf.negative, "-"),
}


def _constant(value):
    """A number, array or eager tensor as a float32 array; None for anything else
    (variables and graph tensors included: they would be frozen or cannot be read)."""
    if isinstance(value, tf.Variable) or (isinstance(value, tf.Tensor) and not hasattr(value, "numpy")):
        return None
    if isinstance(value, tf.Tensor):
        value = value.numpy()
    if not isinstance(value, (numbers.Real, np.ndarray, np.generic, list, tuple)):
        return None
    try:
        array = np.asarray(value)
    except (TypeError, ValueError):
        return None
    if array.dtype.kind not in "biuf":
        return None
    return array.astype(np.float32)


def combine(op: str, *operands):
    """``op`` (a key of `OPS`) applied to Params and constants -> `CombinedParam`.

    Returns ``NotImplemented`` for an operand that is neither a Param nor a constant (so
    Python tries the other operand's operator or raises TypeError). ``0 + t`` and
    ``t + 0`` return ``t`` itself, so ``sum([...])`` of Params adds only the Params.
    """
    converted = []
    for operand in operands:
        if not isinstance(operand, Param):
            operand = _constant(operand)
            if operand is None:
                return NotImplemented
        converted.append(operand)
    if op == "add":
        params = [o for o in converted if isinstance(o, Param)]
        if len(params) == 1 and all(o.shape == () and o == 0 for o in converted if not isinstance(o, Param)):
            return params[0]
    return CombinedParam(op, converted)


def _normalize_index(index, shape):
    """``t[index]`` -> one entry per axis: an int (axis dropped) or ``(start, stop, step)``."""
    items = index if isinstance(index, tuple) else (index,)
    for item in items:
        is_int = isinstance(item, (numbers.Integral, np.integer)) and not isinstance(item, (bool, np.bool_))
        if not (item is Ellipsis or isinstance(item, slice) or is_int):
            raise TypeError(f"a parametrization is sliced with integers, slices and ..., got {item!r}")
    if sum(item is Ellipsis for item in items) > 1:
        raise IndexError(f"at most one ... in an index, got {index!r}")
    explicit = [item for item in items if item is not Ellipsis]
    if len(explicit) > len(shape):
        raise IndexError(f"{len(explicit)} indices for a parametrization of shape {shape}")
    fill = [slice(None)] * (len(shape) - len(explicit))
    if Ellipsis in items:
        at = next(i for i, item in enumerate(items) if item is Ellipsis)
        full = list(items[:at]) + fill + list(items[at + 1:])
    else:
        full = explicit + fill
    normalized = []
    for axis, (item, n) in enumerate(zip(full, shape)):
        if isinstance(item, slice):
            bounds = item.indices(n)
            if not len(range(*bounds)):
                raise IndexError(f"index {item!r} leaves axis {axis} (size {n}) empty")
            normalized.append(bounds)
        else:
            if not -n <= item < n:
                raise IndexError(f"index {item} is out of range for axis {axis} of size {n}")
            normalized.append(int(item) % n)
    if normalized[0] != (0, shape[0], 1):
        raise ValueError(
            f"a parametrization cannot be sliced along its batch axis (got {full[0]!r} for batch "
            f"{shape[0]}); slice the other axes, e.g. t[..., :3]"
        )
    return tuple(normalized)


def _as_slices(index):
    """Normalized index (`_normalize_index`) -> the equivalent tuple of slices and ints."""
    out = []
    for item in index:
        if isinstance(item, tuple):
            start, stop, step = item
            out.append(slice(start, None if stop < 0 else stop, step))  # stop -1: past index 0
        else:
            out.append(item)
    return tuple(out)


def slice_param(param: Param, index) -> CombinedParam:
    """``param[index]``: slicing over the non-batch axes (integers, slices, ``...``)."""
    return CombinedParam("getitem", [param], index=_normalize_index(index, param.shape))


class CombinedParam(Param):
    """A lazy operation on parametrizations (see the module docstring).

    Attributes:
      op: a key of `OPS`, or ``"getitem"`` (slicing).
      operands: the inputs: Params and float32 constant arrays (at least one Param).
      variable_indices: per operand, the positions of its variables in ``variables``
        (empty for constants).
      index: for ``"getitem"``, one entry per axis: an int or ``(start, stop, step)``.

    ``shape`` is the broadcast of the operands' shapes (for slicing: the sliced shape).
    """

    def __init__(self, op: str, operands, index=None):
        if op not in OPS and op != "getitem":
            raise ValueError(f"unknown operation {op!r}; expected one of {sorted(OPS) + ['getitem']}")
        self.op = op
        self.operands = tuple(operands)
        self.index = index
        variables, positions, indices = [], {}, []
        for operand in self.operands:
            own = []
            for var in operand.variables if isinstance(operand, Param) else ():
                if id(var) not in positions:
                    positions[id(var)] = len(variables)
                    variables.append(var)
                own.append(positions[id(var)])
            indices.append(tuple(own))
        self.variable_indices = tuple(indices)
        if op == "getitem":
            (operand,) = self.operands
            shape = np.broadcast_to(np.empty((), np.int8), operand.shape)[_as_slices(index)].shape
        else:
            shapes = [o.shape if isinstance(o, Param) else np.shape(o) for o in self.operands]
            try:
                shape = np.broadcast_shapes(*shapes)
            except ValueError:
                raise ValueError(
                    f"cannot combine shapes {' and '.join(map(str, shapes))} with {op!r}: they do not broadcast"
                ) from None
        super().__init__(variables, shape)

    def _params(self):
        return [o for o in self.operands if isinstance(o, Param)]

    @property
    def per_sample(self) -> bool:
        """True when every input Param is per-sample and keeps the batch axis (an input
        broadcast along the batch, e.g. batch 1 plus batch 6, is shared)."""
        if not all(p.per_sample for p in self._params()):
            return False
        if self.op == "getitem":
            return True
        return all(len(p.shape) == len(self.shape) and p.shape[0] == self.shape[0] for p in self._params())

    def forward(self, params):
        params = list(params)
        values = [
            operand.forward([params[i] for i in indices]) if isinstance(operand, Param) else operand
            for operand, indices in zip(self.operands, self.variable_indices)
        ]
        if self.op == "getitem":
            return values[0][_as_slices(self.index)]
        return OPS[self.op][0](*values)

    def inverse(self, values):
        raise NotImplementedError(
            f"{self!r} has no unique inverse: a combination of parametrizations maps many parameter values "
            "to one image; invert the images with a plain parametrization (e.g. lucid_ifv.param.image) instead"
        )

    def __repr__(self):
        def name(o):
            return repr(o) if isinstance(o, Param) else f"array{o.shape}" if o.shape else repr(float(o))

        if self.op == "getitem":
            def item(i):
                if not isinstance(i, tuple):
                    return str(i)
                start, stop, step = i
                return f"{start}:{'' if stop < 0 else stop}" + ("" if step == 1 else f":{step}")

            return f"{name(self.operands[0])}[{', '.join(map(item, self.index))}]"
        symbol = OPS[self.op][1]
        if self.op == "neg":
            return f"({symbol}{name(self.operands[0])})"
        return f"({f' {symbol} '.join(map(name, self.operands))})"
