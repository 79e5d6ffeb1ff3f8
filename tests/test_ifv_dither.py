"""Re-dithering quantized inputs (`lucid_ifv.ifv.dither`) and the verdict it feeds."""

from __future__ import annotations

import types

import numpy as np
import pytest

from lucid_ifv import ifv
from lucid_ifv import objectives as obj
from lucid_ifv.ifv.dither import dither_check, on_8bit_grid
from lucid_ifv.imageio import quantize_8bit
from lucid_ifv.metrics import angle_deg


def test_on_8bit_grid_tells_a_png_from_a_render():
    rendered = np.random.default_rng(0).uniform(0, 1, (2, 8, 8, 3)).astype(np.float32)
    assert not on_8bit_grid(rendered)
    assert on_8bit_grid(quantize_8bit(rendered))
    assert on_8bit_grid(np.zeros((1, 4, 4, 3)))  # a black image is on every grid
    assert not on_8bit_grid(np.zeros((0, 4, 4, 3)))


class LinearInversion:
    """A stand-in for an inversion that is linear near the realization: ``t*(x) = t0 + L (x - x0)``
    and residual vector ``e0 + M (x - x0)``, per sample (rows of the flattened image)."""

    def __init__(self, x0, k=6, seed=0):
        rng = np.random.default_rng(seed)
        self.x0 = x0.reshape(len(x0), -1)
        d = self.x0.shape[1]
        self.t0 = np.abs(rng.normal(size=(len(x0), k)))
        self.L = rng.normal(size=(k, d)) * 3.0
        self.M = rng.normal(size=(20, d)) * 0.2
        self.e0 = rng.normal(size=(len(x0), 20)) * 1e-3

    def __call__(self, images):
        dx = np.asarray(images, np.float64).reshape(len(images), -1) - self.x0
        target = self.t0 + dx @ self.L.T
        residual = np.linalg.norm(self.e0 + dx @ self.M.T, axis=1)
        return types.SimpleNamespace(target=target, residual=residual)


def test_spread_estimates_the_error_rounding_causes():
    """The bootstrap's premise: fresh noise of the rounding's law moves the answer as much as
    the rounding did. Over many samples the median spread matches the median true error, and
    a wrong noise law (a whole step instead of half) would not."""
    x0 = np.random.default_rng(1).uniform(0.05, 0.95, (300, 4, 4, 3))
    inversion = LinearInversion(x0)
    x8 = quantize_8bit(x0)
    answer = inversion(x8)
    error = angle_deg(answer.target, inversion.t0)
    spread, denoised = dither_check(inversion, x8, answer, n=5, seed=0, cossim_pow=0)
    ratio = np.median(spread) / np.median(error)
    assert 0.8 < ratio < 1.25, ratio
    assert np.corrcoef(spread, error)[0, 1] > 0.3  # per sample, too, it tracks the error

    true_squared = np.sum(inversion.e0 ** 2, axis=1)
    assert np.mean(answer.residual ** 2) / np.mean(true_squared) > 2.5  # rounding dominates the raw residual...
    assert 0.7 < np.mean(denoised ** 2) / np.mean(true_squared) < 1.4  # ...the denoised one removes its share


def test_denoised_residual_keeps_a_real_non_stationarity():
    """A render stopped short has a residual of its own, far above the rounding's share."""
    x0 = np.random.default_rng(2).uniform(0.05, 0.95, (50, 4, 4, 3))
    inversion = LinearInversion(x0)
    inversion.e0 *= 100.0
    x8 = quantize_8bit(x0)
    _, denoised = dither_check(inversion, x8, inversion(x8), n=4)
    np.testing.assert_allclose(denoised, np.linalg.norm(inversion.e0, axis=1), rtol=0.05)


def _result(spread, denoised, residual=0.5, noise_mass=0.0, sensitivity=None):
    n = len(spread)
    return types.SimpleNamespace(
        dither_spread=np.asarray(spread, float), denoised_residual=np.asarray(denoised, float),
        residual=np.full(n, residual), noise_mass=np.full(n, noise_mass), solve_method="anchored",
        prior_weights=None, expected_prior_weight=None, stationarity_singular_values=None, gap=np.ones(n),
        target=np.tile([0.8, 0.6], (n, 1)), sensitivity=sensitivity)


def test_dithered_verdicts():
    result = _result([1.0, 9.0, 1.0, np.nan, 3.0], [0.01, 0.01, 0.2, 0.01, 0.01])
    assert list(ifv.verdicts(result)) == ["identified", "ambiguous", "not stationary", "ambiguous", "ambiguous"]
    assert list(ifv.verdicts(result, ifv.VerdictRule(max_dither_spread=5.0)))[4] == "identified"
    undithered = ifv.verdicts(result, ifv.VerdictRule(max_dither_spread=None))  # the raw residual, 0.5
    assert set(undithered) == {"not stationary"}
    result.residual[0] = np.nan  # nothing solved
    assert ifv.verdicts(result)[0] == "no signal"
    trivial = _result([1.0], [0.01], noise_mass=0.5)
    assert ifv.verdicts(trivial)[0] == "ambiguous"


def test_dithered_error_bars_are_rescaled_to_the_denoised_residual():
    """An error bar of 0.2 at the raw residual 0.5 is 0.004 at a denoised residual of 0.01
    (determined), but 0.16 at 0.4 (the answer leans on an undetermined feature)."""
    bars = np.array([[0.2, 0.01], [0.2, 0.01]])
    by_bars = ifv.VerdictRule(dither_leaning="error_bars")
    result = _result([1.0, 1.0], [0.01, 0.04], sensitivity=bars)
    assert list(ifv.verdicts(result, by_bars)) == ["identified", "identified"]
    result.residual[:] = 0.05  # the same denoised residuals are now most of the raw one
    assert list(ifv.verdicts(result, by_bars)) == ["identified", "ambiguous"]



def test_spread_leaning_lets_the_spread_judge_what_the_answer_leans_on():
    """By default (``dither_leaning="spread"``) a re-dithered answer whose rescaled error bars
    say it leans on an undetermined feature is judged by its spread instead; the residual,
    spread and near-null checks stay, and an undithered input is judged as before."""
    bars = np.array([[0.2, 0.01]] * 3)
    result = _result([1.0, 9.0, 1.0], [0.04, 0.04, 0.2], residual=0.05, sensitivity=bars)
    by_bars = ifv.VerdictRule(dither_leaning="error_bars")
    assert list(ifv.verdicts(result, by_bars)) == ["ambiguous", "ambiguous", "not stationary"]
    assert list(ifv.verdicts(result)) == ["identified", "ambiguous", "not stationary"]
    undithered = _result([1.0], [0.04], residual=0.04, sensitivity=bars[:1])
    undithered.dither_spread = None
    assert ifv.verdicts(undithered)[0] == "ambiguous"  # bars 0.2 at its own residual
    with pytest.raises(ValueError, match="dither_leaning"):
        ifv.VerdictRule(dither_leaning="bars")

@pytest.mark.parametrize("bad", [-1, 1.5, "often", True])
def test_bad_dither_values_are_refused(small_model, bad):
    images = np.full((1, 16, 16, 3), 0.5, np.float32)
    with pytest.raises(ValueError, match="dither must be 'auto' or an integer >= 0"):
        ifv.invert(small_model, "conv2_relu", images, prior=obj.params_L2(), dither=bad)


@pytest.mark.parametrize("seed", [-1, 0.5, None])
def test_bad_dither_seeds_are_refused(small_model, seed):
    png = np.full((1, 16, 16, 3), 128 / 255, np.float32)  # on the 8-bit grid: "auto" dithers
    with pytest.raises(ValueError, match="dither_seed must be an integer >= 0"):
        ifv.invert(small_model, "conv2_relu", png, prior=obj.params_L2(), dither_seed=seed)


def test_dithering_needs_images(small_model):
    from lucid_ifv.param import image_for_model

    param = image_for_model(small_model, batch=1, fft=False, decorrelate=False, seed=0)
    with pytest.raises(ValueError, match="re-dithers images"):
        ifv.invert(small_model, "conv2_relu", param.numpy_params(), param=param, prior=obj.params_L2(), dither=2)


def test_invert_dithers_8bit_images_by_default(small_model):
    images = np.random.default_rng(0).uniform(0.1, 0.9, (2, 16, 16, 3)).astype(np.float32)
    plain = ifv.invert(small_model, "conv2_relu", images, prior=obj.params_L2())
    assert plain.dither_spread is None and plain.denoised_residual is None
    png = quantize_8bit(images)
    checked = ifv.invert(small_model, "conv2_relu", png, prior=obj.params_L2())
    assert checked.dither_spread.shape == (2,) and checked.denoised_residual.shape == (2,)
    assert np.all(np.isfinite(checked.dither_spread)) and np.all(checked.denoised_residual >= 0)
    unchecked = ifv.invert(small_model, "conv2_relu", png, prior=obj.params_L2(), dither=0)
    assert unchecked.dither_spread is None
    np.testing.assert_array_equal(unchecked.target, checked.target)  # the answer itself is unchanged
    assert "re-dithered answers within" in checked.describe(0)
    again = ifv.invert(small_model, "conv2_relu", png, prior=obj.params_L2(), dither_seed=0)
    np.testing.assert_array_equal(again.dither_spread, checked.dither_spread)  # seeded

