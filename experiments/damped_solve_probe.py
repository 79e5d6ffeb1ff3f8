"""EVALUATION ONLY (uses the true targets), not a library method: a Tikhonov-damped anchored
solve on saved runs, beside the anchored and non-negative solves (docs/results.md, main table).

The damped answer is the smallest-norm target whose squared stationarity residual is at most
``growth`` times the anchored one's (bisection on the damping, relative to the largest
eigenvalue of the normal matrix). Tried on 2026-12-05 and not adopted. Prints, per run and
solve, the median / p90 / max angle on live features and how many "identified" were right.

    python experiments/damped_solve_probe.py GROWTH runs/inception_small_mixed3a_fft_smooth_each ...
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def anchored_system(eq):
    """Normal equations ``Q^T Q y = Q^T g_1`` of the anchored least squares (``Q = [J^T A B | -g_2 ...]``,
    ``y = (v; mu_2 ...)``), read off the Gram matrix of one sample's `_Equation`."""
    free = np.r_[np.arange(eq.d), eq.d + 1 + np.arange(eq.n - 1)]
    return eq.gram[np.ix_(free, free)], -eq.gram[free, eq.d]


def damped_solve(eq, growth: float):
    """``(v, mu)`` of one sample's `_Equation`: the anchored least squares damped toward 0 in
    the target coordinates until its squared residual is ``growth`` times the anchored one's."""
    S = importlib.import_module("lucid_ifv.ifv.solve")
    normal, rhs = anchored_system(eq)
    v, mu = S._solve_anchored(eq)
    anchored = np.r_[v, mu[1:]]  # the unknowns of the anchored least squares
    g11 = eq.gram[eq.d, eq.d]

    def squared_residual(y):
        return max(float(y @ normal @ y - 2 * y @ rhs + g11), 0.0)

    goal = growth * max(squared_residual(anchored), S.dg.EQUATION_PRECISION ** 2 * g11)
    penalty = np.diag(np.r_[np.ones(eq.d), np.zeros(normal.shape[0] - eq.d)]) * np.linalg.eigvalsh(normal)[-1]

    def damped(log_a):
        return np.linalg.solve(normal + 10.0 ** log_a * penalty, rhs)

    lo, hi = -18.0, 2.0
    if squared_residual(damped(lo)) > goal:
        return S._anchored_solution(eq, anchored)
    for _ in range(40):
        mid = 0.5 * (lo + hi)
        lo, hi = (lo, mid) if squared_residual(damped(mid)) > goal else (mid, hi)
    return S._anchored_solution(eq, damped(lo))


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    growth, runs = float(argv[0]), argv[1:]
    from lucid_ifv import experiment as ex
    from lucid_ifv import ifv, metrics

    S = importlib.import_module("lucid_ifv.ifv.solve")
    S._SOLVERS["damped"] = lambda eq: damped_solve(eq, growth)
    S.METHODS, S.PRIOR_METHODS = S.METHODS + ("damped",), S.PRIOR_METHODS + ("damped",)
    try:
        for run in runs:
            p = ex.load_settings(run)["config"]["cossim_pow"]
            data = ex.load_realizations(run)
            targets = np.asarray(data["targets"], np.float64)
            stats = ex.saved_statistics(data, ex.equation_precision(ex.load_settings(run)["config"]))
            print(Path(run).name)
            for method in ("anchored", "nonneg", "damped"):
                r = ifv.solve_gram(data["response"], stats, p, method=method)
                alive = targets * ~r.dead_features
                angles = np.array([metrics.objective_angle_deg(r.target[i], alive[i], p)
                                   if np.linalg.norm(alive[i]) > 0 and np.all(np.isfinite(r.target[i])) else np.nan
                                   for i in range(len(targets))])
                said = r.verdicts() == "identified"
                print(f"  {method:9s} median {np.nanmedian(angles):.2f} p90 {np.nanpercentile(angles, 90):.2f} "
                      f"max {np.nanmax(angles):.2f}  identified {said.sum()} right {np.sum(said & (angles < 5))}")
    finally:
        S._SOLVERS.pop("damped")
        S.METHODS, S.PRIOR_METHODS = S.METHODS[:-1], S.PRIOR_METHODS[:-1]
    return 0


if __name__ == "__main__":
    sys.exit(main())
