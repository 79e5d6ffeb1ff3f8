"""Experiment throughput on Dask with 1 and 2 workers, a cost model checked against it, and the
predicted wall time of the paper's GN4c setting on 1, 8 and 64 workers.

    python experiments/dask_throughput.py --out docs/results/dask [--n 8]

1. The same experiment (mnist_small conv2, smooth, pixel, ``--n`` Hoyer targets, batch size 1)
   runs serially (one process, ``LUCID_IFV_THREADS=2``) and with ``--workers 1`` and ``2``
   (each worker gets ``2 // workers`` threads), each in a fresh process; wall times recorded.
2. Cost model: ``T(w) = S + ceil(n / w) * c_w``, with ``c_w`` the per-batch cost on a worker
   that has ``2 // w`` threads (from the serial run's records for w = 1 and from the 2-worker
   run's records for w = 2) and ``S`` the start-up (cluster, TensorFlow import, model load and
   first trace on each worker), fitted from the 1-worker run; the 2-worker wall time is then
   predicted and compared with the measurement.
3. GN4c (Sec. 3.6: InceptionV1 mixed4c, 3000 Adam + 500 L-BFGS steps, 150 + 150 targets):
   the per-realization cost is measured on an InceptionV1-structured graph at full width and
   224 px with random weights (`tests/fake_inception.py`; the real weights are not reachable
   here): seconds per Adam step at batch 1 and one feature Jacobian of mixed4c (k = 512), then
   ``T(w) = S + ceil(300 / w) * c`` for w = 1, 8, 64 workers of this machine's per-core speed.
Writes ``results.json`` and ``results.md`` in ``--out``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BASE = ["experiment", "--model", "mnist_small", "--layer", "conv2", "--param", "pixel", "--no-decorrelate",
        "--batch-size", "1", "--adam", "200", "--lbfgs", "0", "--smooth", "--converge", "1e-3", "--max-lbfgs", "300",
        "--float32"]  # as measured (before smooth mode's float64 stage became the default)
SECONDS = ("seconds_fv", "seconds_jacobian", "seconds_solve")


def run_cli(args, threads=None):
    """Wall time of one ``lucid-ifv`` run in a fresh process, and its records."""
    env = {k: v for k, v in os.environ.items() if k != "LUCID_IFV_THREADS"}
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    if threads:
        env["LUCID_IFV_THREADS"] = str(threads)
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "lucid_ifv.cli", *args], capture_output=True, text=True, env=env)
    wall = time.perf_counter() - started
    if done.returncode:
        raise SystemExit(f"lucid-ifv {' '.join(args)} failed: {done.stderr[-1000:]}")
    out = Path(args[args.index("--out") + 1])
    records = [json.loads(line) for line in (out / "records.jsonl").read_text().splitlines()]
    return wall, records


def per_batch(records) -> float:
    """Mean compute seconds of one batch (batch size 1: one realization), from the records."""
    return sum(sum(r[k] for k in SECONDS) for r in records) / len(records)


def gn4c_cost(steps_adam=3000, steps_lbfgs=500, repeats=5) -> dict:
    """Per-realization cost of GN4c on a full-width InceptionV1-structured graph at 224 px."""
    sys.path.insert(0, str(ROOT / "tests"))
    import fake_inception
    import numpy as np

    from lucid_ifv import ifv, objectives as obj, param
    from lucid_ifv.render import VisSetup
    from modelzoo import lucid_format
    from modelzoo.graph import load_model

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "inception.pb"
        lucid_format.write_graph_def(fake_inception.build_graph_def(divisor=1, size=224), path)
        model = load_model(path, input_name="input", image_shape=(224, 224, 3), image_value_range=(-117, 138),
                           layers=["mixed4c"], progress=False)
        k = model.layer("mixed4c").depth
        target = np.random.default_rng(0).random((1, k))
        vis = VisSetup(model, obj.feature_objective("mixed4c", target, 1), param.image(224, seed=0), transforms=[],
                       relu_gradient_override=False)
        vis.step()  # trace
        started = time.perf_counter()
        for _ in range(repeats):
            vis.step()
        step = (time.perf_counter() - started) / repeats
        ifv.feature_jacobian(model, "mixed4c", vis.param.numpy_params(), vis.param)  # trace
        started = time.perf_counter()
        ifv.feature_jacobian(model, "mixed4c", vis.param.numpy_params(), vis.param)
        jacobian = time.perf_counter() - started
    # an L-BFGS iteration costs about one Adam step (one loss and gradient, plus line-search extras)
    return {"k": k, "seconds_per_step": step, "seconds_jacobian": jacobian,
            "seconds_per_realization": (steps_adam + steps_lbfgs) * step + jacobian}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True)
    parser.add_argument("--n", type=int, default=8, help="Hoyer targets per run (default 8)")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    load = os.getloadavg()
    runs = {}
    with tempfile.TemporaryDirectory() as folder:
        common = [*BASE, "--n-hoyer", str(args.n)]
        runs["serial"] = run_cli([*common, "--out", f"{folder}/serial"], threads=2)
        runs["workers_1"] = run_cli([*common, "--workers", "1", "--out", f"{folder}/w1"])
        runs["workers_2"] = run_cli([*common, "--workers", "2", "--out", f"{folder}/w2"])
    wall = {name: run[0] for name, run in runs.items()}
    c1 = per_batch(runs["serial"][1])  # 2 threads per batch
    c2 = per_batch(runs["workers_2"][1])  # 1 thread per batch
    startup = wall["workers_1"] - args.n * c1
    predicted_2 = startup + math.ceil(args.n / 2) * c2
    gn4c = gn4c_cost()
    predictions = {w: startup + math.ceil(300 / w) * gn4c["seconds_per_realization"] for w in (1, 8, 64)}
    result = {"n": args.n, "load_before": load, "load_after": os.getloadavg(), "wall": wall,
              "per_batch_2_threads": c1, "per_batch_1_thread": c2, "startup": startup,
              "predicted_workers_2": predicted_2, "gn4c": gn4c, "gn4c_predicted_wall": predictions,
              "command": "python experiments/dask_throughput.py " + " ".join(argv or sys.argv[1:])}
    (out / "results.json").write_text(json.dumps(result, indent=1))
    hours = {w: t / 3600 for w, t in predictions.items()}
    text = f"""Command: `{result['command']}` (load average before {load[0]:.1f}, after {result['load_after'][0]:.1f})

| run ({args.n} realizations of mnist_small conv2) | wall time (s) | throughput (realizations/min) |
|---|---|---|
| serial, 2 threads | {wall['serial']:.1f} | {60 * args.n / wall['serial']:.2f} |
| Dask, 1 worker (2 threads) | {wall['workers_1']:.1f} | {60 * args.n / wall['workers_1']:.2f} |
| Dask, 2 workers (1 thread each) | {wall['workers_2']:.1f} | {60 * args.n / wall['workers_2']:.2f} |

Cost model `T(w) = S + ceil(n / w) c_w`: c (2 threads) = {c1:.2f} s, c (1 thread) = {c2:.2f} s per
realization (from the records); S = {startup:.1f} s fitted on the 1-worker run. Predicted 2-worker wall
time {predicted_2:.1f} s, measured {wall['workers_2']:.1f} s.

GN4c on an InceptionV1-structured graph (224 px, full width, random weights; k = {gn4c['k']}):
{gn4c['seconds_per_step']:.3f} s per optimization step, {gn4c['seconds_jacobian']:.1f} s per Jacobian, so
{gn4c['seconds_per_realization'] / 60:.1f} min per realization (3000 + 500 steps). Predicted wall time of
the 300 realizations: {hours[1]:.1f} h on 1 worker, {hours[8]:.1f} h on 8, {hours[64]:.2f} h on 64 (workers of
this machine's speed, one realization per task).
"""
    (out / "results.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
