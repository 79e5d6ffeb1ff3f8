"""What the 2026-12-06 solve changes do, one at a time, on the same saved realizations.

For each run (an `lucid-ifv experiment` folder), re-solve every realization from its saved
statistics four ways, with the anchored and the non-negative solve:

- ``Gram, dead removed``: the Gram matrices only (as runs saved before the QR factor was
  kept), dead features left out of the equation (the rule before 2026-12-06);
- ``Gram, dead unknowns``: the same, dead features above the noise kept as unknowns;
- ``QR, dead removed``: the QR factor of ``[J^T | g]`` (`GramStatistics.root`), dead features left out;
- ``QR, dead unknowns``: the library's default today.

(The Gram rows use today's least squares on unit-norm columns; the solve before it, a
pseudo-inverse of the normal matrix, is in the code of commit 0874436.) Prints one markdown
table: per run and variant, the angle on live features (median, p90, max), how many
inversions the verdict calls "identified" and how many of those are within 5 deg.
EVALUATION ONLY: it uses the true targets.

    python experiments/solve_ablation.py runs/inception_small_mixed3a_fft_smooth_each_f64 ...
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

VARIANTS = (("Gram, dead removed", False, False), ("Gram, dead unknowns", False, True),
            ("QR, dead removed", True, False), ("QR, dead unknowns", True, True))
METHODS = ("anchored", "nonneg")


def ablation(run: Path) -> dict:
    """``{(variant, method): (angles [B], identified [B] bool)}``: the angle on each solve's own
    live features and its verdict; variants without a saved QR factor are left out."""
    from lucid_ifv import experiment as ex
    from lucid_ifv import ifv

    config = ex.load_settings(run)["config"]
    p = config["cossim_pow"]
    data = ex.load_realizations(run)
    stats = ex.saved_statistics(data, ex.equation_precision(config))
    out = {}
    for name, qr, unknowns in VARIANTS:
        if qr and stats.root is None:
            continue
        chosen = stats if qr else dataclasses.replace(stats, root=None)
        for method in METHODS:
            result = ifv.solve_gram(data["response"], chosen, p, method=method, dead_unknowns=unknowns)
            angles = np.array([ex._angle_or_none(result.target[b], data["targets"][b] * ~result.dead_features[b], p)
                               for b in range(len(data["targets"]))], np.float64)
            out[name, method] = (angles, result.verdicts() == "identified")
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="`lucid-ifv experiment --out` folders")
    args = parser.parse_args(argv)
    print("| run | variant | solve | n | live: median | p90 | max | identified | of them < 5 deg |")
    print("|---|---|---|---|---|---|---|---|---|")
    for run in args.runs:
        for (name, method), (angles, identified) in ablation(run).items():
            a = np.nan_to_num(angles, nan=90.0)  # no answer counts as a miss
            print(f"| {run.name} | {name} | {method} | {a.size} | {np.median(a):.2f} | {np.percentile(a, 90):.2f} | "
                  f"{a.max():.2f} | {int(identified.sum())} | {int((identified & (a < 5)).sum())} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
