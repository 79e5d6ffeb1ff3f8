"""`experiments/imperfect_inputs.py` runs end to end on a tiny converged experiment."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import experiment_script


def load_script():
    return experiment_script("imperfect_inputs")


def test_degradations_do_what_they_say():
    script = load_script()
    images = np.random.default_rng(0).random((2, 8, 8, 3)).astype(np.float32)
    q = script.degrade(images, "8bit")
    assert np.abs(q - images).max() <= 0.5 / 255 + 1e-7 and np.allclose(q * 255, np.round(q * 255))
    flat = np.full((1, 8, 8, 3), 0.3, np.float32)
    for kind in ("half", "upscaled"):  # resizing leaves a constant image alone, changes a noisy one
        np.testing.assert_allclose(script.degrade(flat, kind), flat, atol=1e-6)
        assert script.degrade(images, kind).shape == images.shape
        assert not np.allclose(script.degrade(images, kind), images)
    with pytest.raises(ValueError, match="unknown degradation"):
        script.degrade(images, "jpeg")


def test_runs_on_a_small_converged_experiment(tmp_path, capsys):
    from lucid_ifv import experiment as ex

    script = load_script()
    config = ex.ExperimentConfig(layer="conv2", n_hoyer=2, fft=False, decorrelate=False, adam_steps=100,
                                 lbfgs_steps=0, prior_weight=1e-4, prior_relative=True, smooth=True,
                                 converge=1e-3, max_lbfgs_steps=300, batch_size=2,
                                 float64_converge=None)
    from modelzoo.shipped import load_shipped

    ex.run_experiment(load_shipped("mnist_small"), config, tmp_path / "run", progress=False)
    assert script.main(["--run", str(tmp_path / "run"), "--out", str(tmp_path / "out"), "--n", "2",
                        "--early", "5", "--polish", "3", "--batch", "2", "--weighted"]) == 0
    records = json.loads((tmp_path / "out" / "records.json").read_text())
    names = {r["input"] for r in records}
    assert names == {"float", "8bit", "half", "upscaled", "adam5", "adam5 8bit", "8bit + polish", "half + polish",
                     "upscaled + polish", "adam5 + polish", "adam5 8bit + polish", "8bit + weighted"}
    assert len(records) == 2 * len(names)
    quantized = [r for r in records if r["input"] in ("8bit", "adam5 8bit")]  # re-dithered by `invert`
    assert all(np.isfinite(r["dither_spread"]) and r["denoised_residual"] >= 0 for r in quantized)
    assert not any("dither_spread" in r for r in records if r["input"] in ("float", "half"))
    table = (tmp_path / "out" / "table.md").read_text()
    assert "precision" in table and "verdict_before_error_bars" in table and "verdict_bar_leaning" in table
    checks = experiment_script("dither_checks")  # the per-sample checks behind the 8-bit verdicts
    capsys.readouterr()  # (drop the table printed above)
    assert checks.main(["--run", str(tmp_path / "run"), "--n", "2"]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| ") and line[2].isdigit()]
    assert len(rows) == 2 and all(len(row.split("|")) == 11 for row in rows)
    with pytest.raises(SystemExit):
        checks.main(["--run", str(tmp_path), "--n", "2"])  # not an experiment folder


def test_noise_weights_are_the_sigmoid_slope_and_need_an_elementwise_map():
    from lucid_ifv import param as P

    script = load_script()
    par = P.image(4, batch=2, fft=False, decorrelate=False)
    x = np.random.default_rng(1).uniform(0.01, 0.99, size=(2, 4, 4, 3)).astype(np.float32)
    w = script.noise_weights(par, par.params_from_image(x))
    slope = (x * (1 - x)).reshape(2, -1)
    np.testing.assert_allclose(w, slope / slope.max(axis=1, keepdims=True), rtol=1e-4)
    with pytest.raises(ValueError, match="without colour decorrelation"):
        decorrelated = P.image(4, batch=2, fft=False, decorrelate=True)
        script.noise_weights(decorrelated, decorrelated.params_from_image(x))
