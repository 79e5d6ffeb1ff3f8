"""Rebuild a Keras model with some layers replaced, weights kept (used by `smooth` and
`redirected_relu`).

`rebuild(keras_model, replace)` clones a Sequential or Functional model (nested models too)
with ``replace(layer)`` deciding each layer: a new layer (same name, same weights layout)
or None to keep a plain copy; then copies every weight by layer name.
"""

from __future__ import annotations

from typing import Callable, Sequence

import keras
import tensorflow as tf


def callables(names: Sequence[str], *modules) -> list:
    """The attributes `names` of `modules` that exist in this Keras / TensorFlow version."""
    return [getattr(m, n) for m in modules for n in names if hasattr(m, n)]


ACTIVATION_MODULES = (keras.activations, keras.ops, tf.nn)
#: (activation function, its max_value): relu and relu6 as Keras and TensorFlow spell them.
RELUS = [(f, None) for f in callables(["relu"], *ACTIVATION_MODULES)] + [
    (f, 6.0) for f in callables(["relu6"], *ACTIVATION_MODULES)]


def relu_max_value(activation) -> tuple[bool, float | None]:
    """``(True, max_value)`` when `activation` is relu (None) or relu6 (6.0), else ``(False, None)``."""
    for relu, max_value in RELUS:
        if activation is relu:
            return True, max_value
    return False, None


def plain_relu_layer_max_value(layer, what: str) -> float | None:
    """The ``max_value`` of a ``keras.layers.ReLU`` without slope or threshold; ValueError otherwise."""
    config = layer.get_config()
    slope, threshold = config.get("negative_slope") or 0.0, config.get("threshold") or 0.0
    if slope != 0.0 or threshold != 0.0:
        raise ValueError(
            f"cannot {what} ReLU layer {layer.name!r} with negative_slope={slope}, threshold="
            f"{threshold}; supported: plain relu and relu with max_value (e.g. relu6)"
        )
    return config.get("max_value")


def with_activation(layer, activation):
    """A copy of `layer` (from its config) with ``activation`` replaced."""
    config = layer.get_config()
    config["activation"] = activation
    return type(layer).from_config(config)


class ActivationLayer(keras.layers.Layer):
    """A layer applying its ``activation`` (a serializable callable with ``get_config``,
    set by the subclass); its config is the layer's plus the activation's."""

    activation: Callable

    def call(self, inputs):
        return self.activation(inputs)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self) -> dict:
        return {**super().get_config(), **self.activation.get_config()}


def layer_paths(model, prefix: str = "") -> dict[int, str]:
    """id(layer) -> "outer/inner/layer" for every layer of `model` and its nested models."""
    paths = {}
    for layer in model.layers:
        paths[id(layer)] = prefix + layer.name
        if isinstance(layer, keras.Model):
            paths.update(layer_paths(layer, f"{prefix}{layer.name}/"))
    return paths


def copy_weights(source, target) -> None:
    """Copy weights layer by layer (matched by name, nested models recursively)."""
    targets = {layer.name: layer for layer in target.layers}
    for layer in source.layers:
        if isinstance(layer, keras.layers.InputLayer):
            continue
        clone = targets[layer.name]
        if isinstance(layer, keras.Model):
            copy_weights(layer, clone)
        else:
            clone.set_weights(layer.get_weights())


def rebuild(keras_model, replace: Callable, input_tensors=None):
    """A clone of `keras_model` with ``replace(layer)`` (a new layer, or None: keep) applied
    to every non-model layer, weights copied; ``input_tensors`` as Keras' ``clone_model``'s
    (default: new inputs like the model's).

    Returns:
      (the new Keras model, the replaced layers' paths ``"outer/inner/layer"``).
    """
    paths = layer_paths(keras_model)
    replaced: list[str] = []

    def clone(layer):
        new = replace(layer)
        if new is None:
            return type(layer).from_config(layer.get_config())
        replaced.append(paths.get(id(layer), layer.name))
        return new

    rebuilt = keras.models.clone_model(keras_model, input_tensors=input_tensors, clone_function=clone, recursive=True)
    copy_weights(keras_model, rebuilt)
    return rebuilt, replaced
