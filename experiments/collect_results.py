"""Collect experiment summaries into one Markdown table (for docs/results.md).

    python experiments/collect_results.py runs/*  > table.md

Each run folder is a `lucid-ifv experiment --out` folder (settings.json, records.jsonl).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from lucid_ifv import experiment as ex


def describe(settings: dict) -> str:
    c = settings["config"]
    par = ("Fourier" + (" + decorrelated" if c["decorrelate"] else "") if c["fft"] else "pixel") + " + sigmoid"
    prior = f"L2 on params {c['prior_weight']:g}" if c["prior_weight"] else "none (paper's)"
    return f"{settings['model']} `{c['layer']}`, p={c['cossim_pow']:g}, {par}, prior: {prior}"


def fmt(stats: dict | None) -> str:
    if stats is None:
        return "-"
    return f"{stats['median']:.1f} [{stats['q1']:.1f}, {stats['q3']:.1f}]"


def main(folders):
    print("| setting | n | angle(t, t*) prior-aware | angle(t, t*) paper's solve | angle(t, f) | angle(t, random) "
          "| unsaturated pixels | dead features |")
    print("|---|---|---|---|---|---|---|---|")
    for folder in folders:
        folder = Path(folder)
        if not (folder / "records.jsonl").exists():
            continue
        settings = json.loads((folder / "settings.json").read_text())
        records = ex.load_records(folder / "records.jsonl")
        s = ex.summarize(records)
        unsat = s.get("unsaturated_pixels")
        dead = s.get("dead_features")
        print(f"| {describe(settings)} | {s['n']} | {fmt(s.get('angle_prior_aware'))} | {fmt(s.get('angle_paper'))} | "
              f"{fmt(s.get('angle_response'))} | {fmt(s.get('angle_random'))} | "
              f"{unsat['min']:.0f}-{unsat['max']:.0f} (median {unsat['median']:.0f}) | "
              f"{dead['median']:.0f} (max {dead['max']:.0f}) |")
    print("\nCells: median [first quartile, third quartile] in degrees.")


if __name__ == "__main__":
    main(sys.argv[1:])
