"""Float64 copies of a network and a parametrization: render, converge and invert in float64.

The library computes in float32. On a converged realization that is the floor of the
inversion: the stationarity equation it solves holds only to float32's rounding, and features
whose Jacobian rows are small are then loosely determined (docs/results.md, "Is the tail
float32's floor?"). These copies compute the same functions in float64:

- `float64_model(model)`: the same network with every float32 weight, constant and op made
  float64 (frozen graphs: the GraphDef re-typed; Keras models: every layer rebuilt with
  ``dtype="float64"``, weights copied). Layer names, shapes and metadata are the model's.
- `Float64Param(param)`: the same parametrization with float64 variables (the map itself
  is the original's, which computes in its parameters' dtype: pixel, Fourier and colour
  decorrelation do; others are refused when built).

Everything that takes a model and a parametrization then runs in float64 on them:
`render.render_vis` (Adam, L-BFGS, ``converge``, the stationarity residual),
`render.converge_each_sample`, `ifv.feature_jacobian`, `ifv.prior_gradients`, `ifv.invert`.
`converge_in_float64` continues converged float32 renders that way, sample by sample; the
experiment runner (``float64_converge``, `lucid-ifv experiment --float64-converge TOL`) and
`lucid-ifv render --float64-converge TOL` use it, and `lucid-ifv invert --float64` inverts in
float64 (docs/ifv.md, "Precision"). Cost against float32: `benchmarks/ab_float64.py`.

Smooth mode continues its renders in float64 by default (`lucid_ifv.smooth_defaults`).
"""

from __future__ import annotations

import dataclasses
import weakref

import numpy as np
import tensorflow as tf

from lucid_ifv.model import KerasModel, Model
from lucid_ifv.param.base import Param

FLOAT64 = tf.float64
#: Ops whose output is float32 whatever their input: a graph with them cannot compute in float64.
FLOAT32_OUTPUT_OPS = ("ResizeBilinear", "ResizeBicubic", "ResizeArea")


def float64_graph_def(graph_def):
    """A copy of ``graph_def`` with every float32 type attribute and constant made float64.

    Raises:
      ValueError: naming the nodes whose op always outputs float32 (`FLOAT32_OUTPUT_OPS`).
    """
    fixed = [f"{n.name} ({n.op})" for n in graph_def.node if n.op in FLOAT32_OUTPUT_OPS]
    if fixed:
        raise ValueError(f"cannot make this graph float64: {', '.join(fixed[:3])}{' ...' if len(fixed) > 3 else ''} "
                         f"always output float32")
    out = tf.compat.v1.GraphDef()
    out.CopyFrom(graph_def)
    for node in out.node:
        if node.op == "Const" and node.attr["dtype"].type == tf.float32.as_datatype_enum:
            value = tf.make_ndarray(node.attr["value"].tensor).astype(np.float64)
            node.attr["value"].tensor.CopyFrom(tf.make_tensor_proto(value, tf.float64))
        for key in node.attr:
            if node.attr[key].type == tf.float32.as_datatype_enum:
                node.attr[key].type = tf.float64.as_datatype_enum
    return out


def _float64_graph_model(model):
    from modelzoo.graph import GraphModel

    metadata = dataclasses.replace(model.metadata, name=f"{model.name}~float64")
    return GraphModel(float64_graph_def(model.graph_def), metadata, allow_ops=model.allow_ops, source=model.source,
                      any_size=not model.fixed_input_size, gradient_overrides=model.gradient_overrides,
                      dtype=FLOAT64)


def _float64_keras_model(model: KerasModel) -> KerasModel:
    import keras

    from lucid_ifv import keras_rewrite

    def as_float64(layer):
        if isinstance(layer, keras.layers.InputLayer):
            return None
        return type(layer).from_config({**layer.get_config(), "dtype": "float64"})

    inputs = keras.Input(shape=model.image_shape, dtype="float64", name=model.keras_model.inputs[0].name.split(":")[0])
    rebuilt, _ = keras_rewrite.rebuild(model.keras_model, as_float64, input_tensors=inputs)
    return KerasModel(rebuilt, image_value_range=model.image_value_range, name=f"{model.name}~float64",
                      layers=model.layer_names)


#: model -> its float64 copy (an entry goes with its model).
_COPIES: "weakref.WeakKeyDictionary[Model, Model]" = weakref.WeakKeyDictionary()


def float64_model(model: Model) -> Model:
    """The float64 copy of ``model`` (see the module docstring); the same object for the
    same ``model``. A smooth surrogate's copy keeps its ``smoothing`` and ``smoothed_ops``.

    Raises:
      TypeError: a model that is neither a `KerasModel` nor a `modelzoo.graph.GraphModel`.
    """
    from modelzoo.graph import GraphModel

    if getattr(model, "dtype", tf.float32) == FLOAT64:
        return model
    if not isinstance(model, (KerasModel, GraphModel)):
        raise TypeError(f"float64_model cannot copy a {type(model).__name__}; supported: KerasModel and "
                        f"modelzoo GraphModel (a LucidModel: pass its loaded graph, modelzoo.load_model)")
    if model not in _COPIES:
        copy = _float64_graph_model(model) if isinstance(model, GraphModel) else _float64_keras_model(model)
        for name in ("smoothing", "smoothed_ops"):
            if hasattr(model, name):
                setattr(copy, name, getattr(model, name))
        _COPIES[model] = copy
    return _COPIES[model]


def float64_support(model: Model, param: Param) -> str | None:
    """Why a float64 stage cannot run on ``model`` with parametrizations like ``param`` (None:
    it can). Builds the model's copy (cached, `float64_model`) and a throwaway one of ``param``."""
    try:
        float64_model(model)
        Float64Param(param)
    except (TypeError, ValueError) as error:
        return str(error)
    return None


def check_float64_support(model: Model, param: Param, without: str) -> None:
    """`float64_support`, up front (before any rendering): ValueError if there is none, its
    message ending with how to go ``without`` the float64 stage."""
    reason = float64_support(model, param)
    if reason is not None:
        raise ValueError(f"{reason}; to render without the float64 stage: {without}")


class Float64Param(Param):
    """``param``'s map with float64 variables (initialized from ``param``'s values).

    ``forward``, ``inverse`` and ``saturated`` are ``param``'s; the map must compute in its
    parameters' dtype (checked here: ValueError naming ``param`` otherwise).
    """

    def __init__(self, param: Param):
        if not param.accepts_params:
            raise ValueError(f"{param!r} evaluates only its own variables; a float64 copy needs a map of any parameters")
        self.inner = param
        variables = [tf.Variable(v.numpy().astype(np.float64), trainable=True) for v in param.variables]
        super().__init__(variables, param.shape)
        try:
            dtype = param.forward(self.variables).dtype
        except (TypeError, ValueError, tf.errors.InvalidArgumentError) as error:
            raise ValueError(f"{param!r} does not compute in float64 (its map mixes in float32 constants: "
                             f"{str(error).splitlines()[0]}); supported: pixel, Fourier, colour decorrelation") from None
        if dtype != FLOAT64:
            raise ValueError(f"{param!r} maps float64 parameters to {dtype.name} images; a float64 copy needs float64 ones")

    @property
    def per_sample(self) -> bool:
        return self.inner.per_sample

    @property
    def batch_agnostic(self) -> bool:
        return self.inner.batch_agnostic

    def forward(self, params):
        return self.inner.forward(params)

    def inverse(self, values):
        return self.inner.inverse(values)

    def saturated(self, values, margin: float):
        return self.inner.saturated(values, margin)

    def __repr__(self):
        return f"Float64Param({self.inner!r})"


def converge_in_float64(model: Model, objective_of, rendered, single: Param, converge: float, max_lbfgs_steps: int,
                        **options):
    """Continue a float32 render on the float64 copies, each sample alone, until its
    stationarity residual is <= ``converge`` (at most ``max_lbfgs_steps`` L-BFGS iterations).

    Args:
      model: the (float32) model ``rendered`` was made with.
      objective_of, single, options: as in `render.converge_each_sample` (``single``: a
        float32 batch-1 parametrization like ``rendered.param``; ``options`` go on to it).
      rendered: a `RenderResult` (usually converged in float32 already).
    Returns:
      The `RenderResult` of `render.converge_each_sample`; its ``param`` is the float64 copy
      (`Float64Param`) of ``rendered.param``, ``params`` are float64.
    """
    from lucid_ifv.render import converge_each_sample

    rendered = dataclasses.replace(rendered, param=Float64Param(rendered.param))
    return converge_each_sample(float64_model(model), objective_of, rendered, Float64Param(single), converge,
                                max_lbfgs_steps, **options)
