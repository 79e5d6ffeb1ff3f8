"""Why a permutation-recovery run missed some channels: the wrong rows, looked at in A and B.

    python experiments/compare_misses.py runs/compare/srnet_small_res_block8

For a `lucid-ifv compare --permuted SEED` run (evaluation only: the saved renders are not
rendered again), every row whose best match is not the ground truth is inverted again in A and
in B (the same settings, from the saved images) and printed with: the rendered channel's
response at the render against the largest |response|, its Jacobian row norm over the median
row, whether the solve calls it dead, the solve's top feature and the verdict. One Markdown
table on stdout.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import numpy as np

from lucid_ifv import experiment, ifv
from lucid_ifv import objectives as obj
from lucid_ifv.cli import load_any_model
from lucid_ifv.symmetry import permute_channels


def saved_renders(batches: Path, features) -> tuple:
    """(images ``[n, ...]``, the batch seed of each) of ``features`` from a run's batch files."""
    images, seeds = [], []
    for feature in features:
        for path in sorted(batches.glob("batch_*.npz")):
            data = np.load(path)
            where = np.flatnonzero(data["features"] == feature)
            if where.size:
                images.append(data["images"][where[0]])
                seeds.append(int(path.stem.split("_")[1]))
                break
        else:
            raise ValueError(f"feature {feature} is in no batch file of {batches}")
    return np.stack(images), seeds


def rows_in(setup, config, images, channels) -> list:
    """Per image: the channel's response, its row over the median row, dead or not, top, verdict."""
    param = experiment.realization_param(setup.model, config, len(images), 0)
    _, params = ifv.resolve_realization(setup.model, images, param, "params")
    result = ifv.invert(setup.model, config.layer, params, param=param, cossim_pow=config.cossim_pow,
                        aggregation=setup.aggregation, prior=obj.params_L2() if setup.prior_weight else None,
                        method=experiment.default_solve(config))
    f, jac = ifv.feature_jacobian(setup.model, config.layer, params, param, setup.aggregation)
    norms = np.linalg.norm(jac, axis=-1)
    verdicts = result.verdicts()
    return [dict(response=f[i, c], largest=np.abs(f[i]).max(), row=norms[i, c] / np.median(norms[i]),
                 dead=bool(result.dead_features[i, c]), top=int(np.argmax(np.abs(result.target[i]))),
                 verdict=str(verdicts[i])) for i, c in enumerate(channels)]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path, help="a `lucid-ifv compare --permuted SEED` output folder")
    args = parser.parse_args(argv)
    report = json.loads((args.run / "comparison.json").read_text())
    settings = experiment.load_settings(args.run / "batches")
    seed = report.get("permuted_seed")
    words = report["command"].replace("=", " ").split()
    if seed is None and "--permuted" in words:  # runs from before the seed was recorded
        seed = int(words[words.index("--permuted") + 1])
    if seed is None:
        raise SystemExit(f"error: {args.run} is not a --permuted (ground-truth) run")
    config = experiment.ExperimentConfig(**settings["config"])
    model_a = load_any_model(settings["a"][0])
    permuted = permute_channels(model_a, config.layer, seed=int(seed))
    features, truth = np.array(report["features"]), np.array(report["ground_truth"])
    wrong = np.flatnonzero(np.array(report["best_match"]) != truth)
    if not wrong.size:
        print(f"{args.run}: no wrong rows")
        return
    images, _ = saved_renders(args.run / "batches", features[wrong])
    in_a = rows_in(experiment.prepare(model_a, config), config, images, features[wrong])
    in_b = rows_in(experiment.prepare(permuted.model, dataclasses.replace(config)), config, images, truth[wrong])
    print(f"Wrong rows of `{report['command']}` (A's channel; B's true channel = ground truth)\n")
    print("| A channel | B's true channel | best match in B (score) | response / largest |response| (A) "
          "| row / median row: A, B | dead in A, B | top in A, B | verdict in A, B |")
    print("|---|---|---|---|---|---|---|---|")
    for j, a, b in zip(wrong, in_a, in_b):
        print(f"| {features[j]} | {truth[j]} | {report['best_match'][j]} ({report['best_score'][j]:.2f}) "
              f"| {a['response']:.2f} / {a['largest']:.2f} | {a['row']:.2f}, {b['row']:.2f} "
              f"| {a['dead']}, {b['dead']} | {a['top']}, {b['top']} | {a['verdict']}, {b['verdict']} |")


if __name__ == "__main__":
    main()
