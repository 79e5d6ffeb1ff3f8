"""experiments/error_bars.py on a tiny converged experiment: the sweep agrees with the runner."""

from __future__ import annotations

import numpy as np
from conftest import experiment_script

from lucid_ifv import experiment as ex


def test_error_bar_sweep_on_a_small_experiment(small_model, tmp_path, capsys):
    script = experiment_script("error_bars")
    config = ex.ExperimentConfig(layer="conv2", n_hoyer=3, batch_size=3, fft=False, decorrelate=False,
                                 adam_steps=100, lbfgs_steps=0, prior_weight=1e-3, prior_relative=True,
                                 smooth=True, converge=1e-3, max_lbfgs_steps=200)
    records = ex.run_experiment(small_model, config, tmp_path / "run", progress=False)
    table = script.sweep(tmp_path / "run", (0.05, 1e9))
    rows = table[0.05]
    assert rows.shape == (3, 4)
    for row, record in zip(rows, records):  # the default threshold is the runner's
        assert row[1] == record["undetermined_anchored"]
        np.testing.assert_allclose(row[2], record["undetermined_target_mass_anchored"], atol=1e-12)
        if record["angle_determined_anchored"] is not None:
            np.testing.assert_allclose(row[0], record["angle_determined_anchored"], atol=1e-9)
    everything = table[1e9]  # every live feature determined: the angle on live features, no share left
    np.testing.assert_allclose(everything[:, 0], [r["angle_alive_anchored"] for r in records], atol=1e-6)
    assert np.all(everything[:, 1] == 0) and np.all(everything[:, 3] == 0)
    assert script.main([str(tmp_path / "run")]) == 0 and "| run | error bar <= |" in capsys.readouterr().out
