"""Do the inversion's error bars say where its error is? A threshold sweep on saved runs.

For each run (an `lucid-ifv experiment` folder), re-solve every realization from its saved
Gram statistics with the default (anchored) solve and, for each error-bar threshold
(`InversionResult.determined(tol)`), report the angle on the live features it determines,
how many live features it does not, the target's mass on those, the share of the
squared error (unit answer against unit target, live features) that sits on them, and what
those features are: their response relative to the sample's largest, and the share of the
squared error that sits on live features whose target weight is 0 (weight the answer puts
where the target has none).
EVALUATION ONLY: it uses the true targets. Prints one markdown table.

    python experiments/error_bars.py runs/inception_small_mixed3a_pixel_smooth_conv1e-4 ...
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

TOLERANCES = (0.01, 0.02, 0.05, 0.1)


def sweep(run: Path, tolerances=TOLERANCES) -> dict:
    """``{tol: [B, 6] array}`` of per-sample ``(angle on determined features, undetermined live
    features, target mass on them, share of the squared live error on them, their median
    response relative to the sample's largest, share of the squared live error on live
    features of target weight 0)``; NaN angles where nothing with target mass is determined,
    NaN responses where every live feature is determined."""
    from lucid_ifv import experiment as ex
    from lucid_ifv import ifv, metrics

    config = ex.load_settings(run)["config"]
    p = config["cossim_pow"]
    data = ex.load_realizations(run)
    targets = np.asarray(data["targets"], np.float64)
    stats = ex.saved_statistics(data, ex.equation_precision(config))
    result = ifv.solve_gram(data["response"], stats, p, method="anchored")
    live = ~result.dead_features
    unit = np.where(live, targets, 0.0)
    unit /= np.maximum(np.linalg.norm(unit, axis=1, keepdims=True), 1e-300)
    answer = np.nan_to_num(result.target) * live
    answer /= np.maximum(np.linalg.norm(answer, axis=1, keepdims=True), 1e-300)
    if metrics.sign_symmetric(p):  # odd p: an objective and its negative are the same (as the runner measures)
        answer *= np.where(np.sum(answer * unit, axis=1, keepdims=True) < 0, -1.0, 1.0)
    error = (answer - unit) ** 2
    total = np.maximum(np.sum(error, axis=1), 1e-300)
    off_target = np.sum(error * (live & (targets == 0)), axis=1) / total
    response = np.asarray(data["response"], np.float64)
    relative = response / np.maximum(response.max(axis=1, keepdims=True), 1e-300)
    out = {}
    for tol in tolerances:
        loose = live & ~result.determined(tol)
        share = np.sum(error * loose, axis=1) / total
        loose_response = [np.median(r[m]) if m.any() else np.nan for r, m in zip(relative, loose)]
        out[tol] = np.column_stack([result.angles_determined(targets, p, tol), loose.sum(axis=1),
                                    np.sum(unit ** 2 * loose, axis=1), share, loose_response, off_target])
    return out


def _cell(x: np.ndarray) -> str:
    x = x[np.isfinite(x)]
    return "-" if not x.size else f"{np.median(x):.2f} (p90 {np.percentile(x, 90):.2f})"


def _median(x: np.ndarray) -> str:
    x = x[np.isfinite(x)]
    return "-" if not x.size else f"{np.median(x):.1e}"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="`lucid-ifv experiment --out` folders")
    parser.add_argument("--tol", type=float, nargs="+", default=list(TOLERANCES), help="error-bar thresholds")
    args = parser.parse_args(argv)
    print("| run | error bar <= | n | angle on determined features, median (p90) | live features not determined, "
          "median (max) | target mass on them, median (p90) | share of the squared error on them, median "
          "| their response / the largest, median | share of the squared error on live features of target "
          "weight 0, median |")
    print("|---|---|---|---|---|---|---|---|---|")
    for run in args.runs:
        for tol, rows in sweep(run, args.tol).items():
            print(f"| {run.name} | {tol:g} | {len(rows)} | {_cell(rows[:, 0])} | {np.median(rows[:, 1]):.0f} "
                  f"({rows[:, 1].max():.0f}) | {_cell(rows[:, 2])} | {np.nanmedian(rows[:, 3]):.2f} "
                  f"| {_median(rows[:, 4])} | {np.nanmedian(rows[:, 5]):.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
