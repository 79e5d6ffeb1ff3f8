"""A/B timings of the Jacobian's block kinds and of its broadcasting activation gradients.

    OMP_NUM_THREADS=2 OPENBLAS_NUM_THREADS=1 python benchmarks/ab_jacobian.py blocks [--batch 1 4]
    OMP_NUM_THREADS=2 OPENBLAS_NUM_THREADS=1 python benchmarks/ab_jacobian.py lean [--model photos_cnn --layer conv2d_4]
        [--gradients MaxPool LRN] [--batch 4] [--k 64] [--rounds 4]

``blocks``: for each batch, one fresh process per kind (``LUCID_IFV_JACOBIAN=tiled`` /
``pfor``) times `feature_jacobian` at k features on a loaded model: the first call (trace +
first run) and the best of 3 warm calls, then the largest relative difference between the
two kinds' Jacobians. ``lean``: one process, rounds alternating `lean_gradients` and
TensorFlow's own gradients for the op types ``--gradients`` (default: all of them), each arm
on a freshly built model with the cache cleared: warm time ratio lean / own (median of
rounds), the first-call times (the vectorized blocks' trace included) and the largest
relative difference of the two Jacobians. ``--model inceptionv1_224``: the bench's
InceptionV1-shaped graph at 224 px (random weights, `bench_peers.get_model`). Prints a Markdown table; docs/performance.md quotes it.
Timings are ratios side by side; no thresholds.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np


def load(model_name, layer, batch):
    """A freshly built model (never a cached one: a frozen graph keeps the backward function
    built by its first Jacobian), a parametrization and parameter values."""
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(2)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    from lucid_ifv import param as P

    if model_name == "inceptionv1_224":  # the bench's InceptionV1-shaped graph, 224 px
        sys.path.insert(0, str(Path(__file__).parent))
        import bench_peers

        bench_peers._MODELS.clear()
        model = bench_peers.get_model(model_name, bench_peers.Sizes())
    else:
        from modelzoo.shipped import load_shipped

        model = load_shipped(model_name)
    par = P.image_for_model(model, batch=batch, seed=0)
    model(par().numpy(), [layer])  # TensorFlow's first-run costs paid
    return model, par, par.numpy_params()


def timed(fn):
    start = time.perf_counter()
    value = fn()
    return time.perf_counter() - start, value


def one_kind(spec: dict) -> dict:
    """In a fresh process with LUCID_IFV_JACOBIAN set: first and warm `feature_jacobian`."""
    from lucid_ifv import ifv

    model, par, values = load(spec["model"], spec["layer"], spec["batch"])
    run = lambda: ifv.feature_jacobian(model, spec["layer"], values, par, features=range(spec["k"]))  # noqa: E731
    first, (_, jac) = timed(run)
    warm = min(timed(run)[0] for _ in range(3))
    np.save(spec["out"], jac)
    return {"first": first, "warm": warm}


def blocks(args) -> None:
    print(f"{args.model} {args.layer}, k = {args.k}, one fresh process per cell\n")
    print("| batch | tiled: first s | tiled: warm s | pfor: first s | pfor: warm s | warm tiled / pfor | max rel. diff |")
    print("|---|---|---|---|---|---|---|")
    for batch in args.batch:
        cells = {}
        for kind in ("tiled", "pfor"):
            out = Path(f"/tmp/ab_jacobian_{os.getpid()}_{kind}.npy")
            spec = dict(model=args.model, layer=args.layer, batch=batch, k=args.k, out=str(out))
            env = {**os.environ, "LUCID_IFV_JACOBIAN": kind, "TF_CPP_MIN_LOG_LEVEL": "2"}
            proc = subprocess.run([sys.executable, __file__, "worker", json.dumps(spec)], env=env,
                                  capture_output=True, text=True, check=True)
            cells[kind] = json.loads(proc.stdout.strip().splitlines()[-1])
            cells[kind]["jac"] = np.load(out)
            out.unlink()
        t, p = cells["tiled"], cells["pfor"]
        diff = np.abs(t["jac"] - p["jac"]).max() / np.abs(p["jac"]).max()
        print(f"| {batch} | {t['first']:.2f} | {t['warm']:.2f} | {p['first']:.2f} | {p['warm']:.2f} | "
              f"{t['warm'] / p['warm']:.2f} | {diff:.1e} |")


def lean(args) -> None:
    """Rounds alternating two arms, each on a freshly built model: all of
    `lean_gradients.LEAN_GRADIENTS` ("lean") against the same without the op types
    ``args.gradients`` (TensorFlow's own gradients for those: "own")."""
    from lucid_ifv import ifv
    from lucid_ifv.ifv import lean_gradients

    os.environ["LUCID_IFV_JACOBIAN"] = "pfor"  # the vectorized blocks are what the lean gradients serve
    every = lean_gradients.LEAN_GRADIENTS
    compared = args.gradients or sorted(every)
    arms = {True: every, False: {name: fn for name, fn in every.items() if name not in compared}}
    firsts, warms, jacobians = {True: [], False: []}, {True: [], False: []}, {}
    for round_ in range(args.rounds):
        for use in ((False, True) if round_ % 2 == 0 else (True, False)):
            lean_gradients.LEAN_GRADIENTS = arms[use]
            ifv.clear_cache()
            model, par, values = load(args.model, args.layer, args.batch[0])
            run = lambda: ifv.feature_jacobian(model, args.layer, values, par, features=range(args.k))  # noqa: E731
            first, (_, jacobians[use]) = timed(run)
            firsts[use].append(first)
            warms[use].append(min(timed(run)[0] for _ in range(3)))
    lean_gradients.LEAN_GRADIENTS = every
    ratio = np.median(np.array(warms[True]) / np.array(warms[False]))
    diff = np.abs(jacobians[True] - jacobians[False]).max() / np.abs(jacobians[False]).max()
    print(f"| {args.model} {args.layer}, batch {args.batch[0]}, k = {args.k} | {', '.join(compared)} | {ratio:.2f} | "
          f"{np.median(firsts[True]):.2f} | {np.median(firsts[False]):.2f} | {diff:.1e} | {args.rounds} |")


def main(argv=None) -> None:
    if argv is None and len(sys.argv) > 2 and sys.argv[1] == "worker":
        print(json.dumps(one_kind(json.loads(sys.argv[2]))))
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=["blocks", "lean"])
    parser.add_argument("--model", default="inception_small")
    parser.add_argument("--layer", default="mixed4a")
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--k", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--gradients", nargs="+", default=None,
                        help="lean: the op types compared (default: every one of LEAN_GRADIENTS)")
    args = parser.parse_args(argv)
    if args.what == "blocks":
        blocks(args)
    else:
        print("| model, layer | lean gradients compared | warm lean / own (median of rounds) | first call s, lean | "
              "first call s, own | max rel. diff | rounds |")
        print("|---|---|---|---|---|---|---|")
        lean(args)


if __name__ == "__main__":
    main()
