"""Collect experiment summaries into one Markdown table (for docs/results.md).

    python experiments/collect_results.py runs/*  > table.md

Each run folder is a `lucid-ifv experiment --out` folder (settings.json, records.jsonl).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import scipy.stats

from lucid_ifv import experiment as ex


def describe(settings: dict) -> str:
    c = settings["config"]
    par = ("Fourier" + (" + decorrelated" if c["decorrelate"] else "") if c["fft"] else "pixel") + " + sigmoid"
    prior = f"L2 on params {c['prior_weight']:g}" if c["prior_weight"] else "none (paper's)"
    agg = "" if c["aggregation"] == "max_pool_mean" else f", aggregation {c['aggregation']}"
    return f"{settings['model']} `{c['layer']}`, p={c['cossim_pow']:g}{agg}, {par}, prior: {prior}"


def fmt(stats: dict | None) -> str:
    if stats is None:
        return "-"
    return f"{stats['median']:.1f} [{stats['q1']:.1f}, {stats['q3']:.1f}]"


def load_runs(folders):
    """(settings, records) of every experiment folder that has records."""
    runs = []
    for folder in map(Path, folders):
        if (folder / "records.jsonl").exists():
            runs.append((json.loads((folder / "settings.json").read_text()), ex.load_records(folder / "records.jsonl")))
    return runs


def main(folders):
    runs = load_runs(folders)
    print("| setting | n | angle(t, t*) prior-aware | angle(t, t*) paper's solve | angle(t, f) | angle(t, random) "
          "| unsaturated pixels | dead features |")
    print("|---|---|---|---|---|---|---|---|")
    for settings, records in runs:
        s = ex.summarize(records)
        unsat = s.get("unsaturated_pixels")
        dead = s.get("dead_features")
        print(f"| {describe(settings)} | {s['n']} | {fmt(s.get('angle_prior_aware'))} | {fmt(s.get('angle_paper'))} | "
              f"{fmt(s.get('angle_response'))} | {fmt(s.get('angle_random'))} | "
              f"{unsat['min']:.0f}-{unsat['max']:.0f} (median {unsat['median']:.0f}) | "
              f"{dead['median']:.0f} (max {dead['max']:.0f}) |")
    print("\nCells: median [first quartile, third quartile] in degrees.")
    print("\nWhat the error of the solve that was used (prior-aware if any) goes with: Spearman rank "
          "correlations over the samples of each run, and medians modulo the structurally dead features.\n")
    print("| setting | angle modulo dead features | rho(angle, unsaturated pixels) | rho(angle, target sparseness) "
          "| rho(angle, gap) | rho(angle, dead target mass) |")
    print("|---|---|---|---|---|---|")
    for settings, records in runs:
        solve = "prior_aware" if "angle_prior_aware" in records[0] else "paper"
        angle = np.array([r[f"angle_{solve}"] for r in records])
        alive = np.array([r[f"angle_alive_{solve}"] for r in records if r.get(f"angle_alive_{solve}") is not None])

        def rho(key):
            values = np.array([r[key] for r in records], dtype=float)
            return "-" if np.ptp(values) == 0 else f"{scipy.stats.spearmanr(angle, values)[0]:+.2f}"

        print(f"| {describe(settings)} | {np.median(alive):.1f} | {rho('unsaturated_pixels')} | {rho('sparseness')} | "
              f"{rho(f'gap_{solve}')} | {rho('dead_target_mass')} |")


if __name__ == "__main__":
    main(sys.argv[1:])
