"""Table of `lucid-ifv compare` runs (docs/results.md, "Network comparison").

    python experiments/collect_compare.py runs/compare/*/ > runs/compare/table.md

Per run: the networks and layers, the number of A's features, the permutation accuracy
(ground-truth runs; overall, among the rows the verdict calls 'identified' and, for runs that kept
B's Jacobian row norms, by the scale-free gradient share `Comparison.match(by="gradient")`), the best
match's |cosine| (median and 10th percentile), how many of A's visualizations are sound
(`Comparison.sound`; runs from before it was recorded: '-'), the verdict counts, the share of A's layer that
B represents (`Comparison.represented`) and, with `--baseline`, how often the best match by
activation correlation on held-out images is the same.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np


def settings_note(report: dict, run: Path | None = None) -> str:
    """The objective's p, a non-default aggregation, a relative beta and feature units (from the run's saved settings) and the
    non-default settings read off its command (softplus beta, retries)."""
    words = report.get("command", "").replace("=", " ").split()
    note = []
    saved = run / "batches" / "settings.json" if run is not None else None
    if saved is not None and saved.exists():
        config = json.loads(saved.read_text())["config"]
        note.append(f"p = {config.get('cossim_pow', 1.0):g}")
        if config.get("aggregation", "max_pool_mean") != "max_pool_mean":
            note.append(config["aggregation"])
        if config.get("relu_beta_relative"):
            note.append("beta per unit, relative to its RMS")
        if json.loads(saved.read_text()).get("feature_units", "raw") != "raw":
            note.append("features in RMS units")
    for flag, label in (("--relu-beta", "beta {}"), ("--retries", "{} retries")):
        if flag in words:
            note.append(label.format(words[words.index(flag) + 1]))
    return f" ({', '.join(note)})" if note else ""


def row(run: Path) -> str:
    report = json.loads((run / "comparison.json").read_text())
    scores = np.asarray(report["best_score"])
    verdicts = report["verdicts"]
    counts = ", ".join(f"{v} {verdicts.count(v)}" for v in sorted(set(verdicts)))
    truth = "-"
    if "ground_truth" in report:
        right = np.asarray(report["best_match"]) == np.asarray(report["ground_truth"])
        identified = np.asarray(verdicts) == "identified"
        truth = (f"{right.mean():.1%} ({right.sum()} of {len(right)}); among 'identified': "
                 f"{right[identified].sum()} of {identified.sum()}")
        if "best_match_gradient" in report:
            by_gradient = np.asarray(report["best_match_gradient"]) == np.asarray(report["ground_truth"])
            truth += f"; by gradient share: {by_gradient.mean():.1%} ({by_gradient.sum()} of {len(by_gradient)})"
    baseline = "-"
    if "agreement" in report:
        corr = np.asarray(report["baseline_best_corr"])
        baseline = f"{report['agreement']:.1%} (best r median {np.median(corr):.2f})"
    sound = report.get("sound")
    sound = "-" if sound is None else f"{sum(sound)} of {len(sound)}"
    return (f"| {report['model_a']} `{report['layer_a']}` -> {report['model_b']} `{report['layer_b']}`"
            f"{settings_note(report, run)} | {len(scores)} | {truth} | {sound} | "
            f"{np.median(scores):.3f} (p10 {np.percentile(scores, 10):.3f}) | "
            f"{counts} | {report['represented']:.2f} | {baseline} |")


def main(runs) -> str:
    lines = ["| comparison | features | permutation recovered | sound visualizations | best-match |cosine| median "
             "(p10) | verdicts in B | represented | agrees with activation correlation |", "|---|---|---|---|---|---|---|---|"]
    lines += [row(Path(r)) for r in runs if (Path(r) / "comparison.json").exists()]
    return "\n".join(lines)


if __name__ == "__main__":
    print(main(sys.argv[1:]))
