"""experiments/damped_solve_probe.py on a tiny converged experiment (an evaluation script)."""

from __future__ import annotations

import importlib

import numpy as np
from conftest import converged_small_experiment, experiment_script


def test_damped_probe_is_anchored_without_room_and_damps_with_it(small_model, tmp_path, capsys):
    script = experiment_script("damped_solve_probe")
    converged_small_experiment(small_model, tmp_path / "run")
    from lucid_ifv import experiment as ex

    S = importlib.import_module("lucid_ifv.ifv.solve")
    data = ex.load_realizations(tmp_path / "run")
    f = np.asarray(data["response"], np.float64)[0]
    A = S.significance_matrix(f[None], 1.0)[0]
    k = f.size
    eq = S._equation(A, np.asarray(data["jjt"], np.float64)[0], np.asarray(data["jg"], np.float64)[0],
                     np.asarray(data["gg"], np.float64)[0], np.eye(k))
    v0, _ = S._solve_anchored(eq)
    v1, _ = script.damped_solve(eq, 1.0)  # no room to grow: the anchored answer
    np.testing.assert_allclose(v1, v0, rtol=1e-6, atol=1e-9 * np.linalg.norm(v0))
    v2, mu2 = script.damped_solve(eq, 4.0)
    assert np.linalg.norm(v2) < np.linalg.norm(v0)  # damped toward 0
    x = np.r_[v2, mu2]
    x0 = np.r_[v0, 1.0]
    # the probe bisects on the normal equations' expansion y N y - 2 y b + g11, which cancels: equal up to its rounding
    normal, rhs = script.anchored_system(eq)
    y, g11 = np.abs(v2), eq.gram[eq.d, eq.d]
    rounding = 64 * np.finfo(float).eps * (y @ np.abs(normal) @ y + 2 * y @ np.abs(rhs) + g11)
    assert x @ eq.gram @ x <= 4.0 * (x0 @ eq.gram @ x0) + rounding
    assert script.main(["2", str(tmp_path / "run")]) == 0
    out = capsys.readouterr().out
    assert "damped" in out and "anchored" in out
    assert "damped" not in S._SOLVERS and "damped" not in S.METHODS  # the probe leaves the library as it was
