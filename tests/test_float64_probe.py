"""experiments/float64_probe.py on a tiny converged experiment on a frozen graph (an evaluation script)."""

from __future__ import annotations

import numpy as np
import tensorflow as tf
from conftest import converged_small_experiment, experiment_script, small_convnet


def _graph_model(tmp_path):
    from modelzoo.export import export_keras
    from modelzoo.graph import load_model

    export_keras(small_convnet(), tmp_path / "net.pb")
    return load_model(tmp_path / "net.pb")


def test_float64_graph_computes_what_the_float32_graph_does(tmp_path):
    script = experiment_script("float64_probe")
    model = _graph_model(tmp_path)
    wide = script.Float64Network(model, "conv2")
    images = np.random.default_rng(0).uniform(size=(2, *model.image_shape))
    out = wide(tf.constant(images, tf.float64))
    assert out.dtype == tf.float64
    np.testing.assert_allclose(out.numpy(), model(images.astype(np.float32), "conv2")["conv2"].numpy(),
                               rtol=1e-4, atol=1e-5)


def test_probe_makes_a_realization_more_stationary_and_tables_what_it_saved(tmp_path, capsys):
    script = experiment_script("float64_probe")
    converged_small_experiment(_graph_model(tmp_path), tmp_path / "run")
    assert script.main([str(tmp_path / "run"), "--model", str(tmp_path / "net.pb"), "--samples", "0", "1",
                        "--tol", "1e-9", "--max-steps", "300", "--save", str(tmp_path / "run.npz")]) == 0
    out = capsys.readouterr().out
    rows = [line.split("|") for line in out.splitlines() if line.startswith(("| 0 |", "| 1 |"))]
    for row in rows:
        before, after = float(row[2].split(",")[0]), float(row[3].split(",")[0])
        assert after < before / 10  # continued in float64, the realization is far closer to stationary
    saved = np.load(tmp_path / "run.npz")
    assert saved["jjt"].shape == (2, 6, 6) and list(saved["indices"]) == [0, 1]
    np.testing.assert_allclose(saved["residual"][0], float(rows[0][3].split(",")[0]), rtol=0.06)  # printed to 2 digits

    assert script.main(["--table", str(tmp_path / "run.npz"), "--runs", str(tmp_path)]) == 0
    (line,) = [x for x in capsys.readouterr().out.splitlines() if x.startswith("| run |")]
    live64 = [float(r[3].split(",")[2]) for r in rows]  # the probe's float64 live angles, re-solved offline
    assert line.split("|")[2].strip() == "2"
    assert abs(float(line.split("|")[4].split(",")[0]) - np.median(live64)) <= 0.011  # both printed to 2 decimals
