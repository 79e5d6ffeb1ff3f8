"""SRNet for geometry images (the paper's Sec. 3.7): build, train, evaluate, ship.

The paper studies the SRNet of Weiss et al. (2019): a fully convolutional network (after
Sajjadi et al. 2018) that upscales low-resolution geometry images of isosurfaces (normals,
depth, hit mask; `modelzoo.geometry`) by 4x. `build_srnet` is that architecture at CPU size:

    input [B, 16, 16, 5]  (a raw geometry image: normals in [-1, 1], depth and mask in [0, 1])
    conv_in          3x3 conv, WIDTH filters, ReLU                         [B, 16, 16, 32]
    res_block1..8    x + conv3x3(ReLU(conv3x3(x))), WIDTH filters          [B, 16, 16, 32]
    upsample1        3x3 conv to 4*32 -> depth-to-space x2 -> ReLU         [B, 32, 32, 32]
    upsample2        3x3 conv to 4*16 -> depth-to-space x2 -> ReLU         [B, 64, 64, 16]
    residual         3x3 conv to 5 channels (zero-initialized)             [B, 64, 64, 5]
    bilinear         bilinear 4x upscaling of the input                    [B, 64, 64, 5]
    output           residual + bilinear                                   [B, 64, 64, 5]

Every layer is named, and ``res_block<i>`` is the *output* of residual block i (the sum), so
the 8th block, the layer the paper visualizes and inverts, is the tensor ``res_block8``.
Versus the paper: 8 residual blocks as there, 32 instead of 64 filters (4x cheaper, so it
trains in minutes on 2 CPU cores), sub-pixel (depth-to-space) upsampling, no output
squashing (the normals are not renormalized; consumers normalize and threshold the mask).

Training (`train_srnet`): `modelzoo.geometry.srnet_pairs` (seeded blob volumes, iso 0.5),
Adam with cosine decay, loss (`geometry_loss`) = L1 of the normals and ``DEPTH_WEIGHT`` x L1
of the depth on the target's hit pixels (each a mean over hit pixels) + ``MASK_WEIGHT`` x a
binary cross-entropy of the mask over all pixels (through the fixed link
``sigmoid(8 (m - 0.5))``, so the output mask is still thresholded at 0.5). `evaluate`
reports, on held-out pairs, the mean angular error of the normals and the depth L1 on the
target's hit pixels and the mask accuracy (threshold 0.5), for the network and for plain
bilinear upscaling of the input (the baseline it must beat); `compare_to_bilinear` adds a
mask-weighted bilinear upscaling (normals and depth from hit pixels only) for reference.

    python -m modelzoo.srnet --out modelzoo/data        # writes srnet_small.pb + .json

(Keras weights also go to ``--keras-dir``, default /tmp/lucid_ifv_train; ``--export-only``
re-exports them) reproduces the shipped model (seeded; ``tf.config.experimental.enable_op_determinism``).
The ``.pb`` takes the geometry image *as is*: its ``image_value_range`` is (0, 1), so the
library's input mapping ``lo + x (hi - lo)`` is the identity and normals keep their sign.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import re
import sys
import time
from pathlib import Path
from typing import Sequence

import numpy as np

from modelzoo import geometry

NAME = "srnet_small"
LOW = 16
FACTOR = 4
CHANNELS = 5
WIDTH = 32
BLOCKS = 8
#: Output channels of the two x2 upsampling stages.
UP_WIDTHS = (32, 16)
#: Weights of the depth and mask terms of `geometry_loss` (depth errors are ~10x smaller than
#: normal errors).
DEPTH_WEIGHT = 5.0
MASK_WEIGHT = 2.0
#: The mask term is a binary cross-entropy of ``sigmoid(MASK_LOGIT_SCALE (m - 0.5))``: a fixed
#: logistic link, so the decision ``m > 0.5`` is unchanged and the output stays one number.
MASK_LOGIT_SCALE = 8.0
#: Data seeds (`geometry.srnet_pairs`): training pairs, and the held-out pairs of `heldout_pairs`.
TRAIN_DATA_SEED = 20190601
HELDOUT_DATA_SEED = 20190602
HELDOUT_SIZE = 1000
#: Default training run (the shipped model's).
N_TRAIN = 4000
EPOCHS = 4
BATCH_SIZE = 32
LEARNING_RATE = 1e-3
DESCRIPTION = (
    "SRNet-style geometry-image super-resolution (Sec. 3.7; Weiss et al. 2019 after Sajjadi et al. "
    "2018): 8 residual blocks of 32 3x3 filters, 2 depth-to-space x2 stages, output = residual + "
    "bilinear 4x upscaling. Input: a raw 16x16 geometry image of an isosurface, NOT an RGB image: "
    "channels (normal_x, normal_y, normal_z, depth, mask), normals unit view-space vectors in [-1, 1] "
    "(n_z >= 0), depth in [0, 1] (1 = no hit), mask in {0, 1}; image_value_range (0, 1) makes the "
    "library's input mapping the identity. Output [64, 64, 5] in the same layout. Trained on "
    "modelzoo.geometry.srnet_pairs (Gaussian-blob volumes, iso 0.5)."
)


def _keras():
    import tensorflow as tf

    return tf, tf.keras


@functools.cache
def _depth_to_space_class():
    tf, keras = _keras()

    class DepthToSpace(keras.layers.Layer):
        """``tf.nn.depth_to_space``: ``[B, h, w, r*r*c]`` -> ``[B, r*h, r*w, c]``."""

        def __init__(self, block_size: int = 2, **kwargs):
            super().__init__(**kwargs)
            self.block_size = int(block_size)

        def call(self, x):
            return tf.nn.depth_to_space(x, self.block_size)

        def compute_output_shape(self, shape):
            r = self.block_size
            return (shape[0], None if shape[1] is None else shape[1] * r,
                    None if shape[2] is None else shape[2] * r, shape[3] // (r * r))

        def get_config(self):
            return {**super().get_config(), "block_size": self.block_size}

    return DepthToSpace


def build_srnet(width: int = WIDTH, blocks: int = BLOCKS, up_widths: Sequence[int] = UP_WIDTHS,
                low: int = LOW, channels: int = CHANNELS, name: str = NAME):
    """The SRNet of the module docstring as a Keras model ``[B, low, low, C] -> [B, 4 low, 4 low, C]``.

    Args:
      width: filters of ``conv_in`` and of every residual block.
      blocks: residual blocks (``res_block1`` ... ``res_block<blocks>``).
      up_widths: output channels of each x2 upsampling stage (``upsample1``, ...); the
        upscaling factor is ``2 ** len(up_widths)``.
    """
    _, keras = _keras()
    layers = keras.layers
    if width < 1 or blocks < 1 or not up_widths or min(up_widths) < 1:
        raise ValueError(f"need width >= 1, blocks >= 1 and up_widths >= 1, got {width}, {blocks}, {up_widths}")
    depth_to_space = _depth_to_space_class()
    inputs = keras.Input((low, low, channels), name="geometry")
    x = layers.Conv2D(width, 3, padding="same", activation="relu", name="conv_in")(inputs)
    for i in range(1, blocks + 1):
        y = layers.Conv2D(width, 3, padding="same", activation="relu", name=f"res_block{i}_conv1")(x)
        y = layers.Conv2D(width, 3, padding="same", name=f"res_block{i}_conv2")(y)
        x = layers.Add(name=f"res_block{i}")([x, y])
    for i, c in enumerate(up_widths, start=1):
        x = layers.Conv2D(4 * c, 3, padding="same", name=f"upsample{i}_conv")(x)
        x = depth_to_space(2, name=f"upsample{i}_shuffle")(x)
        x = layers.ReLU(name=f"upsample{i}")(x)
    residual = layers.Conv2D(channels, 3, padding="same", kernel_initializer="zeros", name="residual")(x)
    factor = 2 ** len(up_widths)
    bilinear = layers.UpSampling2D(factor, interpolation="bilinear", name="bilinear")(inputs)
    outputs = layers.Add(name="output")([residual, bilinear])
    return keras.Model(inputs, outputs, name=name)


def taps(blocks: int = BLOCKS, stages: int = len(UP_WIDTHS)) -> tuple[str, ...]:
    """The layers the shipped graph exposes."""
    return ("conv_in", *(f"res_block{i}" for i in range(1, blocks + 1)),
            *(f"upsample{i}" for i in range(1, stages + 1)), "residual", "bilinear", "output")


# -- loss and metrics -------------------------------------------------------------------------


def geometry_loss(target, prediction):
    """Loss of geometry images ``[B, H, W, 5]`` (TensorFlow, differentiable).

    ``mean_hits |n - n*|_1 + DEPTH_WEIGHT mean_hits |d - d*|
    + MASK_WEIGHT mean_all BCE(m*, sigmoid(MASK_LOGIT_SCALE (m - 0.5)))`` where ``mean_hits``
    averages over the pixels the *target* hits (its mask), so the network is free to output
    anything for normals and depth where there is no surface. The mask gets a cross-entropy
    instead of an L1 term: with L1 the ~90% of pixels whose bilinear mask is already exact
    (0 or 1) pin the mask residual at 0 (measured: it did not move in 2 epochs), while the
    cross-entropy's gradient there is small and it learns the silhouettes.
    """
    tf, _ = _keras()
    target = tf.convert_to_tensor(target, tf.float32)
    mask = target[..., 4:5]
    hits = tf.reduce_sum(mask) + 1.0
    normal = tf.reduce_sum(mask * tf.abs(prediction[..., :3] - target[..., :3])) / hits
    depth = tf.reduce_sum(mask * tf.abs(prediction[..., 3:4] - target[..., 3:4])) / hits
    logits = MASK_LOGIT_SCALE * (prediction[..., 4] - 0.5)
    coverage = tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(labels=target[..., 4], logits=logits))
    return normal + DEPTH_WEIGHT * depth + MASK_WEIGHT * coverage


def bilinear_upscale(images, factor: int = FACTOR) -> np.ndarray:
    """Plain bilinear upscaling (half-pixel centres, edges clamped) of ``[B, h, w, C]``:
    ``[B, factor h, factor w, C]``, as the network's ``bilinear`` layer computes it."""
    tf, _ = _keras()
    images = tf.convert_to_tensor(images, tf.float32)
    size = (images.shape[1] * factor, images.shape[2] * factor)
    return tf.image.resize(images, size, method="bilinear").numpy()


def evaluate(prediction, target) -> dict:
    """Errors of predicted geometry images ``[B, H, W, 5]`` against targets (numpy).

    Returns:
      ``normal_angle_deg``: mean angle between the (normalized) predicted and the target
      normals over the target's hit pixels (a zero predicted normal counts as 90 degrees);
      ``depth_l1``: mean ``|d - d*|`` over the target's hit pixels; ``mask_accuracy``: fraction
      of all pixels where ``prediction mask > 0.5`` equals the target mask; ``n_pairs``,
      ``n_hit_pixels``.
    """
    prediction = np.asarray(prediction, np.float64)
    target = np.asarray(target, np.float64)
    if prediction.shape != target.shape or prediction.shape[-1] != 5:
        raise ValueError(f"prediction {prediction.shape} and target {target.shape} must be equal [B, H, W, 5] shapes")
    hits = target[..., 4] > 0.5
    n_pred, n_true = prediction[hits, :3], target[hits, :3]
    norm = np.linalg.norm(n_pred, axis=-1)
    cos = np.where(norm > 1e-8, np.sum(n_pred * n_true, axis=-1) / np.maximum(norm, 1e-8), 0.0)
    angle = np.degrees(np.arccos(np.clip(cos, -1.0, 1.0)))
    return {
        "normal_angle_deg": round(float(angle.mean()), 4),
        "depth_l1": round(float(np.abs(prediction[hits, 3] - target[hits, 3]).mean()), 6),
        "mask_accuracy": round(float(np.mean((prediction[..., 4] > 0.5) == hits)), 6),
        "n_pairs": int(len(target)),
        "n_hit_pixels": int(hits.sum()),
    }


def predict(model, inputs, batch_size: int = 100, layer: str = "output") -> np.ndarray:
    """Outputs of `layer` for low-res geometry images ``[N, 16, 16, 5]``, batched: a Keras
    model (its output) or a `lucid_ifv.model.Model` such as the loaded ``.pb`` (`layer`)."""
    parts = []
    for i in range(0, len(inputs), batch_size):
        batch = np.asarray(inputs[i:i + batch_size], np.float32)
        out = model(batch, [layer])[layer] if hasattr(model, "layer_names") else model(batch, training=False)
        parts.append(np.asarray(out))
    return np.concatenate(parts, axis=0)


def compare_to_bilinear(model, inputs, targets) -> dict:
    """`evaluate` for `model` (see `predict`), plain bilinear upscaling of the inputs, and a
    mask-weighted bilinear upscaling (normals and depth interpolated from hit pixels only)."""
    bilinear = bilinear_upscale(inputs)
    mask = inputs[..., 4:5]
    weights = bilinear_upscale(mask)
    weighted = bilinear_upscale(inputs[..., :4] * mask) / np.maximum(weights, 1e-6)
    masked = np.concatenate([weighted, bilinear[..., 4:]], axis=-1)
    return {
        "srnet": evaluate(predict(model, inputs), targets),
        "bilinear": evaluate(bilinear, targets),
        "bilinear_masked": evaluate(masked, targets),
    }


@functools.lru_cache(maxsize=2)
def _heldout(n: int) -> tuple[np.ndarray, np.ndarray]:
    return geometry.srnet_pairs(n, HELDOUT_DATA_SEED, LOW, FACTOR)


def heldout_pairs(n: int = HELDOUT_SIZE) -> tuple[np.ndarray, np.ndarray]:
    """The fixed held-out pairs: ``geometry.srnet_pairs(n, HELDOUT_DATA_SEED)``, disjoint in
    seed from the training pairs; low-res ``[n, 16, 16, 5]``, high-res ``[n, 64, 64, 5]``
    (copies of a cached set)."""
    low, high = _heldout(int(n))
    return low.copy(), high.copy()


# -- training -------------------------------------------------------------------------------


def train_srnet(seed: int = 0, *, n_train: int = N_TRAIN, epochs: int = EPOCHS, batch_size: int = BATCH_SIZE,
                learning_rate: float = LEARNING_RATE, n_val: int = HELDOUT_SIZE, width: int = WIDTH,
                blocks: int = BLOCKS, up_widths: Sequence[int] = UP_WIDTHS, data=None, verbose: int = 2):
    """Train an SRNet on `geometry.srnet_pairs` and evaluate it against bilinear upscaling.

    Args:
      seed: the model's seed (initialization, batch order); the data seeds are the fixed
        `TRAIN_DATA_SEED` and `HELDOUT_DATA_SEED`.
      n_train, epochs, batch_size, learning_rate: Adam with cosine decay to 0 over the run.
      n_val: held-out pairs evaluated after training (`heldout_pairs`); 0 skips it.
      data: optional ``(inputs, targets)`` to train on instead of generated pairs (tests).
    Returns:
      ``(keras_model, info)``: `info` holds the settings, data source, ``data_time_s``
      (pair generation), ``train_time_s`` (wall clock of ``fit``), the loss history and,
      if ``n_val``, ``validation`` = `compare_to_bilinear` on the held-out pairs.
    """
    _, keras = _keras()
    if epochs < 1 or batch_size < 1:
        raise ValueError(f"epochs and batch_size must be >= 1, got {epochs}, {batch_size}")
    start = time.perf_counter()
    if data is None:
        if n_train < 1:
            raise ValueError(f"n_train must be >= 1, got {n_train}")
        inputs, targets = geometry.srnet_pairs(n_train, TRAIN_DATA_SEED, LOW, FACTOR)
        source = (f"modelzoo.geometry.srnet_pairs({n_train}, seed={TRAIN_DATA_SEED}, low={LOW}, factor={FACTOR}): "
                  f"blob_volume(size={geometry.PAIRS_VOLUME_SIZE}) at iso {geometry.PAIRS_ISO}, camera along -z")
    else:
        inputs, targets = (np.asarray(a, np.float32) for a in data)
        source = f"caller-supplied pairs ({len(inputs)})"
    data_time = time.perf_counter() - start
    keras.utils.set_random_seed(seed)
    model = build_srnet(width, blocks, up_widths)
    steps = epochs * -(-len(inputs) // batch_size)
    model.compile(optimizer=keras.optimizers.Adam(keras.optimizers.schedules.CosineDecay(learning_rate, steps)),
                  loss=geometry_loss)
    start = time.perf_counter()
    history = model.fit(inputs, targets, batch_size=batch_size, epochs=epochs, shuffle=True, verbose=verbose)
    train_time = time.perf_counter() - start
    info = {
        "architecture": {"builder": "modelzoo.srnet.build_srnet",
                         "kwargs": {"width": width, "blocks": blocks, "up_widths": list(up_widths)},
                         "params": int(model.count_params())},
        "training": {
            "optimizer": "Adam", "learning_rate": learning_rate, "schedule": "cosine decay to 0",
            "epochs": epochs, "batch_size": batch_size, "n_train": int(len(inputs)),
            "loss": (f"modelzoo.srnet.geometry_loss: L1 of normals + {DEPTH_WEIGHT} x L1 of depth (means over "
                     f"the target's hit pixels) + {MASK_WEIGHT} x binary cross-entropy of "
                     f"sigmoid({MASK_LOGIT_SCALE} (mask - 0.5)) vs the target mask (mean over all pixels)"),
            "loss_history": [round(float(v), 5) for v in history.history["loss"]],
        },
        "data_source": source,
        "seed": seed,
        "data_time_s": round(data_time, 1),
        "train_time_s": round(train_time, 1),
    }
    if n_val:
        val_in, val_out = heldout_pairs(n_val)
        info["validation"] = compare_to_bilinear(model, val_in, val_out)
    return model, info


# -- shipping -------------------------------------------------------------------------------


def export(keras_model, info: dict, out_dir: str | os.PathLike, name: str = NAME) -> dict:
    """Freeze `keras_model` to ``<out_dir>/<name>.pb`` (`modelzoo.export.export_keras`, input
    range (0, 1), the layers of `taps`), reload it with `modelzoo.graph.load_model`, evaluate
    the reloaded graph on the held-out pairs and write the record ``<name>.json`` (also a Lucid
    manifest). Returns the record."""
    import tensorflow as tf

    from modelzoo.export import export_keras
    from modelzoo.graph import load_model
    from modelzoo.training_setup import provenance

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    pb = out_dir / f"{name}.pb"
    stages = sum(1 for layer in keras_model.layers if re.fullmatch(r"upsample\d+", layer.name))
    blocks = sum(1 for layer in keras_model.layers if re.fullmatch(r"res_block\d+", layer.name))
    export_keras(keras_model, pb, layers=list(taps(blocks, stages)), image_value_range=(0.0, 1.0), name=name,
                 input_kind="geometry")
    graph = load_model(pb, name=name)
    inputs, targets = heldout_pairs()
    validation = compare_to_bilinear(graph, inputs, targets)
    record = {
        "name": name,
        "model_path": pb.name,
        "type": "frozen",
        "dataset": "geometry",
        "input_name": "input",
        "image_shape": list(graph.image_shape),
        "image_value_range": [0.0, 1.0],
        "input_kind": graph.input_kind,
        "studied_layers": {"res_block8": graph.layer("res_block8").depth} if blocks >= 8 else {},
        "layers": [layer.to_dict() for layer in graph.layers],
        "description": DESCRIPTION,
        "input_channels": list(geometry.CHANNELS),
        "output": {"layer": "output", "shape": [LOW * FACTOR, LOW * FACTOR, CHANNELS],
                   "channels": list(geometry.CHANNELS)},
        "heldout": {"n": int(len(inputs)),
                    "source": f"modelzoo.srnet.heldout_pairs() = modelzoo.geometry.srnet_pairs({len(inputs)}, "
                              f"seed={HELDOUT_DATA_SEED})"},
        "accuracy": None,  # not a classifier; see "validation"
        "validation": validation,
        "keras_validation": info.get("validation"),
    }
    record.update({k: v for k, v in info.items() if k != "validation"})
    record.update(provenance(pb))
    record.update({
        "command": f"python -m modelzoo.srnet --out modelzoo/data --seed {info['seed']}"
                   + (f" --epochs {info['training']['epochs']}" if info["training"]["epochs"] != EPOCHS else "")
                   + (f" --n-train {info['training']['n_train']}" if info["training"]["n_train"] != N_TRAIN else ""),
    })
    (out_dir / f"{name}.json").write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    return record


def main(argv: Sequence[str] | None = None) -> int:
    from modelzoo.training_setup import DEFAULT_KERAS_DIR, setup_tensorflow

    parser = argparse.ArgumentParser(prog="python -m modelzoo.srnet", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent / "data"),
                        help="directory of srnet_small.pb and .json (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=EPOCHS)
    parser.add_argument("--n-train", type=int, default=N_TRAIN)
    parser.add_argument("--threads", type=int, default=2, help="TensorFlow intra-op threads (0: TF default)")
    parser.add_argument("--keras-dir", default=str(DEFAULT_KERAS_DIR), help="where the Keras weights go")
    parser.add_argument("--export-only", action="store_true",
                        help=f"skip training: re-export <keras-dir>/{NAME}.weights.h5 (+ .info.json)")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    setup_tensorflow(args.seed, args.threads)
    keras_dir = Path(args.keras_dir)
    weights, info_path = keras_dir / f"{NAME}.weights.h5", keras_dir / f"{NAME}.info.json"
    if args.export_only:
        if not weights.exists() or not info_path.exists():
            parser.error(f"--export-only needs {weights} and {info_path}; train first")
        info = json.loads(info_path.read_text(encoding="utf-8"))
        model = build_srnet(**{k: v for k, v in info["architecture"]["kwargs"].items()})
        model.load_weights(weights)
    else:
        model, info = train_srnet(args.seed, n_train=args.n_train, epochs=args.epochs,
                                  verbose=0 if args.quiet else 2)
        keras_dir.mkdir(parents=True, exist_ok=True)
        model.save_weights(weights)
        info_path.write_text(json.dumps(info, indent=2), encoding="utf-8")
        print(f"trained {NAME} in {info['train_time_s']} s (data {info['data_time_s']} s); "
              f"Keras weights: {weights}", flush=True)
    record = export(model, info, args.out)
    print(json.dumps({k: record[k] for k in ("name", "validation", "train_time_s", "size_bytes")}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
