"""The parametrization interface: variables ``z`` -> valid inputs ``x = g(z)``, and back.

A `Param` owns its `tf.Variable`s (each with the batch as its leading axis, so batch
element ``b`` depends only on slice ``b`` of every variable), maps parameter values to
inputs with ``param(params)`` (differentiable; ``params=None`` uses the variables), and
inverts: ``param.params_from_image(x)`` returns parameter values that reproduce ``x``.

Writing a custom parametrization (also for non-image inputs, e.g. geometry images):
subclass `Param`, create the variables in ``__init__`` and pass them to
``super().__init__(variables, shape)``, and implement ``forward(params)`` and
``inverse(values)``::

    class AngleParam(Param):
        '''Unit normals from two unbounded angles per pixel: z [B, H, W, 2] -> x [B, H, W, 3].'''
        def __init__(self, shape, sd=0.01, seed=None):
            b, h, w, _ = shape
            init = normal_init((b, h, w, 2), sd, seed)
            super().__init__([tf.Variable(init)], (b, h, w, 3))
        def forward(self, params):
            theta, phi = tf.unstack(params[0], axis=-1)
            return tf.stack([tf.sin(theta) * tf.cos(phi), tf.sin(theta) * tf.sin(phi),
                             tf.cos(theta)], -1)
        def inverse(self, values):
            theta = np.arccos(np.clip(values[..., 2], -1, 1))
            phi = np.arctan2(values[..., 1], values[..., 0])
            return [np.stack([theta, phi], -1).astype(np.float32)]

Everything else (rendering, Jacobians, inversion of saved images) works with it.

``param.per_sample`` (True by default) says that contract holds. It is False where one
variable slice feeds several batch elements or a variable has no batch axis: Lucid's shared
`lowres_tensor` (underlying batch other than the batch, interpolated along it, or an offset
shifting the batch), `cppn` (one network for the whole batch), a composition broadcasting a
Param along the batch, and any composition or wrapper containing one. Code that
optimizes or inverts each sample on its own must refuse such a parametrization.

Lucid-style composition: ``+ - * / **`` (with Params, numbers or arrays; ``sum([...])`` works),
unary ``-`` and slicing of the non-batch axes (``t[..., :3]``) return a lazy
`lucid_ifv.param.combine.CombinedParam` whose variables are its inputs' (a shared input
counted once); it has no inverse. ``tf.convert_to_tensor(param)`` gives the current image
``param()`` (see `Param.__tf_tensor__`).
"""

from __future__ import annotations

import contextlib
from typing import Sequence

import numpy as np
import tensorflow as tf

from lucid_ifv.graph_keys import NoKey, state_key
from lucid_ifv.validation import check_finite, check_shape


def normal_init(shape, sd, seed=None) -> np.ndarray:
    """float32 N(0, sd) values; ``seed`` None draws from NumPy's global state, as Lucid does."""
    sd = 0.01 if sd is None else float(sd)
    if not (np.isfinite(sd) and sd >= 0):
        raise ValueError(f"sd (the initial values' standard deviation) must be a finite number >= 0, got {sd!r}")
    if seed is None:
        values = np.random.normal(size=shape, scale=sd)
    else:
        values = np.random.default_rng(seed).normal(size=shape, scale=sd)
    return values.astype(np.float32)


@contextlib.contextmanager
def numpy_seed(seed):
    """Seed NumPy's global generator inside the block and restore its state afterwards."""
    if seed is None:
        yield
        return
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(state)


class Param:
    """Base class of parametrizations. See the module docstring.

    Attributes:
      variables: list of `tf.Variable`, each ``[B, ...]``.
      shape: the produced input's shape ``[B, H, W, C]``.
    """

    def __init__(self, variables: Sequence[tf.Variable], shape):
        self.variables = list(variables)
        self.shape = tuple(int(d) for d in shape)

    @property
    def batch(self) -> int:
        return self.shape[0]

    #: False when ``forward`` works only at the parametrization's own variables
    #: (`lucid_ifv.param.traced.TracedParam`): no L-BFGS, residual or Jacobian.
    accepts_params = True

    @property
    def per_sample(self) -> bool:
        """True when every variable is ``[B, ...]`` and batch element ``b`` depends only on
        slice ``b`` of each (see the module docstring); subclasses sharing parameters across
        the batch return False."""
        return True

    @property
    def batch_agnostic(self) -> bool:
        """True when ``forward`` maps parameters of *any* leading batch size ``n`` (variable
        shapes with ``B`` replaced by ``n``) to ``n`` inputs, each from its own slice: the
        Jacobian may then run ``c`` copies of the batch through one ordinary pass
        (`lucid_ifv.ifv.jacobian`, tiled blocks). False unless a class says so."""
        return False

    # -- to be implemented ------------------------------------------------------------
    def forward(self, params: Sequence[tf.Tensor]) -> tf.Tensor:
        """Parameter tensors (shapes as `variables`) -> inputs ``[B, H, W, C]``."""
        raise NotImplementedError

    def inverse(self, values: np.ndarray) -> list[np.ndarray]:
        """Inputs ``[B, H, W, C]`` -> parameter arrays reproducing them."""
        raise NotImplementedError

    # -- shared --------------------------------------------------------------------------
    def __call__(self, params: Sequence[tf.Tensor] | None = None) -> tf.Tensor:
        return self.forward(self.variables if params is None else list(params))

    def params_from_image(self, images) -> list[np.ndarray]:
        """Parameter values (one array per variable, in its dtype) that reproduce ``images``.

        Args:
          images: ``[B, H, W, C]`` with B, H, W, C equal to this parametrization's shape
            (a single ``[H, W, C]`` image is accepted when B == 1).
        """
        images = np.asarray(images, dtype=np.float64)
        if images.ndim == 3 and self.batch == 1:
            images = images[None]
        check_shape(images, self.shape, "images")
        check_finite(images, "images")
        return [np.asarray(p, dtype=v.dtype.as_numpy_dtype) for p, v in zip(self.inverse(images), self.variables)]

    def assign(self, params: Sequence) -> None:
        """Set the variables to ``params`` (arrays shaped like the variables)."""
        params = list(params)
        if len(params) != len(self.variables):
            raise ValueError(f"{len(params)} parameter arrays for {len(self.variables)} variables")
        for var, value in zip(self.variables, params):
            value = check_finite(np.asarray(value, dtype=var.dtype.as_numpy_dtype), "parameters")
            check_shape(value, tuple(var.shape), f"parameter for variable {var.name}")
            var.assign(value)

    def assign_from_image(self, images) -> None:
        """Set the variables so that the parametrization produces ``images``."""
        self.assign(self.params_from_image(images))

    def saturated(self, values, margin: float) -> np.ndarray:
        """Bool array: which of the produced ``values`` ``[B, H, W, C]`` lie within ``margin``
        of the bounds of their range [0, 1] (a sigmoid there has almost no gradient).
        Parametrizations with other bounds override it."""
        values = np.asarray(values)
        return (values < margin) | (values > 1 - margin)

    def numpy_params(self) -> list[np.ndarray]:
        return [v.numpy() for v in self.variables]

    def structure_key(self):
        """A hashable description of everything that determines ``forward`` except the
        parameter values: the class, the shapes and dtypes of the variables and of the output,
        and every other attribute (Fourier scales, resize matrices, decorrelation and sigmoid
        flags, nested parametrizations), arrays by content. Two parametrizations with equal
        keys map equal parameter values to equal inputs, so a function compiled for one
        (`lucid_ifv.ifv.feature_jacobian`) serves the other. None when an attribute cannot be
        described (e.g. a callable or an extra `tf.Variable` read in ``forward``): callers then
        fall back to the object's identity. Subclasses with state outside their attributes
        override this.
        """
        try:
            state = tuple(sorted((name, state_key(value)) for name, value in vars(self).items()
                                 if name not in ("variables", "shape")))
        except (NoKey, TypeError):  # TypeError: no __dict__ (slots)
            return None
        variables = tuple((tuple(v.shape), v.dtype.name) for v in self.variables)
        return (type(self).__module__, type(self).__qualname__, self.shape, variables, state)

    def __repr__(self):
        return f"{type(self).__name__}(shape={self.shape})"

    # -- Lucid-style composition: each returns a lazy `CombinedParam` ----------------------
    __array_ufunc__ = None  # ``ndarray (op) param``: NumPy defers to the reflected operator below
    __iter__ = None  # ``__getitem__`` slices axes; a Param is not a sequence of samples

    def __add__(self, other):
        return _combine("add", self, other)

    def __radd__(self, other):
        return _combine("add", other, self)

    def __sub__(self, other):
        return _combine("sub", self, other)

    def __rsub__(self, other):
        return _combine("sub", other, self)

    def __mul__(self, other):
        return _combine("mul", self, other)

    def __rmul__(self, other):
        return _combine("mul", other, self)

    def __truediv__(self, other):
        return _combine("truediv", self, other)

    def __rtruediv__(self, other):
        return _combine("truediv", other, self)

    def __pow__(self, other):
        return _combine("pow", self, other)

    def __rpow__(self, other):
        return _combine("pow", other, self)

    def __neg__(self):
        return _combine("neg", self)

    def __getitem__(self, index):
        """Slice the non-batch axes (integers, slices, ``...``), e.g. ``t[..., :3]``."""
        from lucid_ifv.param.combine import slice_param

        return slice_param(self, index)

    def __tf_tensor__(self, dtype=None, name=None):
        """``tf.convert_to_tensor(param)``: the image for the current variable values,
        ``self()``. Called eagerly it is a snapshot, not linked to the variables; TF functions
        given a Param (``tensor + param``, ``tf.tile(param, ...)``) convert it this way, so
        eagerly they return such a snapshot. Inside a `tf.function` it reads the variables
        symbolically: `render_vis` traces a ``param_f`` that returns a tensor
        (`lucid_ifv.param.traced.TracedParam`), so Lucid-style ``param_f``s stay trainable."""
        return tf.convert_to_tensor(self(), dtype=dtype, name=name)


def _combine(op, *operands):
    from lucid_ifv.param.combine import combine

    return combine(op, *operands)


class TransformedParam(Param):
    """A parametrization followed by a pointwise map on its output (e.g. colours)."""

    def __init__(self, inner: Param, shape=None):
        self.inner = inner
        super().__init__(inner.variables, shape or inner.shape)

    @property
    def per_sample(self) -> bool:
        return self.inner.per_sample
