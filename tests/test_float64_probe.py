"""experiments/float64_probe.py on a tiny converged experiment on a frozen graph (an evaluation script)."""

from __future__ import annotations

import numpy as np
import tensorflow as tf
from conftest import converged_small_experiment, experiment_script, small_convnet


def test_float64_graph_computes_what_the_float32_graph_does(tmp_path):
    from modelzoo.export import export_keras
    from modelzoo.graph import load_model

    script = experiment_script("float64_probe")
    export_keras(small_convnet(), tmp_path / "net.pb")
    model = load_model(tmp_path / "net.pb")
    wide = script.Float64Network(model, "conv2")
    images = np.random.default_rng(0).uniform(size=(2, *model.image_shape))
    out = wide(tf.constant(images, tf.float64))
    assert out.dtype == tf.float64
    np.testing.assert_allclose(out.numpy(), model(images.astype(np.float32), "conv2")["conv2"].numpy(),
                               rtol=1e-4, atol=1e-5)


def test_probe_makes_a_realization_more_stationary(tmp_path, capsys):
    from modelzoo.export import export_keras
    from modelzoo.graph import load_model

    script = experiment_script("float64_probe")
    export_keras(small_convnet(), tmp_path / "net.pb")
    converged_small_experiment(load_model(tmp_path / "net.pb"), tmp_path / "run")
    assert script.main([str(tmp_path / "run"), "--model", str(tmp_path / "net.pb"), "--samples", "0",
                        "--tol", "1e-9", "--max-steps", "300", "--save", str(tmp_path / "f64.npz")]) == 0
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.startswith("| 0 |"))
    float32_cell, float64_cell = row.split("|")[2:4]
    before, after = float(float32_cell.split(",")[0]), float(float64_cell.split(",")[0])
    assert after < before / 10  # continued in float64, the realization is far closer to stationary
    assert "float64 on float32's live features" in out
    saved = np.load(tmp_path / "f64.npz")
    assert saved["jjt"].shape == (1, 6, 6) and saved["params"].shape[0] == 1
    np.testing.assert_allclose(saved["residual"][0], after, rtol=0.06)  # the table prints it to 2 digits
