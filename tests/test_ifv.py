"""Grad-IFV: exact answers on constructed models, Jacobian correctness, round trips, errors."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from lucid_ifv import ifv
from lucid_ifv import objectives as obj
from lucid_ifv import param
from lucid_ifv.model import KerasModel
from lucid_ifv.render import render_vis

from conftest import softmax_model


def affine_model(weights: np.ndarray, bias: np.ndarray, image_shape=(2, 2, 1)) -> KerasModel:
    """Feature response ``f = W x + c`` (x the flattened image): dense layer "features"."""
    inp = tf.keras.Input(image_shape)
    x = tf.keras.layers.Flatten(name="flat")(inp)
    out = tf.keras.layers.Dense(weights.shape[0], name="features")(x)
    model = tf.keras.Model(inp, out)
    model.get_layer("features").set_weights([weights.T.astype(np.float32), bias.astype(np.float32)])
    return KerasModel(model)


def angle(a, b):
    cos = np.sum(a * b, -1) / np.linalg.norm(a, axis=-1) / np.linalg.norm(b, axis=-1)
    return np.degrees(np.arccos(np.clip(cos, -1, 1)))


def a_inverse(f, p):
    P = np.outer(f, f) / (f @ f)
    return (np.eye(len(f)) - P) / (p + 1) + P


@pytest.mark.parametrize("p", [0, 1, 2])
@pytest.mark.parametrize("fft", [False, True])
def test_exact_on_constructed_model(p, fft):
    """h(z) = W sigmoid(g(z)) + c with k = D + 1: W has a 1-D left null space n, so for ANY z
    the target t = A(f)^-1 n is exactly stationary (J^T A t = diag(..) W^T n = 0), and
    <f, t> = <c, n> != 0 (a genuine stationary point, not one where s(f, t) vanishes)."""
    rng = np.random.default_rng(p + 10 * fft)
    D = 4
    W = np.abs(rng.normal(size=(D + 1, D))) + 0.1  # positive weights: f > 0
    c = np.abs(rng.normal(size=D + 1)) + 0.5
    n = np.linalg.svd(W)[0][:, -1]
    model = affine_model(W, c)
    par = param.image(2, batch=3, fft=fft, channels=1, seed=1)
    z = [rng.normal(size=v.shape).astype(np.float32) for v in par.variables]
    result = ifv.invert(model, "features", z, param=par, cossim_pow=p)
    x = par(z).numpy().reshape(3, -1).astype(np.float64)
    for b in range(3):
        f = W @ x[b] + c
        t = a_inverse(f, p) @ n
        t *= np.sign(f @ t) / np.linalg.norm(t)
        assert angle(result.target[b], t) < 0.01
        assert result.residual[b] < 1e-4
        np.testing.assert_allclose(result.response[b], f, rtol=1e-5)


def constructed_problem():
    """k = D = 4 affine features of a sigmoid-pixel image, batch 2, random parameters:
    ``(W, c, model, param, z)``."""
    rng = np.random.default_rng(3)
    D = 4
    W = np.abs(rng.normal(size=(D, D))) + 0.1
    c = np.abs(rng.normal(size=D)) + 0.5
    model = affine_model(W, c)
    par = param.image(2, batch=2, fft=False, channels=1, seed=1)
    z = [rng.normal(size=v.shape).astype(np.float32) for v in par.variables]
    return W, c, model, par, z


def test_prior_aware_exact_on_constructed_model():
    """k = D: the stationarity ``J^T A v = lam grad R`` has a one-dimensional solution
    (v; lam), computed here independently; invert(prior=...) must return it."""
    W, c, model, par, z = constructed_problem()
    D = W.shape[0]
    result = ifv.invert(model, "features", z, param=par, cossim_pow=1, prior=obj.params_L2(), method="prior_aware")
    zf = z[0].reshape(2, -1).astype(np.float64)
    for b in range(2):
        x = 1 / (1 + np.exp(-zf[b]))
        f = W @ x + c
        A = 2 * np.eye(D) - np.outer(f, f) / (f @ f)
        J = W * (x * (1 - x))[None]  # df/dz
        G = np.concatenate([J.T @ A, -2 * zf[b][:, None]], axis=1)  # [D, D + 1]
        null = np.linalg.svd(G)[2][-1]
        v, lam = null[:D], null[D]
        if lam < 0:
            v, lam = -v, -lam
        t = v / np.linalg.norm(v)
        assert angle(result.target[b], t) < 0.01
        s = (f @ t) / np.linalg.norm(f)
        np.testing.assert_allclose(result.prior_weights[b, 0], lam * s / np.linalg.norm(v), rtol=1e-3)


@pytest.mark.parametrize("method", ["anchored", "nonneg"])
def test_anchored_solves_on_constructed_model(method):
    """The model of the previous test: anchored least squares returns the same (t, lam). The
    exact targets there have negative entries, so the non-negative solve must miss them and
    its verdict must say so (its residual is large)."""
    W, c, model, par, z = constructed_problem()
    exact = ifv.invert(model, "features", z, param=par, prior=obj.params_L2(), method="prior_aware")
    result = ifv.invert(model, "features", z, param=par, prior=obj.params_L2(), method=method)
    assert result.solve_method == method and (exact.target < 0).any(axis=1).all()
    assert (exact.verdicts() == "identified").all()
    if method == "anchored":
        assert angle(result.target, exact.target).max() < 0.01
        np.testing.assert_allclose(result.prior_weights, exact.prior_weights, rtol=1e-3)
        assert (result.verdicts() == "identified").all()
    else:
        assert (result.target >= 0).all() and angle(result.target, exact.target).min() > 10
        assert (result.residual > 0.3).all() and (result.verdicts() == "not stationary").all()


def test_package_keeps_the_module_api():
    """`lucid_ifv.ifv` became a package; every name of the former module is still there."""
    names = ["clear_cache", "resolve_realization", "feature_jacobian", "prior_gradients", "significance_matrix",
             "SampleInversion", "InversionResult", "GramStatistics", "gram_statistics", "solve", "solve_gram",
             "jacobian_spectra", "angle_modulo_trivial", "invert", "_flatten", "_unflatten", "_jacobian_fn",
             "_JACOBIAN_FNS", "_critical_basis", "_restrict"]
    assert [n for n in names if not hasattr(ifv, n)] == []
    assert ifv.solve.__module__ == "lucid_ifv.ifv.solve" and ifv.invert.__module__ == "lucid_ifv.ifv.invert"


def test_prior_weight_recovered_after_rendering(small_model):
    """FV with a known L2 weight: the prior-aware (eigen) solve estimates that weight."""
    t = np.abs(np.random.default_rng(0).normal(size=(2, 6)))
    t /= np.linalg.norm(t, axis=1, keepdims=True)
    lam = 1e-3
    par = param.image(16, batch=2, fft=False, seed=2)
    result = render_vis(small_model, obj.feature_objective("conv2_relu", t) - lam * obj.params_L2(), par,
                        transforms=[], thresholds=(200,), lbfgs_steps=200, progress=False)
    inv = ifv.invert(small_model, "conv2_relu", result, prior=obj.params_L2(), method="prior_aware")
    # Only approximately stationary: L-BFGS stalls at ReLU / max-pool kinks (measured final
    # gradient norm ~5e-3, estimates 1.22e-3 and 0.98e-3). Exactness is tested above.
    assert result.lbfgs["grad_norm"] < 1e-2
    np.testing.assert_allclose(inv.prior_weights[:, 0], lam, rtol=0.25)


def test_batched_jacobian_equals_per_feature_gradients(small_model):
    par = param.image(16, batch=2, seed=0)
    z = [np.random.default_rng(1).normal(size=v.shape, scale=0.5).astype(np.float32) for v in par.variables]
    f, jac = ifv.feature_jacobian(small_model, "conv2_relu", z, par)
    zt = tf.constant(z[0])
    for i in range(f.shape[1]):
        with tf.GradientTape() as tape:
            tape.watch(zt)
            acts = small_model(par([zt]), ["conv2_relu"])["conv2_relu"]
            fi = tf.reduce_sum(obj.feature_response(acts)[:, i])
        grad = tape.gradient(fi, zt).numpy().reshape(2, -1)  # samples are independent
        np.testing.assert_allclose(jac[:, i], grad, rtol=1e-5, atol=1e-7)
    _, jac_chunked = ifv.feature_jacobian(small_model, "conv2_relu", z, par, chunk=4)
    _, jac_single = ifv.feature_jacobian(small_model, "conv2_relu", z, par, chunk=1)
    np.testing.assert_allclose(jac_chunked, jac, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(jac_single, jac, rtol=1e-6, atol=1e-9)


def test_pixels_and_features_subset(small_model):
    images = np.random.default_rng(2).uniform(0.2, 0.8, size=(1, 16, 16, 3)).astype(np.float32)
    f, jac = ifv.feature_jacobian(small_model, "conv2", images, wrt="pixels", features=[4, 1], aggregation="mean")
    assert f.shape == (1, 2) and jac.shape == (1, 2, 16 * 16 * 3)
    full, _ = ifv.feature_jacobian(small_model, "conv2", images, wrt="pixels", aggregation="mean")
    np.testing.assert_allclose(f[0], full[0, [4, 1]], rtol=1e-6)


def test_invert_accepts_images_params_and_render_results(small_model):
    par = param.image(16, batch=2, seed=0)
    t = np.abs(np.random.default_rng(5).normal(size=(2, 6)))
    result = render_vis(small_model, obj.feature_objective("conv2_relu", t / np.linalg.norm(t, axis=1, keepdims=True)),
                        par, transforms=[], thresholds=(30,), progress=False)
    a = ifv.invert(small_model, "conv2_relu", result)
    b = ifv.invert(small_model, "conv2_relu", result.params, param=par)
    c = ifv.invert(small_model, "conv2_relu", result.final, param=param.image(16, batch=2, seed=9))
    np.testing.assert_allclose(a.target, b.target, atol=1e-6)
    assert angle(a.target, c.target).max() < 0.5  # through the image's inverse: float32 round trip
    one = a[1]
    assert one.target.shape == (6,) and one.singular_values.shape == (6,)
    sv = one.singular_values[~np.isnan(one.singular_values)]  # dead features leave NaN slots at the end
    assert sv.size == 6 - one.dead_features.sum() and np.all(np.diff(sv) >= 0)
    assert np.all(a.target @ np.ones(6) != 0) and np.all(np.sum(a.target * a.response, 1) > 0)


def test_invert_errors(small_model):
    par = param.image(16, batch=1, seed=0)
    with pytest.raises(ValueError, match="all-zero feature response"):
        ifv.solve(np.zeros((1, 3)), np.ones((1, 3, 5)))
    with pytest.raises(ValueError, match="critical space is empty"):
        ifv.solve(np.ones((1, 3)), np.ones((1, 3, 5)), critical_space=np.zeros((3, 0)))
    with pytest.raises(ValueError, match=r"basis of shape \(4, 2\); expected \[3, d\]"):
        ifv.solve(np.ones((1, 3)), np.ones((1, 3, 5)), critical_space=np.eye(4)[:, :2])
    with pytest.raises(ValueError, match="non-finite"):
        ifv.solve(np.array([[1.0, np.nan, 0.0]]), np.ones((1, 3, 5)))
    with pytest.raises(ValueError, match="do not match"):
        ifv.solve(np.ones((1, 3)), np.ones((1, 4, 5)))
    with pytest.raises(KeyError, match="unknown layer 'nope'"):
        ifv.invert(small_model, "nope", np.full((1, 16, 16, 3), 0.5))
    with pytest.raises(ValueError, match=r"images of shape \(1, 8, 8, 3\)"):
        ifv.invert(small_model, "conv2", np.full((1, 8, 8, 3), 0.5))
    with pytest.raises(ValueError, match=r"features \[6\] out of range: the layer has 6 channels"):
        ifv.invert(small_model, "conv2", np.full((1, 16, 16, 3), 0.5), param=par, features=[0, 6])
    with pytest.raises(ValueError, match="2 images for a parametrization of batch 1"):
        ifv.invert(small_model, "conv2", np.full((2, 16, 16, 3), 0.5), param=par)
    with pytest.raises(ValueError, match="need their parametrization \\(param=...\\)"):
        ifv.invert(small_model, "conv2", [np.zeros(par.variables[0].shape)])


@pytest.mark.parametrize("p", [0, 1])
def test_critical_space_recovers_trivial_directions_and_targets(p):
    from lucid_ifv import critical_space, metrics, sampling

    k, n = 6, 12
    model = softmax_model(k)
    targets, _ = sampling.sample_hoyer_targets(k, n, 1)
    par = param.image(8, batch=n, fft=False, channels=1, seed=2)
    prior = obj.params_L2()
    result = render_vis(model, obj.feature_objective("softmax", targets, cossim_pow=p) - 1e-3 * prior, par,
                        transforms=[], thresholds=(300,), lbfgs_steps=300, progress=False)
    f, jac = ifv.feature_jacobian(model, "softmax", result.params, par)
    trivial = critical_space.estimate_trivial_space(ifv.jacobian_spectra(f, jac, p), eps=1e-3)
    assert trivial.dim == 2
    for true in (np.eye(k)[0], np.ones(k) / np.sqrt(k)):
        assert np.degrees(np.arccos(min(1.0, np.linalg.norm(trivial.basis.T @ true)))) < 5
    plain = ifv.solve(f, jac, p, prior_grads=ifv.prior_gradients(model, prior, result.params, par))
    inside = ifv.solve(f, jac, p, critical_space=trivial, prior_grads=ifv.prior_gradients(model, prior, result.params, par))
    recovered = ifv.angle_modulo_trivial(inside.target, targets, f, trivial.basis, p)
    feature = ifv.angle_modulo_trivial(f, targets, f, trivial.basis, p)
    assert np.median(recovered) < 1.0 and np.median(feature) > 10
    assert np.median(metrics.angle_deg(plain.target, targets)) > 20  # without the critical space: trivial answers
    if p == 0:  # A = I: the paper's comparison inside S is the same thing
        np.testing.assert_allclose(metrics.angle_in_subspace(inside.target, targets, trivial.critical_basis()),
                                   recovered, atol=1e-4)
