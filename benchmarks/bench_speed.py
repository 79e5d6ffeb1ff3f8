"""Speed ratios measured side by side in one run (timings on shared CPUs are noisy;
ratios are what we report).

    python benchmarks/bench_speed.py [--repeats 5]

1. Feature Jacobian: `ifv.feature_jacobian` (one compiled, vectorized batch_jacobian) vs a
   Python loop of one gradient per feature (the naive way), same model, same batch.
2. Render step: `render_vis`'s compiled Adam step vs the same step run eagerly.
3. Repeated `render_vis` calls (a fresh parametrization, the same objective, 10 Adam steps):
   a call that compiles its step (cache cleared) vs a call that reuses the cached one
   (`render._render_key`).
Model: the shipped `inception_small` if present, else a small Keras conv net.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import tensorflow as tf

from lucid_ifv import ifv, objectives as obj, param


def model_and_layer():
    try:
        from modelzoo.shipped import load_shipped, SHIPPED

        return load_shipped("inception_small"), next(iter(SHIPPED["inception_small"].studied_layers))
    except Exception:  # the benchmark still runs without shipped models
        from lucid_ifv.model import KerasModel

        inp = tf.keras.Input((32, 32, 3))
        x = tf.keras.layers.Conv2D(32, 3, activation="relu", name="conv1")(inp)
        x = tf.keras.layers.Conv2D(64, 3, activation="relu", name="conv2")(x)
        return KerasModel(tf.keras.Model(inp, x)), "conv2"


def best_of(fn, repeats):
    fn()  # warm-up (tracing)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch", type=int, default=4)
    args = parser.parse_args()
    model, layer = model_and_layer()
    par = param.image_for_model(model, batch=args.batch, seed=0)
    params = [v.numpy() for v in par.variables]
    k = model.layer(layer).depth

    def batched():
        ifv.feature_jacobian(model, layer, params, par)

    z = tf.constant(params[0])

    def loop():
        rows = []
        for i in range(k):
            with tf.GradientTape() as tape:
                tape.watch(z)
                fi = tf.reduce_sum(obj.feature_response(model(par([z]), [layer])[layer])[:, i])
            rows.append(tape.gradient(fi, z))
        return rows

    t_batched = best_of(batched, args.repeats)
    t_loop = best_of(loop, max(1, args.repeats // 2))
    print(f"model {model.name}, layer {layer} ({k} features), batch {args.batch}")
    print(f"Jacobian: per-feature loop / batched = {t_loop / t_batched:.1f}x "
          f"(batched {t_batched * 1e3:.0f} ms, loop {t_loop * 1e3:.0f} ms in this run)")

    objective = obj.feature_objective(layer, np.ones(k) / np.sqrt(k))
    variables = par.variables
    opt = tf.keras.optimizers.Adam(0.05)
    opt.build(variables)

    def step():
        with tf.GradientTape() as tape:
            x = par()
            loss = -objective(lambda name: x if name == "input" else model(x, [layer])[layer])
        opt.apply_gradients(zip(tape.gradient(loss, variables), variables))

    compiled = tf.function(step)
    n = 20
    t_eager = best_of(lambda: [step() for _ in range(n)], max(1, args.repeats // 2))
    t_compiled = best_of(lambda: [compiled() for _ in range(n)], args.repeats)
    print(f"Adam step: eager / compiled = {t_eager / t_compiled:.1f}x")

    from lucid_ifv import render

    def short_render():
        render.render_vis(model, f"{layer}:0", param.image_for_model(model, batch=1, seed=0), transforms=[],
                          thresholds=(10,), progress=False)

    def cold_render():
        render._RENDERS.clear()
        short_render()

    t_cold = best_of(cold_render, max(1, args.repeats // 2))
    t_warm = best_of(short_render, args.repeats)
    print(f"render_vis, 10 steps: compiling / cached = {t_cold / t_warm:.1f}x "
          f"(compiling {t_cold * 1e3:.0f} ms, cached {t_warm * 1e3:.0f} ms in this run)")


if __name__ == "__main__":
    main()
