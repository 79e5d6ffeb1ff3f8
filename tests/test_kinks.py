"""Kink projection (lucid_ifv.kinks): the finder, kink gradients, the projection, the synthetic case."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from lucid_ifv import ifv, kinks
from lucid_ifv import param as param_mod
from lucid_ifv.model import KerasModel
from modelzoo.graph import GraphModel
from modelzoo.lucid_format import Metadata

# A 4x4 grey image in value range (-1, 1) -> 1x1 conv (weight 1, bias 0, so the
# pre-activation IS the input pixel 2x - 1) -> Relu -> 2x2/2 max-pool -> "layer" [2, 2, 1].
# The image below puts pixel (1, 2) exactly on the ReLU switch (x = 0.5), every other
# pre-activation at least 0.2 away, and makes the bottom-right pool window tie exactly.
IMAGE = np.array([
    [0.60, 0.20, 0.10, 0.70],
    [0.30, 0.85, 0.50, 0.20],
    [0.90, 0.10, 0.95, 0.30],
    [0.20, 0.65, 0.10, 0.95],
], np.float32)[None, :, :, None]
SWITCH_INDEX = 1 * 4 + 2  # flat index of pixel (1, 2) in the [4, 4, 1] pre-activation
TIE = (2 * 4 + 2, 3 * 4 + 3)  # the tied pair (2, 2) and (3, 3)


def tiny_graph_model() -> GraphModel:
    w = tf.constant(np.ones((1, 1, 1, 1), np.float32))
    b = tf.constant(np.zeros(1, np.float32))

    @tf.function(input_signature=[tf.TensorSpec([None, 4, 4, 1], tf.float32, name="input")])
    def net(x):
        pre = tf.nn.bias_add(tf.nn.conv2d(x, w, 1, "VALID"), b, name="pre")
        post = tf.nn.relu(pre, name="post")
        pooled = tf.nn.max_pool2d(post, 2, 2, "VALID", name="pool")
        return tf.identity(pooled, name="layer")

    graph_def = net.get_concrete_function().graph.as_graph_def()
    meta = Metadata.from_dict({"input_name": "input", "image_shape": [4, 4, 1], "image_value_range": [-1, 1],
                               "layers": [{"name": "layer", "depth": 1}], "name": "tiny"})
    return GraphModel(graph_def, meta)


@pytest.fixture(scope="module")
def tiny():
    return tiny_graph_model()


def pixel_param(images):
    return param_mod.PixelParam(images.shape, init_val=images)


def test_finder_finds_the_placed_switch_and_the_tie_only(tiny):
    sites = kinks.kink_sites(tiny, "layer", aggregation="mean")
    assert [(s.kind, s.source) for s in sites] == [("switch", "post"), ("maxpool", "pool")]
    par = pixel_param(IMAGE)
    found = kinks.find_kinks(tiny, "layer", IMAGE, par, tol=1e-3, aggregation="mean")
    switch = found.first[0][found.second[0] < 0]
    assert switch.tolist() == [SWITCH_INDEX]  # and no unit 0.2 or more away from its switch
    offset = found.sizes[0]
    pairs = np.stack([found.first[0], found.second[0]], 1)[found.second[0] >= 0] - offset
    assert pairs.tolist() == [list(TIE)]
    assert found.counts.tolist() == [2]
    # a tolerance that reaches 0.2 / rms catches more switches; 0 still catches the exact ones
    rms = np.sqrt(np.mean((2 * IMAGE - 1) ** 2))
    assert kinks.find_kinks(tiny, "layer", IMAGE, par, tol=0.21 / rms, aggregation="mean").counts[0] > 2
    assert kinks.find_kinks(tiny, "layer", IMAGE, par, tol=0.0, aggregation="mean").counts.tolist() == [2]
    # the wider set restricted to distance 0 is the exact set again (sweeping tol without recomputing)
    wide = kinks.find_kinks(tiny, "layer", IMAGE, par, tol=0.21 / rms, aggregation="mean")
    exact = wide.restrict(wide.within(0.0))
    assert exact.counts.tolist() == [2] and sorted(exact.first[0].tolist()) == sorted(found.first[0].tolist())


def test_kink_gradients_match_autodiff(tiny):
    """Switch row = gradient of that pre-activation; pool row = gradient of the difference."""
    par = pixel_param(IMAGE)
    grads, found = kinks.kink_gradients(tiny, "layer", IMAGE, par, aggregation="mean", return_kinks=True)
    assert grads.shape == (1, 2, 16)
    expected_switch = np.zeros(16)
    expected_switch[SWITCH_INDEX] = 2.0  # d(2x - 1)/dx through the pixel parametrization
    expected_tie = np.zeros(16)
    expected_tie[TIE[0]], expected_tie[TIE[1]] = 2.0, -2.0  # d(relu(2x_a - 1) - relu(2x_b - 1))
    rows = {("switch" if s < 0 else "pool"): g for s, g in zip(found.second[0], grads[0])}
    np.testing.assert_allclose(rows["switch"], expected_switch, atol=1e-6)
    np.testing.assert_allclose(rows["pool"], expected_tie, atol=1e-6)  # pairs are (lower, higher index)


def test_kink_jacobian_compiled_once_per_parametrization_structure(tiny):
    """A fresh parametrization of the same kind (the usual call: new arrays) reuses the compiled
    function, and gets its own answer."""
    kinks.clear_cache()
    first = kinks.kink_gradients(tiny, "layer", IMAGE, pixel_param(IMAGE), aggregation="mean")
    other = IMAGE[:, ::-1]
    second = kinks.kink_gradients(tiny, "layer", other, pixel_param(other), aggregation="mean")
    assert len(kinks._JACOBIAN_FNS) == 1
    kinks.clear_cache()
    np.testing.assert_allclose(second, kinks.kink_gradients(tiny, "layer", other, pixel_param(other),
                                                             aggregation="mean"), atol=1e-6)
    assert first.shape[0] == second.shape[0] == 1


def test_kink_gradients_on_mnist_match_per_unit_gradients():
    """On the shipped MNIST net (Fourier-free pixel param): rows of kink_gradients equal the
    gradients of the same pre-activation units computed one by one."""
    from modelzoo.shipped import load_shipped

    model = load_shipped("mnist_small")
    rng = np.random.default_rng(0)
    images = rng.uniform(0.2, 0.8, size=(2, 28, 28, 1)).astype(np.float32)
    par = param_mod.image_for_model(model, batch=2, fft=False, seed=0)
    grads, found = kinks.kink_gradients(model, "conv2", images, par, tol=0.01, return_kinks=True, chunk=16)
    assert found.counts.min() > 0 and not found.skipped.any()
    sites = found.sites
    z = tf.constant(np.concatenate([p.reshape(2, -1) for p in par.params_from_image(images)], 1))
    for b in range(2):
        for j in (0, len(found.first[b]) - 1):
            site_index = int(found.site_of[b][j])
            site = sites[site_index]
            offset = int(np.sum(found.sizes[:site_index]))
            with tf.GradientTape() as tape:
                tape.watch(z)
                x = par([tf.reshape(z, par.variables[0].shape)])
                u = tf.reshape(model(x, [site.name])[site.name], [2, -1])
                value = u[b, found.first[b][j] - offset]
                if found.second[b][j] >= 0:
                    value = value - u[b, found.second[b][j] - offset]
            expected = tape.gradient(value, z).numpy()[b]
            np.testing.assert_allclose(grads[b, j], expected, rtol=1e-4, atol=1e-6 * np.abs(expected).max())


def test_projected_jacobians_are_orthogonal_to_the_kink_gradients():
    rng = np.random.default_rng(1)
    B, k, r, D = 3, 5, 7, 20
    kg = rng.normal(size=(B, r, D)) * np.logspace(-3, 2, r)[None, :, None]  # very different row norms
    kg[0, 3] = kg[0, 1] + kg[0, 2]  # a dependent row: rank 6 for sample 0
    kg[2, 5:] = 0.0  # padding rows
    jac, grads = rng.normal(size=(B, k, D)), rng.normal(size=(B, 2, D))
    jac_p, grads_p, ranks = kinks.project_out_kinks(jac, grads, kg, return_ranks=True)
    assert ranks.tolist() == [6, 7, 5]
    for b in range(B):
        unit = kg[b] / np.maximum(np.linalg.norm(kg[b], axis=1, keepdims=True), 1e-300)
        assert np.abs(jac_p[b] @ unit.T).max() < 1e-10 * np.abs(jac[b]).max()
        assert np.abs(grads_p[b] @ unit.T).max() < 1e-10 * np.abs(grads[b]).max()
        # the projection is orthogonal: what is left is the residual of a least-squares fit
        coef = np.linalg.lstsq(kg[b].T, jac[b].T, rcond=None)[0]
        np.testing.assert_allclose(jac_p[b], jac[b] - (kg[b].T @ coef).T, atol=1e-9)
    # list input (one [r_b, D] per sample) gives the same
    jac_l, _ = kinks.project_out_kinks(jac, None, [kg[0], kg[1], kg[2, :5]])
    np.testing.assert_allclose(jac_l, jac_p, atol=1e-12)


@pytest.mark.parametrize("p", [0, 1])
def test_projection_recovers_t_where_stationarity_holds_modulo_kinks(p):
    """Synthetic: s J^T A t - lam g = K^T c with known kink directions K and c != 0 (an optimum
    on kinks). The plain solves miss t; with K projected out the anchored / nonneg solves
    recover it exactly."""
    rng = np.random.default_rng(7 + p)
    B, k, D, r, lam = 3, 8, 60, 10, 1e-2
    f = np.abs(rng.normal(size=(B, k))) + 0.1
    t = np.abs(rng.normal(size=(B, k))) * (rng.uniform(size=(B, k)) < 0.5)
    t[:, 0] += 0.5
    t /= np.linalg.norm(t, axis=1, keepdims=True)
    jac = rng.normal(size=(B, k, D))
    kg = rng.normal(size=(B, r, D))
    c = rng.normal(size=(B, r)) * 3.0
    A = ifv.significance_matrix(f, p)
    s = (np.sum(f * t, 1) / np.linalg.norm(f, axis=1)) ** p
    grad_m = s[:, None] * np.einsum("bkd,bkl,bl->bd", jac, A, t)
    g = (grad_m - np.einsum("brd,br->bd", kg, c)) / lam  # the prior gradient at this optimum
    grads = g[:, None, :]
    angle = lambda a: np.degrees(np.arccos(np.clip(np.sum(a * t, 1), -1, 1)))
    jac_p, grads_p = kinks.project_out_kinks(jac, grads, kg)
    for method in ("anchored", "nonneg", "prior_aware"):
        plain = ifv.solve(f, jac, p, prior_grads=grads, method=method)
        projected = ifv.solve(f, jac_p, p, prior_grads=grads_p, method=method)
        assert np.all(angle(projected.target) < 1e-4), (method, angle(projected.target))
        assert np.all(np.nan_to_num(angle(plain.target), nan=90.0) > 5.0), (method, angle(plain.target))
        if method != "prior_aware":
            np.testing.assert_allclose(projected.prior_weights[:, 0], lam, rtol=1e-6)


def test_invert_target_free_end_to_end_and_top_channels(tiny):
    par = pixel_param(IMAGE)
    result = kinks.invert_target_free(tiny, "layer", IMAGE, par, aggregation="mean", method="anchored")
    assert isinstance(result, ifv.InversionResult)
    assert result.kink_count.tolist() == [2] and result.kink_rank.tolist() == [2]
    assert result.kink_tol.tolist() == [kinks.DEFAULT_TOL]
    assert result.target.shape == (1, 1)
    target = np.array([[0.1, 0.7, 0.3, 0.0], [0.5, 0.2, 0.0, 0.9]])
    assert kinks.top_channels(target, 2).tolist() == [[1, 2], [3, 0]]
    assert kinks.top_channels(target, 1, features=[10, 11, 12, 13]).tolist() == [[11], [13]]


def test_too_many_kinks_give_no_answer(tiny):
    """A uniform image ties every pool window: with max_kinks below the count the sample is
    skipped, and invert_target_free answers NaN (top_channels -1) instead of the plain solve."""
    grey = np.full((1, 4, 4, 1), 0.75, np.float32)
    par = pixel_param(grey)
    found = kinks.find_kinks(tiny, "layer", grey, par, tol=1e-3, aggregation="mean")
    assert found.counts.tolist() == [12]  # 3 ties in each of the 4 windows
    grads, found = kinks.kink_gradients(tiny, "layer", grey, par, aggregation="mean", max_kinks=11, return_kinks=True)
    assert found.skipped.tolist() == [True] and grads.shape == (1, 0, 16)
    result = kinks.invert_target_free(tiny, "layer", grey, par, aggregation="mean", method="anchored", max_kinks=11)
    assert np.isnan(result.target).all() and result.kink_rank.tolist() == [-1]
    assert kinks.top_channels(result, 1).tolist() == [[-1]]
    assert result.verdicts().tolist() == ["no signal"]  # not the verdict of the unprojected solve
    assert np.isnan(result.kink_tol).all()  # exact ties: too many at every fallback tolerance too


def test_fit_tolerances_keeps_each_sample_at_the_largest_tolerance_that_leaves_something():
    distance = [np.array([0.0, 2e-4, 5e-4, 9e-4]), np.array([0.0, 1e-4]), np.zeros(5)]
    found = kinks.Kinks(sites=[], sizes=[], first=[np.arange(len(d)) for d in distance],
                        second=[-np.ones(len(d), np.int64) for d in distance], site_of=[np.zeros(len(d)) for d in distance],
                        distance=distance, tol=1e-3, scale="rms")
    fitted = found.fit_tolerances([3e-4, 1e-3], max_kinks=3)
    np.testing.assert_array_equal(fitted.sample_tol, [3e-4, 1e-3, np.nan])  # 4 > 3 kinks at 1e-3: falls back
    assert fitted.counts.tolist() == [2, 2, 5]  # the last keeps all and is skipped by kink_gradients
    with pytest.raises(ValueError, match="cannot widen"):
        found.fit_tolerances([3e-3], max_kinks=3)


def test_8bit_images_are_re_dithered_and_judged_without_the_rounding(tiny):
    """Images on the 8-bit grid (a PNG) are re-dithered by default, as by `ifv.invert`: the
    result carries the spread and the denoised residual, which the verdict uses."""
    png = np.round(IMAGE * 255) / 255
    par = pixel_param(png)
    checked = kinks.invert_target_free(tiny, "layer", png, par, aggregation="mean", method="anchored")
    assert checked.dither_spread.shape == (1,) and checked.denoised_residual.shape == (1,)
    assert checked.denoised_residual[0] <= np.sqrt(2) * checked.residual[0]
    assert isinstance(checked, kinks.TargetFreeResult) and checked.kink_count.shape == (1,)
    plain = kinks.invert_target_free(tiny, "layer", png, par, aggregation="mean", method="anchored", dither=0)
    assert plain.dither_spread is None
    np.testing.assert_array_equal(plain.target, checked.target)  # the answer is the undithered one
    assert kinks.invert_target_free(tiny, "layer", IMAGE, par, aggregation="mean").dither_spread is None  # off grid
    with pytest.raises(ValueError, match="dither must be 'auto' or an integer >= 0"):
        kinks.invert_target_free(tiny, "layer", png, par, aggregation="mean", dither=-1)
    with pytest.raises(ValueError, match="tol must be a finite number >= 0, got -0.0003"):
        kinks.invert_target_free(tiny, "layer", png, par, aggregation="mean", fallback_tols=(-3e-4,))


def test_keras_models_supported_or_refused_clearly():
    tf.keras.utils.set_random_seed(0)
    inp = tf.keras.Input((8, 8, 1))
    x = tf.keras.layers.Conv2D(3, 3, activation="relu", name="c1")(inp)
    x = tf.keras.layers.MaxPooling2D(2, name="p1")(x)
    x = tf.keras.layers.Conv2D(2, 1, name="c2")(x)
    model = KerasModel(tf.keras.Model(inp, x))
    sites = kinks.kink_sites(model, "c2", aggregation="mean")
    assert [(s.kind, s.source) for s in sites] == [("switch", "c1"), ("maxpool", "p1")]
    images = np.random.default_rng(0).uniform(size=(1, 8, 8, 1)).astype(np.float32)
    found = kinks.find_kinks(model, "c2", images, pixel_param(images), tol=1.0, aggregation="mean")
    pre = tf.nn.conv2d(images, model.keras_model.get_layer("c1").kernel, 1, "VALID") + model.keras_model.get_layer("c1").bias
    rms = float(np.sqrt(np.mean(pre.numpy() ** 2)))
    assert np.sum(found.second[0] < 0) == int(np.sum(np.abs(pre.numpy()) <= rms))  # the linear copy's pre-activation
    leaky = tf.keras.layers.LeakyReLU(name="leaky")(tf.keras.layers.Conv2D(2, 3, name="c")(inp))
    with pytest.raises(NotImplementedError, match="MaxPooling2D"):
        kinks.kink_sites(KerasModel(tf.keras.Model(inp, leaky)), "leaky")


def test_clamped_units_behind_batchnorm_are_not_pool_kinks():
    """ReLU -> BatchNormalization -> MaxPool (photos_cnn's shape): a window of ReLU-clamped units
    ties exactly at BN(0) with no gradient; such pairs are skipped like the plain ReLU's zeros,
    and a window with a live unit still gives its kinks."""
    tf.keras.utils.set_random_seed(0)
    inp = tf.keras.Input((6, 6, 1))
    x = tf.keras.layers.Conv2D(2, 1, activation="relu", name="c1")(inp)
    bn = tf.keras.layers.BatchNormalization(name="bn")
    x = tf.keras.layers.MaxPooling2D(2, name="p1")(bn(x))
    x = tf.keras.layers.Conv2D(2, 1, name="c2")(x)
    keras_model = tf.keras.Model(inp, x)
    keras_model.get_layer("c1").set_weights([np.ones((1, 1, 1, 2), np.float32), np.array([-0.5, -0.5], np.float32)])
    bn.set_weights([np.array([2.0, 3.0], np.float32), np.array([0.3, -0.2], np.float32),  # gamma, beta
                    np.array([0.1, 0.4], np.float32), np.array([1.0, 2.0], np.float32)])  # moving mean, variance
    model = KerasModel(keras_model)
    (pool,) = [s for s in kinks.kink_sites(model, "c2", aggregation="mean") if s.source == "p1"]
    expected = bn(np.zeros((1, 1, 1, 2), np.float32), training=False).numpy().reshape(-1)
    np.testing.assert_allclose(pool.clamp, expected, rtol=1e-6)
    assert not np.allclose(expected, 0)
    images = np.zeros((1, 6, 6, 1), np.float32)  # every unit clamped (pre-activation -0.5): no pool kink
    images[0, 0, 0, 0] = 1.0  # except one: its window ties with nothing within the tolerance
    found = kinks.find_kinks(model, "c2", images, pixel_param(images), tol=0.1, aggregation="mean")
    assert found.counts_by_kind()[0]["maxpool"] == 0
    images[0, 0, 1, 0] = 1.0  # two live units with the same value: one tie per channel
    found = kinks.find_kinks(model, "c2", images, pixel_param(images), tol=0.1, aggregation="mean")
    assert found.counts_by_kind()[0]["maxpool"] == 2


def test_a_mirrored_non_negative_answer_ranks_and_margins_as_its_mirror_image():
    """The non-negative solve on an odd-p objective can return t <= 0 (a render that ended with
    <f, t> < 0); -t is the same objective, so its top channel is the most negative entry."""
    target = np.array([[3.0, 1.0, 0.5], [-3.0, -1.0, -0.5], [-3.0, 1.0, 0.5], [np.nan] * 3])
    np.testing.assert_array_equal(kinks.top_channels(target, 2), [[0, 1], [0, 1], [1, 2], [-1, -1]])
    margin = kinks.margin_angle(target)
    assert margin[0] == margin[1] > 0 and np.isnan(margin[3])
    assert margin[2] == pytest.approx(np.degrees(np.arcsin(0.5 / (np.sqrt(2) * np.sqrt(10.25)))))  # mixed: as is
    np.testing.assert_array_equal(kinks.oriented(target)[:3], [[3.0, 1.0, 0.5]] * 2 + [[-3.0, 1.0, 0.5]])


def test_margin_angle_is_the_angle_to_the_nearest_answer_with_another_top_channel():
    target = np.array([[1.0, 0.0, 0.0], [1.0, 1.0, 0.0], [3.0, 1.0, 0.5], [np.nan] * 3, [0.0] * 3])
    margin = kinks.margin_angle(target)
    np.testing.assert_allclose(margin[:3], [45.0, 0.0, np.degrees(np.arcsin(2 / (np.sqrt(2) * np.sqrt(10.25))))])
    assert np.isnan(margin[3:]).all()
    # the margin is the real distance: moving the answer by less keeps its top channel, by more can swap it
    u = target[2] / np.linalg.norm(target[2])
    swapped = np.array([2.0, 2.0, 0.5]) / np.linalg.norm([2.0, 2.0, 0.5])  # a point of the hyperplane t_1 = t_2
    assert np.degrees(np.arccos(u @ swapped)) >= margin[2] - 1e-9


def test_channel_verdicts_compare_the_margin_with_the_re_dithered_spread():
    result = kinks.TargetFreeResult(target=np.array([[1.0, 0.0], [1.0, 0.9], [np.nan, np.nan]]),
                                    response=np.zeros((3, 2)), singular_values=np.zeros((3, 2)),
                                    left_vectors=np.zeros((3, 2, 2)), gap=np.zeros(3), residual=np.zeros(3),
                                    prior_weights=None, dead_features=np.zeros((3, 2), bool))
    assert result.channel_verdicts().tolist() == ["unchecked", "unchecked", "no answer"]  # not re-dithered
    result.dither_spread = np.array([10.0, 2.0, np.nan])  # margins 45 and 3.0 deg
    assert result.channel_verdicts().tolist() == ["identified", "uncertain", "no answer"]
    assert result.channel_verdicts(factor=5.0).tolist() == ["uncertain", "uncertain", "no answer"]
    with pytest.raises(ValueError, match="factor must be a finite number > 0"):
        result.channel_verdicts(factor=0)
