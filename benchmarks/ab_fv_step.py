"""A/B timing of the render step's gradient overrides (`render.STEP_GRADIENTS`).

    OMP_NUM_THREADS=2 OPENBLAS_NUM_THREADS=1 python benchmarks/ab_fv_step.py [--model photos_cnn
        --layer conv2d_4] [--batches 1 4 16] [--rounds 5] [--steps 30] [--min-batch N]

For every batch size, pixel and Fourier parametrization (decorrelated colour), without and
with Lucid's standard transforms: `render_vis`'s compiled Adam step (`VisSetup.step`, as
`make bench` times it: one channel objective per image, no ReLU-gradient redirection) traced
with TensorFlow's own gradients ("own", `STEP_GRADIENTS` emptied) and with
`render.STEP_GRADIENTS` ("ours"), each arm on a freshly loaded model. Rounds alternate the
order; each timed run is ``--steps`` steps with one host read at the end. ``--min-batch``
sets `render.STEP_MIN_BATCH` for the run (default: the library's; below it both arms trace
the same graph, a control of the measurement's noise; ``--min-batch 1`` times the overrides
at every batch). Prints a Markdown
table of the median ms per step and the median of the per-round ratios ours / own.
Timings are ratios side by side; no thresholds.
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
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--min-batch", type=int, default=None)
    args = parser.parse_args(argv)

    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(2)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    sys.path.insert(0, str(Path(__file__).parent))
    import bench_peers

    from lucid_ifv import render
    from modelzoo.shipped import load_shipped

    ours = render.STEP_GRADIENTS
    if args.min_batch is not None:
        render.STEP_MIN_BATCH = args.min_batch
    rows = [(p, t, b) for b in args.batches for p in ("pixel", "fourier") for t in ("none", "lucid")]
    setups = {}
    try:
        for arm in ("own", "ours"):
            render.STEP_GRADIENTS = ours if arm == "ours" else {}
            model = load_shipped(args.model)
            depth = model.layer(args.layer).depth
            for p, t, b in rows:
                contender = bench_peers.Ours(model, args.layer, bench_peers._channels(b, depth), p, t)
                contender.prepare()  # traced here, under this arm's gradients
                setups[(arm, p, t, b)] = contender.vis
    finally:
        render.STEP_GRADIENTS = ours
    times: dict = {}
    for round_ in range(args.rounds):
        for key in (sorted(setups) if round_ % 2 else sorted(setups, reverse=True)):
            vis = setups[key]
            start = time.perf_counter()
            for _ in range(args.steps - 1):
                vis.step()
            float(vis.step())
            times.setdefault(key, []).append((time.perf_counter() - start) / args.steps)
    print("| model, layer | param | transforms | batch | own ms/step | ours ms/step | ours / own |")
    print("|---|---|---|---|---|---|---|")
    for p, t, b in rows:
        own, new = np.array(times[("own", p, t, b)]), np.array(times[("ours", p, t, b)])
        print(f"| {args.model} {args.layer} | {p} | {t} | {b} | {np.median(own) * 1e3:.2f} | "
              f"{np.median(new) * 1e3:.2f} | {np.median(new / own):.3f} |")


if __name__ == "__main__":
    main()
