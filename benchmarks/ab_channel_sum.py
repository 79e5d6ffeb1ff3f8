"""A/B timing of `objectives.ChannelSum`: Lucid's idiom (one channel objective per batch
element) evaluated as one reduction ("fused") or term by term ("terms": each channel
objective slices the activations, and the backward pass adds one full-size gradient per term,
as before the fusion).

    OMP_NUM_THREADS=2 OPENBLAS_NUM_THREADS=1 python benchmarks/ab_channel_sum.py [--model photos_cnn
        --layer conv2d_4] [--batches 4 16] [--rounds 5] [--steps 30]

For every batch size, pixel and Fourier parametrization (decorrelated colour), without and
with Lucid's standard transforms: `render_vis`'s compiled Adam step (`VisSetup.step`, as `make
bench` times it, `bench_peers.Ours`) with either objective, on one loaded model. Rounds
alternate the order; each timed run is ``--steps`` steps with one host read at the end. Prints
a Markdown table of the median ms per step and the median of the per-round ratios fused /
terms. Timings are ratios side by side; no thresholds.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="photos_cnn")
    parser.add_argument("--layer", default="conv2d_4")
    parser.add_argument("--batches", type=int, nargs="+", default=[4, 16])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=30)
    args = parser.parse_args(argv)

    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(2)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    sys.path.insert(0, str(Path(__file__).parent))
    import bench_peers

    from lucid_ifv import objectives as O
    from modelzoo.shipped import load_shipped

    class Terms(bench_peers.Ours):
        """The same sum with every term a plain objective (no `ChannelSum`): term by term."""

        def objective(self):
            fused = super().objective()
            return O.Objective.sum(O.Objective(obj.objective_func) for _, obj in fused.terms)

    model = load_shipped(args.model)
    depth = model.layer(args.layer).depth
    rows = [(p, t, b) for b in args.batches for p in ("pixel", "fourier") for t in ("none", "lucid")]
    setups = {}
    for arm, kind in (("terms", Terms), ("fused", bench_peers.Ours)):
        for p, t, b in rows:
            contender = kind(model, args.layer, bench_peers._channels(b, depth), p, t)
            contender.prepare()
            setups[(arm, p, t, b)] = contender.vis
    times: dict = {}
    for round_ in range(args.rounds):
        for key in (sorted(setups) if round_ % 2 else sorted(setups, reverse=True)):
            vis = setups[key]
            start = time.perf_counter()
            for _ in range(args.steps - 1):
                vis.step()
            float(vis.step())
            times.setdefault(key, []).append((time.perf_counter() - start) / args.steps)
    print("| model, layer | param | transforms | batch | terms ms/step | fused ms/step | fused / terms |")
    print("|---|---|---|---|---|---|---|")
    for p, t, b in rows:
        old, new = np.array(times[("terms", p, t, b)]), np.array(times[("fused", p, t, b)])
        print(f"| {args.model} {args.layer} | {p} | {t} | {b} | {np.median(old) * 1e3:.2f} | "
              f"{np.median(new) * 1e3:.2f} | {np.median(new / old):.3f} |")


if __name__ == "__main__":
    main()
