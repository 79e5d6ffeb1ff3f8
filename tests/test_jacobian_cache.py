"""The compiled Jacobian is cached by structure (not object identity), stays bounded, and
gives the same numbers as an uncached per-feature gradient; the Gram products are BLAS."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from lucid_ifv import ifv, param
from lucid_ifv import objectives as obj
from lucid_ifv.ifv import jacobian as jacobian_mod


def rss_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    pytest.skip("no /proc/self/status")


def reference_jacobian(model, layer, par, values, aggregation=None):
    """``f`` and ``J`` by one eager gradient per feature (nothing compiled, nothing cached)."""
    z = [tf.constant(v) for v in values]
    with tf.GradientTape(persistent=True) as tape:
        for v in z:
            tape.watch(v)
        f = obj.feature_response(model(par.forward(z), [layer])[layer], aggregation)
        columns = [tf.reduce_sum(f[:, i]) for i in range(f.shape[1])]
    rows = []
    for column in columns:  # samples are independent: the batch sum's gradient holds every row
        grads = tape.gradient(column, z)
        rows.append(np.concatenate([g.numpy().reshape(par.batch, -1) for g in grads], axis=1))
    return f.numpy(), np.stack(rows, axis=1)


@pytest.fixture(scope="module")
def mnist():
    from modelzoo.shipped import load_shipped

    return load_shipped("mnist_small")


@pytest.fixture(autouse=True)
def fresh_cache():
    ifv.clear_cache()
    yield
    ifv.clear_cache()


# -- structure keys -------------------------------------------------------------------------
def test_structure_key_ignores_values_and_sees_structure():
    a, b = param.image(16, batch=2, seed=0), param.image(16, batch=2, seed=1)
    a.assign([np.ones_like(v) for v in a.numpy_params()])
    assert a.structure_key() == b.structure_key() and hash(a.structure_key()) == hash(b.structure_key())
    others = [param.image(16, batch=3, seed=0), param.image(16, batch=2, fft=False, seed=0),
              param.image(16, batch=2, decorrelate=False, seed=0), param.image(16, batch=2, decay_power=1.5, seed=0),
              param.image(16, h=18, batch=2, seed=0), param.image(16, batch=2, channels=3, seed=0),
              param.lowres_tensor((2, 16, 16, 3), (2, 8, 8, 3)), param.lowres_tensor((2, 16, 16, 3), (2, 8, 8, 3), offset=True)]
    keys = [a.structure_key()] + [p.structure_key() for p in others]
    assert len(set(keys)) == len(keys)


def test_structure_key_is_none_for_state_it_cannot_describe():
    class Scaled(param.PixelParam):
        def __init__(self, shape, fn):
            super().__init__(shape)
            self.fn = fn  # a callable: not describable, so the identity is used

        def forward(self, params):
            return self.fn(params[0])

    assert Scaled((1, 4, 4, 3), tf.nn.sigmoid).structure_key() is None
    assert param.to_valid_rgb(Scaled((1, 4, 4, 3), tf.nn.sigmoid)).structure_key() is None


# -- one trace per structure, flat memory ------------------------------------------------------
def test_a_structure_is_tiled_on_its_first_call_then_vectorized(mnist, monkeypatch):
    from lucid_ifv.ifv.robust import TransformedParam

    par = param.image_for_model(mnist, batch=2, seed=0)
    assert par.batch_agnostic and par.per_sample
    kinds = [jacobian_mod.block_kind(mnist, "conv2", param.image_for_model(mnist, batch=2, seed=s), None, 784)
             for s in range(3)]
    assert kinds == ["tiled", "pfor", "pfor"]
    assert jacobian_mod.block_kind(mnist, "conv1", par, None, 784) == "tiled"  # another layer: another structure
    random_draws = TransformedParam(par, lambda x: x, tf.random.Generator.from_seed(0), mnist.image_shape)
    assert not random_draws.batch_agnostic  # its transform draws per call: never tiled
    assert jacobian_mod.block_kind(mnist, "conv2", random_draws, None, 784) == "pfor"
    monkeypatch.setenv("LUCID_IFV_JACOBIAN", "fast")
    with pytest.raises(ValueError, match="LUCID_IFV_JACOBIAN must be auto, pfor or tiled, got 'fast'"):
        jacobian_mod.block_kind(mnist, "conv2", par, None, 784)



def test_repeated_invert_with_fresh_params_traces_once_per_kind_and_memory_stays_flat(mnist):
    """Every call builds a fresh parametrization (the default `image_for_model`): one trace of
    the tiled block (the first call) and one of the pfor block (every later call) in all, and
    no growth of the process's memory (a leak check, no timing)."""
    rng = np.random.default_rng(0)
    calls, warmup = 100, 20
    before = None
    for i in range(calls):
        images = rng.uniform(0.1, 0.9, size=(2, 28, 28, 1)).astype(np.float32)
        result = ifv.invert(mnist, "conv2", images, prior=obj.params_L2())
        assert result.target.shape == (2, 32)
        if i == warmup - 1:
            before = rss_mb()
    growth = rss_mb() - before
    info = jacobian_mod.cache_info()
    assert info["traces"] == 2 and info["entries"] == 2, info
    assert growth < 50, f"RSS grew {growth:.1f} MB over {calls - warmup} repeated invert calls"


def test_structures_get_their_own_entries_and_correct_results(mnist):
    rng = np.random.default_rng(1)
    pars = {"fft": param.image_for_model(mnist, batch=2, seed=0),
            "pixel": param.image_for_model(mnist, batch=2, fft=False, seed=0),
            "fft_batch3": param.image_for_model(mnist, batch=3, seed=0)}
    for round_ in range(2):
        for name, par in pars.items():
            fresh = param.image_for_model(mnist, batch=par.batch, fft=name != "pixel", seed=round_ + 5)
            values = [rng.normal(size=v.shape, scale=0.3).astype(np.float32) for v in par.variables]
            f, jac = ifv.feature_jacobian(mnist, "conv2", values, fresh)
            f_ref, jac_ref = reference_jacobian(mnist, "conv2", par, values)
            np.testing.assert_allclose(f, f_ref, rtol=1e-5, atol=1e-6)
            np.testing.assert_allclose(jac, jac_ref, rtol=1e-4, atol=1e-6 * np.abs(jac_ref).max())
    info = jacobian_mod.cache_info()
    assert info["entries"] == 6 and info["traces"] == 6, info  # per structure: tiled (round 0), pfor (round 1)


@pytest.fixture(params=["tiled", "pfor"])
def block_kind(request, monkeypatch):
    """Both ways of computing a Jacobian block, forced (`jacobian.block_kind`)."""
    monkeypatch.setenv("LUCID_IFV_JACOBIAN", request.param)
    return request.param


def test_the_trace_does_not_capture_the_first_params_variables(mnist, block_kind):
    """The first parametrization's variables changing later must not change anyone's answer."""
    first, second = param.image_for_model(mnist, batch=2, seed=0), param.image_for_model(mnist, batch=2, seed=1)
    values = [np.random.default_rng(2).normal(size=v.shape, scale=0.3).astype(np.float32) for v in second.variables]
    ifv.feature_jacobian(mnist, "conv2", first.numpy_params(), first)
    first.assign([np.full(v.shape, 3.0, np.float32) for v in first.variables])
    f, jac = ifv.feature_jacobian(mnist, "conv2", values, second)
    f_ref, jac_ref = reference_jacobian(mnist, "conv2", second, values)
    np.testing.assert_allclose(f, f_ref, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(jac, jac_ref, rtol=1e-4, atol=1e-6 * np.abs(jac_ref).max())
    assert jacobian_mod.cache_info()["traces"] == 1


def test_chunks_and_feature_subsets_share_a_trace_and_agree(small_model, block_kind):
    par = param.image(16, batch=2, seed=0)
    values = [np.random.default_rng(3).normal(size=v.shape, scale=0.5).astype(np.float32) for v in par.variables]
    f, jac = ifv.feature_jacobian(small_model, "conv2_relu", values, par, chunk=4)
    traces = jacobian_mod.cache_info()["traces"]
    sub = [5, 0, 2, 2]  # any order, repeats allowed; 4 rows: the chunk-4 function again
    f_sub, jac_sub = ifv.feature_jacobian(small_model, "conv2_relu", values, par, features=sub, chunk=4)
    assert jacobian_mod.cache_info()["traces"] == traces
    np.testing.assert_array_equal(f_sub, f[:, sub])
    np.testing.assert_allclose(jac_sub, jac[:, sub], rtol=1e-6, atol=1e-9)
    for chunk in (1, 3, None, 100):
        f_c, jac_c = ifv.feature_jacobian(small_model, "conv2_relu", values, par, chunk=chunk)
        np.testing.assert_allclose(f_c, f, rtol=1e-6)
        np.testing.assert_allclose(jac_c, jac, rtol=1e-6, atol=1e-9)
    _, jac_ref = reference_jacobian(small_model, "conv2_relu", par, values)
    np.testing.assert_allclose(jac, jac_ref, rtol=1e-5, atol=1e-7)


def test_a_callable_aggregation_sets_the_number_of_features(small_model):
    par = param.image(16, batch=2, seed=0)
    values = [np.random.default_rng(7).normal(size=v.shape, scale=0.5).astype(np.float32) for v in par.variables]

    def first_three(acts):
        return tf.reduce_mean(acts, axis=[1, 2])[:, :3] * tf.constant([1.0, 2.0, 3.0])

    f, jac = ifv.feature_jacobian(small_model, "conv2", values, par, aggregation=first_three)
    assert f.shape == (2, 3) and jac.shape[:2] == (2, 3)
    f_ref, jac_ref = reference_jacobian(small_model, "conv2", par, values, aggregation=first_three)
    np.testing.assert_allclose(f, f_ref, rtol=1e-6)
    np.testing.assert_allclose(jac, jac_ref, rtol=1e-5, atol=1e-7)
    with pytest.raises(ValueError, match=r"features \[3\] out of range: the layer has 3 channels"):
        ifv.feature_jacobian(small_model, "conv2", values, par, aggregation=first_three, features=[3])


def test_cache_is_bounded(small_model):
    """Parametrizations without a structure key are cached by identity: at most CACHE_SIZE."""

    class Opaque(param.PixelParam):
        def __init__(self, shape):
            super().__init__(shape)
            self.fn = tf.identity

    images = np.random.default_rng(4).uniform(size=(1, 16, 16, 3)).astype(np.float32)
    for _ in range(jacobian_mod.CACHE_SIZE + 3):
        par = Opaque((1, 16, 16, 3))
        ifv.feature_jacobian(small_model, "conv2", [images], par, chunk=6)
    assert jacobian_mod.cache_info()["entries"] == jacobian_mod.CACHE_SIZE


def test_default_chunk_is_all_rows_within_the_memory_budget():
    per_row = 4 * 2 * (1000 + 2 * 50)  # batch 2, 1000 activation elements, D = 50
    assert jacobian_mod.default_chunk(256, 2, 50, 1000, budget=256 * per_row) == 256
    assert jacobian_mod.default_chunk(256, 2, 50, 1000, budget=100 * per_row) == 86  # 3 equal blocks
    assert jacobian_mod.default_chunk(10, 2, 50, 1000, budget=1) == 1
    assert jacobian_mod.default_chunk(7, 2, 50, 1000, budget=10 ** 12) == 7


def test_activation_elements_counts_the_forward(small_model):
    par = param.image(16, batch=2, fft=False, seed=0)
    n = jacobian_mod.activation_elements(small_model, "conv2", par)
    conv1, conv2 = 14 * 14 * 8, 12 * 12 * 6
    assert conv1 + conv2 <= n < 50 * (16 * 16 * 3 + conv1 + conv2)


# -- prior gradients and Gram products -----------------------------------------------------
def test_prior_gradients_of_a_layer_term(small_model):
    par = param.image(16, batch=2, seed=0)
    values = [np.random.default_rng(5).normal(size=v.shape, scale=0.5).astype(np.float32) for v in par.variables]
    terms = [obj.params_L2(), lambda T: tf.reduce_sum(T("conv1") ** 2) + tf.reduce_sum(T("input"))]
    grads = ifv.prior_gradients(small_model, terms, values, par)
    z = tf.constant(values[0])
    with tf.GradientTape() as tape:
        tape.watch(z)
        x = par.forward([z])
        value = tf.reduce_sum(small_model(x, ["conv1"])["conv1"] ** 2) + tf.reduce_sum(x)
    expected = tape.gradient(value, z).numpy().reshape(2, -1)
    np.testing.assert_allclose(grads[:, 0], 2 * values[0].reshape(2, -1), rtol=1e-6)
    np.testing.assert_allclose(grads[:, 1], expected, rtol=1e-5, atol=1e-7)


def test_gram_statistics_match_float64_einsum():
    rng = np.random.default_rng(6)
    jac = rng.normal(size=(3, 20, 500)).astype(np.float32)
    grads = rng.normal(size=(3, 2, 500)).astype(np.float32)
    stats = ifv.gram_statistics(jac, grads)
    j64, g64 = jac.astype(np.float64), grads.astype(np.float64)
    np.testing.assert_allclose(stats.jjt, np.einsum("bkd,bld->bkl", j64, j64), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(stats.jg, np.einsum("bkd,bnd->bkn", j64, g64), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(stats.gg, np.einsum("bnd,bmd->bnm", g64, g64), rtol=1e-12, atol=1e-12)
    assert stats.jjt.dtype == np.float64 and np.array_equal(stats.jjt, np.swapaxes(stats.jjt, 1, 2))
    assert ifv.gram_statistics(jac).jg is None
    with pytest.raises(ValueError, match="non-finite"):
        ifv.gram_statistics(np.full((1, 2, 3), np.nan, np.float32))


def test_fixed_blocks_override_the_call_history_and_the_environment(mnist, monkeypatch):
    """The experiment runner's batches always run the vectorized blocks (`fixed_blocks`), so a
    batch's numbers do not depend on whether it was its process's first."""
    from lucid_ifv import experiment

    fresh = lambda s: param.image_for_model(mnist, batch=2, seed=s)  # noqa: E731
    monkeypatch.setenv("LUCID_IFV_JACOBIAN", "tiled")
    with jacobian_mod.fixed_blocks("pfor"):
        assert jacobian_mod.block_kind(mnist, "conv2", fresh(0), None, 784) == "pfor"
    assert jacobian_mod.block_kind(mnist, "conv2", fresh(1), None, 784) == "tiled"  # the environment again
    monkeypatch.delenv("LUCID_IFV_JACOBIAN")
    seen = []
    monkeypatch.setattr(jacobian_mod, "_tiled_fn", lambda *a: seen.append("tiled") or jacobian_mod._jacobian_fn(*a))
    config = experiment.ExperimentConfig(layer="conv2", n_hoyer=2, fft=False, decorrelate=False, adam_steps=5,
                                         lbfgs_steps=0, batch_size=2)
    experiment.run_batch(mnist, config, np.eye(32)[:2], 0)  # the process's first call of this structure
    assert seen == []
    with pytest.raises(ValueError, match="kind must be one of"):
        with jacobian_mod.fixed_blocks("fast"):
            pass
