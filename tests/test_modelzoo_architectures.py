"""Builders of modelzoo.architectures: parameter counts, layer names, shapes."""

from __future__ import annotations

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from modelzoo import architectures as A  # noqa: E402


def _trainable(model) -> int:
    return int(sum(np.prod(w.shape) for w in model.trainable_weights))


def test_densenet_bc_100_12_parameter_count():
    # DenseNet-BC-100 (k = 12) has 0.8M parameters (Huang et al. 2017, Table 2); common
    # re-implementations report 769,162 trainable weights, plus the 23,988 BN moving
    # statistics that Keras counts as non-trainable.
    model = A.densenet_bc(100, 12, 10)
    assert _trainable(model) == 769_162
    assert model.count_params() == 793_150
    assert model.get_layer("logits").output.shape[-1] == 10
    assert len([l for l in model.layers if l.name.endswith("_conv2")]) == 48  # 3 blocks x 16


def test_densenet_bc_naming_and_shapes():
    model = A.densenet_bc_small()
    names = {layer.name for layer in model.layers}
    for name in ("conv0", "block1_layer4", "transition1_conv", "transition1_pool", "block3_layer4",
                 "final_relu", "pool_final", "logits", "softmax"):
        assert name in names
    # 24 -> 72 -> 36 -> 84 -> 42 -> 90 channels (growth 12, compression 0.5)
    assert model.get_layer("block1_layer4").output.shape[1:] == (16, 16, 72)
    assert model.get_layer("transition1_pool").output.shape[1:] == (8, 8, 36)
    assert model.get_layer("block3_layer4").output.shape[1:] == (4, 4, 90)
    assert isinstance(model.get_layer("softmax"), tf.keras.layers.Softmax)


def test_densenet_bc_rejects_bad_arguments():
    with pytest.raises(ValueError, match="6 n \\+ 4"):
        A.densenet_bc(99, 12)
    with pytest.raises(ValueError, match="input_mean"):
        A.densenet_bc(22, 12, input_mean=[0.5, 0.5, 0.5])


def test_densenet_bc_normalization_and_weight_decay():
    model = A.densenet_bc(22, 12, weight_decay=1e-4, input_mean=[0.5, 0.4, 0.3], input_std=[0.2, 0.2, 0.2])
    assert model.get_layer("normalize") is not None
    assert model.get_layer("conv0").kernel_regularizer is not None
    out = model(np.full((2, 32, 32, 3), 0.5, np.float32))
    np.testing.assert_allclose(np.sum(out, axis=-1), 1.0, rtol=1e-5)


def test_densenet_bc_small_builds():
    model = A.densenet_bc_small()
    assert model.output.shape[1:] == (10,)
    assert model.get_layer("logits").output.shape[1:] == (10,)
    assert _trainable(model) == _trainable(A.densenet_bc(28, 12, stem_strides=2))
    assert A.densenet_bc_small(depth=22).get_layer("block3_layer3") is not None


def test_inception_small_naming_and_depths():
    model = A.inception_small()
    assert [l.name for l in model.layers][-3:] == ["avgpool0", "logits", "softmax"]
    depths = {name: model.get_layer(name).output.shape[-1] for name in ("mixed3a", "mixed3b", "mixed4a")}
    assert depths == {"mixed3a": 128, "mixed3b": 192, "mixed4a": 256}
    for name, widths in A.INCEPTION_SMALL_MIXED.items():
        assert depths[name] == widths[0] + widths[2] + widths[4] + widths[5]
        for branch in ("1x1", "3x3_bottleneck", "3x3", "5x5_bottleneck", "5x5", "pool_reduce"):
            assert model.get_layer(f"{name}_{branch}").activation.__name__ == "relu"
    assert model.get_layer("conv2d0").output.shape[1:] == (32, 32, 32)
    assert model.get_layer("mixed4a").output.shape[1:] == (8, 8, 256)


def test_mnist_small():
    model = A.mnist_small()
    assert model.get_layer("conv2").output.shape[1:] == (14, 14, 32)
    assert model.output.shape[1:] == (10,)
    assert model.get_layer("conv2").activation.__name__ == "relu"


def test_every_layer_is_named_uniquely():
    for model in (A.inception_small(), A.densenet_bc_small(), A.mnist_small()):
        names = [l.name for l in model.layers]
        assert len(names) == len(set(names))
        assert not any(n.startswith(("conv2d_", "dense_", "batch_normalization", "concatenate")) for n in names)


def test_augmentation_keeps_shape_and_values():
    image = tf.reshape(tf.range(32 * 32 * 3, dtype=tf.float32), (32, 32, 3))
    out = A._augment_flip_crop(image, 4)
    assert out.shape == (32, 32, 3)
    assert set(np.unique(out.numpy())) <= set(np.unique(image.numpy())) | {0.0}


def test_train_recipe_runs_one_tiny_epoch():
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, (16, 32, 32, 3)).astype(np.float32)
    y = np.arange(16) % 10
    model = A.train_densenet_bc_cifar10(x, y, depth=10, epochs=1, batch_size=8, verbose=0)
    assert model.get_layer("normalize") is not None
    assert len(model.history.history["loss"]) == 1
    with pytest.raises(ValueError, match="\\[0, 1\\]"):
        A.train_densenet_bc_cifar10(x * 255, y, depth=10, epochs=1)
