"""lucid_ifv.smooth: smooth kinks, smooth surrogates of Keras and frozen-graph models, the
smooth aggregation, and the shipped models' ``<mixed>_pre_relu`` names (modelzoo.graph)."""

from __future__ import annotations

import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from lucid_ifv import aggregation as agg
from lucid_ifv.model import KerasModel, LayerInfo, Model
from lucid_ifv.smooth import lse_pool2d, smooth_model, smooth_relu, smooth_relu6
from modelzoo.graph import GraphModel
from modelzoo.lucid_format import Metadata
from modelzoo.shipped import SHIPPED, load_shipped
from modelzoo.vision import LucidModel

#: (beta, T) ever sharper: the surrogate's outputs must converge to the original's.
SCHEDULE = [(10.0, 0.05), (100.0, 5e-3), (1e4, 5e-5)]


def _rng(seed=0):
    return np.random.default_rng(seed)


def _images(model, n=3, seed=0):
    return tf.constant(_rng(seed).uniform(size=(n, *model.image_shape)), tf.float32)


def _relative_errors(model, surrogate, images, layers) -> dict[str, float]:
    """max |surrogate - model| / max |model| per layer (shapes checked equal)."""
    a, b = model(images, layers), surrogate(images, layers)
    out = {}
    for name in layers:
        assert a[name].shape == b[name].shape, name
        out[name] = float(tf.reduce_max(tf.abs(a[name] - b[name])) / tf.reduce_max(tf.abs(a[name])))
    return out


def _assert_converges(model, layers, images, final_tol):
    errors = [_relative_errors(model, smooth_model(model, beta, t), images, layers) for beta, t in SCHEDULE]
    for name in layers:
        series = [e[name] for e in errors]
        assert series[0] > series[1] > series[2], (name, series)
        assert series[2] < final_tol, (name, series)
    return errors


# -- smooth kinks -------------------------------------------------------------------------------


def assert_surrogate_has_gradient_at_a_dead_unit(model, images, layer="conv1"):
    """At a unit of ``layer`` whose ReLU output is 0 the model's input gradient is exactly
    zero and the surrogate's is non-zero and finite."""
    acts = model(images, [layer])[layer].numpy()
    b, i, j, c = np.argwhere(acts == 0)[0]
    grads = []
    for m in (model, smooth_model(model)):
        with tf.GradientTape() as tape:
            tape.watch(images)
            unit = m(images, [layer])[layer][b, i, j, c]
        grads.append(tape.gradient(unit, images))
    assert float(tf.norm(grads[0])) == 0.0
    assert float(tf.norm(grads[1])) > 1e-6 and np.isfinite(grads[1].numpy()).all()


@pytest.mark.parametrize("padding", ["VALID", "SAME"])
@pytest.mark.parametrize("ksize, strides", [(3, 2), ((2, 3), (1, 2)), (3, 1), (5, 3)])
def test_lse_pool_tends_to_max_pool_from_above(padding, ksize, strides):
    x = tf.constant(_rng(1).normal(size=(2, 9, 7, 3)), tf.float32)
    ref = tf.nn.max_pool2d(x, ksize, strides, padding)
    n = math.prod((ksize, ksize) if np.isscalar(ksize) else ksize)
    gaps = []
    for t in (0.5, 0.05, 1e-3):
        got = lse_pool2d(x, ksize, strides, padding, t)
        assert got.shape == ref.shape
        gap = (got - ref).numpy()
        assert gap.min() >= -1e-6 and gap.max() <= t * math.log(n) + 1e-6  # max <= LSE <= max + T log n
        gaps.append(gap.max())
    assert gaps[0] > gaps[1] > gaps[2] and gaps[2] < 2e-3, gaps


def test_lse_pool_gradient_is_a_softmax_per_window():
    """Non-overlapping windows: d sum(LSE) / dx sums to 1 over each window, is positive and
    finite (also next to the -inf padding of SAME)."""
    x = tf.constant(_rng(2).normal(size=(1, 6, 6, 2)), tf.float32)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(x)
        valid = tf.reduce_sum(lse_pool2d(x, 2, 2, "VALID", 0.1))
        same = tf.reduce_sum(lse_pool2d(x, 3, 2, "SAME", 0.1))
    g = tape.gradient(valid, x).numpy()
    np.testing.assert_allclose(g.reshape(1, 3, 2, 3, 2, 2).sum(axis=(2, 4)), 1.0, rtol=1e-5)
    assert (g > 0).all()
    g_same = tape.gradient(same, x).numpy()
    assert np.isfinite(g_same).all() and (g_same > 0).all()


def test_smooth_relu_bounds_and_limits():
    x = tf.constant(np.linspace(-8, 8, 161), tf.float32)
    for beta in (1.0, 10.0, 1e3):
        gap = (smooth_relu(x, beta) - tf.nn.relu(x)).numpy()
        assert gap.min() >= 0 and gap.max() <= math.log(2) / beta + 1e-6
        gap6 = np.abs((smooth_relu6(x, beta) - tf.nn.relu6(x)).numpy())
        assert gap6.max() <= math.log(2) / beta + 1e-6
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = smooth_relu(x, 10.0)
    np.testing.assert_allclose(tape.gradient(y, x), tf.sigmoid(10.0 * x), rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("bad", [0, -1.0, float("nan"), float("inf"), "ten", None])
def test_bad_beta_and_temperature_are_value_errors(bad):
    x = tf.zeros([1, 4, 4, 1])
    with pytest.raises(ValueError, match="beta must be a finite number > 0"):
        smooth_relu(x, bad)
    with pytest.raises(ValueError, match="temperature must be a finite number > 0"):
        lse_pool2d(x, 2, 2, "VALID", bad)


def test_lse_pool_argument_errors():
    with pytest.raises(ValueError, match="padding must be 'VALID' or 'SAME', got 'FULL'"):
        lse_pool2d(tf.zeros([1, 4, 4, 1]), 2, 2, "FULL")
    with pytest.raises(ValueError, match="ksize must be a positive int"):
        lse_pool2d(tf.zeros([1, 4, 4, 1]), 0, 2)
    with pytest.raises(ValueError, match=r"static H, W, C; got \(4, 4\)"):
        lse_pool2d(tf.zeros([4, 4]), 2, 2)


# -- the smooth aggregation ---------------------------------------------------------------------


def test_lse_pool_mean_tends_to_max_pool_mean():
    acts = tf.constant(_rng(3).normal(size=(2, 7, 7, 5)), tf.float32)
    ref = agg.get_aggregation("max_pool_mean")(acts)
    for t, tol in ((0.05, 0.05 * math.log(9)), (1e-4, 1e-3)):
        got = agg.lse_pool_mean(temperature=t)(acts)
        assert got.shape == (2, 5)
        gap = (got - ref).numpy()
        assert gap.min() >= -1e-6 and gap.max() <= tol
    tiny = tf.constant(_rng(4).normal(size=(1, 2, 2, 3)), tf.float32)  # window shrinks to 2x2
    np.testing.assert_allclose(agg.lse_pool_mean(temperature=1e-4)(tiny), tf.reduce_max(tiny, axis=[1, 2]), atol=2e-4)
    dense = tf.ones([2, 4])
    assert agg.get_aggregation("lse_pool_mean")(dense) is not None


def test_lse_pool_mean_registration_and_smooth_aggregation():
    acts = tf.constant(_rng(5).normal(size=(1, 5, 5, 2)), tf.float32)
    np.testing.assert_allclose(agg.get_aggregation("lse_pool_mean")(acts), agg.lse_pool_mean(temperature=0.05)(acts))
    floored = agg.get_aggregation("floored_max_pool_mean")  # the smooth default until 2026-12-04
    np.testing.assert_allclose(floored(acts), agg.get_aggregation("max_pool_mean")(acts))
    for name in ("floored_max_pool_mean", floored):
        mapped = agg.smooth_aggregation(name, 0.01)
        assert "lse_pool_mean" in mapped.__name__ and "temperature=0.01" in mapped.__name__
        np.testing.assert_allclose(mapped(acts), agg.lse_pool_mean(temperature=0.01)(acts))
    assert agg.smooth_aggregation("mean", 0.01) == "mean"
    assert agg.smooth_aggregation(agg.center, 0.01) is agg.center
    with pytest.raises(ValueError, match="temperature must be a finite number > 0, got -1"):
        agg.lse_pool_mean(temperature=-1)


def test_lme_pool_mean_has_no_floor():
    """log-mean-exp = log-sum-exp minus T log 9: 0 on a dead (all-zero) channel where the
    log-sum-exp pool gives T log 9, within T log 9 below the max-pool, the same gradient; the
    network-side names (max_pool_mean, the default, and floorless_max_pool_mean) are
    max_pool_mean's numbers and map to it on a surrogate."""
    acts = tf.constant(_rng(7).normal(size=(2, 7, 7, 3)), tf.float32)
    lme, lse = agg.lme_pool_mean(temperature=0.05), agg.lse_pool_mean(temperature=0.05)
    np.testing.assert_allclose(lme(acts), lse(acts) - 0.05 * math.log(9), atol=1e-6)
    zeros = tf.zeros([1, 5, 5, 2])
    np.testing.assert_allclose(lme(zeros), 0.0, atol=1e-6)
    np.testing.assert_allclose(lse(zeros), 0.05 * math.log(9), atol=1e-6)
    gap = (lme(acts) - agg.get_aggregation("max_pool_mean")(acts)).numpy()
    assert gap.max() <= 1e-6 and gap.min() >= -0.05 * math.log(9) - 1e-6
    x = tf.Variable(acts)
    with tf.GradientTape(persistent=True) as tape:
        a, b = tf.reduce_sum(lme(x)), tf.reduce_sum(lse(x))
    np.testing.assert_allclose(tape.gradient(a, x), tape.gradient(b, x), atol=1e-6)
    floorless = agg.get_aggregation("floorless_max_pool_mean")
    np.testing.assert_allclose(floorless(acts), agg.get_aggregation("max_pool_mean")(acts))
    for name in ("max_pool_mean", None, agg.AGGREGATIONS["max_pool_mean"], "floorless_max_pool_mean", floorless):
        mapped = agg.smooth_aggregation(name, 0.01)
        assert "lme_pool_mean" in mapped.__name__ and "temperature=0.01" in mapped.__name__
        np.testing.assert_allclose(mapped(acts), agg.lme_pool_mean(temperature=0.01)(acts))
    assert agg.lme_pool_mean().key != agg.lse_pool_mean().key  # distinct compiled graphs


def test_relative_lse_pool_mean_is_homogeneous_and_bounded():
    """Rescaling a channel by s > 0 rescales its response by s (lse_pool_mean's does not), the
    response lies within T r log 9 above the max-pool's, and its gradient is finite."""
    acts = tf.constant(_rng(6).normal(size=(2, 7, 7, 3)), tf.float32)
    s = tf.constant([0.5, 1.0, 2.0])
    relative = agg.smooth_aggregation("homogeneous_max_pool_mean", 0.05)
    assert "relative_lse_pool_mean" in relative.__name__
    np.testing.assert_allclose(relative(acts * s), relative(acts) * s, rtol=1e-5)
    plain = agg.lse_pool_mean(temperature=0.05)
    assert np.abs(plain(acts * s) - plain(acts) * s).max() > 1e-3  # the absolute temperature is not
    ref = agg.get_aggregation("homogeneous_max_pool_mean")(acts)
    np.testing.assert_allclose(ref, agg.get_aggregation("max_pool_mean")(acts))  # on the ReLU net: the same
    rms = tf.sqrt(tf.reduce_mean(tf.square(acts), axis=[1, 2]))
    gap = (relative(acts) - ref).numpy()
    assert gap.min() >= -1e-6 and (gap <= 0.05 * rms.numpy() * math.log(9) + 1e-6).all()
    zeros = tf.Variable(tf.zeros([1, 5, 5, 2]))
    with tf.GradientTape() as tape:
        out = tf.reduce_sum(relative(zeros))
    assert np.isfinite(tape.gradient(out, zeros).numpy()).all()


# -- Keras models -------------------------------------------------------------------------------


def _functional_net():
    """Conv(relu) -> BN -> MaxPool -> Dropout -> [Conv(relu callable) + Conv] Add, ReLU layer,
    Concatenate, Activation("relu"), nested Sequential (Conv, ReLU, MaxPool SAME) -> Dense."""
    keras.utils.set_random_seed(0)
    inp = keras.Input((14, 14, 3))
    x = keras.layers.Conv2D(6, 3, activation="relu", name="conv1")(inp)
    x = keras.layers.BatchNormalization(name="bn")(x)
    x = keras.layers.MaxPooling2D(3, 2, name="pool1")(x)
    x = keras.layers.Dropout(0.5, name="drop")(x)
    a = keras.layers.Conv2D(4, 1, activation=keras.activations.relu, name="branch_a")(x)
    b = keras.layers.Conv2D(4, 1, name="branch_b")(x)
    s = keras.layers.ReLU(name="sum_relu")(keras.layers.Add(name="add")([a, b]))
    x = keras.layers.Concatenate(name="cat")([s, b])
    x = keras.layers.Activation("relu", name="cat_relu")(x)
    inner = keras.Sequential([
        keras.Input((5, 5, 8)),
        keras.layers.Conv2D(5, 3, name="inner_conv"),
        keras.layers.ReLU(name="inner_relu"),
        keras.layers.MaxPooling2D(2, 2, padding="same", name="inner_pool"),
    ], name="inner")
    x = keras.layers.Flatten(name="flat")(inner(x))
    out = keras.layers.Dense(4, name="head")(x)
    model = keras.Model(inp, out, name="functional_net")
    bn = model.get_layer("bn")  # non-trivial statistics, so copying them matters
    bn.set_weights([w + _rng(6).uniform(0.2, 0.5, size=w.shape).astype("float32") for w in bn.get_weights()])
    return model


def _sequential_net():
    keras.utils.set_random_seed(1)
    return keras.Sequential([
        keras.Input((10, 10, 1)),
        keras.layers.Conv2D(4, 3, activation="relu6", name="c1"),
        keras.layers.ReLU(max_value=6.0, name="r6"),
        keras.layers.MaxPooling2D(2, name="p1"),
        keras.layers.Flatten(name="f"),
        keras.layers.Dense(5, activation="relu", name="d1"),
        keras.layers.Dense(3, name="out"),
    ], name="sequential_net")


@pytest.fixture(scope="module")
def functional():
    return KerasModel(_functional_net(), image_value_range=(-1.0, 1.0))


def test_keras_functional_surrogate(functional):
    before = {w.path: w.numpy().copy() for w in functional.keras_model.weights}
    images = _images(functional)
    original = functional(images, functional.layer_names)
    surrogate = smooth_model(functional)
    assert surrogate.name == "functional_net~smooth"
    assert surrogate.smoothing == {"relu_beta": 10.0, "pool_temperature": 0.05}
    assert getattr(functional, "smoothing", None) is None
    assert surrogate.smoothed_ops == [
        "conv1", "pool1", "branch_a", "sum_relu", "cat_relu", "inner/inner_relu", "inner/inner_pool"]
    assert surrogate.layers == functional.layers
    assert surrogate.image_shape == functional.image_shape and surrogate.image_value_range == (-1.0, 1.0)
    for layer in functional.keras_model.layers[1:]:  # same weights, layer by layer (not the input)
        for w, v in zip(layer.get_weights(), surrogate.keras_model.get_layer(layer.name).get_weights()):
            np.testing.assert_array_equal(w, v)
    inner = surrogate.keras_model.get_layer("inner")
    assert [type(l).__name__ for l in inner.layers] == ["Conv2D", "SmoothReLU", "LSEPooling2D"]
    # the original is untouched
    assert type(functional.keras_model.get_layer("pool1")).__name__ == "MaxPooling2D"
    assert functional.keras_model.get_layer("conv1").activation is keras.activations.relu
    assert all(np.array_equal(before[w.path], w.numpy()) for w in functional.keras_model.weights)
    again = functional(images, functional.layer_names)
    for name in functional.layer_names:
        np.testing.assert_array_equal(original[name], again[name])
    _assert_converges(functional, functional.layer_names, images, final_tol=1e-3)


def test_keras_sequential_surrogate():
    model = KerasModel(_sequential_net())
    surrogate = smooth_model(model, 50.0, 0.01)
    assert surrogate.smoothed_ops == ["c1", "r6", "p1", "d1"]
    assert surrogate.keras_model.get_layer("r6").get_config()["max_value"] == 6.0
    again = keras.models.clone_model(surrogate.keras_model)  # the new layers serialize
    assert [type(l).__name__ for l in again.layers] == [type(l).__name__ for l in surrogate.keras_model.layers]
    assert again.get_layer("p1").get_config()["temperature"] == 0.01
    images = tf.constant(_rng(7).uniform(0, 3, size=(4, 10, 10, 1)), tf.float32)  # values above 6 too
    _assert_converges(model, model.layer_names, images, final_tol=1e-3)


def test_keras_surrogate_has_gradients_where_relu_has_none(functional):
    """A conv1 unit whose pre-activation is negative: zero gradient in the model, a non-zero
    one (sigmoid(beta * pre) times the pre-activation's gradient) in the surrogate."""
    assert_surrogate_has_gradient_at_a_dead_unit(functional, _images(functional))


@pytest.mark.parametrize("layer, match", [
    (lambda: keras.layers.LeakyReLU(name="leaky"), "layer 'leaky' of type LeakyReLU"),
    (lambda: keras.layers.ReLU(negative_slope=0.1, name="r"), "ReLU layer 'r' with negative_slope=0.1"),
    (lambda: keras.layers.Conv2D(2, 1, activation="leaky_relu", name="c"), "activation 'leaky_relu' of layer 'c'"),
    (lambda: keras.layers.GlobalMaxPooling2D(name="g"), "layer 'g' of type GlobalMaxPooling2D"),
])
def test_keras_kinks_that_cannot_be_smoothed(layer, match):
    inp = keras.Input((4, 4, 1))
    model = KerasModel(keras.Model(inp, layer()(inp)))
    with pytest.raises(ValueError, match=match):
        smooth_model(model)


def test_bad_arguments_and_model_types(functional):
    for bad in (0.0, -2.0, float("inf"), float("nan")):
        with pytest.raises(ValueError, match=f"relu_beta must be a finite number > 0, got {bad}"):
            smooth_model(functional, relu_beta=bad)
        with pytest.raises(ValueError, match=f"pool_temperature must be a finite number > 0, got {bad}"):
            smooth_model(functional, pool_temperature=bad)

    with pytest.raises(ValueError, match="'functional_net~smooth' is already a smooth surrogate"):
        smooth_model(smooth_model(functional))

    class Custom(Model):
        pass

    with pytest.raises(TypeError, match="cannot smooth a Custom; supported: KerasModel"):
        smooth_model(Custom())


# -- frozen graphs ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def inception():
    return load_shipped("inception_small")


@pytest.fixture(scope="module")
def mnist():
    return load_shipped("mnist_small")


@pytest.mark.parametrize("name, tol", [("inception_small", 1e-3), ("mnist_small", 1e-3)])
def test_shipped_graph_surrogates_converge(name, tol, inception, mnist):
    model = {"inception_small": inception, "mnist_small": mnist}[name]
    graph_before = model.graph_def.SerializeToString()
    surrogate = smooth_model(model)
    assert isinstance(surrogate, GraphModel) and surrogate.name == f"{name}~smooth"
    assert surrogate.layers == model.layers and surrogate.image_shape == model.image_shape
    relus = [n.name for n in model.graph_def.node if n.op == "Relu"]
    pools = [n.name for n in model.graph_def.node if n.op == "MaxPool"]
    assert sorted(surrogate.smoothed_ops) == sorted(relus + pools)
    kinds = {n.name: n.op for n in surrogate.graph_def.node}
    assert all(kinds[n] == "Identity" for n in relus + pools)
    assert not {"Relu", "MaxPool"} & set(kinds.values())
    assert model.graph_def.SerializeToString() == graph_before  # the original is untouched
    layers = list(SHIPPED[name].studied_layers) + ["logits"]
    _assert_converges(model, layers, _images(model, 4), final_tol=tol)


def test_graph_surrogate_has_gradients_where_relu_has_none(mnist):
    assert_surrogate_has_gradient_at_a_dead_unit(mnist, _images(mnist, 2))


def _tiny_graph_model(build, layers=("out",)) -> GraphModel:
    """`build(x)` on ``input`` [None, 8, 8, 2], its result as the Identity ``out``."""
    with tf.Graph().as_default() as g:
        x = tf.compat.v1.placeholder(tf.float32, [None, 8, 8, 2], name="input")
        tf.identity(build(x), name="out")
    metadata = Metadata.from_dict({"name": "tiny", "input_name": "input", "image_shape": [8, 8, 2],
                                   "image_value_range": [-4.0, 8.0], "layers": list(layers)})
    return GraphModel(g.as_graph_def(), metadata)


def test_graph_relu6_and_constant_max_pool_v2():
    def build(x):
        y = tf.nn.relu6(x, name="r6")
        k, s = tf.constant([1, 3, 3, 1]), tf.constant([1, 2, 2, 1])
        return tf.raw_ops.MaxPoolV2(input=y, ksize=k, strides=s, padding="SAME", name="pool")

    model = _tiny_graph_model(build)
    assert {"Relu6", "MaxPoolV2"} <= {n.op for n in model.graph_def.node}
    assert smooth_model(model).smoothed_ops == ["r6", "pool"]
    _assert_converges(model, ["out"], _images(model, 2), final_tol=1e-3)


@pytest.mark.parametrize("build, match", [
    (lambda x: tf.nn.leaky_relu(x, name="leaky"), r"unsupported kinked op\(s\) LeakyRelu \(node leaky\)"),
    (lambda x: tf.raw_ops.MaxPoolV2(input=x, ksize=tf.identity(tf.constant([1, 2, 2, 1])),
                                    strides=[1, 2, 2, 1], padding="VALID", name="pool"),
     "MaxPoolV2 node 'pool': its ksize is not a constant"),
    (lambda x: tf.nn.max_pool2d(tf.transpose(x, [0, 3, 1, 2]), 2, 2, "VALID", data_format="NCHW", name="nchw"),
     "MaxPool node 'nchw' \\(data_format NCHW"),
])
def test_graph_kinks_that_cannot_be_smoothed(build, match):
    with pytest.raises(ValueError, match=match):
        smooth_model(_tiny_graph_model(build))


def test_graph_functions_with_kinks_are_refused():
    @tf.function
    def block(x):
        return tf.nn.relu(x)

    model = _tiny_graph_model(block)
    assert model.graph_def.library.function
    with pytest.raises(ValueError, match=r"cannot smooth ops inside graph functions: Relu \(node .*block.*/Relu\)"):
        smooth_model(model)


def test_lucid_model_is_smoothed_through_its_graph():
    class TinyLucid(LucidModel):
        model_path = str(SHIPPED["mnist_small"].graph_path)
        image_shape = (28, 28, 1)
        layers = (LayerInfo("conv2", 32, ("conv",)),)

    model = TinyLucid(progress=False)
    surrogate = smooth_model(model)
    assert isinstance(surrogate, GraphModel) and surrogate.name == "TinyLucid~smooth"
    assert surrogate.layers == model.layers
    images = _images(model, 2)
    errors = _relative_errors(model, smooth_model(model, 1e4, 5e-5), images, ["conv2"])
    assert errors["conv2"] < 1e-3


# -- pre-ReLU names (modelzoo.graph) ------------------------------------------------------------


def test_shipped_inception_exposes_pre_relu_concats(inception):
    assert {f"{m}_pre_relu:0" for m in ("mixed3a", "mixed3b", "mixed4a")} <= set(inception.tensor_names)
    assert inception.layer("mixed3b_pre_relu") == LayerInfo("mixed3b_pre_relu", 192, ("conv",))
    assert inception.layer("mixed4a_pre_relu").depth == 256
    assert "mixed3b_pre_relu" not in inception.layer_names  # reachable, not declared
    images = _images(inception, 4, seed=3)
    out = inception(images, ["mixed3b", "mixed3b_pre_relu"])
    pre = out["mixed3b_pre_relu"].numpy()
    assert pre.min() < 0 < pre.max()
    np.testing.assert_array_equal(tf.nn.relu(pre), out["mixed3b"])


def test_smooth_inception_keeps_pre_relu_concats(inception):
    """On the surrogate, mixed3b is the smooth relu of its (smooth-net) pre-activation concat."""
    surrogate = smooth_model(inception, 20.0, 0.02)
    images = _images(inception, 2, seed=4)
    out = surrogate(images, ["mixed3b", "mixed3b_pre_relu"])
    assert surrogate.layer("mixed3b_pre_relu").depth == 192
    np.testing.assert_allclose(smooth_relu(out["mixed3b_pre_relu"], 20.0), out["mixed3b"], rtol=1e-5, atol=1e-6)


def test_surrogate_fidelity_is_one_for_the_model_itself_and_grows_with_beta():
    from lucid_ifv.smooth import surrogate_fidelity
    from modelzoo.shipped import heldout

    model = load_shipped("photos_cnn")
    images = heldout("photos_cnn")[0][:100]
    same = surrogate_fidelity(model, model, "conv2d_3", images, batch_size=40)
    np.testing.assert_allclose(same["correlation"], 1.0, atol=1e-9)
    np.testing.assert_allclose(same["max_ratio"], 1.0)
    soft = surrogate_fidelity(model, smooth_model(model, 10.0), "conv2d_3", images)
    sharp = surrogate_fidelity(model, smooth_model(model, 100.0), "conv2d_3", images)
    # at beta 10 some channels of this network are barely followed; at beta 100 every one is
    # (docs/smooth.md, "Fidelity")
    assert np.nanmin(soft["correlation"]) < 0.5 < 0.95 < np.nanmin(sharp["correlation"])
    assert np.nanmedian(sharp["correlation"]) > np.nanmedian(soft["correlation"])


# -- one surrogate per model, beta and T -------------------------------------------------------


def test_smooth_model_returns_one_surrogate_per_model_beta_and_temperature():
    """The compiled renders and Jacobians key on the model's identity: a second call must
    hand back the same surrogate (and so reuse their traces); other settings get their own,
    and an entry goes with its model."""
    import gc
    import weakref

    from lucid_ifv import smooth as smooth_mod

    model = load_shipped("mnist_small")
    first = smooth_model(model, 10.0, 0.05)
    assert smooth_model(model, 10, 0.05) is first
    assert smooth_model(model, 20.0, 0.05) is not first and smooth_model(model, 10.0, 0.1) is not first
    assert smooth_model(load_shipped("mnist_small"), 10.0, 0.05) is not first  # another object
    smooth_mod.clear_cache()
    assert smooth_model(model, 10.0, 0.05) is not first
    other = load_shipped("mnist_small")
    smooth_model(other)
    assert len(smooth_mod._SURROGATES) == 2
    gone = weakref.ref(model)
    del model
    gc.collect()
    assert gone() is None and len(smooth_mod._SURROGATES) == 1  # the surrogate did not keep its model
    with pytest.raises(TypeError, match="cannot smooth a str"):
        smooth_model("mnist_small")


def test_aggregations_built_alike_share_a_key_and_others_do_not():
    from lucid_ifv.graph_keys import state_key

    same = [agg.lse_pool_mean(temperature=0.05), agg.lse_pool_mean(3, 2, 0.05)]
    assert state_key(same[0]) == state_key(same[1])
    others = [agg.lse_pool_mean(temperature=0.0500001), agg.relative_lse_pool_mean(temperature=0.05),
              agg.lse_pool_mean(kernel=2), agg.max_pool_mean()]
    keys = {state_key(a) for a in [same[0], *others]}
    assert len(keys) == 5
    assert state_key(agg.homogeneous_max_pool_mean()) == state_key(agg.max_pool_mean())  # the same numbers


# -- per-unit beta relative to the unit's scale --------------------------------------------------


def test_smooth_relu_takes_one_beta_per_channel():
    x = tf.constant(_rng().normal(size=(2, 3, 3, 4)), tf.float32)
    betas = np.array([1.0, 5.0, 10.0, 50.0], np.float32)
    expected = tf.concat([smooth_relu(x[..., c:c + 1], float(b)) for c, b in enumerate(betas)], axis=-1)
    np.testing.assert_allclose(smooth_relu(x, betas), expected, rtol=1e-6)
    from lucid_ifv.smooth import SmoothReLUActivation

    activation = SmoothReLUActivation.from_config(SmoothReLUActivation(betas, 6.0).get_config())
    np.testing.assert_array_equal(activation.beta, betas)
    for bad in ([1.0, 0.0], [[1.0]], [1.0, np.nan], []):
        with pytest.raises(ValueError, match="beta must be a number > 0 or a 1-D array"):
            smooth_relu(x, bad)


def _equivariance_error(model, layer, relative: bool) -> float:
    """max |B's surrogate - scales * A's surrogate, permuted| / max |B's| at `layer`, B = A
    with `layer`'s units permuted and rescaled (`permute_channels`)."""
    from lucid_ifv.symmetry import permute_channels

    permuted = permute_channels(model, layer, seed=1)
    calibration = "noise" if relative else None
    a, b = smooth_model(model, 10.0, 0.05, calibration), smooth_model(permuted.model, 10.0, 0.05, calibration)
    images = _images(model, n=4, seed=3)
    out_a, out_b = a(images, [layer])[layer], b(images, [layer])[layer]
    expected = permuted.scales * tf.gather(out_a, permuted.perm, axis=-1)
    return float(tf.reduce_max(tf.abs(out_b - expected)) / tf.reduce_max(tf.abs(out_b)))


@pytest.mark.parametrize("which", ["keras", "graph"])
def test_relative_beta_makes_the_surrogate_of_a_rescaled_network_the_rescaled_surrogate(which):
    """B = A with `layer`'s units permuted and rescaled by [0.5, 2]: with a beta relative to
    each unit's input RMS (calibrated on the same noise), B's surrogate at `layer` is A's
    permuted and rescaled, to float32 rounding; with one absolute beta it is not. (Past the
    layer, the surrogate's log-sum-exp pools keep an absolute temperature: mnist_small's
    pool2 reads conv2, so its outputs differ; the features of `layer` do not depend on it.)"""
    from conftest import small_convnet

    model, layer = ((KerasModel(small_convnet()), "conv1") if which == "keras"
                    else (load_shipped("mnist_small"), "conv2"))
    relative, absolute = _equivariance_error(model, layer, True), _equivariance_error(model, layer, False)
    assert relative < 1e-5, relative
    assert absolute > 100 * relative, (absolute, relative)


def test_relative_beta_is_relu_beta_over_the_input_rms_and_bad_images_are_refused():
    from lucid_ifv.smooth import calibration_noise, relu_scaled_betas

    model = load_shipped("mnist_small")
    images = calibration_noise(model.image_shape, n=4)
    betas = relu_scaled_betas(model, 10.0, images)
    pre = model(images, ["conv2_pre_relu"])["conv2_pre_relu"].numpy()
    relu = [name for name in betas if "conv2" in name]
    assert len(relu) == 1
    np.testing.assert_allclose(betas[relu[0]], 10.0 / np.sqrt(np.mean(pre ** 2, axis=(0, 1, 2))), rtol=1e-4)
    assert smooth_model(model, 10.0, 0.05, "noise").smoothing["relu_beta_per_unit"]
    with pytest.raises(ValueError, match=r"relu_scale_images must be \[N, \*\(28, 28, 1\)\]"):
        smooth_model(model, relu_scale_images=np.zeros((2, 8, 8, 3)))
    with pytest.raises(ValueError, match="relu_scale_images must be None, 'noise' or images, got 'natural'"):
        smooth_model(model, relu_scale_images="natural")
