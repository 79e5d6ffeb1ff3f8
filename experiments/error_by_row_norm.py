"""Where does an inversion's error sit? Split it by the live features' Jacobian row norms.

For each run (an `lucid-ifv experiment` folder), re-solve every realization from its saved
Gram statistics with the default (anchored) solve, and split the squared error of the unit
answer against the unit target on live features (the angle's error) between *weakly live*
features (row norm below ``--weak`` times the sample's median live row) and the others.
EVALUATION ONLY: it uses the true targets. Prints one markdown table.

    python experiments/error_by_row_norm.py runs/inception_small_mixed4a_pixel_smooth_conv1e-4 ...
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def split_errors(run: Path, weak: float) -> list:
    """Per sample with live target mass: ``(angle on live features (as the runner measures it), weak count, live count,
    share of the squared error on weak features)``."""
    from lucid_ifv import experiment as ex
    from lucid_ifv import ifv, metrics

    config = json.loads((run / "settings.json").read_text())["config"]
    p = config["cossim_pow"]
    data = ex.load_realizations(run)
    f, targets = data["response"], data["targets"]
    stats = ex.saved_statistics(data, ex.equation_precision(config))
    result = ifv.solve_gram(f, stats, p, method="anchored")
    rows = np.sqrt(np.einsum("bkk->bk", np.asarray(data["jjt"], np.float64)))
    out = []
    for b in range(len(f)):
        live = ~result.dead_features[b]
        t, answer = targets[b] * live, np.nan_to_num(result.target[b]) * live
        if not (t.any() and answer.any()):
            continue
        sign = np.sign(answer @ t or 1.0) if float(p).is_integer() and int(p) % 2 else 1.0  # odd p: t ~ -t
        unit_t, unit_p = t / np.linalg.norm(t), answer / np.linalg.norm(answer) * sign
        error = (unit_p - unit_t) ** 2
        is_weak = live & (rows[b] < weak * np.median(rows[b][live]))
        out.append((float(metrics.objective_angle_deg(answer, t, p)), int(is_weak.sum()), int(live.sum()),
                    float(error[is_weak].sum() / max(error.sum(), 1e-300))))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", nargs="+", help="experiment folders")
    ap.add_argument("--weak", type=float, default=0.1, help="weak: row norm below this times the median live row")
    args = ap.parse_args(argv)
    print(f"| run | n | angle on live features, median (p90) | weakly live features (row < {args.weak:g} x median), "
          "median | share of the squared error on them, median | the same, 5 worst samples |")
    print("|---|---|---|---|---|---|")
    for run in args.runs:
        rows = split_errors(Path(run), args.weak)
        angles, weak_counts, _, shares = (np.array(c) for c in zip(*rows))
        worst = np.argsort(-angles)[:5]
        print(f"| {Path(run).name} | {len(rows)} | {np.median(angles):.2f} ({np.percentile(angles, 90):.2f}) | "
              f"{np.median(weak_counts):.0f} | {np.median(shares):.2f} | "
              f"{', '.join(f'{shares[i]:.2f} ({angles[i]:.1f} deg)' for i in worst)} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
