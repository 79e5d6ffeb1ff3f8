"""Transformation-robust inversion (`lucid_ifv.ifv.robust`)."""

from __future__ import annotations

import numpy as np
import pytest

from lucid_ifv import experiment, ifv, metrics, sampling
from lucid_ifv import objectives as obj
from lucid_ifv import transform as T
from modelzoo.shipped import load_shipped


@pytest.fixture(scope="module")
def realization():
    """Two converged smooth-surrogate realizations of Hoyer targets on mnist_small conv2."""
    model = load_shipped("mnist_small")
    config = experiment.ExperimentConfig(layer="conv2", fft=False, decorrelate=False, prior_weight=1e-4,
                                         prior_relative=True, smooth=True, adam_steps=200, lbfgs_steps=0,
                                         converge=1e-3, max_lbfgs_steps=300, float64_converge=None)
    setup = experiment.prepare(model, config)
    targets, _ = sampling.sample_hoyer_targets(32, 2, 3)
    param = experiment.realization_param(setup.model, config, 2, 0)
    rendered = experiment.realize(setup, config, targets, param, 0)
    return setup, param, rendered, targets


def test_identity_transform_gives_the_plain_inversion(realization):
    setup, param, rendered, targets = realization
    common = dict(param=param, aggregation=setup.aggregation, prior=obj.params_L2(), method="anchored")
    plain = ifv.invert(setup.model, "conv2", rendered.params, **common)
    robust = ifv.invert_robust(setup.model, "conv2", rendered.params, transforms=[lambda x, rng: x], n_transforms=2,
                               **common)
    assert robust.target.shape == plain.target.shape == (2, 32)
    # same equation up to a per-sample scale (the cosine weight): the same answer
    assert np.all(metrics.objective_angle_deg(robust.target, plain.target, 1) < 2.5)
    np.testing.assert_array_equal(robust.dead_features, plain.dead_features)
    live = targets * ~plain.dead_features  # a dead feature's weight is not identifiable
    assert np.all(metrics.objective_angle_deg(plain.target, live, 1) < 5)


def test_draws_are_seeded_and_differ(realization):
    setup, param, rendered, _ = realization
    transforms = [T.jitter(3)]
    f1, j1 = ifv.transformed_jacobians(setup.model, "conv2", rendered.params, param, transforms, 3, seed=5,
                                       aggregation=setup.aggregation)
    f2, j2 = ifv.transformed_jacobians(setup.model, "conv2", rendered.params, param, transforms, 3, seed=5,
                                       aggregation=setup.aggregation)
    assert f1.shape == (3, 2, 32) and j1.shape[:3] == (3, 2, 32)
    np.testing.assert_array_equal(f1, f2)  # the same seed gives the same draws
    np.testing.assert_array_equal(j1, j2)
    assert not np.allclose(f1[0], f1[1]) or not np.allclose(f1[1], f1[2])  # different jitters, different inputs


def test_p0_expected_equation_is_the_mean_jacobian():
    rng = np.random.default_rng(0)
    f, jac, grads = rng.uniform(size=(4, 3, 5)), rng.normal(size=(4, 3, 5, 20)), rng.normal(size=(3, 1, 20))
    got = ifv.solve_expected(f, jac, 0, grads, method="anchored")
    want = ifv.solve(f.mean(axis=0), jac.mean(axis=0), 0, prior_grads=grads, method="anchored")
    np.testing.assert_allclose(got.target, want.target, rtol=1e-6, atol=1e-9)


def test_a_feature_dead_in_every_draw_is_dead_and_the_rest_is_solved():
    """Feature 0 has a zero Jacobian row in every draw but a non-zero response (a dead channel
    behind a bias or BatchNorm): `A(f)^-1` and the spread of `A(f_tau)` mix other rows into its
    row of the equivalent Jacobian, so it must be found dead on the mean Jacobian. The live
    target solves the expected equation exactly and is recovered."""
    rng = np.random.default_rng(1)
    n, k, d = 6, 5, 40
    f = rng.uniform(0.5, 2.0, size=(n, 1, k))  # responses that turn from draw to draw
    jac = rng.normal(size=(n, 1, k, d))
    jac[:, :, 0] = 0.0
    t = np.array([0.0, 0.6, 0.3, 0.0, 0.74])
    weights = np.abs(np.einsum("nbk,k->nb", f, t) / (np.linalg.norm(f, axis=-1) * np.linalg.norm(t))) ** 1
    A = ifv.significance_matrix(f.reshape(-1, k), 1).reshape(n, 1, k, k)
    g = np.einsum("nb,nbkd,nbkl,l->bd", weights, jac, A, t) / weights.sum(axis=0)[:, None]  # lam = 1
    got = ifv.solve_expected(f, jac, 1, g[:, None, :], method="anchored", iterations=8)  # weights s_tau converge
    assert got.dead_features[0].tolist() == [True, False, False, False, False]
    assert metrics.angle_deg(got.target[0], t) < 1e-3


def test_bad_transform_arguments_are_refused(realization):
    setup, param, rendered, _ = realization
    with pytest.raises(ValueError, match="n_transforms must be an integer >= 1"):
        ifv.invert_robust(setup.model, "conv2", rendered.params, param=param, transforms=[T.jitter(2)], n_transforms=0)
    with pytest.raises(ValueError, match="transforms is empty"):
        ifv.invert_robust(setup.model, "conv2", rendered.params, param=param, transforms=[])


def test_repeated_robust_inversions_with_fresh_params_trace_once(realization):
    """A user's normal use: every call with fresh arrays, a fresh parametrization and a fresh
    (equal) transforms list. The compiled Jacobian is traced for the first call only, and a
    different seed reuses it too (the draw is the generator's state, not part of the graph)."""
    from lucid_ifv.ifv import jacobian as jacobian_mod

    from lucid_ifv.param import image_for_model

    setup, _, rendered, _ = realization
    ifv.clear_cache()
    answers = []
    for seed in (0, 0, 3):
        result = ifv.invert_robust(setup.model, "conv2", [np.array(p) for p in rendered.params],
                                   image_for_model(setup.model, batch=2, fft=False, decorrelate=False, seed=seed),
                                   transforms=[T.jitter(2), T.random_scale([1.0, 1.1])], n_transforms=2, seed=seed,
                                   aggregation=setup.aggregation, prior=obj.params_L2(), method="anchored")
        answers.append(result.target)
        if len(answers) == 1:
            traces = jacobian_mod.cache_info()["traces"]
    assert traces >= 1 and jacobian_mod.cache_info()["traces"] == traces
    np.testing.assert_array_equal(answers[0], answers[1])  # same seed, same draws, same answer
    assert not np.array_equal(answers[0], answers[2])  # another seed draws other transforms
