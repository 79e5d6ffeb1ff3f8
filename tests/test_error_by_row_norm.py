"""experiments/error_by_row_norm.py on a tiny converged experiment: the error split adds up."""

from __future__ import annotations

import numpy as np
from conftest import converged_small_experiment, experiment_script


def test_error_split_on_a_small_experiment(small_model, tmp_path, capsys):
    script = experiment_script("error_by_row_norm")
    records = converged_small_experiment(small_model, tmp_path / "run")
    rows = script.split_errors(tmp_path / "run", weak=0.1)
    assert len(rows) == 3
    for (angle, weak, live, share), record in zip(rows, records):
        assert 0 <= weak <= live <= 6 and 0.0 <= share <= 1.0
        np.testing.assert_allclose(angle, record["angle_alive_anchored"], atol=1e-3)  # the runner's own angle
    assert all(share == 0.0 for *_, share in script.split_errors(tmp_path / "run", weak=0.0))  # nothing is weak
    assert script.main([str(tmp_path / "run")]) == 0 and "| run | n |" in capsys.readouterr().out
