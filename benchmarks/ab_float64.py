"""A/B timing of the float64 mode (`lucid_ifv.precision`) against float32, side by side.

    OMP_NUM_THREADS=2 OPENBLAS_NUM_THREADS=1 python benchmarks/ab_float64.py [--rounds 5] [--steps 20]

For each (model, layer, parametrization): the experiment runner's objective on the smooth
surrogate (`experiment.prepare_network`: relative prior 1e-4, the smoothed aggregation, one
Hoyer target), batch 1, and
- "L-BFGS step": `render_vis`'s compiled loss-and-gradient (`_CompiledRender.loss_and_grad`,
  what each L-BFGS evaluation runs), ``--steps`` calls with a host read each;
- "Jacobian": `ifv.feature_jacobian` of the layer's features (all of them, one call, the
  vectorized blocks: `jacobian.fixed_blocks("pfor")`, traced before timing),
on the float32 network and parametrization and on their float64 copies. Rounds alternate
the order; prints the median ms of each arm and the median of the per-round ratios float64 /
float32, with the load average. Timings are ratios side by side; no thresholds.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

CASES = (("inception_small", "mixed4a", "fft"), ("inception_small", "mixed3a", "pixel"),
         ("photos_cnn", "conv2d_3", "fft"), ("mnist_small", "conv2", "fft"))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args(argv)

    import tensorflow as tf

    tf.get_logger().setLevel("ERROR")  # the retracing notes of the many compiled functions built here
    tf.config.threading.set_intra_op_parallelism_threads(2)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    from lucid_ifv import experiment as ex
    from lucid_ifv import ifv, sampling
    from lucid_ifv.ifv.jacobian import fixed_blocks
    from lucid_ifv.precision import Float64Param, float64_model
    from lucid_ifv.render import VisSetup
    from modelzoo import load_any

    print(f"load average at the start: {os.getloadavg()[0]:.2f}")
    print("| model, layer, parametrization | L-BFGS step, ms: float32 / float64 | ratio | Jacobian, ms: float32 / float64 "
          "| ratio |")
    print("|---|---|---|---|---|")
    for name, layer, kind in CASES:
        model = load_any(name)
        setup = ex.prepare_network(model, layer, "max_pool_mean", 1e-4, smooth=True)
        config = ex.ExperimentConfig(layer=layer, fft=kind == "fft", decorrelate=kind == "fft")
        targets = sampling.sample_hoyer_targets(model.layer(layer).depth, 1, 0)[0]
        objective = ex.fv_objective(config, setup, targets)
        arms = {}
        for dtype in ("float32", "float64"):
            param = ex.realization_param(setup.model, config, 1, 0)
            net = setup.model
            if dtype == "float64":
                param, net = Float64Param(param), float64_model(setup.model)
            vis = VisSetup(net, objective, param, transforms=[], relu_gradient_override=False)
            loss_and_grad = vis.compiled.loss_and_grad()
            flat = tf.constant(np.concatenate([v.numpy().ravel() for v in param.variables]))
            loss_and_grad(flat)  # trace

            def step(fn=loss_and_grad, flat=flat):
                for _ in range(args.steps):
                    float(fn(flat)[0])

            def jacobian(net=net, param=param):
                with fixed_blocks("pfor"):
                    ifv.feature_jacobian(net, layer, param.numpy_params(), param, setup.aggregation)

            jacobian()  # trace
            arms[dtype] = (step, jacobian)
        times = {key: [] for key in ("step32", "step64", "jac32", "jac64")}
        for r in range(args.rounds):
            for dtype in (("float32", "float64") if r % 2 == 0 else ("float64", "float32")):
                for what, fn in zip(("step", "jac"), arms[dtype]):
                    start = time.perf_counter()
                    fn()
                    times[f"{what}{dtype[-2:]}"].append(time.perf_counter() - start)
        t = {key: np.asarray(v) for key, v in times.items()}
        step_ms = [1e3 * np.median(t[k]) / args.steps for k in ("step32", "step64")]
        jac_ms = [1e3 * np.median(t[k]) for k in ("jac32", "jac64")]
        print(f"| {name} {layer}, {kind} | {step_ms[0]:.1f} / {step_ms[1]:.1f} | {np.median(t['step64'] / t['step32']):.2f} "
              f"| {jac_ms[0]:.0f} / {jac_ms[1]:.0f} | {np.median(t['jac64'] / t['jac32']):.2f} |", flush=True)
    print(f"load average at the end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
