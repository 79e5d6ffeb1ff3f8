"""render_vis compiles its step once per structure (`lucid_ifv.render._render_key`), not per call."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from lucid_ifv import objectives as obj
from lucid_ifv import param, render
from lucid_ifv import transform as tr
from lucid_ifv.model import KerasModel


@pytest.fixture(scope="module")
def model():
    tf.keras.utils.set_random_seed(0)
    inputs = tf.keras.Input((12, 12, 3))
    x = tf.keras.layers.Conv2D(6, 3, activation="relu", name="conv1")(inputs)
    x = tf.keras.layers.Conv2D(5, 3, activation="relu", name="conv2")(x)
    return KerasModel(tf.keras.Model(inputs, x))


@pytest.fixture(autouse=True)
def empty_cache():
    render._RENDERS.clear()
    yield
    render._RENDERS.clear()


def traces():
    return render._STATS["traces"]


def run(model, objective="conv2:3", batch=2, seed=0, transforms=(), **kwargs):
    p = param.image(12, batch=batch, seed=seed)
    transforms = list(transforms) if transforms is not None else None
    return render_vis(model, objective, p, transforms, seed, **kwargs)


def render_vis(model, objective, p, transforms, seed, **kwargs):
    kwargs.setdefault("thresholds", (25,))
    return render.render_vis(model, objective, p, transforms=transforms, seed=seed, progress=False, **kwargs)


def test_a_second_render_of_the_same_structure_does_not_trace(model):
    start = traces()
    run(model)
    first = traces() - start
    assert first >= 1  # the Adam step (and its redirected-ReLU variant)
    run(model, objective=obj.channel("conv2", 3), seed=1)  # fresh param and objective, equal structure
    run(model, objective="conv2:3", seed=2, optimizer=tf.keras.optimizers.Adam(0.05, epsilon=1e-8))
    assert traces() - start == first
    assert len(render._RENDERS) == 1


@pytest.mark.parametrize("transforms", [(), None])
def test_a_cached_render_gives_the_same_images_as_a_fresh_one(model, transforms):
    """The optimizer state and the transforms' generator restart on every call."""
    objective = obj.channel("conv2", 1) - 1e-3 * obj.params_L2()
    fresh = run(model, objective, transforms=transforms, seed=3)
    again = run(model, objective, transforms=transforms, seed=3)
    assert len(render._RENDERS) == 1
    np.testing.assert_array_equal(fresh.final, again.final)
    np.testing.assert_array_equal(fresh.objective, again.objective)
    other = run(model, objective, transforms=transforms, seed=4)
    assert not np.allclose(other.final, fresh.final)
    render._RENDERS.clear()
    uncached = run(model, objective, transforms=transforms, seed=3)
    np.testing.assert_array_equal(fresh.final, uncached.final)


def test_lbfgs_and_convergence_reuse_the_cached_functions(model):
    objective = obj.channel("conv2", 2) - 1e-2 * obj.params_L2()
    a = run(model, objective, lbfgs_steps=5, converge=1e-2, max_lbfgs_steps=200)
    b = run(model, objective, lbfgs_steps=5, converge=1e-2, max_lbfgs_steps=200)
    np.testing.assert_array_equal(a.final, b.final)
    np.testing.assert_array_equal(a.residual, b.residual)
    compiled = next(iter(render._RENDERS.values()))
    assert compiled._loss_and_grad is not None and compiled._gradient_norms is not None


def test_what_changes_the_graph_changes_the_key(model):
    start = traces()
    run(model, "conv2:3")
    per_render = traces() - start
    run(model, "conv2:4")  # another objective
    run(model, "conv2:3", batch=3)  # another batch size
    run(model, "conv2:3", transforms=[tr.jitter(2)])
    run(model, "conv2:3", optimizer=tf.keras.optimizers.Adam(0.05, beta_1=0.8))
    assert traces() - start == 5 * per_render
    assert len(render._RENDERS) == 5
    run(model, "conv2:3", transforms=[tr.jitter(2)])  # an equal transform list
    assert traces() - start == 5 * per_render


def test_unknown_objectives_compile_privately(model):
    start = traces()
    run(model, lambda T: tf.reduce_mean(T("conv2")))
    run(model, lambda T: tf.reduce_mean(T("conv2")))
    assert len(render._RENDERS) == 0 and traces() - start >= 2


def test_a_setup_in_use_is_not_shared_and_the_callers_optimizer_is_untouched(model):
    optimizer = tf.keras.optimizers.Adam(0.05)
    first = render.VisSetup(model, "conv2:3", param.image(12, batch=2, seed=0), optimizer, [], 0)
    first.step()
    second = render.VisSetup(model, "conv2:3", param.image(12, batch=2, seed=0), optimizer, [], 0)
    assert second.compiled is not first.compiled
    assert int(optimizer.iterations.numpy()) == 0 and not optimizer.built
    cached = first.compiled
    del first, second
    third = render.VisSetup(model, "conv2:3", param.image(12, batch=2, seed=0), optimizer, [], 0)
    assert third.compiled is cached and len(render._RENDERS) == 1


def test_the_cache_is_bounded(model):
    for channel in range(render.RENDER_CACHE_SIZE + 2):
        run(model, f"conv2:{channel % 5}", batch=1 + channel // 5, thresholds=(1,))
    assert len(render._RENDERS) == render.RENDER_CACHE_SIZE
