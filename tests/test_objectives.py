"""Objectives: parity with Lucid 0.3.10's own code, algebra, the paper's significance, errors."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from lucid_ifv import objectives as ours

RNG = np.random.default_rng(0)
ACTS = {
    "conv": RNG.normal(size=(3, 5, 6, 7)).astype(np.float32),
    "dense": RNG.normal(size=(3, 7)).astype(np.float32),
    "input": RNG.uniform(size=(3, 8, 8, 3)).astype(np.float32),
}
VEC = RNG.normal(size=7).astype(np.float32)


def evaluate(objective):
    """Evaluate an objective (ours or Lucid's) inside a tf.function on ACTS."""

    @tf.function(autograph=False)
    def run():
        tensors = {k: tf.constant(v) for k, v in ACTS.items()}
        return objective(lambda name: tensors[name])

    return float(run())


def pairs(L):
    """(ours, Lucid's) objective pairs over every objective the issue names."""
    out = []
    for layer in ("conv", "dense"):
        for batch in (None, 1):
            out.append((ours.channel(layer, 2, batch=batch), L.channel(layer, 2, batch=batch)))
            for p in (0, 1, 2):
                out.append((ours.direction(layer, VEC, cossim_pow=p, batch=batch),
                            L.direction(layer, VEC, cossim_pow=p, batch=batch)))
        out.append((ours.neuron("conv", 3), L.neuron("conv", 3)))
        out.append((ours.neuron("conv", 3, x=1, y=4, batch=2), L.neuron("conv", 3, x=1, y=4, batch=2)))
        out.append((ours.direction_neuron("conv", VEC, cossim_pow=2), L.direction_neuron("conv", VEC, cossim_pow=2)))
    out.append((ours.deepdream("conv"), L.deepdream("conv")))
    out.append((ours.L1(), L.L1()))
    out.append((ours.L2(constant=0.5), L.L2(constant=0.5)))
    out.append((ours.diversity("conv"), L.diversity("conv")))
    out.append((ours.class_logit("dense", 3), L.class_logit("dense", 3)))
    out.append((ours.as_objective("conv:4"), L.as_objective("conv:4")))
    return out


def test_parity_with_lucid(lucid_objectives):
    for mine, theirs in pairs(lucid_objectives):
        np.testing.assert_allclose(evaluate(mine), evaluate(theirs), rtol=1e-5, atol=1e-6,
                                   err_msg=mine.description)
        assert mine.name == theirs.name


def test_total_variation_parity(lucid_objectives):
    # Lucid's returns one value per image (render sums it); ours sums over the batch.
    theirs = tf.function(lambda: tf.reduce_sum(lucid_objectives.total_variation()(lambda n: tf.constant(ACTS[n]))))()
    np.testing.assert_allclose(evaluate(ours.total_variation()), float(theirs), rtol=1e-5)


def test_algebra_parity(lucid_objectives):
    L = lucid_objectives
    a, b = ours.channel("conv", 1), ours.direction("conv", VEC, cossim_pow=1)
    la, lb = L.channel("conv", 1), L.direction("conv", VEC, cossim_pow=1)
    for mine, theirs in [
        (a + b, la + lb), (a - b, la - lb), (-a, -la), (2.5 * a, 2.5 * la), (a * 3, la * 3),
        (a * b, la * lb), (a + 1.5, la + 1.5), (ours.Objective.sum([a, b, a]), L.Objective.sum([la, lb, la])),
    ]:
        np.testing.assert_allclose(evaluate(mine), evaluate(theirs), rtol=1e-5)
        assert mine.name == theirs.name
        assert mine.description == theirs.description


def test_lucid_objectives_mix_with_ours(lucid_objectives):
    mixed = ours.channel("conv", 1) + lucid_objectives.channel("conv", 2)
    expected = ACTS["conv"][..., 1].mean() + ACTS["conv"][..., 2].mean()
    np.testing.assert_allclose(evaluate(mixed), expected, rtol=1e-5)
    np.testing.assert_allclose(evaluate(0.5 * lucid_objectives.channel("conv", 2) - ours.channel("conv", 1)),
                               0.5 * ACTS["conv"][..., 2].mean() - ACTS["conv"][..., 1].mean(), rtol=1e-5)


def test_direction_formula_by_hand():
    x = ACTS["conv"]
    xy = (x * VEC).sum(-1)
    cos = xy / (1e-4 + np.linalg.norm(x, axis=-1)) / (1e-4 + np.linalg.norm(VEC))
    expected = np.mean(xy * np.maximum(0.1, cos) ** 2)
    np.testing.assert_allclose(evaluate(ours.direction("conv", VEC, cossim_pow=2)), expected, rtol=1e-5)


@pytest.mark.parametrize("p", [0, 1, 2, 4])
def test_feature_objective_is_the_significance(p):
    f = np.maximum(ACTS["conv"], 0)
    pooled = tf.nn.max_pool2d(f, 3, 2, "VALID").numpy().mean((1, 2))  # [B, C]
    t = np.abs(RNG.normal(size=(3, 7)))
    t /= np.linalg.norm(t, axis=1, keepdims=True)
    ft = (pooled * t).sum(1)
    cos = ft / np.linalg.norm(pooled, axis=1)
    expected = np.sum(ft * cos**p)
    ACTS["relu"] = f
    try:
        value = evaluate(ours.feature_objective("relu", t, cossim_pow=p))
    finally:
        del ACTS["relu"]
    np.testing.assert_allclose(value, expected, rtol=1e-5)


def test_feature_objective_subset_and_aggregations():
    f = ACTS["conv"]
    t = np.array([0.6, 0.8])
    for aggregation, agg in [("mean", f.mean((1, 2))), ("center", f[:, 2, 3]),
                             ("max_pool_mean", tf.nn.max_pool2d(f, 3, 2, "VALID").numpy().mean((1, 2)))]:
        sub = agg[:, [5, 0]]
        expected = np.sum((sub @ t) ** 2 / np.linalg.norm(sub, axis=1))
        value = evaluate(ours.feature_objective("conv", t, aggregation=aggregation, features=[5, 0]))
        np.testing.assert_allclose(value, expected, rtol=1e-5)
    dense = ACTS["dense"][:, :2]
    np.testing.assert_allclose(evaluate(ours.feature_objective("dense", t, cossim_pow=0, features=[0, 1])),
                               np.sum(dense @ t), rtol=1e-5)


def test_objective_errors(small_model):
    with pytest.raises(ValueError, match="target has length 5 but layer 'conv2' gives 6"):
        ours.feature_objective("conv2", np.ones(5), model=small_model)
    with pytest.raises(KeyError, match="unknown layer 'nope'"):
        ours.feature_objective("nope", np.ones(6), model=small_model)
    with pytest.raises(ValueError, match="non-finite"):
        ours.feature_objective("conv2", [1, np.nan, 0, 0, 0, 0])
    with pytest.raises(ValueError, match="non-zero"):
        ours.feature_objective("conv2", np.zeros(6))
    with pytest.raises(ValueError, match="direction vector has length 3 but layer 'conv' has 7"):
        evaluate(ours.direction("conv", np.ones(3)))
    with pytest.raises(ValueError, match="cannot make an objective"):
        ours.as_objective("conv-4")
    with pytest.raises(ValueError, match="unknown aggregation"):
        evaluate(ours.feature_objective("conv", np.ones(7), aggregation="median"))
