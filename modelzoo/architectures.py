"""Keras builders of the networks the paper studies, at full and at CPU-friendly size.

Every layer is named, so each one can be tapped by `lucid_ifv.model.KerasModel` and by
`modelzoo.export.export_keras` (which names graph nodes like the Keras layers). All models
take images ``[B, H, W, C]`` in [0, 1] and end in a ``logits`` Dense layer ``[B, classes]``
followed by a ``softmax`` layer.

* `inception_small`: GoogLeNet-style (Lucid's names ``conv2d0``, ``mixed3a``, ...), 32x32 RGB.
* `densenet_bc`: DenseNet-BC (Huang et al. 2017) for CIFAR-10; ``depth=100, growth_rate=12``
  is the paper's network (0.77M trainable weights); `densenet_bc_small` a CPU-sized one.
* `train_densenet_bc_cifar10`: the original CIFAR-10 training recipe (for a GPU).
* `mnist_small`: two conv layers and a dense head, for fast tests.
* `photos_cnn`: a plain CIFAR-10-tutorial-style CNN (ReLU convs each followed by
  BatchNormalization, max-pooling, dropout, dense head) taking images in [0, 255]; the
  exception to the [0, 1] rule above, like many third-party Keras models.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import tensorflow as tf

keras = tf.keras
layers = keras.layers


def _classifier_head(x, num_classes: int, hidden: int | None = None):
    """``[B, C]`` features -> optional ``fc1`` -> ``logits`` -> ``softmax``."""
    if hidden:
        x = layers.Dense(hidden, activation="relu", name="fc1")(x)
    logits = layers.Dense(num_classes, name="logits")(x)
    return layers.Softmax(name="softmax")(logits)


def _check_input_shape(input_shape: Sequence[int]) -> tuple[int, int, int]:
    shape = tuple(int(d) for d in input_shape)
    if len(shape) != 3 or min(shape) < 1:
        raise ValueError(f"input_shape must be (H, W, C) with positive sizes, got {input_shape!r}")
    return shape


# -- Inception ------------------------------------------------------------------------------

#: Branch widths of the small Inception's mixed layers:
#: (1x1, 3x3 bottleneck, 3x3, 5x5 bottleneck, 5x5, pool projection).
INCEPTION_SMALL_MIXED = {
    "mixed3a": (32, 48, 64, 8, 16, 16),  # 128 channels, 16x16
    "mixed3b": (48, 64, 96, 16, 24, 24),  # 192 channels, 16x16
    "mixed4a": (64, 96, 128, 16, 32, 32),  # 256 channels, 8x8
}


def _conv(x, filters: int, kernel: int, name: str, strides: int = 1):
    return layers.Conv2D(filters, kernel, strides=strides, padding="same", activation="relu", name=name)(x)


def inception_module(x, widths: Sequence[int], name: str):
    """A GoogLeNet mixed layer: concat of 1x1, 1x1->3x3, 1x1->5x5 and 3x3 maxpool->1x1.

    Every branch ends in a ReLU conv, so the concatenation (named `name`) is a ReLU output
    and `modelzoo.graph` adds ``<name>_pre_relu``. Output depth ``= sum of widths[0, 2, 4, 5]``.

    Args:
      x: ``[B, h, w, c]``.
      widths: (1x1, 3x3 bottleneck, 3x3, 5x5 bottleneck, 5x5, pool projection) channels.
      name: Lucid-style layer name (``mixed3a``); branches are ``<name>_1x1``, ...
    Returns:
      ``[B, h, w, depth]``.
    """
    n1, n3r, n3, n5r, n5, npool = widths
    b1 = _conv(x, n1, 1, f"{name}_1x1")
    b3 = _conv(_conv(x, n3r, 1, f"{name}_3x3_bottleneck"), n3, 3, f"{name}_3x3")
    b5 = _conv(_conv(x, n5r, 1, f"{name}_5x5_bottleneck"), n5, 5, f"{name}_5x5")
    bp = layers.MaxPooling2D(3, strides=1, padding="same", name=f"{name}_pool")(x)
    bp = _conv(bp, npool, 1, f"{name}_pool_reduce")
    return layers.Concatenate(axis=-1, name=name)([b1, b3, b5, bp])


def inception_small(input_shape: Sequence[int] = (32, 32, 3), num_classes: int = 10,
                    name: str = "inception_small") -> keras.Model:
    """A small GoogLeNet-style classifier for 32x32 RGB images in [0, 1].

    ``conv2d0`` 3x3/32 (32x32) -> ``maxpool0`` -> ``conv2d1`` 1x1/32 -> ``conv2d2`` 3x3/64
    (16x16) -> ``mixed3a`` (128 ch) -> ``mixed3b`` (192 ch) -> ``maxpool4`` -> ``mixed4a``
    (256 ch, 8x8) -> ``avgpool0`` -> ``logits`` -> ``softmax``. All convs are ReLU
    (no batch norm, like GoogLeNet). Widths of the mixed layers: `INCEPTION_SMALL_MIXED`.

    Returns:
      An uncompiled `keras.Model` ``[B, 32, 32, 3] -> [B, num_classes]`` (softmax).
    """
    inputs = keras.Input(_check_input_shape(input_shape), name="input_image")
    x = _conv(inputs, 32, 3, "conv2d0")
    x = layers.MaxPooling2D(2, name="maxpool0")(x)
    x = _conv(x, 32, 1, "conv2d1")
    x = _conv(x, 64, 3, "conv2d2")
    x = inception_module(x, INCEPTION_SMALL_MIXED["mixed3a"], "mixed3a")
    x = inception_module(x, INCEPTION_SMALL_MIXED["mixed3b"], "mixed3b")
    x = layers.MaxPooling2D(2, name="maxpool4")(x)
    x = inception_module(x, INCEPTION_SMALL_MIXED["mixed4a"], "mixed4a")
    x = layers.GlobalAveragePooling2D(name="avgpool0")(x)
    return keras.Model(inputs, _classifier_head(x, num_classes), name=name)


# -- DenseNet-BC ----------------------------------------------------------------------------


def _bn_relu(x, name: str):
    x = layers.BatchNormalization(epsilon=1.001e-5, name=f"{name}_bn")(x)
    return layers.Activation("relu", name=f"{name}_relu")(x)


def _densenet_conv(x, filters: int, kernel: int, name: str, regularizer):
    return layers.Conv2D(filters, kernel, padding="same", use_bias=False,
                         kernel_regularizer=regularizer, name=name)(x)


def densenet_bc(depth: int = 100, growth_rate: int = 12, num_classes: int = 10, *,
                compression: float = 0.5, input_shape: Sequence[int] = (32, 32, 3),
                weight_decay: float = 0.0, input_mean: Sequence[float] | None = None,
                input_std: Sequence[float] | None = None, stem_strides: int = 1,
                name: str | None = None) -> keras.Model:
    """DenseNet-BC for CIFAR (Huang et al. 2017): three dense blocks of bottleneck layers.

    ``conv0`` 3x3 (2k channels) -> 3 x [dense block of n = (depth - 4) / 6 layers
    (BN-ReLU-1x1 conv (4k)-BN-ReLU-3x3 conv (k), each output concatenated to its input)]
    with transitions (BN-ReLU-1x1 conv to ``floor(compression * c)``-2x2 avgpool) between
    them -> ``final_bn``/``final_relu`` -> ``pool_final`` (global average) -> ``logits`` ->
    ``softmax``. Names: ``block{b}_layer{l}_{bn1,relu1,conv1,bn2,relu2,conv2}``,
    ``block{b}_layer{l}`` (the concatenation), ``transition{b}_{bn,relu,conv,pool}``.

    Args:
      depth: total depth ``6 n + 4`` (100 in the paper: n = 16 layers per block).
      growth_rate: k, channels each bottleneck layer adds (12 in the paper).
      num_classes: classes of the ``logits`` layer.
      compression: transition compression (0.5 for "-BC").
      input_shape: (H, W, C) of the input images in [0, 1].
      weight_decay: coupled weight decay on conv/dense kernels (L2 term
        ``weight_decay / 2 * |w|^2``, so its gradient is ``weight_decay * w`` as in the
        original Torch code); 0 for none.
      input_mean, input_std: per-channel statistics of the training images; when given, a
        ``normalize`` layer maps ``(x - mean) / std`` inside the model, so it still takes
        images in [0, 1].
      stem_strides: stride of ``conv0`` (1 in the paper; 2 quarters the cost of every
        later layer, for CPU-sized variants).
      name: model name (default ``densenet_bc_{depth}_{growth_rate}``).
    Returns:
      An uncompiled `keras.Model` ``[B, H, W, C] -> [B, num_classes]`` (softmax).
    """
    if depth < 10 or (depth - 4) % 6:
        raise ValueError(f"DenseNet-BC depth must be 6 n + 4 with n >= 1, got {depth}")
    if growth_rate < 1 or not 0 < compression <= 1:
        raise ValueError(f"need growth_rate >= 1 and 0 < compression <= 1, got {growth_rate}, {compression}")
    if weight_decay < 0:
        raise ValueError(f"weight_decay must be >= 0, got {weight_decay}")
    n_layers = (depth - 4) // 6
    reg = keras.regularizers.L2(weight_decay / 2) if weight_decay else None
    inputs = keras.Input(_check_input_shape(input_shape), name="input_image")
    x = inputs
    if (input_mean is None) != (input_std is None):
        raise ValueError("give both input_mean and input_std, or neither")
    if input_mean is not None:
        mean = np.asarray(input_mean, np.float32).reshape(-1)
        std = np.asarray(input_std, np.float32).reshape(-1)
        if mean.shape != (inputs.shape[-1],) or std.shape != mean.shape or (std <= 0).any():
            raise ValueError(
                f"input_mean/input_std need {inputs.shape[-1]} values (std > 0), got {mean}, {std}"
            )
        x = layers.Normalization(mean=mean, variance=std**2, name="normalize")(x)
    x = layers.Conv2D(2 * growth_rate, 3, strides=stem_strides, padding="same", use_bias=False,
                      kernel_regularizer=reg, name="conv0")(x)
    channels = 2 * growth_rate
    for block in range(1, 4):
        for i in range(1, n_layers + 1):
            p = f"block{block}_layer{i}"
            y = _densenet_conv(_bn_relu(x, f"{p}_1"), 4 * growth_rate, 1, f"{p}_conv1", reg)
            y = _densenet_conv(_bn_relu(y, f"{p}_2"), growth_rate, 3, f"{p}_conv2", reg)
            x = layers.Concatenate(axis=-1, name=p)([x, y])
            channels += growth_rate
        if block < 3:
            channels = int(np.floor(compression * channels))
            p = f"transition{block}"
            x = _densenet_conv(_bn_relu(x, p), channels, 1, f"{p}_conv", reg)
            x = layers.AveragePooling2D(2, name=f"{p}_pool")(x)
    x = _bn_relu(x, "final")
    x = layers.GlobalAveragePooling2D(name="pool_final")(x)
    logits = layers.Dense(num_classes, kernel_regularizer=reg, name="logits")(x)
    outputs = layers.Softmax(name="softmax")(logits)
    return keras.Model(inputs, outputs, name=name or f"densenet_bc_{depth}_{growth_rate}")


def densenet_bc_small(num_classes: int = 10, *, input_shape: Sequence[int] = (32, 32, 3),
                      name: str = "densenet_bc_small", **kwargs) -> keras.Model:
    """CPU-sized `densenet_bc`: depth 28 (4 bottleneck layers per block), growth rate 12,
    stride-2 ``conv0`` (blocks at 16x16, 8x8, 4x4); 106k weights.

    Same layer names and structure as the full network (``logits`` -> ``softmax`` head);
    `kwargs` go to `densenet_bc` (``weight_decay``, ``input_mean``, ...).
    """
    kwargs = {"depth": 28, "growth_rate": 12, "stem_strides": 2, **kwargs}
    return densenet_bc(num_classes=num_classes, input_shape=input_shape, name=name, **kwargs)


def _augment_flip_crop(image: tf.Tensor, pad: int) -> tf.Tensor:
    """Random horizontal flip, then zero-pad by `pad` and random crop back; ``[H, W, C]``."""
    image = tf.image.random_flip_left_right(image)
    padded = tf.pad(image, [[pad, pad], [pad, pad], [0, 0]])
    return tf.image.random_crop(padded, tf.shape(image))


def train_densenet_bc_cifar10(x_train, y_train, x_test=None, y_test=None, *, model: keras.Model | None = None,
                              depth: int = 100, growth_rate: int = 12, epochs: int = 300,
                              batch_size: int = 64, learning_rate: float = 0.1, momentum: float = 0.9,
                              weight_decay: float = 1e-4, seed: int = 0, verbose: int = 2) -> keras.Model:
    """Train DenseNet-BC on CIFAR-10 with the paper's recipe (a GPU job: ~300 epochs).

    SGD with Nesterov momentum 0.9, weight decay 1e-4 (coupled, on kernels), batch 64,
    learning rate 0.1 divided by 10 at 50% and 75% of the epochs, random horizontal flip
    and 4-pixel zero-pad + random crop. Per-channel mean/std of `x_train` are built into
    the model (``normalize`` layer), so it takes images in [0, 1]. Nothing is downloaded:
    load CIFAR-10 yourself (e.g. ``keras.datasets.cifar10.load_data()`` then ``/ 255``).

    Args:
      x_train: float ``[N, 32, 32, 3]`` in [0, 1]; y_train: int ``[N]`` (or ``[N, 1]``).
      x_test, y_test: optional validation data, same layout.
      model: a compiled-or-not Keras model to train instead of a fresh
        ``densenet_bc(depth, growth_rate, weight_decay=weight_decay)``.
      seed: seeds weights, shuffling and augmentation.
    Returns:
      The trained `keras.Model` (its ``history`` attribute holds the Keras History).
    """
    x_train = np.asarray(x_train, np.float32)
    y_train = np.asarray(y_train).reshape(-1).astype(np.int64)
    if x_train.ndim != 4 or len(x_train) != len(y_train):
        raise ValueError(f"x_train must be [N, H, W, C] with N == len(y_train); got {x_train.shape}, {y_train.shape}")
    if x_train.min() < 0 or x_train.max() > 1:
        raise ValueError("x_train must be in [0, 1] (divide uint8 images by 255)")
    keras.utils.set_random_seed(seed)
    if model is None:
        model = densenet_bc(depth, growth_rate, int(y_train.max()) + 1, input_shape=x_train.shape[1:],
                            weight_decay=weight_decay, input_mean=x_train.mean(axis=(0, 1, 2)),
                            input_std=x_train.std(axis=(0, 1, 2)))
    steps_per_epoch = -(-len(x_train) // batch_size)
    total = epochs * steps_per_epoch
    schedule = keras.optimizers.schedules.PiecewiseConstantDecay(
        [int(0.5 * total), int(0.75 * total)], [learning_rate, learning_rate / 10, learning_rate / 100]
    )
    model.compile(
        optimizer=keras.optimizers.SGD(schedule, momentum=momentum, nesterov=True),
        loss=keras.losses.SparseCategoricalCrossentropy(), metrics=["accuracy"],
    )
    data = (
        tf.data.Dataset.from_tensor_slices((x_train, y_train))
        .shuffle(len(x_train), seed=seed, reshuffle_each_iteration=True)
        .map(lambda x, y: (_augment_flip_crop(x, 4), y), num_parallel_calls=tf.data.AUTOTUNE)
        .batch(batch_size)
        .prefetch(tf.data.AUTOTUNE)
    )
    validation = None
    if x_test is not None:
        validation = (np.asarray(x_test, np.float32), np.asarray(y_test).reshape(-1).astype(np.int64))
    model.history = model.fit(data, epochs=epochs, validation_data=validation, shuffle=False, verbose=verbose)
    return model


# -- MNIST ----------------------------------------------------------------------------------


def mnist_small(input_shape: Sequence[int] = (28, 28, 1), num_classes: int = 10,
                name: str = "mnist_small") -> keras.Model:
    """A tiny MNIST classifier: ``conv1`` 3x3/16 -> ``pool1`` -> ``conv2`` 3x3/32 (ReLU,
    14x14) -> ``pool2`` -> ``flatten`` -> ``fc1`` (64) -> ``logits`` -> ``softmax``."""
    inputs = keras.Input(_check_input_shape(input_shape), name="input_image")
    x = _conv(inputs, 16, 3, "conv1")
    x = layers.MaxPooling2D(2, name="pool1")(x)
    x = _conv(x, 32, 3, "conv2")
    x = layers.MaxPooling2D(2, name="pool2")(x)
    x = layers.Flatten(name="flatten")(x)
    return keras.Model(inputs, _classifier_head(x, num_classes, hidden=64), name=name)


# -- photos10 (third-party style) -----------------------------------------------------------


def photos_cnn(input_shape: Sequence[int] = (32, 32, 3), num_classes: int = 10, *, dense_units: int = 64,
               name: str = "photos_cnn") -> keras.Model:
    """A small CNN in the style of the common Keras CIFAR-10 tutorials, for images in [0, 255].

    ``rescaling`` (x / 255) -> ``conv2d_1`` 3x3/32 same -> ``batch_normalization_1`` ->
    ``conv2d_2`` 3x3/32 valid -> ``batch_normalization_2`` -> ``max_pooling2d_1`` ->
    ``dropout_1`` (0.25) -> ``conv2d_3`` 3x3/64 same (15x15) -> ``batch_normalization_3`` ->
    ``conv2d_4`` 3x3/64 valid -> ``batch_normalization_4`` -> ``max_pooling2d_2`` ->
    ``dropout_2`` (0.25) -> ``flatten`` -> ``dense_1`` (`dense_units`, ReLU) ->
    ``batch_normalization_5`` -> ``dropout_3`` (0.5) -> ``logits`` -> ``softmax``.

    Every conv and ``dense_1`` has its ReLU inside (``activation="relu"``), so the
    BatchNormalization comes *after* the ReLU, as in many third-party models; the layer
    outputs ``conv2d_k`` are post-ReLU. The scaling to [0, 1] is the model's first layer,
    so it takes raw pixel values in [0, 255].

    Returns:
      An uncompiled `keras.Model` ``[B, 32, 32, 3] -> [B, num_classes]`` (softmax).
    """
    inputs = keras.Input(_check_input_shape(input_shape), name="input_image")
    x = layers.Rescaling(1.0 / 255.0, name="rescaling")(inputs)
    x = layers.Conv2D(32, 3, padding="same", activation="relu", name="conv2d_1")(x)
    x = layers.BatchNormalization(name="batch_normalization_1")(x)
    x = layers.Conv2D(32, 3, activation="relu", name="conv2d_2")(x)
    x = layers.BatchNormalization(name="batch_normalization_2")(x)
    x = layers.MaxPooling2D(2, name="max_pooling2d_1")(x)
    x = layers.Dropout(0.25, name="dropout_1")(x)
    x = layers.Conv2D(64, 3, padding="same", activation="relu", name="conv2d_3")(x)
    x = layers.BatchNormalization(name="batch_normalization_3")(x)
    x = layers.Conv2D(64, 3, activation="relu", name="conv2d_4")(x)
    x = layers.BatchNormalization(name="batch_normalization_4")(x)
    x = layers.MaxPooling2D(2, name="max_pooling2d_2")(x)
    x = layers.Dropout(0.25, name="dropout_2")(x)
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dense(dense_units, activation="relu", name="dense_1")(x)
    x = layers.BatchNormalization(name="batch_normalization_5")(x)
    x = layers.Dropout(0.5, name="dropout_3")(x)
    logits = layers.Dense(num_classes, name="logits")(x)
    return keras.Model(inputs, layers.Softmax(name="softmax")(logits), name=name)
