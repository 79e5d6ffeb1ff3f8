"""experiments/solve_ablation.py on a tiny converged experiment (an evaluation script)."""

from __future__ import annotations

import numpy as np
from conftest import converged_small_experiment, experiment_script


def test_solve_ablation_reproduces_the_runner_and_runs_every_variant(small_model, tmp_path, capsys):
    script = experiment_script("solve_ablation")
    records = converged_small_experiment(small_model, tmp_path / "run")
    table = script.ablation(tmp_path / "run")
    assert set(table) == {(name, method) for name, *_ in script.VARIANTS for method in script.METHODS}
    angles, identified = table["QR, dead unknowns", "anchored"]  # today's default: the runner's figures
    np.testing.assert_allclose(angles, [r["angle_alive_anchored"] for r in records], atol=1e-9)
    assert identified.tolist() == [r["verdict_anchored"] == "identified" for r in records]
    for (name, method), (a, _) in table.items():  # every variant inverts this converged smooth run
        assert a.shape == (3,) and np.all(a < 5), (name, method, a)
    assert script.main([str(tmp_path / "run")]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith("| run | variant | solve |") and len(lines) == 2 + len(table)
