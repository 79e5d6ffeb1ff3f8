"""Lucid 0.3.10's remaining objectives: parity with Lucid's own code (values, input gradients,
names, descriptions), both forms of `wrap_objective`, and clear errors on bad inputs."""

from __future__ import annotations

import inspect

import numpy as np
import pytest
import tensorflow as tf

from lucid_ifv import objectives as ours

RNG = np.random.default_rng(1)
B = 6  # >= 5, so alignment's pairs 4 apart exist
ACTS = {
    "conv": RNG.normal(size=(B, 5, 6, 7)).astype(np.float32),
    "conv2": RNG.normal(size=(B, 3, 3, 5)).astype(np.float32),
    "dense": RNG.normal(size=(B, 7)).astype(np.float32),
    "input": RNG.uniform(size=(B, 9, 10, 3)).astype(np.float32),
}
RGBA = {**ACTS, "input": RNG.uniform(size=(B, 9, 10, 4)).astype(np.float32)}
PAIR = {k: v[:2] for k, v in ACTS.items()}  # the smallest batch channel_interpolate accepts
SINGLE = {k: v[:1] for k, v in ACTS.items()}


def _tensors(acts):
    """Constants for ``acts``; a list (``"params"``) becomes a list of constants."""
    return {k: [tf.constant(p) for p in v] if isinstance(v, list) else tf.constant(v) for k, v in acts.items()}


def evaluate(objective, acts=ACTS):
    """Evaluate an objective (ours or Lucid's) inside a tf.function on ``acts``."""

    @tf.function(autograph=False)
    def run():
        tensors = _tensors(acts)
        return objective(lambda name: tensors[name])

    return float(run())


def value_and_input_gradient(objective, acts=ACTS):
    """The objective and its gradient w.r.t. ``T("input")``, inside a tf.function."""

    @tf.function(autograph=False)
    def run():
        tensors = _tensors(acts)
        with tf.GradientTape() as tape:
            tape.watch(tensors["input"])
            value = objective(lambda name: tensors[name])
        return value, tape.gradient(value, tensors["input"])

    value, grad = run()
    return float(value), grad.numpy()


def assert_parity(mine, theirs, acts=ACTS):
    np.testing.assert_allclose(evaluate(mine, acts), evaluate(theirs, acts), rtol=1e-5, atol=1e-6,
                               err_msg=mine.description)
    assert mine.name == theirs.name
    assert mine.description == theirs.description


# -- parity with Lucid ----------------------------------------------------------------------
def test_tensor_direction_parity(lucid_objectives):
    L = lucid_objectives
    patterns = [RNG.normal(size=s) for s in [(3, 4, 7), (1, 3, 4, 7), (B, 2, 3, 7), (2, 2, 7), (5, 6, 7), (1, 1, 7)]]
    for vec in patterns:
        batches = (None,) if vec.shape[0] == B else (None, 0, 4)
        for batch in batches:
            for p in (0, 1, 2):
                assert_parity(ours.tensor_direction("conv", vec, cossim_pow=p, batch=batch),
                              L.tensor_direction("conv", vec, cossim_pow=p, batch=batch))
    dense_vec = RNG.normal(size=(1, 1, 7))  # a dense layer is [B, 1, 1, C], as in Lucid
    for batch in (None, 2):
        assert_parity(ours.tensor_direction("dense", dense_vec, 1, batch),
                      L.tensor_direction("dense", dense_vec, 1, batch))


@pytest.mark.parametrize("acts", [ACTS, RGBA], ids=["rgb", "rgba"])
def test_blur_input_each_step_value_and_gradient(lucid_objectives, acts):
    mine, theirs = ours.blur_input_each_step(), lucid_objectives.blur_input_each_step()
    value, grad = value_and_input_gradient(mine, acts)
    lucid_value, lucid_grad = value_and_input_gradient(theirs, acts)
    np.testing.assert_allclose(value, lucid_value, rtol=1e-5)
    np.testing.assert_allclose(grad, lucid_grad, rtol=1e-5, atol=1e-6)
    assert np.abs(grad).max() > 1e-3  # not a vacuous match of two zero gradients
    assert (mine.name, mine.description) == (theirs.name, theirs.description)


def test_blur_alpha_each_step_value_and_gradient(lucid_objectives):
    mine, theirs = ours.blur_alpha_each_step(), lucid_objectives.blur_alpha_each_step()
    value, grad = value_and_input_gradient(mine, RGBA)
    lucid_value, lucid_grad = value_and_input_gradient(theirs, RGBA)
    np.testing.assert_allclose(value, lucid_value, rtol=1e-5)
    np.testing.assert_allclose(grad, lucid_grad, rtol=1e-5, atol=1e-6)
    assert np.abs(grad[..., 3]).max() > 1e-3 and not grad[..., :3].any()  # alpha only
    assert (mine.name, mine.description) == (theirs.name, theirs.description)


def test_blur_gradient_is_x_minus_blur():
    # ours alone: the gradient of 0.5 sum (x - sg(blur x))^2 is x - blur(x), blur by hand
    x = ACTS["input"]
    k = np.full((3, 3), 0.5)
    k[1, 1] = 1.0
    pad = ((0, 0), (1, 1), (1, 1), (0, 0))
    padded, ones = np.pad(x, pad), np.pad(np.ones_like(x), pad)
    window = lambda a: sum(k[i, j] * a[:, i : i + 9, j : j + 10] for i in range(3) for j in range(3))
    blurred = window(padded) / window(ones)
    value, grad = value_and_input_gradient(ours.blur_input_each_step())
    np.testing.assert_allclose(grad, x - blurred, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(value, 0.5 * np.sum((x - blurred) ** 2), rtol=1e-4)


def test_channel_interpolate_parity(lucid_objectives):
    L = lucid_objectives
    for acts in (ACTS, PAIR):
        for args in [("conv", 1, "conv2", 3), ("conv", 6, "dense", 5), ("dense", 0, "dense", 6)]:
            assert_parity(ours.channel_interpolate(*args), L.channel_interpolate(*args), acts)


def test_channel_interpolate_by_hand():
    a, b = ACTS["conv"][..., 1].mean((1, 2)), ACTS["dense"][:, 5]
    w = np.arange(B) / (B - 1)
    np.testing.assert_allclose(evaluate(ours.channel_interpolate("conv", 1, "dense", 5)),
                               np.sum((1 - w) * a + w * b), rtol=1e-5)


def test_penalize_boundary_complexity_parity(lucid_objectives):
    L = lucid_objectives
    shp = ACTS["input"].shape
    mask = RNG.uniform(size=(1, 9, 10, 1))
    cases = [((shp,), {}), ((shp, 2), {}), ((shp, 3), {"C": 0.2}), ((shp, 0), {}), ((shp, 5), {}),
             (((1, 9, 10, 3), 1), {"C": np.array([0.1, 0.5, 0.9])}), ((None,), {"mask": mask})]
    for args, kwargs in cases:
        assert_parity(ours.penalize_boundary_complexity(*args, **kwargs),
                      L.penalize_boundary_complexity(*args, **kwargs))
    rgba_shp = RGBA["input"].shape
    assert_parity(ours.penalize_boundary_complexity(rgba_shp, 2), L.penalize_boundary_complexity(rgba_shp, 2), RGBA)


def test_alignment_parity(lucid_objectives):
    L = lucid_objectives
    for layer in ("conv", "dense", "input"):
        for ratio in (2, 3.5):
            for acts in (ACTS, PAIR, SINGLE):
                assert_parity(ours.alignment(layer, ratio), L.alignment(layer, ratio), acts)
    assert evaluate(ours.alignment("conv"), SINGLE) == 0.0


def test_alignment_by_hand():
    x = ACTS["conv"]
    expected = -sum(np.mean((x[i] - x[i + d]) ** 2) / 2.0**d for d in (1, 2, 3, 4) for i in range(B - d))
    np.testing.assert_allclose(evaluate(ours.alignment("conv")), expected, rtol=1e-5)


def test_input_diff_parity(lucid_objectives):
    L = lucid_objectives
    x = ACTS["input"]
    for orig in (RNG.uniform(size=x.shape[1:]), RNG.uniform(size=x.shape), RNG.uniform(size=(1,) + x.shape[1:]), 0.5):
        assert_parity(ours.input_diff(orig), L.input_diff(orig))
    orig = RNG.uniform(size=x.shape[1:])
    np.testing.assert_allclose(evaluate(ours.input_diff(orig)), np.sqrt(np.mean((x - orig) ** 2)), rtol=1e-5)


def test_new_objectives_mix_with_lucid(lucid_objectives):
    L = lucid_objectives
    mixed = ours.channel_interpolate("conv", 1, "conv", 2) + 0.5 * ours.alignment("conv")
    theirs = L.channel_interpolate("conv", 1, "conv", 2) + 0.5 * L.alignment("conv")
    np.testing.assert_allclose(evaluate(mixed), evaluate(theirs), rtol=1e-5)
    np.testing.assert_allclose(evaluate(mixed - L.input_diff(0.5)), evaluate(theirs - L.input_diff(0.5)), rtol=1e-5)


# -- wrap_objective, with and without parentheses ------------------------------------------
def _scaled_mean(layer, scale=2):
    """Scale times the mean."""
    return lambda T: scale * tf.reduce_mean(T(layer))


def _first_channel(layer):
    return lambda T: tf.reduce_mean(T(layer)[:, 0, 0, 0])


def _mean_square(layer):
    return lambda T: tf.reduce_mean(T(layer) ** 2)


@pytest.mark.parametrize("decorate", [ours.wrap_objective, ours.wrap_objective(), ours.wrap_objective(None, False)],
                         ids=["bare", "parentheses", "positional"])
def test_wrap_objective_forms(decorate):
    factory = decorate(_scaled_mean)
    obj = factory("conv", scale=3)
    assert isinstance(obj, ours.Objective)
    assert (obj.name, obj.description) == ("_scaled_mean", "_Scaled_Mean [conv, 3]")
    assert factory("conv").description == "_Scaled_Mean [conv, 2]"  # defaults listed, as Lucid's
    assert factory.__doc__ == "Scale times the mean." and factory.__name__ == "_scaled_mean"
    np.testing.assert_allclose(evaluate(obj), 3 * ACTS["conv"].mean(), rtol=1e-5)


def test_wrap_objective_matches_lucids(lucid_objectives):
    L = lucid_objectives
    assert_parity(ours.wrap_objective()(_scaled_mean)("conv", 4), L.wrap_objective()(_scaled_mean)("conv", 4))
    nhwc, lucid_nhwc = ours.wrap_objective(require_format="NHWC"), L.wrap_objective(require_format="NHWC")
    for layer in ("dense", "conv"):  # a dense [B, C] is seen as [B, 1, 1, C]
        assert_parity(nhwc(_first_channel)(layer), lucid_nhwc(_first_channel)(layer))
    with pytest.raises(ValueError):
        evaluate(ours.wrap_objective()(_first_channel)("dense"))  # no NHWC: [B, C] has no [:, 0, 0, 0]


def test_wrap_objective_handle_batch(lucid_objectives):
    factory = ours.wrap_objective(handle_batch=True)(_mean_square)
    assert "batch" in inspect.signature(factory).parameters
    everything, second = factory("conv"), factory("conv", batch=1)
    assert everything.description == "_Mean_Square [conv]" and second.description == "_Mean_Square [conv, 1]"
    np.testing.assert_allclose(evaluate(everything), np.mean(ACTS["conv"] ** 2), rtol=1e-5)
    np.testing.assert_allclose(evaluate(second), np.mean(ACTS["conv"][1] ** 2), rtol=1e-5)
    # the same as Lucid's handle_batch around the same function
    lucid_second = lucid_objectives.Objective(lucid_objectives.handle_batch(1)(_mean_square("conv")))
    np.testing.assert_allclose(evaluate(second), evaluate(lucid_second), rtol=1e-5)
    # with NHWC as well: element 4 of a dense layer
    both = ours.wrap_objective(require_format="NHWC", handle_batch=True)(_first_channel)("dense", batch=4)
    np.testing.assert_allclose(evaluate(both), ACTS["dense"][4, 0], rtol=1e-6)
    # T("params") is a list of tensors: each is restricted
    params = {**ACTS, "params": [ACTS["conv"], ACTS["dense"]]}

    @ours.wrap_objective(handle_batch=True)
    def params_sum():
        return lambda T: tf.add_n([tf.reduce_sum(p) for p in T("params")])

    np.testing.assert_allclose(evaluate(params_sum(batch=2), params), ACTS["conv"][2].sum() + ACTS["dense"][2].sum(),
                               rtol=1e-4)


def test_wrap_objective_handle_batch_keeps_own_batch_argument():
    @ours.wrap_objective(handle_batch=True)
    def element(layer, batch=None):  # handles batch itself: not restricted twice
        return lambda T: tf.reduce_mean(T(layer)[batch or 0])

    np.testing.assert_allclose(evaluate(element("conv", batch=3)), ACTS["conv"][3].mean(), rtol=1e-5)
    assert element("conv", batch=3).description == "Element [conv, 3]"


def _one_line_error(call, match):
    with pytest.raises(ValueError, match=match) as err:
        call()
    assert "\n" not in str(err.value)


def test_wrap_objective_errors():
    factory = ours.wrap_objective(handle_batch=True)(_mean_square)
    _one_line_error(lambda: factory("conv", batch=-1), "batch must be an integer index >= 0, got -1")
    _one_line_error(lambda: factory("conv", batch=1.5), "batch must be an int index or None, got 1.5")
    _one_line_error(lambda: evaluate(factory("conv", batch=B)), f"batch {B} is out of range: 'conv' has a batch of {B}")
    _one_line_error(lambda: ours.wrap_objective(require_format="NCHW"),
                    "require_format must be None or 'NHWC', got 'NCHW'")
    _one_line_error(lambda: ours.wrap_objective(handle_batch="yes"), "handle_batch must be True or False, got 'yes'")
    with pytest.raises(TypeError):
        ours.wrap_objective()(_mean_square)("conv", batch=1)  # no handle_batch: no batch argument


# -- bad inputs -----------------------------------------------------------------------------
def test_bad_inputs_give_clear_errors():
    cases = [
        (lambda: evaluate(ours.channel_interpolate("conv", 1, "conv", 2), SINGLE),
         "channel_interpolate needs a known batch of at least 2 images .* 'conv' has a batch of 1"),
        (lambda: evaluate(ours.channel_interpolate("conv", 7, "conv", 2)),
         "n_channel1 7 is out of range: layer 'conv' has 7"),
        (lambda: ours.channel_interpolate("conv", 1, "conv", -2), "n_channel2 must be an integer index >= 0, got -2"),
        (lambda: evaluate(ours.channel_interpolate("conv", 1, "short", 2), {**ACTS, "short": ACTS["conv"][:3]}),
         "layer 'short' has a batch of 3 but layer 'conv' has 6"),
        (lambda: evaluate(ours.input_diff(np.zeros((9, 9, 3)))),
         r"orig_img has shape \(9, 9, 3\); expected a shape that broadcasts to 'input''s \[6, 9, 10, 3\]"),
        (lambda: evaluate(ours.input_diff(np.zeros((2, 9, 10, 3)))), r"orig_img has shape \(2, 9, 10, 3\)"),
        (lambda: ours.input_diff([np.nan, 0.0, 0.0]), "orig_img contain 1 non-finite"),
        (lambda: ours.tensor_direction("conv", np.ones(7)), r"vec must be a non-empty pattern .* got shape \(7,\)"),
        (lambda: evaluate(ours.tensor_direction("conv", np.ones((6, 2, 7)))), "vec has 6 rows but layer 'conv' has 5"),
        (lambda: evaluate(ours.tensor_direction("conv", np.ones((2, 7, 7)))),
         "vec has 7 columns but layer 'conv' has 6"),
        (lambda: evaluate(ours.tensor_direction("conv", np.ones((2, 2, 3)))),
         r"vec \(last axis\) has length 3 but layer 'conv' has 7 channels"),
        (lambda: evaluate(ours.tensor_direction("conv", np.ones((B, 2, 2, 7)), batch=1)),
         "vec has a batch of 6 but layer 'conv' gives 1 element.*expected a batch of 1 or 1"),
        (lambda: evaluate(ours.blur_alpha_each_step()),
         r"blur_alpha_each_step .* needs images .* C >= 4 .* \(6, 9, 10, 3\)"),
        (lambda: evaluate(ours.blur_input_each_step(), {**ACTS, "input": ACTS["dense"]}), "needs images"),
        (lambda: ours.penalize_boundary_complexity((9, 10, 3)), r"shp must be the images' shape .* got \(9, 10, 3\)"),
        (lambda: ours.penalize_boundary_complexity(ACTS["input"].shape, w=-1), "w must be an integer >= 0 .* got -1"),
        (lambda: evaluate(ours.penalize_boundary_complexity((B, 8, 10, 3))),
         r"the mask ones\(shp\) has shape \(6, 8, 10, 3\); expected a shape that broadcasts"),
        (lambda: evaluate(ours.penalize_boundary_complexity(None, mask=np.ones((9, 9, 1)))),
         r"the mask has shape \(9, 9, 1\)"),
        (lambda: evaluate(ours.penalize_boundary_complexity(ACTS["input"].shape, C=[0.1, 0.2])), r"C has shape \(2,\)"),
        (lambda: ours.alignment("conv", decay_ratio=0), "decay_ratio must be a finite number > 0, got 0"),
    ]
    for call, match in cases:
        _one_line_error(call, match)
