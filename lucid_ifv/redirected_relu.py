"""Lucid's redirected ReLU gradient: dead ReLUs still pass a gradient in the first steps.

A render of a post-ReLU channel that is zero for the initial noise gets no gradient and
never moves. Lucid (``lucid.optvis.overrides.redirected_relu_grad``, on by default in its
``render_vis``) overrides the gradient of every ``Relu`` and ``Relu6`` for the first
`REDIRECT_STEPS` optimizer steps: per batch element, when the true ReLU gradient is zero
everywhere, the upstream gradient passes where it pushes the input into the active range
(for a loss minimized by descent: a negative gradient where ``x < 0``, a positive one where
``x > 6`` for Relu6) and is blocked where it would push it further out; when any of the true
gradient gets through, the true gradient is used. See `redirected_relu_grad`.

`redirected_model(model)` returns a variant of a model whose ReLUs have this gradient (same
weights, same forward values), or None when the model has no ReLU (e.g. a smooth surrogate):
  - `modelzoo.graph.GraphModel` / `LucidModel`: the graph imported again with a gradient
    override map ``Relu -> "LucidIfvRedirectedRelu"``, ``Relu6 -> "LucidIfvRedirectedRelu6"``
    (like Lucid's ``gradient_override_map``; ops inside graph functions keep their gradient);
  - `lucid_ifv.model.KerasModel`: a clone with relu/relu6 activations and ``ReLU`` layers
    replaced by a custom-gradient ReLU (`keras_rewrite.rebuild`, weights copied).
`render_vis(..., relu_gradient_override=True)` runs its first `REDIRECT_STEPS` Adam steps on
that variant and the rest on the model itself.
"""

from __future__ import annotations

import dataclasses

import keras
import tensorflow as tf

from lucid_ifv import keras_rewrite
from lucid_ifv.model import KerasModel, Model

#: Lucid redirects while its global step is <= 16, i.e. for the first 17 optimizer steps.
REDIRECT_STEPS = 17
GRADIENT_OVERRIDES = {"Relu": "LucidIfvRedirectedRelu", "Relu6": "LucidIfvRedirectedRelu6"}


def redirected_relu_grad(x, grad, max_value: float | None = None) -> tf.Tensor:
    """Lucid's redirected gradient of ``relu(x)`` (``max_value=6``: relu6) for upstream `grad`.

    Args:
      x: the ReLU's input ``[B, ...]`` (rank >= 2, batch first).
      grad: the upstream gradient, same shape.
      max_value: None for relu, 6.0 for relu6.
    Returns:
      ``[B, ...]``: per batch element, the ReLU's own gradient (``grad`` zeroed where
      ``x < 0``, or outside [0, max_value]) if it is nonzero anywhere, else ``grad`` zeroed
      only where it would push ``x`` further out of that range (``x < 0`` and ``grad > 0``;
      ``x > max_value`` and ``grad < 0``).
    """
    x, grad = tf.convert_to_tensor(x), tf.convert_to_tensor(grad)
    if x.shape.rank is not None and x.shape.rank < 2:
        raise ValueError(f"redirected_relu_grad needs a batch axis (rank >= 2), got shape {x.shape}")
    zeros = tf.zeros_like(grad)
    outside = x < 0.0
    blocked = tf.logical_and(x < 0.0, grad > 0.0)
    if max_value is not None:
        outside = tf.logical_or(outside, x > max_value)
        blocked = tf.logical_or(blocked, tf.logical_and(x > max_value, grad < 0.0))
    relu_grad = tf.where(outside, zeros, grad)
    redirected = tf.where(blocked, zeros, grad)
    batch = tf.shape(relu_grad)[0]
    passes = tf.norm(tf.reshape(relu_grad, [batch, -1]), axis=1) > 0.0  # [B]
    passes = tf.reshape(passes, tf.concat([[batch], tf.ones([tf.rank(grad) - 1], tf.int32)], 0))
    return tf.where(passes, relu_grad, redirected)


@tf.RegisterGradient(GRADIENT_OVERRIDES["Relu"])
def _redirected_relu_op_grad(op, grad):
    return redirected_relu_grad(op.inputs[0], grad)


@tf.RegisterGradient(GRADIENT_OVERRIDES["Relu6"])
def _redirected_relu6_op_grad(op, grad):
    return redirected_relu_grad(op.inputs[0], grad, max_value=6.0)


def redirected_relu(x, max_value: float | None = None) -> tf.Tensor:
    """``relu(x)`` (or ``relu6`` with ``max_value=6``) whose gradient is `redirected_relu_grad`."""

    @tf.custom_gradient
    def inner(x):
        y = tf.nn.relu(x) if max_value is None else tf.minimum(tf.nn.relu(x), max_value)
        return y, lambda grad: redirected_relu_grad(x, grad, max_value)

    return inner(x)


@keras.saving.register_keras_serializable(package="lucid_ifv")
class RedirectedReLUActivation:
    """A serializable activation: `redirected_relu` (with an optional ``max_value``)."""

    def __init__(self, max_value: float | None = None):
        self.max_value = None if max_value is None else float(max_value)

    def __call__(self, x):
        return redirected_relu(x, self.max_value)

    def get_config(self) -> dict:
        return {"max_value": self.max_value}

    @classmethod
    def from_config(cls, config: dict) -> "RedirectedReLUActivation":
        return cls(**config)


@keras.saving.register_keras_serializable(package="lucid_ifv")
class RedirectedReLU(keras_rewrite.ActivationLayer):
    """Layer form of `RedirectedReLUActivation` (replaces a plain ``keras.layers.ReLU``)."""

    def __init__(self, max_value: float | None = None, **kwargs):
        super().__init__(**kwargs)
        self.activation = RedirectedReLUActivation(max_value)


def _redirected_layer(layer):
    """The redirected replacement of one Keras layer, or None if it has no ReLU."""
    if isinstance(layer, keras.layers.ReLU):
        max_value = keras_rewrite.plain_relu_layer_max_value(layer, "redirect the gradient of")
        return RedirectedReLU(max_value, name=layer.name, dtype=layer.dtype_policy)
    is_relu, max_value = keras_rewrite.relu_max_value(getattr(layer, "activation", None))
    if is_relu:
        return keras_rewrite.with_activation(layer, RedirectedReLUActivation(max_value))
    return None


def redirected_model(model: Model) -> Model | None:
    """`model` with Lucid's redirected ReLU gradient (see the module docstring); None when it
    has no ReLU/ReLU6 to redirect. The result computes the same values; it is cached on
    `model` (``model._redirected``)."""
    cached = getattr(model, "_redirected", False)
    if cached is not False:
        return cached
    if isinstance(model, KerasModel):
        keras_model, replaced = keras_rewrite.rebuild(model.keras_model, _redirected_layer)
        result = None if not replaced else KerasModel(
            keras_model, image_value_range=model.image_value_range, name=model.name, layers=model.layer_names)
    else:
        from modelzoo.graph import GraphModel
        from modelzoo.vision import LucidModel

        graph_model = model.graph_model if isinstance(model, LucidModel) else model
        if not isinstance(graph_model, GraphModel):
            raise TypeError(
                f"relu_gradient_override supports KerasModel, GraphModel and LucidModel, got "
                f"{type(model).__name__}; pass relu_gradient_override=False"
            )
        has_relu = any(n.op in GRADIENT_OVERRIDES for n in graph_model.graph_def.node)
        result = None if not has_relu else GraphModel(
            graph_model.graph_def, dataclasses.replace(graph_model.metadata),
            allow_ops=graph_model.allow_ops, source=graph_model.source,
            any_size=not graph_model.fixed_input_size, gradient_overrides=GRADIENT_OVERRIDES, dtype=graph_model.dtype)
    model._redirected = result
    return result
