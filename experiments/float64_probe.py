"""Is the tail on weakly live features float32's floor? Continue saved realizations in float64.

For each sample of a smooth `lucid-ifv experiment` folder (frozen-graph models: the smooth
surrogate's GraphDef is re-typed to float64), start from the saved parameters and run SciPy's
L-BFGS on the run's own objective (`feature_objective(layer, t, p) - w params_L2`, the run's
aggregation and absolute prior weight), with loss and gradient in float64, until the relative
stationarity residual (`render.stationarity_residual`'s rule) is below ``--tol`` or
``--max-steps``; then take the feature Jacobian in float64 and solve with the library's
default (anchored) solve. Prints, per sample, the float32 run's angle on live features (from
its saved Gram statistics) beside the float64 one; ``--save`` keeps the float64 Gram statistics.
EVALUATION ONLY (it uses the true targets to score). The library path is `lucid_ifv.precision`
(`lucid-ifv experiment --float64-converge TOL`); this probe, written first, produced the
table of docs/results.md "Is the tail float32's floor?" and is kept as it ran.

    python experiments/float64_probe.py runs/inception_small_mixed3a_pixel_smooth_each --save f64/NAME.npz
    python experiments/float64_probe.py --table f64/*.npz --runs runs   # pooled over seeds: NAME_seed1 joins NAME
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


class Float64Network:
    """``images [B, H, W, C]`` float64 in [0, 1] -> the layer's activations, float64."""

    def __init__(self, graph_model, layer: str):
        import tensorflow as tf

        from lucid_ifv.precision import float64_graph_def
        from modelzoo.graph import SCOPE

        graph_def = float64_graph_def(graph_model.graph_def)
        lo, hi = graph_model.image_value_range
        name = graph_model.input_name

        def imported(images):
            tf.compat.v1.import_graph_def(graph_def, input_map={f"{name}:0": lo + images * (hi - lo)}, name=SCOPE)

        spec = tf.TensorSpec((None, *graph_model.image_shape), tf.float64)
        wrapped = tf.compat.v1.wrap_function(imported, [spec])
        tensor = layer if ":" in layer else f"{layer}:0"
        self.function = wrapped.prune(wrapped.inputs[0], [wrapped.graph.get_tensor_by_name(f"{SCOPE}/{tensor}")])

    def __call__(self, images):
        return self.function(images)[0]


COLUMNS = ("live, float32", "live, float64", "float64 on float32's live features", "overall, float32",
           "overall, float64", "dead, float32", "dead, float64")


def compare(float32, i: int, float64, j: int, target, p) -> tuple:
    """Sample ``i`` of the float32 solve against sample ``j`` of the float64 one: the `COLUMNS`
    (angles in degrees on live features, each solve's own; the float64 answer on the float32
    solve's live features; overall angles; dead counts)."""
    from lucid_ifv import experiment as ex

    def angle(a, b):  # NaN where the target has no mass on the features compared
        value = ex._angle_or_none(a, b, p)
        return np.nan if value is None else value

    live32 = ~float32.dead_features[i]
    return (angle(float32.target[i], target * live32), angle(float64.target[j], target * ~float64.dead_features[j]),
            angle(float64.target[j] * live32, target * live32), angle(float32.target[i], target),
            angle(float64.target[j], target), int(float32.dead_features[i].sum()), int(float64.dead_features[j].sum()))


def summary(x) -> str:
    """``"median, p90 P90"`` of the finite values of ``x``."""
    x = np.asarray(x, np.float64)
    x = x[np.isfinite(x)]
    return f"{np.median(x):.2f}, p90 {np.percentile(x, 90):.2f}" if x.size else "-"


def meets(x) -> str:
    """Issue 8's bounds on the finite values of ``x``: median <= 1 and p90 <= 5 deg."""
    x = np.asarray(x, np.float64)
    x = x[np.isfinite(x)]
    return "met" if x.size and np.median(x) <= 1 and np.percentile(x, 90) <= 5 else "missed"


def float32_solve(run: Path):
    """The run's own (float32) realizations solved by the default anchored solve, and its ``p``."""
    from lucid_ifv import experiment as ex
    from lucid_ifv import ifv

    p = ex.load_settings(run)["config"]["cossim_pow"]
    data = ex.load_realizations(run)
    return ifv.solve_gram(data["response"], ifv.GramStatistics(data["jjt"], data["jg"], data["gg"]), p,
                          method="anchored"), data, p


def probe(args) -> int:
    import scipy.optimize
    import tensorflow as tf

    from lucid_ifv import experiment as ex
    from lucid_ifv import ifv, objectives
    from modelzoo import load_any

    settings = ex.load_settings(args.run)
    config = settings["config"]
    float32, data, p = float32_solve(args.run)
    model = load_any(args.model or settings["model"])
    if not hasattr(model, "graph_def"):
        raise SystemExit(f"model {settings['model']!r} is not a frozen graph; this probe re-types GraphDefs only")
    setup = ex.prepare_network(model, config["layer"], config["aggregation"], config["prior_weight"],
                               prior_relative=config["prior_relative"], smooth=config["smooth"],
                               relu_beta=config["relu_beta"], pool_temperature=config["pool_temperature"])
    net = Float64Network(setup.model, config["layer"])
    params_all = data["param_0"].astype(np.float64)
    param = ex.realization_param(model, ex.ExperimentConfig(**config), 1, 0)  # its map, in float64 here
    weight = setup.prior_weight

    def response(z):
        return setup.aggregation(net(param.forward([z])))

    @tf.function(reduce_retracing=True)
    def loss_and_grads(z, t):
        with tf.GradientTape(persistent=True) as tape:
            tape.watch(z)
            feature_term = tf.reduce_sum(objectives.significance(response(z), t[None], p))
            prior_term = weight * tf.reduce_sum(z * z)
            loss = prior_term - feature_term
        return loss, tape.gradient(loss, z), tape.gradient(feature_term, z), tape.gradient(prior_term, z)

    @tf.function(reduce_retracing=True)
    def jacobian(z):
        with tf.GradientTape() as tape:
            tape.watch(z)
            f = response(z)[0]
        return f, tape.jacobian(f, z)

    samples = args.samples if args.samples else list(range(len(params_all)))
    print(f"# {args.run.name}: prior weight {weight:.3g} (absolute), tol {args.tol:g}, cap {args.max_steps}")
    print("| sample | float32: residual, live angle, dead | float64: residual, steps, live angle, dead "
          "| float64 on float32's live features | overall angle, float32, float64 | seconds |")
    print("|---|---|---|---|---|---|")
    rows, saved = [], {key: [] for key in ("indices", "targets", "response", "jjt", "jg", "gg", "residual", "params")}
    for i in samples:
        start = time.perf_counter()
        t = tf.constant(data["targets"][i], tf.float64)
        z_shape = params_all[i : i + 1].shape

        def fun(x):
            loss, grad, _, _ = loss_and_grads(tf.constant(x.reshape(z_shape)), t)
            return float(loss), grad.numpy().ravel()

        def residual(x):
            _, grad, g_f, g_p = loss_and_grads(tf.constant(x.reshape(z_shape)), t)
            return float(tf.norm(grad) / tf.maximum(tf.norm(g_f), tf.norm(g_p)))

        x = params_all[i].ravel().copy()
        r0 = r1 = residual(x)
        steps = 0
        while r1 > args.tol and steps < args.max_steps:
            res = scipy.optimize.minimize(fun, x, jac=True, method="L-BFGS-B",
                                          options=dict(maxiter=min(500, args.max_steps - steps), maxcor=20,
                                                       ftol=0.0, gtol=0.0, maxls=40))
            steps += res.nit
            stalled = res.nit == 0 or np.array_equal(res.x, x)
            x, r1 = res.x, residual(res.x)
            if stalled:
                break
        f, jac = jacobian(tf.constant(x.reshape(z_shape)))
        stats = ifv.gram_statistics(jac.numpy().reshape(len(f), -1)[None], (2 * x)[None, None])
        result = ifv.solve_gram(f.numpy()[None], stats, p, method="anchored")
        for key, value in (("indices", i), ("targets", data["targets"][i]), ("response", f.numpy()),
                           ("jjt", stats.jjt[0]), ("jg", stats.jg[0]), ("gg", stats.gg[0]), ("residual", r1),
                           ("params", x.reshape(z_shape[1:]))):
            saved[key].append(value)
        row = compare(float32, i, result, 0, data["targets"][i], p)
        rows.append(row)
        a32, a64, same, o32, o64, d32, d64 = row
        print(f"| {i} | {r0:.1e}, {a32:.2f}, {d32} | {r1:.1e}, {steps}, {a64:.2f}, {d64} | {same:.2f} | "  # nan: no target mass there
              f"{o32:.2f}, {o64:.2f} | {time.perf_counter() - start:.0f} |", flush=True)
    if args.save:
        np.savez(args.save, **{key: np.asarray(value) for key, value in saved.items()})
    a = np.asarray(rows, np.float64)
    for j, what in enumerate(COLUMNS[:5]):
        print(f"{what}: median {summary(a[:, j])} (n = {np.isfinite(a[:, j]).sum()})")
    print(f"dead features, median (max): float32 {np.median(a[:, 5]):.0f} ({a[:, 5].max():.0f}), "
          f"float64 {np.median(a[:, 6]):.0f} ({a[:, 6].max():.0f})")
    return 0


def table(files, runs: Path) -> int:
    """One row per setting from saved probes (``NAME.npz`` of run ``runs/NAME``; ``NAME_seed1``
    pooled with ``NAME``): median and p90 of each angle column (over the samples where it is
    defined), median dead counts, the feature-response baseline, and whether median <= 1 and p90 <= 5 deg on live features
    (issue 8's bounds) in float32 and float64."""
    from lucid_ifv import ifv, metrics

    pooled: dict[str, list] = {}
    for file in sorted(files):
        name = Path(file).stem
        float32, _, p = float32_solve(runs / name)
        saved = np.load(file)
        float64 = ifv.solve_gram(saved["response"], ifv.GramStatistics(saved["jjt"], saved["jg"], saved["gg"]), p,
                                 method="anchored")
        rows = [compare(float32, int(i), float64, j, saved["targets"][j], p)
                + (metrics.objective_angle_deg(saved["response"][j], saved["targets"][j], p),)
                for j, i in enumerate(saved["indices"])]
        pooled.setdefault(name.removesuffix("_seed1"), []).extend(rows)

    print("| setting | n | " + " | ".join(COLUMNS[:5]) + " | dead, float32 / float64 (median) "
          "| feature response f (float64 realization) | median <= 1, p90 <= 5: float32 / float64 |")
    print("|---" * 10 + "|")
    for name, rows in pooled.items():
        a = np.asarray(rows, np.float64)
        print(f"| {name} | {len(a)} | " + " | ".join(summary(a[:, j]) for j in range(5))
              + f" | {np.median(a[:, 5]):.0f} / {np.median(a[:, 6]):.0f} | {summary(a[:, 7])}"
              f" | {meets(a[:, 0])} / {meets(a[:, 1])} |")
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, nargs="+", help="an experiment folder; with --table, saved .npz files")
    parser.add_argument("--samples", type=int, nargs="*", help="sample indices (default: all)")
    parser.add_argument("--tol", type=float, default=1e-9, help="relative stationarity residual to reach")
    parser.add_argument("--max-steps", type=int, default=20000)
    parser.add_argument("--save", type=Path, help="write the float64 realizations' Gram statistics here (.npz)")
    parser.add_argument("--model", help="the model's file when the run's model name is not a shipped model")
    parser.add_argument("--table", action="store_true", help="tabulate saved .npz files instead of probing")
    parser.add_argument("--runs", type=Path, default=Path("runs"), help="with --table: where the runs are")
    args = parser.parse_args(argv)
    if args.table:
        return table(args.run, args.runs)
    if len(args.run) != 1:
        parser.error(f"probe one run at a time; got {len(args.run)}")
    args.run = args.run[0]
    return probe(args)


if __name__ == "__main__":
    sys.exit(main())
