"""EVALUATION ONLY (uses the true targets), not a library method: a Tikhonov-damped anchored solve
on saved runs, beside the anchored and non-negative solves (docs/results.md, main table).
The damped answer is the smallest-norm target whose squared residual is at most GROWTH times
the anchored one's (bisection on the damping). Tried on 2026-12-05 and not adopted.

    python experiments/damped_solve_probe.py GROWTH runs/inception_small_mixed3a_fft_smooth_each ...
"""
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import importlib; S = importlib.import_module("lucid_ifv.ifv.solve")
from lucid_ifv import experiment as ex, ifv, metrics

GROWTH = float(sys.argv[1]) if len(sys.argv) > 1 else 2.0

def _solve_damped(eq):
    normal, rhs = S._anchored_system(eq)
    g11 = eq.gram[eq.d, eq.d]
    y0 = S._solve_anchored(eq)
    inv_root = S._psd_sqrt(normal)[1]
    y0 = inv_root @ (inv_root @ rhs)
    sq = lambda y: max(float(y @ normal @ y - 2 * y @ rhs + g11), 0.0)
    floor = (S.dg.EQUATION_PRECISION ** 2) * g11
    goal = GROWTH * max(sq(y0), floor)
    pen = np.zeros(normal.shape[0]); pen[: eq.d] = 1.0
    top = np.linalg.eigvalsh(normal)[-1]
    def y_of(a):
        return np.linalg.solve(normal + a * top * np.diag(pen), rhs)
    lo, hi = -18.0, 2.0
    if sq(y_of(10 ** lo)) > goal:
        return S._anchored_solution(eq, y0)
    for _ in range(40):
        mid = 0.5 * (lo + hi)
        if sq(y_of(10 ** mid)) > goal: hi = mid
        else: lo = mid
    return S._anchored_solution(eq, y_of(10 ** lo))

S._SOLVERS["damped"] = _solve_damped
S.METHODS = S.METHODS + ("damped",)
S.PRIOR_METHODS = S.PRIOR_METHODS + ("damped",)

for run in sys.argv[2:]:
    p = ex.load_settings(run)["config"]["cossim_pow"]
    data = ex.load_realizations(run)
    targets = np.asarray(data["targets"], np.float64)
    stats = ifv.GramStatistics(data["jjt"], data.get("jg"), data.get("gg"))
    print(run.split("/")[-1])
    for method in ("anchored", "nonneg", "damped"):
        r = ifv.solve_gram(data["response"], stats, p, method=method)
        alive = targets * ~r.dead_features
        ang = np.array([metrics.objective_angle_deg(r.target[i], alive[i], p) if np.linalg.norm(alive[i]) > 0 and np.all(np.isfinite(r.target[i])) else np.nan for i in range(len(targets))])
        v = r.verdicts()
        ok = ang < 5
        ident = v == "identified"
        print(f"  {method:9s} median {np.nanmedian(ang):.2f} p90 {np.nanpercentile(ang, 90):.2f} max {np.nanmax(ang):.2f}  identified {ident.sum()} right {np.sum(ident & ok)}")
