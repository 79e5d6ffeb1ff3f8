"""Converged realizations (`render_vis(converge=...)`), `Objective.terms`, relative prior weights."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import tensorflow as tf
from conftest import softmax_model

from lucid_ifv import objectives as obj
from lucid_ifv import param
from lucid_ifv import render
from lucid_ifv.model import KerasModel
from lucid_ifv.render import make_T, render_vis, stationarity_residual

LAM = 1e-3


def unit_rows(b, k=6, seed=0):
    t = np.abs(np.random.default_rng(seed).normal(size=(b, k)))
    return t / np.linalg.norm(t, axis=1, keepdims=True)


def grey_param(seed):
    return param.image(8, batch=3, fft=False, channels=1, seed=seed)


def per_sample_norm(g):
    return np.linalg.norm(g.numpy().reshape(g.shape[0], -1), axis=1)


def gradients_by_hand(model, par, params, t, lam):
    """Per-sample ``|grad phi|, |grad m|, |grad lam R|`` of ``phi = sum_b m_b - lam |z|^2`` with
    ``m = <f, t>^2 / |f|`` (p = 1, identity aggregation of the dense softmax layer)."""
    z = tf.constant(params[0])
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(z)
        f = model(par([z]), ["softmax"])["softmax"]
        ft = tf.reduce_sum(f * t, 1)
        m = tf.reduce_sum(ft**2 / tf.norm(f, axis=1))
        prior = lam * tf.reduce_sum(z**2)
        phi = m - prior
    return [per_sample_norm(tape.gradient(v, z)) for v in (phi, m, prior)]


@pytest.fixture(scope="module")
def model():
    return softmax_model()


@pytest.fixture(scope="module")
def renders(model):
    """The same start rendered with 15 Adam steps, and then converged to 1e-4."""
    t = unit_rows(3)
    objective = obj.feature_objective("softmax", t, model=model) - LAM * obj.params_L2()
    short = render_vis(model, objective, grey_param(1), transforms=[], thresholds=(15,), progress=False)
    traces = []  # make_T runs only while a tf.function is traced
    render.clear_cache()  # (the short render's compiled step would serve this one: count every trace)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(render, "make_T", lambda *args: traces.append(1) or make_T(*args))
        converged = render_vis(model, objective, grey_param(1), transforms=[], thresholds=(15,), progress=False,
                               converge=1e-4, max_lbfgs_steps=500)
    converged.traces = len(traces)
    return t, short, converged


def test_converged_residuals_are_below_tolerance_and_independent(model, renders):
    t, short, converged = renders
    assert converged.converged.dtype == bool and converged.converged.all()
    assert converged.residual.shape == (3,) and (converged.residual <= 1e-4).all()
    assert converged.lbfgs["message"].startswith("stationary") and converged.lbfgs["nit"] < 500
    assert converged.traces == 3  # Adam step, L-BFGS loss/grad, residual: none per check
    g, gm, gr = gradients_by_hand(model, converged.param, converged.params, t, LAM)
    by_hand = g / np.maximum(gm, gr)
    assert (by_hand <= 1e-4).all()
    np.testing.assert_allclose(converged.residual, by_hand, atol=2e-6)  # float32 gradient noise at r ~ 1e-6
    # both terms matter at the optimum: the prior's gradient balances the feature objective's
    np.testing.assert_allclose(gm, gr, rtol=1e-3)


def test_short_render_reports_a_larger_residual(model, renders):
    t, short, converged = renders
    assert short.converged is None and short.lbfgs is None
    g, gm, gr = gradients_by_hand(model, short.param, short.params, t, LAM)
    np.testing.assert_allclose(short.residual, g / np.maximum(gm, gr), rtol=1e-3)
    assert (short.residual > 1e-2).all()
    assert (short.residual > 100 * converged.residual).all()


def test_float32_loss_values_alone_stall_short_of_the_tolerance(model, monkeypatch):
    """Why small loss changes reach SciPy via the gradients: float32 values resolve ~1e-7 |loss|,
    so the line search fails ("ABNORMAL") near r ~ 1e-3 on this model."""
    monkeypatch.setattr(render, "SMALL_CHANGE", 0.0)
    objective = obj.feature_objective("softmax", unit_rows(3), model=model) - LAM * obj.params_L2()
    result = render_vis(model, objective, grey_param(1), transforms=[], thresholds=(15,), progress=False,
                        converge=1e-4, max_lbfgs_steps=300)
    assert not result.converged.all() and result.residual.max() > 2e-4
    assert result.lbfgs["restarts"] > 0


def test_single_term_residual_is_relative_to_the_start(model):
    t = unit_rows(3, seed=1)
    par = grey_param(2)
    start = par.numpy_params()
    result = render_vis(model, obj.feature_objective("softmax", t), par, transforms=[], thresholds=(10,),
                        progress=False)
    g_start = gradients_by_hand(model, par, start, t, 0.0)[0]
    g_end = gradients_by_hand(model, par, result.params, t, 0.0)[0]
    np.testing.assert_allclose(result.residual, g_end / g_start, rtol=1e-3)


def test_stationarity_rule_by_hand():
    grad = np.array([0.1, 0.2, 0.0, 0.3, 0.5])
    terms = np.array([[1.0, 0.0, 0.0, 2.0, 0.0],
                      [0.5, 0.4, 0.0, 4.0, 0.0]])
    reference = np.array([9.0, 0.8, 1.0, 9.0, 0.0])
    # two active terms: |g| / max_j |g_j|; one: |g| / |g_start|; g = 0: 0; g_start = 0: inf
    np.testing.assert_allclose(stationarity_residual(grad, terms, reference), [0.1, 0.25, 0.0, 0.075, np.inf])


def test_terms_of_sums_differences_multiples():
    a, b, c = obj.channel("conv", 1), obj.channel("conv", 2), obj.deepdream("conv")
    assert a.terms == ((1.0, a),)
    assert (a + b).terms == ((1.0, a), (1.0, b))
    assert (a - 0.5 * b).terms == ((1.0, a), (-0.5, b))
    assert (-a).terms == ((-1.0, a),)
    assert (2 * (a - 3 * b)).terms == ((2.0, a), (-6.0, b))
    assert (a + 1.5).terms == ((1.0, a),)  # constants have no gradient
    assert obj.Objective.sum([a, b - c, 4 * c]).terms == ((1.0, a), (1.0, b), (-1.0, c), (4.0, c))
    product = a * b
    assert product.terms == ((1.0, product),)
    plain = lambda T: T("conv")  # noqa: E731 (any callable, e.g. a Lucid objective, is one term)
    assert (a + plain).terms == ((1.0, a), (1.0, plain))
    assert obj.terms_of(plain) == ((1.0, plain),)
    # the terms add up to the objective (up to its constants)
    acts = tf.constant(np.random.default_rng(0).normal(size=(2, 4, 4, 3)), tf.float32)
    T = lambda name: acts  # noqa: E731
    for o, constant in ((a - 0.5 * b + 2.0, 2.0), (2 * (a - 3 * b), 0.0), (obj.Objective.sum([a, b - c, 4 * c]), 0.0)):
        by_terms = sum(f * float(term(T)) for f, term in o.terms)
        np.testing.assert_allclose(float(o(T)), by_terms + constant, rtol=1e-5)


def linear_model(value_range):
    tf.keras.utils.set_random_seed(0)
    inp = tf.keras.Input((8, 8, 3))
    out = tf.keras.layers.Conv2D(5, 3, use_bias=False, name="conv")(inp)
    return KerasModel(tf.keras.Model(inp, out), image_value_range=value_range)


def test_response_scale_is_linear_in_the_input_range():
    unit, byte = linear_model((0, 1)), linear_model((0, 255))
    s1, s255 = obj.response_scale(unit, "conv"), obj.response_scale(byte, "conv")
    np.testing.assert_allclose(s255 / s1, 255, rtol=1e-4)
    # the RMS of |f| over 16 seeded start images, by hand
    f = unit(param.image_for_model(unit, batch=16, seed=0)(), ["conv"])["conv"].numpy()
    f = tf.nn.max_pool2d(f, 3, 2, "VALID").numpy().mean((1, 2))
    np.testing.assert_allclose(s1, np.sqrt(np.mean(np.sum(f**2, 1))), rtol=1e-5)
    np.testing.assert_allclose(obj.relative_prior(byte, "conv", 1e-3), 1e-3 * s255, rtol=1e-6)
    # a Param (its current images) or a factory instead of the default
    par = param.image_for_model(unit, batch=16, seed=0)
    np.testing.assert_allclose(obj.response_scale(unit, "conv", param=par), s1, rtol=1e-6)
    factory = lambda batch, seed: param.image_for_model(unit, batch=batch, seed=seed)  # noqa: E731
    np.testing.assert_allclose(obj.response_scale(unit, "conv", param=factory), s1, rtol=1e-6)
    assert obj.response_scale(unit, "conv", features=[0, 3], aggregation="mean") > 0


def test_relative_prior_renders_the_same_image_on_both_ranges():
    t = unit_rows(1, k=5, seed=3)
    images = {}
    for name, value_range in (("unit", (0, 1)), ("byte", (0, 255))):
        model = linear_model(value_range)
        lam = obj.relative_prior(model, "conv", 0.05)
        objective = obj.feature_objective("conv", t) - lam * obj.params_L2()
        par = param.image(8, batch=1, fft=False, seed=4)
        images[name] = render_vis(model, objective, par, transforms=[], thresholds=(20,), progress=False).final
        absolute = obj.feature_objective("conv", t) - 0.05 * obj.params_L2()
        par = param.image(8, batch=1, fft=False, seed=4)
        images[name + " absolute"] = render_vis(model, absolute, par, transforms=[], thresholds=(20,),
                                                progress=False).final
    assert np.abs(images["unit"] - images["byte"]).max() < 1e-3
    assert np.abs(images["unit absolute"] - images["byte absolute"]).max() > 1e-2


def test_bad_arguments(model):
    objective = obj.feature_objective("softmax", unit_rows(1))
    par = param.image(8, batch=1, fft=False, channels=1, seed=0)
    for bad in (0, -1e-3, float("nan"), float("inf"), True, "1e-3"):
        with pytest.raises(ValueError, match=f"converge must be None or a finite relative tolerance > 0, got {bad!r}"):
            render_vis(model, objective, par, transforms=[], thresholds=(1,), converge=bad, progress=False)
    with pytest.raises(ValueError, match=r"transforms=\[\]"):
        render_vis(model, objective, par, thresholds=(1,), converge=1e-3, progress=False)
    with pytest.raises(ValueError, match=r"max_lbfgs_steps must be an integer >= max\(lbfgs_steps, 1\) = 50; got 10"):
        render_vis(model, objective, par, transforms=[], thresholds=(1,), lbfgs_steps=50, converge=1e-3,
                   max_lbfgs_steps=10, progress=False)
    unit = linear_model((0, 1))
    for bad in (0, -2, 2.5, True, None):
        with pytest.raises(ValueError, match=f"n must be an integer >= 1 .*got {bad!r}"):
            obj.response_scale(unit, "conv", n=bad)
    for bad in (-1e-3, float("nan"), "big"):
        with pytest.raises(ValueError, match="weight must be a finite number >= 0"):
            obj.relative_prior(unit, "conv", bad)
    with pytest.raises(KeyError, match="unknown layer 'nope'"):
        obj.response_scale(unit, "nope")
    inp = tf.keras.Input((8, 8, 3))
    zero = KerasModel(tf.keras.Model(inp, tf.keras.layers.Conv2D(2, 1, use_bias=False, kernel_initializer="zeros",
                                                                 name="dead")(inp)))
    with pytest.raises(ValueError, match="layer 'dead' gives an all-zero feature response on 16 start image"):
        obj.response_scale(zero, "dead")


def test_converge_each_sample_makes_every_sample_stationary_on_its_own(model):
    """`render.converge_each_sample`: after a batch's Adam phase, each sample's L-BFGS runs on
    its own objective; the batch's parametrization holds the result, and each sample's
    residual (by hand, on the batch objective) is at most the tolerance."""
    t = unit_rows(3)
    objective = obj.feature_objective("softmax", t, model=model) - LAM * obj.params_L2()
    adam = render_vis(model, objective, grey_param(1), transforms=[], thresholds=(15,), progress=False)
    start = [a.copy() for a in adam.params]
    each = render.converge_each_sample(
        model, lambda i: obj.feature_objective("softmax", t[i:i + 1], model=model) - LAM * obj.params_L2(), adam,
        param.image(8, batch=1, fft=False, channels=1, seed=1), 1e-4, 500, progress=False)
    assert each.converged.all() and (each.residual <= 1e-4).all() and each.lbfgs["per_sample"]
    assert len(each.lbfgs["nit"]) == 3 and all(n <= 500 for n in each.lbfgs["nit"])
    assert each.steps == [15, "lbfgs"] and each.final.shape == (3, 8, 8, 1)
    np.testing.assert_array_equal(each.param.numpy_params()[0], each.params[0])
    assert not np.array_equal(each.params[0], start[0])
    g, gm, gr = gradients_by_hand(model, each.param, each.params, t, LAM)
    np.testing.assert_allclose(each.residual, stationarity_residual(g, np.stack([gm, gr]), g), atol=2e-6)
    with pytest.raises(ValueError, match="single must be a batch-1 parametrization with 1 variable"):
        render.converge_each_sample(model, lambda i: objective, adam, grey_param(1), 1e-4, 10)


def test_converge_each_sample_with_a_target_variable_traces_once_and_renders_the_same(model):
    """`per_sample_objectives` (one objective, its target a `tf.Variable` assigned per sample) gives the same
    converged samples as objectives with their targets built in, from one L-BFGS trace
    instead of one per sample."""
    t = unit_rows(3)
    objective = obj.feature_objective("softmax", t, model=model) - LAM * obj.params_L2()
    adam = render_vis(model, objective, grey_param(1), transforms=[], thresholds=(15,), progress=False)
    start = [a.copy() for a in adam.params]

    def converge(objective_of):
        adam.param.assign(start)
        render.clear_cache()
        before = render._STATS["lbfgs_traces"]
        each = render.converge_each_sample(model, objective_of, adam, param.image(8, batch=1, fft=False, channels=1,
                                                                                  seed=1), 1e-4, 500, progress=False)
        return each, render._STATS["lbfgs_traces"] - before

    built_in, built_in_traces = converge(
        lambda i: obj.feature_objective("softmax", t[i:i + 1], model=model) - LAM * obj.params_L2())
    variable, variable_traces = converge(
        render.per_sample_objectives(lambda target: obj.feature_objective("softmax", target, model=model)
                                     - LAM * obj.params_L2(), t))
    assert (built_in_traces, variable_traces) == (3, 1)
    assert variable.converged.all()
    np.testing.assert_allclose(variable.params[0], built_in.params[0], rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(variable.lbfgs["nit"], built_in.lbfgs["nit"])

    # a second call with fresh arrays (other targets, same shapes) reuses the compilation and
    # renders the new targets: stationary by hand against them, not against the old ones
    fresh = unit_rows(3, seed=1)
    adam.param.assign(start)
    before = render._STATS["lbfgs_traces"]
    again = render.converge_each_sample(
        model, render.per_sample_objectives(lambda target: obj.feature_objective("softmax", target, model=model)
                                            - LAM * obj.params_L2(), fresh),
        adam, param.image(8, batch=1, fft=False, channels=1, seed=1), 1e-4, 500, progress=False)
    assert render._STATS["lbfgs_traces"] == before and again.converged.all()
    by_hand = {}
    for name, targets in (("fresh", fresh), ("old", t)):
        g, gm, gr = gradients_by_hand(model, again.param, again.params, targets, LAM)
        by_hand[name] = stationarity_residual(g, np.stack([gm, gr]), g)
    assert (by_hand["fresh"] <= 1e-4).all() and (by_hand["old"] > 1e-2).all()


def test_target_slot_is_one_variable_per_shape_holding_the_last_targets():
    a = obj.target_slot(np.ones((2, 3)))
    b = obj.target_slot(np.full((2, 3), 2.0))
    c = obj.target_slot(np.ones((1, 3)))
    assert a is b and b is not c and a.dtype == tf.float32
    np.testing.assert_array_equal(a.numpy(), np.full((2, 3), 2.0, np.float32))
    other_thread = []
    worker = threading.Thread(target=lambda: other_thread.append(obj.target_slot(np.zeros((2, 3)))))
    worker.start()
    worker.join()
    assert other_thread[0] is not a  # per thread: concurrent tasks cannot overwrite each other's targets
    np.testing.assert_array_equal(a.numpy(), np.full((2, 3), 2.0, np.float32))


def test_experiment_batches_of_one_shape_share_their_compiled_renders():
    """`experiment.realize` puts the targets in `objectives.target_slot`: a second batch of
    the same shape (fresh targets, fresh parametrization) traces neither the Adam step nor
    the per-sample L-BFGS function again."""
    from lucid_ifv import experiment, sampling
    from modelzoo.shipped import load_shipped

    config = experiment.ExperimentConfig(layer="conv2", fft=False, decorrelate=False, prior_weight=1e-4,
                                         prior_relative=True, smooth=True, adam_steps=20, lbfgs_steps=0,
                                         converge=1e-3, max_lbfgs_steps=20, float64_converge=None)
    setup = experiment.prepare(load_shipped("mnist_small"), config)
    targets, _ = sampling.sample_hoyer_targets(32, 4, 5)
    render.clear_cache()
    counts = []
    for rows in (slice(0, 2), slice(2, 4)):
        before = dict(render._STATS)
        experiment.realize(setup, config, targets[rows], experiment.realization_param(setup.model, config, 2, 0), 0)
        counts.append(tuple(render._STATS[k] - before[k] for k in ("traces", "lbfgs_traces")))
    assert counts[0][0] >= 1 and counts[0][1] >= 1 and counts[1] == (0, 0)


def test_feature_objective_checks_a_target_variable_when_built(model):
    with pytest.raises(ValueError, match="target vectors must be non-zero"):
        obj.feature_objective("softmax", tf.Variable(np.zeros((1, 6), np.float32)), model=model)
    with pytest.raises(ValueError, match="target has length 5 but layer 'softmax' gives 6 features"):
        obj.feature_objective("softmax", tf.Variable(np.ones((1, 5), np.float32)), model=model)
