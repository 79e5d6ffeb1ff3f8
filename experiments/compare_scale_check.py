"""Do B's rescaling factors cause a permutation run's misses? Invert the run's renders again in B
with the run's permutation and scales, and in B with the same permutation and every scale 1.

    python experiments/compare_scale_check.py runs/compare/inception_small_mixed3a_pre_relu_p0

Why: B = A with the layer's units permuted and rescaled by ``s > 0`` computes A's function
(``relu(s z) = s relu(z)``), but its smooth surrogate does not compute A's surrogate:
``softplus(beta s z) / beta = s softplus(beta' z) / beta'`` with ``beta' = s beta``, and the
log-sum-exp pools (in the net and in the aggregation) get temperature ``T / s``. With every
``s = 1`` B's surrogate is A's, permuted, and the inversion is equivariant. Evaluation only (it
uses the ground truth); nothing is rendered again. Prints one Markdown table row per run:
channels, recovered in the run (saved best matches), recovered now in B (the run's scales; a
check that the saved answer reproduces), recovered in B with unit scales, and the channels that
differ.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from lucid_ifv import experiment, ifv
from lucid_ifv import objectives as obj
from lucid_ifv.cli import load_any_model
from lucid_ifv.symmetry import permute_channels


def saved_images(batches: Path) -> tuple:
    """(features ``[n]``, images ``[n, ...]``) of every batch file of a run, in batch order."""
    parts = [np.load(path) for path in sorted(batches.glob("batch_*.npz"))]
    if not parts:
        raise SystemExit(f"error: {batches} holds no batch files")
    return np.concatenate([p["features"] for p in parts]), np.concatenate([p["images"] for p in parts])


def best_matches(model, config, images, batch_size: int = 16) -> np.ndarray:
    """``[n]``: argmax |t*| of each image inverted in ``model``'s layer (the run's settings)."""
    setup = experiment.prepare(model, config)
    param = experiment.realization_param(setup.model, config, min(batch_size, len(images)), 0)
    out = []
    for start in range(0, len(images), batch_size):
        chunk = images[start:start + batch_size]
        if len(chunk) < batch_size:
            param = experiment.realization_param(setup.model, config, len(chunk), 0)
        _, params = ifv.resolve_realization(setup.model, chunk, param, "params")
        result = ifv.invert(setup.model, config.layer, params, param=param, cossim_pow=config.cossim_pow,
                            aggregation=setup.aggregation, prior=obj.params_L2() if setup.prior_weight else None,
                            method=experiment.default_solve(config))
        out.append(np.argmax(np.abs(result.target), axis=1))
    return np.concatenate(out)


def check(run: Path) -> dict:
    report = json.loads((run / "comparison.json").read_text())
    settings = experiment.load_settings(run / "batches")
    if "ground_truth" not in report:
        raise SystemExit(f"error: {run} is not a --permuted (ground-truth) run")
    seed = report.get("permuted_seed")
    words = report["command"].replace("=", " ").split()
    if seed is None:  # runs from before the seed was recorded
        seed = int(words[words.index("--permuted") + 1])
    config = experiment.ExperimentConfig(**settings["config"])
    model_a = load_any_model(settings["a"][0])
    scaled = permute_channels(model_a, config.layer, seed=int(seed))
    unit = permute_channels(model_a, config.layer, perm=scaled.perm, scales=np.ones(len(scaled.perm)))
    features, images = saved_images(run / "batches")
    row_of = {f: i for i, f in enumerate(report["features"])}
    rows = np.array([row_of[f] for f in features.tolist()])
    truth, saved = np.array(report["ground_truth"])[rows], np.array(report["best_match"])[rows]
    again = best_matches(scaled.model, config, images)
    without = best_matches(unit.model, config, images)
    return {"run": run.name, "n": len(features), "saved": int(np.sum(saved == truth)),
            "again": int(np.sum(again == truth)), "unit_scales": int(np.sum(without == truth)),
            "fixed": features[(without == truth) & (again != truth)].tolist(),
            "lost": features[(without != truth) & (again == truth)].tolist(),
            "scales_of_fixed": np.round(scaled.scales[truth[(without == truth) & (again != truth)]], 2).tolist()}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", type=Path, nargs="+", help="`lucid-ifv compare --permuted SEED` output folders")
    args = parser.parse_args(argv)
    print("| run | channels | recovered (saved) | recovered again, the run's scales | recovered, unit scales "
          "| right only with unit scales (their scales in B) | right only with the run's scales |")
    print("|---|---|---|---|---|---|---|")
    for run in args.runs:
        r = check(run)
        print(f"| {r['run']} | {r['n']} | {r['saved']} | {r['again']} | {r['unit_scales']} "
              f"| {r['fixed']} ({r['scales_of_fixed']}) | {r['lost']} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
