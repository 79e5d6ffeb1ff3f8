"""Lucid's metadata-first vision models: declare the metadata, load the graph lazily.

A `LucidModel` subclass only declares class attributes, as in Lucid's modelzoo:

    class InceptionV1(LucidModel):
        model_path = "gs://modelzoo/vision/other_models/InceptionV1.pb"
        image_shape = (224, 224, 3)
        image_value_range = (-117.0, 138.0)
        input_name = "input"
        layers = (LayerInfo("conv2d0", 64, ("conv",)), ...)

Metadata, layer look-up and validation work without the graph; the first evaluation (or a
request for a tensor that is not a declared layer) fetches ``model_path`` through
`modelzoo.graph.load_model` (download cache, SHA-256, op safety check) and checks the
declared layers against the graph. Any class attribute can be overridden per instance,
e.g. ``InceptionV1(model_path="/data/InceptionV1.pb")``; layers given by name only get their
depths from the graph (which then loads at construction).
"""

from __future__ import annotations

import contextlib
from typing import Iterable

import tensorflow as tf

from lucid_ifv.model import LayerInfo, Model
from modelzoo import fetch
from modelzoo.graph import GraphModel, load_model
from modelzoo.lucid_format import LayerDecl, Metadata

_OVERRIDABLE = ("image_shape", "image_value_range", "input_name", "layers", "allow_ops")


class LucidModel(Model):
    """Base class for models declared by Lucid-style metadata (see the module docstring).

    Class attributes: ``model_path`` (path or URL of the frozen ``.pb``), ``labels_path``
    (text file, one label per line), ``model_sha256`` (optional), ``image_shape``
    ``(H, W, C)``, ``image_value_range`` ``(lo, hi)``, ``input_name``, ``layers`` (tuple of
    `LayerInfo`), ``allow_ops`` (op types outside `modelzoo.graph.ALLOWED_OPS` this graph may use; normally empty).

    Args (all optional, per-instance overrides):
      model_path, labels_path: where to load the graph / labels from.
      sha256: expected SHA-256 of the graph file.
      cache_dir: download cache (default ``$LUCID_IFV_CACHE`` or ``~/.cache/lucid-ifv``).
      progress: show download progress bars.
      image_shape, image_value_range, input_name, layers, allow_ops: metadata overrides;
        ``layers`` may be names (depths then come from the graph), dicts or `LayerInfo`.
    """

    model_path: str | None = None
    labels_path: str | None = None
    model_sha256: str | None = None
    model_name: str | None = None
    input_name: str = "input"
    image_shape: tuple[int, int, int] = (0, 0, 0)
    image_value_range: tuple[float, float] = (0.0, 1.0)
    layers: tuple[LayerInfo, ...] = ()
    allow_ops: tuple[str, ...] = ()
    fixed_input_size: bool = False  # frozen graphs take any size, as in Lucid

    def __init__(self, *, model_path: str | None = None, labels_path: str | None = None,
                 sha256: str | None = None, cache_dir=None, progress: bool = True, **overrides):
        unknown = sorted(set(overrides) - set(_OVERRIDABLE))
        if unknown:
            raise TypeError(
                f"{type(self).__name__}() got unknown argument(s) {unknown}; metadata overrides "
                f"are {', '.join(_OVERRIDABLE)}"
            )
        self.name = self.model_name or type(self).__name__
        self.model_path = model_path if model_path is not None else self.model_path
        self.labels_path = labels_path if labels_path is not None else self.labels_path
        self.model_sha256 = sha256 if sha256 is not None else self.model_sha256
        self.cache_dir = cache_dir
        self.progress = progress
        for key, value in overrides.items():
            setattr(self, key, value)
        self.allow_ops = tuple(self.allow_ops)
        self.metadata = Metadata.from_dict(
            {
                "name": self.name,
                "input_name": self.input_name,
                "image_shape": self.image_shape,
                "image_value_range": self.image_value_range,
                "layers": self.layers,
            },
            source=self.name,
        )
        self.image_shape = self.metadata.image_shape
        self.image_value_range = self.metadata.image_value_range
        self._graph_model: GraphModel | None = None
        self._labels: list[str] | None = None
        if any(d.depth is None for d in self.metadata.layers):
            self.layers = self.graph_model.layers
        else:
            self.layers = tuple(LayerInfo(d.name, d.depth, d.tags) for d in self.metadata.layers)

    # -- the graph, loaded on first use -------------------------------------------------
    @property
    def graph_model(self) -> GraphModel:
        """The loaded `GraphModel` (fetched and checked against the metadata on first use)."""
        if self._graph_model is None:
            if not self.model_path:
                raise ValueError(f"{self.name} has no model_path: set the class attribute or pass model_path=")
            self._loaded_from = self.model_path
            self._graph_model = load_model(
                self.model_path,
                cache_dir=self.cache_dir,
                sha256=self.model_sha256,
                allow_ops=self.allow_ops,
                progress=self.progress,
                **self.metadata.to_dict(),
            )
        return self._graph_model

    def load_graphdef(self) -> None:
        """Load the graph now (Lucid's explicit load), from ``model_path`` as it is now: set
        ``model.model_path = LOCAL_PB`` first to load an offline copy."""
        if self._graph_model is not None and self._loaded_from != self.model_path:
            self._graph_model = None
        self.graph_model  # noqa: B018 (loads)

    @property
    def is_loaded(self) -> bool:
        return self._graph_model is not None

    @property
    def tensor_names(self) -> list[str]:
        """Every tensor of the graph (loads it); see `GraphModel.tensor_names`."""
        return self.graph_model.tensor_names

    def layer(self, name: str) -> LayerInfo:
        """A declared layer (no loading), else any graph tensor such as ``"mixed4c_pre_relu"``.

        Looking up a tensor loads the graph; if that fails, the KeyError says why.
        """
        with contextlib.suppress(KeyError):
            return super().layer(name)
        try:
            graph_model = self.graph_model
        except (OSError, ValueError) as e:
            raise KeyError(
                f"{name!r} is not a declared layer of {self.name} ({', '.join(self.layer_names) or 'none'}) "
                f"and the graph, which may hold a tensor of that name, could not be loaded: {e}"
            ) from e
        return graph_model.layer(name)

    def _activations(self, inputs: tf.Tensor, names: list[str]) -> dict[str, tf.Tensor]:
        return self.graph_model._activations(inputs, names)

    def check_input_size(self, height: int, width: int, layers) -> None:
        """See `GraphModel.check_input_size` (loads the graph)."""
        self.graph_model.check_input_size(height, width, layers)

    # -- labels -------------------------------------------------------------------------
    @property
    def labels(self) -> list[str]:
        """Class labels: ``labels_path`` (one per line), else the graph's embedded labels."""
        if self._labels is None:
            if self.labels_path:
                path = fetch.resolve(self.labels_path, self.cache_dir, progress=self.progress)
                self._labels = path.read_text(encoding="utf-8").splitlines()
            elif self.graph_model.labels is not None:
                self._labels = list(self.graph_model.labels)
            else:
                raise ValueError(f"{self.name} has no labels: it declares no labels_path and its graph embeds none")
        return self._labels


def _layers(entries: Iterable[tuple[str, int, str]]) -> tuple[LayerInfo, ...]:
    return tuple(LayerInfo(name, depth, (tag,)) for name, depth, tag in entries)


class InceptionV1(LucidModel):
    """InceptionV1 (GoogLeNet), the model of Lucid's papers, with Lucid's metadata.

    The weights were trained at Google and released in an early TensorFlow tutorial
    (``tensorflow_inception_graph.pb``). Mixed layers are concats of four branches
    (1x1, 3x3, 5x5, pool); each also has a ``<mixed>_pre_relu`` tensor.
    """

    model_path = "gs://modelzoo/vision/other_models/InceptionV1.pb"
    labels_path = "gs://modelzoo/labels/ImageNet_alternate.txt"
    synsets_path = "gs://modelzoo/labels/ImageNet_alternate_synsets.txt"
    dataset = "ImageNet"
    image_shape = (224, 224, 3)
    image_value_range = (-117.0, 255.0 - 117.0)
    input_name = "input"
    layers = _layers([
        ("conv2d0", 64, "conv"),
        ("conv2d1", 64, "conv"),
        ("conv2d2", 192, "conv"),
        ("mixed3a", 256, "conv"),
        ("mixed3b", 480, "conv"),
        ("mixed4a", 508, "conv"),
        ("mixed4b", 512, "conv"),
        ("mixed4c", 512, "conv"),
        ("mixed4d", 528, "conv"),
        ("mixed4e", 832, "conv"),
        ("mixed5a", 832, "conv"),
        ("mixed5b", 1024, "conv"),
        ("head0_bottleneck", 128, "conv"),
        ("nn0", 1024, "dense"),
        ("softmax0", 1008, "dense"),
        ("head1_bottleneck", 128, "conv"),
        ("nn1", 1024, "dense"),
        ("softmax1", 1008, "dense"),
        ("softmax2", 1008, "dense"),
    ])
