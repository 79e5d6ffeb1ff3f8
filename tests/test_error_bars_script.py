"""experiments/error_bars.py on a tiny converged experiment: the sweep agrees with the runner."""

from __future__ import annotations

import numpy as np
from conftest import converged_small_experiment, experiment_script


def test_error_bar_sweep_on_a_small_experiment(small_model, tmp_path, capsys):
    script = experiment_script("error_bars")
    records = converged_small_experiment(small_model, tmp_path / "run")
    table = script.sweep(tmp_path / "run", (0.05, 1e9))
    rows = table[0.05]
    assert rows.shape == (3, 6)
    for row, record in zip(rows, records):  # the default threshold is the runner's
        assert row[1] == record["undetermined_anchored"]
        np.testing.assert_allclose(row[2], record["undetermined_target_mass_anchored"], atol=1e-12)
        if record["angle_determined_anchored"] is not None:
            np.testing.assert_allclose(row[0], record["angle_determined_anchored"], atol=1e-9)
    everything = table[1e9]  # every live feature determined: the angle on live features, no share left
    np.testing.assert_allclose(everything[:, 0], [r["angle_alive_anchored"] for r in records], atol=1e-6)
    assert np.all(everything[:, 1] == 0) and np.all(everything[:, 3] == 0)
    assert np.all(np.isnan(everything[:, 4]))  # no undetermined feature: no response to report
    loose = rows[:, 1] > 0
    assert np.all((rows[loose, 4] >= 0) & (rows[loose, 4] <= 1)) and np.all(np.isnan(rows[~loose, 4]))
    assert np.all((rows[:, 5] >= 0) & (rows[:, 5] <= 1 + 1e-12))
    np.testing.assert_array_equal(rows[:, 5], everything[:, 5])  # the off-target share does not depend on tol
    assert script.main([str(tmp_path / "run")]) == 0 and "| run | error bar <= |" in capsys.readouterr().out
