"""The model interface shared by rendering and inversion.

A model maps a batch of images in [0, 1] to a dict of named activations. It carries
Lucid-style metadata: the input shape, the value range the network expects, and the
layers it exposes (name, depth, tags). Keras models and frozen Lucid graphs
(`modelzoo`) both implement it.

Shapes: images ``[B, H, W, C]`` float32 in [0, 1]; a conv layer's activations
``[B, h, w, depth]``; a dense layer's ``[B, depth]``.
"""

from __future__ import annotations

import dataclasses
from typing import Iterable, Sequence

import numpy as np
import tensorflow as tf

from lucid_ifv.validation import check_finite


@dataclasses.dataclass(frozen=True)
class LayerInfo:
    """A layer a model exposes: its name, channel count and tags ("conv", "dense")."""

    name: str
    depth: int
    tags: tuple[str, ...] = ()

    def to_dict(self) -> dict:
        return {"name": self.name, "depth": int(self.depth), "tags": list(self.tags)}

    @classmethod
    def from_dict(cls, d: dict) -> "LayerInfo":
        return cls(str(d["name"]), int(d["depth"]), tuple(d.get("tags", ())))

    @property
    def activations(self):
        """Lucid's precomputed activations on natural images: no lucid-ifv model ships them."""
        raise ValueError(
            f"no activations ship for layer {self.name!r}: compute them with model(images, [{self.name!r}])"
        )


class Model:
    """Base class: validation, value-range mapping and layer look-up.

    Subclasses set ``image_shape``, ``image_value_range`` and ``layers`` and
    implement ``_activations(inputs, names)`` where ``inputs`` is already in the
    network's value range.
    """

    name: str = "model"
    image_shape: tuple[int, int, int] = (0, 0, 0)
    image_value_range: tuple[float, float] = (0.0, 1.0)
    layers: tuple[LayerInfo, ...] = ()
    #: False when the model takes images of any height and width (fully convolutional
    #: frozen graphs; ``image_shape`` is then its native size and layers that need the
    #: native size say so, see `check_input_size`).
    fixed_input_size: bool = True
    #: What the input is: "image" (pixels in [0, 1], mapped to ``image_value_range``) or
    #: "geometry" (a raw geometry image ``[.., 5]``: unit normal, depth, hit mask; see
    #: `lucid_ifv.param.geometry`; ``image_value_range`` is then (0, 1), the identity).
    #: `lucid_ifv.param.image_for_model` picks the parametrization by it.
    input_kind: str = "image"
    #: The dtype the network computes in (images are converted to it): float32, or float64 for
    #: a `lucid_ifv.precision.float64_model` copy.
    dtype: tf.DType = tf.float32

    # -- metadata -----------------------------------------------------------------
    @property
    def layer_names(self) -> list[str]:
        return [layer.name for layer in self.layers]

    def layer(self, name: str) -> LayerInfo:
        """The `LayerInfo` called `name`; KeyError naming the known layers otherwise."""
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise KeyError(
            f"unknown layer {name!r} for model {self.name!r}; known layers: "
            f"{', '.join(self.layer_names) or '(none)'}"
        )

    def check_layers(self, names: Iterable[str]) -> list[str]:
        names = [names] if isinstance(names, str) else list(names)
        for n in names:
            self.layer(n)
        return names

    # -- evaluation ---------------------------------------------------------------
    def to_value_range(self, images: tf.Tensor) -> tf.Tensor:
        """Map images in [0, 1] to the network's input range: ``lo + x * (hi - lo)``."""
        lo, hi = self.image_value_range
        return lo + images * (hi - lo)

    def check_images(self, images) -> tf.Tensor:
        """Validate a batch of images `[B, H, W, C]` (shape, finite values); a tensor of ``dtype``.

        H and W must equal ``image_shape``'s unless ``fixed_input_size`` is False.
        """
        if isinstance(images, tf.Tensor) and images.dtype.is_floating and images.dtype.size < self.dtype.size:
            images = tf.cast(images, self.dtype)  # widening is exact (a float64 model given float32 images)
        images = tf.convert_to_tensor(images, dtype=self.dtype)
        expected = tuple(self.image_shape)
        if self.fixed_input_size:
            fits = images.shape.rank == 4 and tuple(images.shape[1:]) == expected
            wanted = f"[batch, {', '.join(map(str, expected))}] (its input size is fixed)"
        else:
            fits = images.shape.rank == 4 and images.shape[-1] == expected[-1]
            wanted = f"[batch, height, width, {expected[-1]}]"
        if not fits:
            raise ValueError(f"images of shape {tuple(images.shape)} do not fit model {self.name!r}: expected {wanted}")
        if tf.executing_eagerly():
            check_finite(images.numpy(), "images")
        return images

    def check_input_size(self, height: int, width: int, layers: Sequence[str] | str) -> None:
        """ValueError, naming the reason, unless `layers` can be computed from inputs of
        ``height x width`` (the native size always can)."""
        h, w, _ = self.image_shape
        if (int(height), int(width)) != (h, w) and self.fixed_input_size:
            raise ValueError(
                f"model {self.name!r} takes inputs of {h}x{w} only (its input size is fixed), "
                f"got {height}x{width}"
            )

    def __call__(self, images, layers: Sequence[str] | str) -> dict[str, tf.Tensor]:
        """Activations of `layers` for `images` in [0, 1].

        Args:
          images: ``[B, H, W, C]`` with ``(H, W, C) == image_shape`` (any H, W when
            ``fixed_input_size`` is False), values in [0, 1].
          layers: layer names (or one name).
        Returns:
          dict name -> activations ``[B, h, w, depth]`` or ``[B, depth]``.
        """
        names = self.check_layers(layers)
        images = self.check_images(images)
        return self._activations(self.to_value_range(images), names)

    def _activations(self, inputs: tf.Tensor, names: list[str]) -> dict[str, tf.Tensor]:
        raise NotImplementedError

    # -- Lucid's model API (for code ported through lucid_ifv.compat) ----------------------
    def load_graphdef(self) -> None:
        """Lucid's explicit load. Models here load on first use; a `LucidModel` loads now."""

    def show_graph(self) -> str:
        """A text summary of the model (Lucid draws the graph): input and layers; printed and returned."""
        lines = [f"{self.name}: input {tuple(self.image_shape)} in {tuple(self.image_value_range)}"
                 + ("" if self.fixed_input_size else " (any height and width)")]
        lines += [f"  {layer.name:<32} depth {layer.depth:<6} {', '.join(layer.tags)}" for layer in self.layers]
        text = "\n".join(lines)
        print(text)
        return text

    def get_layer(self, name: str) -> LayerInfo:
        """Lucid's name for `layer`."""
        return self.layer(name)

    def get_activations(self, layer: str, examples, batch_size: int = 64) -> np.ndarray:
        """Activations of `layer` for `examples` ``[N, H, W, C]`` in [0, 1], computed in
        batches of `batch_size` (Lucid's ``get_activations``); ``[N, ...]`` numpy."""
        examples = np.asarray(examples, np.float32)
        if int(batch_size) < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size!r}")
        parts = [self(examples[i:i + int(batch_size)], [layer])[layer].numpy()
                 for i in range(0, len(examples), int(batch_size))]
        return np.concatenate(parts) if parts else np.zeros((0,), np.float32)

    def import_graph(self, t_input, scope="import", forget_xy_shape=True, input_map=None, t_raw=None):
        """Lucid's ``import_graph`` in TF2 form (there is no default graph to import into):
        returns ``T`` with ``T(layer)`` the activations of ``t_input`` (images ``[B, H, W, C]``
        in [0, 1]; computed on call, so use it inside the step being differentiated),
        ``T("input")`` ``t_raw`` (default ``t_input``) and ``T("labels")`` the labels.
        ``scope`` and ``input_map`` have no TF2 meaning and must keep their defaults;
        ``forget_xy_shape`` is implied (models that take any size take any size)."""
        if scope != "import" or input_map is not None:
            raise ValueError(f"import_graph: scope={scope!r} and input_map={input_map!r} have no TF2 meaning; "
                             f"leave them at their defaults")
        t_raw = t_input if t_raw is None else t_raw

        def T(layer):
            if layer == "input":
                return t_raw
            if layer == "labels":
                return getattr(self, "labels", None)
            return self(t_input, [layer])[layer]

        return T

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(name={self.name!r}, image_shape={tuple(self.image_shape)}, "
            f"image_value_range={tuple(self.image_value_range)}, layers={len(self.layers)})"
        )


def _output_depth(shape) -> int | None:
    """Channel count of a layer output shape `[B, h, w, C]` or `[B, C]`, else None."""
    shape = tuple(shape)
    if len(shape) in (2, 4) and shape[-1] is not None:
        return int(shape[-1])
    return None


class KerasModel(Model):
    """Adapter: any built `tf.keras.Model` (functional or sequential) as a `Model`.

    Every layer whose output is ``[B, C]`` or ``[B, h, w, C]`` becomes a tap named like
    the Keras layer ("conv" or "dense" tag by rank). Layer outputs are fetched with one
    multi-output sub-model per requested name set (cached), so one forward pass serves
    every tapped layer.

    Args:
      model: the Keras model; its input must be ``[B, H, W, C]``.
      image_value_range: the range the network expects its input in (default (0, 1)).
      name: a display name (default the Keras model's).
      layers: restrict the taps to these layer names (default every eligible layer).
    """

    def __init__(self, model, image_value_range=(0.0, 1.0), name=None, layers=None):
        if not isinstance(model, tf.keras.Model):
            raise TypeError(f"KerasModel needs a tf.keras.Model, got {type(model).__name__}")
        if not model.built or not model.inputs:
            raise ValueError("the Keras model must be built with a known input shape")
        input_shape = tuple(model.inputs[0].shape[1:])
        if len(input_shape) != 3 or any(d is None for d in input_shape):
            raise ValueError(
                f"KerasModel needs an input of fixed shape [B, H, W, C]; got {input_shape}"
            )
        lo, hi = (float(v) for v in image_value_range)
        if not np.isfinite([lo, hi]).all() or not lo < hi:
            raise ValueError(f"image_value_range must be finite with lo < hi, got {(lo, hi)}")
        self.keras_model = model
        input_dtype = tf.dtypes.as_dtype(model.inputs[0].dtype)
        self.dtype = input_dtype if input_dtype in (tf.float32, tf.float64) else tf.float32  # float64: `precision`
        self.name = name or model.name
        self.image_shape = tuple(int(d) for d in input_shape)
        self.image_value_range = (lo, hi)
        taps = []
        for layer in model.layers:
            if isinstance(layer, tf.keras.layers.InputLayer):
                continue
            depth = _output_depth(layer.output.shape)
            if depth is None:
                continue
            tag = "dense" if len(layer.output.shape) == 2 else "conv"
            taps.append(LayerInfo(layer.name, depth, (tag,)))
        if layers is not None:
            known = {t.name: t for t in taps}
            missing = [n for n in layers if n not in known]
            if missing:
                raise KeyError(
                    f"unknown layer(s) {missing} in Keras model {self.name!r}; "
                    f"tappable layers: {', '.join(known)}"
                )
            taps = [known[n] for n in layers]
        self.layers = tuple(taps)
        self._submodels: dict[tuple[str, ...], tf.keras.Model] = {}

    def _submodel(self, names: tuple[str, ...]) -> tf.keras.Model:
        if names not in self._submodels:
            outputs = [self.keras_model.get_layer(n).output for n in names]
            self._submodels[names] = tf.keras.Model(self.keras_model.inputs, outputs)
        return self._submodels[names]

    def _activations(self, inputs, names):
        key = tuple(names)
        outputs = self._submodel(key)(inputs, training=False)
        if not isinstance(outputs, (list, tuple)):
            outputs = [outputs]
        return dict(zip(key, outputs))
