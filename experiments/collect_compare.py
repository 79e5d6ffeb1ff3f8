"""Table of `lucid-ifv compare` runs (docs/results.md, "Network comparison").

    python experiments/collect_compare.py runs/compare/*/ > runs/compare/table.md
    python experiments/collect_compare.py --combine RUN RUN...   # one row for runs that split one layer's features

Per run: the networks and layers, the number of A's features, the permutation accuracy
(ground-truth runs; overall, among the rows the verdict calls 'identified' and, for runs that kept
B's Jacobian row norms, by the scale-free gradient share `Comparison.match(by="gradient")`), the best
match's |cosine| (median and 10th percentile), how many of A's visualizations are sound
(`Comparison.sound`; runs from before it was recorded: '-'; with retries, how many rows were rendered
again, `Comparison.attempts`), the verdict counts, the share of A's layer that
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
    non-default settings read off its command (softplus beta, L-BFGS cap, retries)."""
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
    for flag, label in (("--relu-beta", "beta {}"), ("--max-lbfgs", "L-BFGS cap {}"), ("--retries", "{} retries")):
        if flag in words:
            note.append(label.format(words[words.index(flag) + 1]))
    return f" ({', '.join(note)})" if note else ""


#: Per-feature lists of comparison.json that `combined` joins (the rest must agree across the runs).
PER_FEATURE = ("features", "best_match", "best_score", "ground_truth", "best_match_gradient", "verdicts", "sound",
               "attempts")


def combined(runs) -> dict:
    """One report for runs of the same comparison over disjoint sets of A's features: the
    per-feature lists joined, ``represented`` weighted by each run's feature count, the
    networks, layers and settings of the first run (they must be the same in every run)."""
    reports = [json.loads((Path(r) / "comparison.json").read_text()) for r in runs]
    first = reports[0]
    for key in ("model_a", "layer_a", "model_b", "layer_b"):
        if any(r[key] != first[key] for r in reports):
            raise SystemExit(f"--combine needs one comparison: {key} differs ({sorted({r[key] for r in reports})})")
    features = [f for r in reports for f in r["features"]]
    if len(set(features)) != len(features):
        raise SystemExit("--combine needs disjoint features: some feature is in two runs")
    out = dict(first)
    for key in PER_FEATURE:
        if all(r.get(key) is not None for r in reports):
            out[key] = [value for r in reports for value in r[key]]
        else:
            out.pop(key, None)
    n = [len(r["best_score"]) for r in reports]
    out["represented"] = float(np.average([r["represented"] for r in reports], weights=n))
    return out


def row(run: Path, report: dict | None = None) -> str:
    report = report or json.loads((run / "comparison.json").read_text())
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
    sound, attempts = report.get("sound"), report.get("attempts")
    sound = "-" if sound is None else f"{sum(sound)} of {len(sound)}"
    if attempts is not None and (max(attempts, default=1) > 1 or "--retries" in report.get("command", "")):
        sound += f" ({sum(a > 1 for a in attempts)} re-rendered)"
    return (f"| {report['model_a']} `{report['layer_a']}` -> {report['model_b']} `{report['layer_b']}`"
            f"{settings_note(report, run)} | {len(scores)} | {truth} | {sound} | "
            f"{np.median(scores):.3f} (p10 {np.percentile(scores, 10):.3f}) | "
            f"{counts} | {report['represented']:.2f} | {baseline} |")


def main(runs) -> str:
    """The table; ``["--combine", run, ...]``: one row for all of them (`combined`), its
    settings read off the first run."""
    lines = ["| comparison | features | permutation recovered | sound visualizations | best-match |cosine| median "
             "(p10) | verdicts in B | represented | agrees with activation correlation |", "|---|---|---|---|---|---|---|---|"]
    if runs and runs[0] == "--combine":
        lines.append(row(Path(runs[1]), combined(runs[1:])))
    else:
        lines += [row(Path(r)) for r in runs if (Path(r) / "comparison.json").exists()]
    return "\n".join(lines)


if __name__ == "__main__":
    print(main(sys.argv[1:]))
