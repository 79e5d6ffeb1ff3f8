"""Table of `lucid-ifv compare` runs (docs/results.md, "Network comparison").

    python experiments/collect_compare.py runs/compare/*/ > runs/compare/table.md

Per run: the networks and layers, the number of A's features, the permutation accuracy
(ground-truth runs), the best match's |cosine| (median and 10th percentile), the verdict
counts, and the share of A's layer that B represents (`Comparison.represented`).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np


def row(run: Path) -> str:
    report = json.loads((run / "comparison.json").read_text())
    scores = np.asarray(report["best_score"])
    verdicts = report["verdicts"]
    counts = ", ".join(f"{v} {verdicts.count(v)}" for v in sorted(set(verdicts)))
    accuracy = report.get("permutation_accuracy")
    truth = "-" if accuracy is None else f"{accuracy:.1%} ({round(accuracy * len(scores))} of {len(scores)})"
    if "ground_truth" in report:
        wrong = [i for i, (b, t) in enumerate(zip(report["best_match"], report["ground_truth"])) if b != t]
        wrong_verdicts = [verdicts[i] for i in wrong]
        truth += f"; wrong ones identified: {wrong_verdicts.count('identified')}"
    return (f"| {report['model_a']} `{report['layer_a']}` -> {report['model_b']} `{report['layer_b']}` | "
            f"{len(scores)} | {truth} | {np.median(scores):.3f} (p10 {np.percentile(scores, 10):.3f}) | "
            f"{counts} | {report['represented']:.2f} |")


def main(runs) -> str:
    lines = ["| comparison | features | permutation recovered | best-match |cosine| median (p10) | verdicts in B "
             "| represented |", "|---|---|---|---|---|---|"]
    lines += [row(Path(r)) for r in runs if (Path(r) / "comparison.json").exists()]
    return "\n".join(lines)


if __name__ == "__main__":
    print(main(sys.argv[1:]))
