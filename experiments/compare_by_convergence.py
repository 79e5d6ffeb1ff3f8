"""Are a comparison's unsound renders the ones that did not converge? Split a `lucid-ifv compare
--permuted` run by whether A's render reached the run's stationarity tolerance (``--converge``)
and whether it is sound (A's own inversion identifies the rendered channel), per branch of an
Inception-style mixed layer.

    python experiments/compare_by_convergence.py runs/compare/inception_small_mixed4a_third_relative_beta [...]

For each run, one markdown row per part (every branch of ``inception_small``'s mixed layers,
`modelzoo.architectures.INCEPTION_SMALL_MIXED`, else the whole layer): the renders, how many
reached the tolerance, how many are sound among those that did and did not, and the
permutation accuracy on each. The residuals are read from the run's saved batches (every
batch keeps them). EVALUATION ONLY (the accuracy uses the ground truth).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def branches(model_name: str, layer: str) -> list[tuple[str, int, int]]:
    """``[(name, first channel, end)]`` of a mixed layer's concatenated branches, or
    ``[("all", 0, inf)]`` for any other layer."""
    from modelzoo.architectures import INCEPTION_SMALL_MIXED

    if model_name != "inception_small" or layer not in INCEPTION_SMALL_MIXED:
        return [("all", 0, np.iinfo(np.int64).max)]
    one, _, three, _, five, pool = INCEPTION_SMALL_MIXED[layer]
    ends = np.cumsum([one, three, five, pool])
    return [(name, int(start), int(end)) for name, start, end in
            zip(("1x1", "3x3", "5x5", "pool"), np.concatenate([[0], ends[:-1]]), ends)]


def split(run: Path) -> list[dict]:
    """One dict per part of the run's layer (see the module docstring)."""
    report = json.loads((run / "comparison.json").read_text())
    settings = json.loads((run / "batches" / "settings.json").read_text())
    tol = settings["config"].get("converge")
    if tol is None:
        raise SystemExit(f"error: {run} was rendered without --converge: no tolerance to split by")
    parts = [np.load(f) for f in sorted((run / "batches").glob("batch_*.npz"))]
    residual = np.concatenate([p["render_residual"] for p in parts])
    sound = np.concatenate([p["sound"] for p in parts]).astype(bool)
    features = np.concatenate([p["features"] for p in parts])
    if not np.array_equal(features, report["features"]):
        raise SystemExit(f"error: {run}'s batches and comparison.json disagree; run the comparison again")
    right = np.asarray(report["best_match"]) == np.asarray(report["ground_truth"])
    converged = residual <= tol
    rows = []
    for name, start, end in branches(*settings["a"]):
        part = (features >= start) & (features < end)
        if not part.any():
            continue
        row = {"run": run.name, "part": name, "n": int(part.sum()), "tol": tol}
        for label, rows_in in (("converged", part & converged), ("not converged", part & ~converged)):
            row[label] = {"n": int(rows_in.sum()), "sound": int((rows_in & sound).sum()),
                          "right": int((rows_in & right).sum())}
        rows.append(row)
    return rows


def table(runs) -> str:
    lines = ["| run | part | renders | stationary to the tolerance: sound, right | not stationary: sound, right |",
             "|---|---|---|---|---|"]
    for run in runs:
        for row in split(Path(run)):
            done, rest = row["converged"], row["not converged"]
            lines.append(f"| {row['run']} | {row['part']} | {row['n']} | {done['n']} (tol {row['tol']:g}): "
                         f"{done['sound']}, {done['right']} | {rest['n']}: {rest['sound']}, {rest['right']} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args:
        raise SystemExit(__doc__)
    print(table(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
