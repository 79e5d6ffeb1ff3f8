"""experiments/error_by_row_norm.py on a tiny converged experiment: the error split adds up."""

from __future__ import annotations

import numpy as np
from conftest import experiment_script

from lucid_ifv import experiment as ex


def test_error_split_on_a_small_experiment(small_model, tmp_path, capsys):
    script = experiment_script("error_by_row_norm")
    config = ex.ExperimentConfig(layer="conv2", n_hoyer=3, batch_size=3, fft=False, decorrelate=False,
                                 adam_steps=100, lbfgs_steps=0, prior_weight=1e-3, prior_relative=True,
                                 smooth=True, converge=1e-3, max_lbfgs_steps=200)
    records = ex.run_experiment(small_model, config, tmp_path / "run", progress=False)
    rows = script.split_errors(tmp_path / "run", weak=0.1)
    assert len(rows) == 3
    for (angle, weak, live, share), record in zip(rows, records):
        assert 0 <= weak <= live <= 6 and 0.0 <= share <= 1.0
        np.testing.assert_allclose(angle, record["angle_alive_anchored"], atol=1e-3)  # the runner's own angle
    assert all(share == 0.0 for *_, share in script.split_errors(tmp_path / "run", weak=0.0))  # nothing is weak
    assert script.main([str(tmp_path / "run")]) == 0 and "| run | n |" in capsys.readouterr().out
