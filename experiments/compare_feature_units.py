"""Why a permuted, rescaled copy can reject a render its original accepts, and what
``feature_units="rms"`` changes (docs/compare.md, "Feature units").

    python experiments/compare_feature_units.py                      # densenet_small block3_layer4
    python experiments/compare_feature_units.py --model mnist_small --layer conv2 --features 3 11

Renders the given channels of A (compare's default settings with the former 1000-step L-BFGS cap, one batch, seed ``--seed``), then
inverts each render in A and in B = `permute_channels(A, layer, seed=0)` (the same copy as
`lucid-ifv compare --permuted 0`), with features in raw units and in RMS units. Prints one
markdown table: per render and network, the verdict, the stationarity residual, the dead
features, and whether the best match is the rendered channel (B's index for it in B).
EVALUATION ONLY (uses the ground truth).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="densenet_small")
    parser.add_argument("--layer", default="block3_layer4")
    parser.add_argument("--features", type=int, nargs="+", default=[18, 36, 86, 2, 5])
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)

    from lucid_ifv import compare, experiment, ifv
    from lucid_ifv import objectives as obj
    from lucid_ifv.symmetry import permute_channels
    from modelzoo.shipped import load_shipped

    a = load_shipped(args.model)
    permuted = permute_channels(a, args.layer, seed=0)
    # compare's defaults with the 1000-step L-BFGS cap that docs/results.md's figures were made with
    config = dataclasses.replace(compare.default_config(max_lbfgs_steps=1000), layer=args.layer, features=None)
    k = a.layer(args.layer).depth
    features = np.asarray(args.features)
    if features.min() < 0 or features.max() >= k:
        raise SystemExit(f"error: --features must be channels of {args.layer!r} (0..{k - 1}), got {args.features}")
    setups = {"A": experiment.prepare(a, config), "B": experiment.prepare(permuted.model, config)}
    expected = {"A": features, "B": permuted.matching[features]}
    param = experiment.realization_param(a, config, len(features), args.seed)
    rendered = experiment.realize(setups["A"], config, np.eye(k)[features], param, args.seed)
    print("| channel of A | units | network | verdict | residual | dead features | best match is the channel |")
    print("|---|---|---|---|---|---|---|")
    rows = []
    for units in compare.FEATURE_UNITS:
        for name, setup in setups.items():
            result = ifv.invert(setup.model, args.layer, rendered.params, param=param, cossim_pow=config.cossim_pow,
                                aggregation=setup.aggregation, prior=obj.params_L2(),
                                method=experiment.default_solve(config),
                                feature_scales=compare._feature_scales(setup, config, units))
            best = np.argmax(np.abs(result.target), axis=1)
            for i, feature in enumerate(features):
                rows.append((int(feature), units, name, str(result.verdicts()[i]), f"{result.residual[i]:.3g}",
                             int(result.n_dead[i]), "yes" if best[i] == expected[name][i] else f"no ({best[i]})"))
    for row in sorted(rows, key=lambda r: (args.features.index(r[0]), r[1], r[2])):
        print("| " + " | ".join(map(str, row)) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
