"""Cold start of the feature Jacobian: trace and run cost against the block size (chunk).

    OPENBLAS_NUM_THREADS=1 python benchmarks/bench_jacobian_cold.py [--layers mixed3b mixed4a]
        [--chunks 16 32 64 128 all] [--batch 4] [--threads 2] [--legacy]

For every layer and chunk, in one process (side by side, after a warm-up that pays TF's
one-off costs), on the shipped ``inception_small``:

- ``trace``: building the compiled function (``get_concrete_function``: Python tracing,
  the pfor conversion of the backward graph);
- ``first``: its first run (graph optimization and instantiation, then the run);
- ``warm``: the best of two more runs;
- CPU seconds of the process beside each (``time.process_time``; on a loaded machine the
  wall time is inflated by waiting, the CPU time much less);
- ``peak``: the growth of the process's peak RSS during that case (VmHWM, reset before
  each case through /proc/self/clear_refs) over the RSS before it.

``auto`` is the default block size (`default_chunk`, its estimate included in ``trace``).
``--legacy`` adds the former implementation (one ``batch_jacobian`` per chunk, unrolled in
one ``tf.function``: ``ceil(k / chunk)`` pfor conversions). Prints one line per case and a
Markdown table at the end (docs/performance.md).
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np
import tensorflow as tf

from lucid_ifv import objectives as obj
from lucid_ifv import param as P
from lucid_ifv.ifv import jacobian as J


def status(field: str) -> float:
    """A /proc/self/status field in MB."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")


def reset_peak() -> None:
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
    except OSError:
        pass


def legacy_fn(model, layer, par, chunk, k):
    """The former implementation: one batch_jacobian per chunk, unrolled."""

    @tf.function(reduce_retracing=True)
    def fn(z):
        with tf.GradientTape(persistent=True) as tape:
            tape.watch(z)
            f = obj.feature_response(model(par.forward(J._unflatten(z, par)), [layer])[layer])
            pieces = [f[:, i: i + chunk] for i in range(0, k, chunk)]
        blocks = [tape.batch_jacobian(p, z, experimental_use_pfor=True) for p in pieces]
        return f, tf.concat(blocks, axis=1)

    return fn


def case(model, layer, par, params, chunk, legacy):
    k = model.layer(layer).depth
    J.clear_cache()
    z = tf.constant(J._flatten(params, par.batch))
    reset_peak()
    rss0 = status("VmRSS")
    t0, c0 = time.perf_counter(), time.process_time()
    if chunk == "auto":  # the default; its estimate (a trace of the forward) counts as trace time
        c = J.default_chunk(k, par.batch, z.shape[1], J.activation_elements(model, layer, par))
    else:
        c = k if chunk == "all" else int(chunk)
    if legacy:
        fn = legacy_fn(model, layer, par, c, k)
        fn.get_concrete_function(tf.TensorSpec(z.shape, tf.float32))
        run = lambda: fn(z)[1].numpy()
    else:
        fn = J._jacobian_fn(model, layer, par, None, min(c, k), z.shape[1])
        fn.get_concrete_function()
        run = lambda: J.feature_jacobian(model, layer, params, par, chunk=c)[1]
    t1, c1 = time.perf_counter(), time.process_time()
    jac = run()
    t2, c2 = time.perf_counter(), time.process_time()
    warm, warm_cpu = [], []
    for _ in range(2):
        s, cs = time.perf_counter(), time.process_time()
        run()
        warm.append(time.perf_counter() - s)
        warm_cpu.append(time.process_time() - cs)
    peak = status("VmHWM") - rss0
    return dict(layer=layer, k=k, impl="legacy" if legacy else "new", chunk=chunk if chunk != "auto" else f"auto={c}",
                blocks=-(-k // c),
                trace=t1 - t0, first=t2 - t1, warm=min(warm), trace_cpu=c1 - c0, first_cpu=c2 - c1,
                warm_cpu=min(warm_cpu), peak=peak, load=os.getloadavg()[0]), jac


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--layers", nargs="+", default=["mixed3b", "mixed4a"])
    parser.add_argument("--chunks", nargs="+", default=["16", "32", "64", "128", "all", "auto"],
                        help="rows per block; 'all': one block; 'auto': the default (`default_chunk`)")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--threads", type=int, default=2, help="TF intra- and inter-op threads")
    parser.add_argument("--legacy", action="store_true", help="also time the former unrolled implementation")
    args = parser.parse_args()
    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    from modelzoo.shipped import load_shipped

    model = load_shipped("inception_small")
    par = P.image_for_model(model, batch=args.batch, seed=0)
    params = par.numpy_params()
    J.feature_jacobian(model, "mixed3a", params, par, features=[0, 1], chunk=2)  # warm-up: TF's one-off costs
    J.activation_elements(model, "mixed3a", par)
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, TF {tf.__version__}, "
          f"threads intra/inter {args.threads}, OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS')}, "
          f"batch {args.batch}", flush=True)
    rows = []
    for layer in args.layers:
        est = J.activation_elements(model, layer, par)
        dim = J._flatten(params, par.batch).shape[1]
        auto = J.default_chunk(model.layer(layer).depth, args.batch, dim, est)
        print(f"# {layer}: estimated {est} activation elements per sample, D = {dim}, default chunk {auto}",
              flush=True)
        reference = None
        for chunk in args.chunks:
            for legacy in ([False, True] if args.legacy and chunk != "auto" else [False]):
                row, jac = case(model, layer, par, params, chunk, legacy)
                if reference is None:
                    reference = jac
                row["max_diff"] = float(np.abs(jac - reference).max())
                rows.append(row)
                print(" ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()),
                      flush=True)
    print("\n| layer (k) | impl | chunk | blocks | trace s (CPU s) | first run s (CPU s) | trace + first s (CPU s) "
          "| warm s (CPU s) | peak RSS MB | load |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['layer']} ({r['k']}) | {r['impl']} | {r['chunk']} | {r['blocks']} | {r['trace']:.2f} ({r['trace_cpu']:.1f}) | "
              f"{r['first']:.2f} ({r['first_cpu']:.1f}) | {r['trace'] + r['first']:.2f} ({r['trace_cpu'] + r['first_cpu']:.1f}) | "
              f"{r['warm']:.2f} ({r['warm_cpu']:.1f}) | {r['peak']:.0f} | {r['load']:.1f} |")


if __name__ == "__main__":
    main()
