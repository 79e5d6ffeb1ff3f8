"""`lucid-ifv`: render, invert and run round-trip experiments from the command line.

    lucid-ifv models                                  the model zoo
    lucid-ifv render --model M --layer L --channel 3  a Lucid-style visualization
    lucid-ifv invert --model M --layer L --images x.png   Grad-IFV on saved images
    lucid-ifv experiment --model M --layer L --out D  the paper's round trip (resumable)
    lucid-ifv critical --run D                        Algorithm 1 on an experiment's realizations
    lucid-ifv compare --model A --model-b B --out D   visualize A's features, invert them in B
    lucid-ifv demo --out D                            render + invert on the default model
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from pathlib import Path

import numpy as np

DEFAULT_MODEL = "inception_small"


# -- models ------------------------------------------------------------------------------
def load_any_model(spec: str):
    """A shipped model's name, "InceptionV1" (downloads Lucid's graph), or a .pb path/URL."""
    from modelzoo import InceptionV1, load_model
    from modelzoo.shipped import SHIPPED, load_shipped

    if spec in SHIPPED:
        return load_shipped(spec)
    if spec == "InceptionV1":
        return InceptionV1()
    if "://" in spec or Path(spec).exists():
        return load_model(spec)
    raise SystemExit(f"error: unknown model {spec!r}: expected one of {sorted(SHIPPED)}, InceptionV1, or a .pb path/URL")


def studied_layer(spec: str, model) -> str:
    from modelzoo.shipped import SHIPPED

    if spec in SHIPPED:
        return next(iter(SHIPPED[spec].studied_layers))
    raise SystemExit("error: --layer is required for this model")


def cmd_models(args) -> int:
    from modelzoo.shipped import list_shipped

    print(f"{'name':<22} {'input':<13} {'accuracy':>8}  studied layers (depth)")
    for entry in list_shipped():
        acc = entry.get("accuracy")
        layers = ", ".join(f"{name} ({depth})" for name, depth in entry["studied_layers"].items())
        print(f"{entry['name']:<22} {'x'.join(map(str, entry['input_shape'])):<13} "
              f"{'' if acc is None else f'{acc:.2%}':>8}  {layers}")
    print(f"{'InceptionV1':<22} {'224x224x3':<13} {'':>8}  mixed4c (512) ... "
          "(Lucid's GoogLeNet, downloaded on first use)")
    return 0


# -- shared options ---------------------------------------------------------------------
def add_fv_options(p, render=True):
    p.add_argument("--model", default=DEFAULT_MODEL, help="shipped model name, InceptionV1, or .pb path/URL")
    p.add_argument("--layer", help="studied layer (default: the shipped model's)")
    p.add_argument("--param", choices=["fft", "pixel"], default="fft", help="parametrization (default fft)")
    p.add_argument("--no-decorrelate", action="store_true", help="no colour decorrelation")
    p.add_argument("--decay-power", type=float, default=1.0)
    p.add_argument("--cossim-pow", type=float, default=1.0, help="p of the significance (default 1)")
    p.add_argument("--aggregation", default="max_pool_mean", choices=["max_pool_mean", "mean", "center", "identity"])
    p.add_argument("--prior", type=float, default=1e-4,
                   help="weight of the L2 prior on the parameters, relative to the layer's response scale "
                        "(default 1e-4; 0: the paper's setting; see --prior-absolute)")
    p.add_argument("--prior-absolute", action="store_true",
                   help="--prior is an absolute weight, as in Lucid's `- w * L2()` (default: relative)")
    p.add_argument("--smooth", action="store_true",
                   help="use the smooth surrogate of the model (softplus ReLUs, log-sum-exp pools): "
                        "visualizations rendered on it are invertible by construction")
    p.add_argument("--relu-beta", type=float, default=10.0, help="softplus sharpness of --smooth (default 10)")
    p.add_argument("--pool-temperature", type=float, default=0.05,
                   help="log-sum-exp pool temperature of --smooth (default 0.05)")
    if render:
        p.add_argument("--adam", type=int, default=512, help="Adam steps")
        p.add_argument("--lbfgs", type=int, default=200, help="L-BFGS steps after Adam")
        p.add_argument("--converge", type=float, default=None,
                       help="continue L-BFGS until each sample's relative stationarity residual is below this "
                            "(e.g. 1e-3; docs/rendering.md)")
        p.add_argument("--max-lbfgs", type=int, default=10000, help="step cap of --converge (default 10000)")
        p.add_argument("--seed", type=int, default=0)
    else:
        p.add_argument("--method", choices=["auto", "paper", "prior_aware", "anchored", "nonneg"], default="auto",
                       help="the solve (default auto: docs/ifv.md, 'Which solve')")


def prepared_model(args):
    """The model of ``--model`` (its smooth surrogate with ``--smooth``), its aggregation and
    the absolute prior weight of ``--prior``."""
    from lucid_ifv import objectives as obj
    from lucid_ifv.aggregation import get_aggregation, smooth_aggregation
    from lucid_ifv.smooth import smooth_model

    model = load_any_model(args.model)
    layer = args.layer or studied_layer(args.model, model)
    aggregation = get_aggregation(args.aggregation)
    if args.smooth:
        model = smooth_model(model, args.relu_beta, args.pool_temperature)
        aggregation = smooth_aggregation(args.aggregation, args.pool_temperature)
    prior = args.prior
    if prior and not args.prior_absolute:
        prior = obj.relative_prior(model, layer, prior, aggregation)
    return model, layer, aggregation, prior


def make_param(model, args, batch):
    from lucid_ifv.param import image_for_model

    return image_for_model(model, batch=batch, fft=args.param == "fft", decorrelate=not args.no_decorrelate,
                           decay_power=args.decay_power, seed=getattr(args, "seed", None))


# -- commands ----------------------------------------------------------------------------
def cmd_render(args) -> int:
    from lucid_ifv import objectives as obj, sampling
    from lucid_ifv.imageio import save_png
    from lucid_ifv.render import render_vis

    model, layer, aggregation, prior = prepared_model(args)
    k = model.layer(layer).depth
    if args.channel is not None:
        targets = np.eye(k)[[args.channel]]
        objective = obj.channel(layer, args.channel)
    else:
        targets = np.load(args.targets) if args.targets else sampling.sample_hoyer_targets(k, args.batch, args.seed)[0]
        targets = np.atleast_2d(targets)
        objective = obj.feature_objective(layer, targets, args.cossim_pow, aggregation, model=model)
    if prior:
        objective = objective - prior * obj.params_L2()
    param = make_param(model, args, len(targets))
    transforms = None if args.transforms == "standard" else []
    deterministic = transforms is not None
    result = render_vis(model, objective, param, transforms=transforms, thresholds=(args.adam,),
                        lbfgs_steps=args.lbfgs if deterministic else 0, seed=args.seed,
                        converge=args.converge if deterministic else None, max_lbfgs_steps=args.max_lbfgs)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out / "realization.npz", images=result.final, targets=targets,
                        **{f"param_{i}": p for i, p in enumerate(result.params)})
    for i, img in enumerate(result.final):
        save_png(img, out / f"realization_{i:03d}.png")
    residual = "" if result.residual is None else f"; stationarity residual {np.max(result.residual):.2g} (max)"
    print(f"objective {result.objective[0]:.4g} -> {result.objective[-1]:.4g}{residual}; "
          f"wrote {len(targets)} image(s) to {out}")
    return 0


def cmd_invert(args) -> int:
    from lucid_ifv import ifv, metrics, objectives as obj
    from lucid_ifv.imageio import load_images

    model, layer, aggregation, prior_weight = prepared_model(args)
    images = load_images(args.images, channels=model.image_shape[-1])
    param = make_param(model, args, len(images))
    prior = obj.params_L2() if prior_weight else None
    result = ifv.invert(model, layer, images, param=param, cossim_pow=args.cossim_pow, aggregation=aggregation,
                        prior=prior, method=None if args.method == "auto" else args.method,
                        expected_prior_weight=prior_weight or None)
    targets = None
    if len(args.images) == 1 and args.images[0].endswith(".npz"):
        with np.load(args.images[0]) as data:
            targets = data["targets"] if "targets" in data else None
    verdicts = result.verdicts()
    rows = []
    for i in range(len(result)):
        print(f"sample {i}: {result.describe(i)}")
        top = np.argsort(-result.target[i])[:5]
        row = {"sample": i, "verdict": str(verdicts[i]), "top_features": top.tolist(),
               "weights": result.target[i][top].round(3).tolist(), "solve": result.solve_method,
               "gap": float(result.gap[i]), "residual": float(result.residual[i]),
               "dead_features": int(result.dead_features[i].sum())}
        if targets is not None:
            alive = targets[i] * ~result.dead_features[i]
            row["angle_to_target"] = float(metrics.angle_deg(result.target[i], targets[i]))
            row["angle_to_target_live"] = float(metrics.angle_deg(result.target[i], alive)) if alive.any() else None
            row["angle_response_to_target"] = float(metrics.angle_deg(result.response[i], targets[i]))
        rows.append(row)
        print(json.dumps(row))
    if args.out:
        Path(args.out).write_text(json.dumps({"predicted": result.target.tolist(), "rows": rows}, indent=1))
    return 0


def cmd_experiment(args) -> int:
    """The round trip; Ctrl-C exits with 130 and one line (nothing unfinished is recorded)."""
    try:
        return _experiment(args)
    except KeyboardInterrupt:
        print(f"interrupted: nothing unfinished was recorded in {args.out}; run the same command again to resume",
              file=sys.stderr)
        return 130


def _experiment(args) -> int:
    from lucid_ifv import experiment as ex
    from lucid_ifv.plots import plot_angles

    model = load_any_model(args.model)
    config = ex.ExperimentConfig(
        layer=args.layer or studied_layer(args.model, model), n_hoyer=args.n_hoyer, n_canonical=args.n_canonical,
        seed=args.seed, cossim_pow=args.cossim_pow, aggregation=args.aggregation, fft=args.param == "fft",
        decorrelate=not args.no_decorrelate, decay_power=args.decay_power, adam_steps=args.adam,
        lbfgs_steps=args.lbfgs, prior_weight=args.prior, prior_relative=not args.prior_absolute,
        batch_size=args.batch_size, reoptimize_steps=args.reoptimize, features=args.features,
        invert_8bit=args.invert_8bit, smooth=args.smooth, relu_beta=args.relu_beta,
        pool_temperature=args.pool_temperature, converge=args.converge, max_lbfgs_steps=args.max_lbfgs,
        warmup_steps=args.warmup,
    )
    out = Path(args.out)
    records = ex.run_experiment(model, config, out)
    summary = ex.summarize(records)
    table = ex.markdown_table(summary)
    command = "lucid-ifv " + " ".join(sys.argv[1:])
    ex.write_text_atomic(out / "summary.json", json.dumps(summary, indent=1))
    ex.write_text_atomic(out / "summary.md", f"Command: `{command}`\n\nModel {model.name}, settings: "
                         f"{json.dumps(dataclasses.asdict(config))}\n\n{table}\n")
    plot_angles(records, out / "angles.png", title=f"{model.name}{' (smooth)' if config.smooth else ''} "
                f"{config.layer}, prior {config.prior_weight:g}", solve=ex.default_solve(config))
    print(table)
    return 0


def cmd_compare(args) -> int:
    """Visualize each feature of --model in it, invert in --model-b (or, with --permuted, in
    a copy of --model with the layer's channels permuted: the method's ground truth)."""
    from lucid_ifv.compare import compare, default_config
    from lucid_ifv.plots import plot_matching
    from lucid_ifv.symmetry import permute_channels

    if args.model_b and args.permuted is not None:
        raise SystemExit("error: give --model-b or --permuted, not both")
    if not args.model_b and args.permuted is None:
        raise SystemExit("error: give --model-b (another network) or --permuted SEED (a permuted copy of --model)")
    model_a = load_any_model(args.model)
    layer_a = args.layer or studied_layer(args.model, model_a)
    truth = None
    if args.permuted is not None:
        permuted = permute_channels(model_a, layer_a, seed=args.permuted)
        model_b, layer_b, truth = permuted.model, layer_a, permuted.matching
    else:
        model_b = load_any_model(args.model_b)
        layer_b = args.layer_b or studied_layer(args.model_b, model_b)
    config = default_config(fft=args.param == "fft", decorrelate=not args.no_decorrelate,
                            decay_power=args.decay_power, cossim_pow=args.cossim_pow, aggregation=args.aggregation,
                            prior_weight=args.prior, prior_relative=not args.prior_absolute, smooth=not args.relu,
                            relu_beta=args.relu_beta, pool_temperature=args.pool_temperature, adam_steps=args.adam,
                            lbfgs_steps=args.lbfgs, converge=args.converge, max_lbfgs_steps=args.max_lbfgs,
                            seed=args.seed, batch_size=args.batch_size, warmup_steps=args.warmup)
    out = Path(args.out)
    result = compare(model_a, layer_a, model_b, layer_b, config, features=args.features,
                     reoptimize_steps=args.reoptimize, out_dir=out / "batches")
    report = result.to_dict()
    report.update(model_a=model_a.name, model_b=model_b.name, command="lucid-ifv " + " ".join(sys.argv[1:]))
    if truth is not None:
        report.update(permutation_accuracy=result.accuracy(truth), ground_truth=truth[result.features].tolist(),
                      permutation_accuracy_identified=result.accuracy(truth, only_identified=True))
    np.save(out / "matrix.npy", result.matrix)
    if args.baseline:
        _compare_baseline(args, model_a, layer_a, model_b, layer_b, result, report, out)
    (out / "comparison.json").write_text(json.dumps(report, indent=1))
    plot_matching(result.matrix, out / "matching.png", truth=None if truth is None else truth[result.features],
                  title=f"{model_a.name} {layer_a} -> {model_b.name} {layer_b}", labels=(model_a.name, model_b.name))
    counts = {v: result.verdicts.count(v) for v in sorted(set(result.verdicts))}
    print(f"{model_a.name} {layer_a} -> {model_b.name} {layer_b}: {len(result.features)} features; "
          f"best-match |cosine| median {np.median(result.best_score):.3f}; verdicts {counts}; "
          f"represented {result.represented():.2f}")
    if truth is not None:
        print(f"permutation recovered for {report['permutation_accuracy']:.1%} of the features "
              f"({report['permutation_accuracy_identified']:.1%} of those 'identified' in B)")
    return 0


def _compare_baseline(args, model_a, layer_a, model_b, layer_b, result, report, out) -> None:
    """Activation-correlation matching on --model's held-out images beside the inversion's."""
    from lucid_ifv.compare import activation_correlation
    from lucid_ifv.plots import plot_images
    from modelzoo.shipped import SHIPPED, heldout

    if args.model not in SHIPPED:
        raise SystemExit("error: --baseline needs a shipped --model (its held-out images are the natural inputs)")
    images, _ = heldout(args.model)
    corr = activation_correlation(model_a, layer_a, model_b, layer_b, images)[result.features]
    np.save(out / "baseline_correlation.npy", corr)
    by_corr = np.argmax(corr, axis=1)
    differ = np.flatnonzero(by_corr != result.best_match)
    report.update(baseline_best_match=by_corr.tolist(), baseline_best_corr=corr.max(axis=1).tolist(),
                  agreement=float(np.mean(by_corr == result.best_match)), disagreements=differ.tolist())
    print(f"activation-correlation matching agrees on {report['agreement']:.1%} of the features "
          f"({len(differ)} differ)")
    if len(differ) and result.images is not None:
        titles = [f"A {result.features[i]}: IFV B {result.best_match[i]} ({result.best_score[i]:.2f})\n"
                  f"corr B {by_corr[i]} (r {corr[i, by_corr[i]]:.2f}; IFV's r {corr[i, result.best_match[i]]:.2f})"
                  for i in differ]
        plot_images(result.images[differ], out / "disagreements.png", titles=titles, columns=4)


def cmd_critical(args) -> int:
    """Algorithm 1 on an experiment folder, then IFV inside each candidate critical space."""
    from lucid_ifv import experiment as ex

    rows = ex.critical_space_analysis(args.run, args.eps_lo, args.eps_hi, args.max_angle)
    lines = ["| trivial dim | eps | median angle modulo T | q1 | q3 | selected | angle of 1/sqrt(k) to T "
             "| features with e_j within 5 deg of T |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['dim']} | {r['eps']:.3g} | {r['median_angle']:.2f} | {r['q1']:.2f} | {r['q3']:.2f} | "
                     f"{'yes' if r['selected'] else ''} | {r['ones_angle_deg']:.3f} | "
                     f"{', '.join(map(str, r['dead_like_features'])) or '-'} |")
    text = "\n".join(lines)
    Path(args.run, "critical_space.md").write_text(f"Command: `lucid-ifv {' '.join(sys.argv[1:])}`\n\n{text}\n")
    print(text)
    return 0


def _demo_rows(records, solve) -> list:
    """Markdown rows of the demo table, one per sample."""
    fmt = lambda v: "-" if v is None else f"{v:.2f}"  # noqa: E731
    return [f"| {i} | {r[f'verdict_{solve}']} | {fmt(r[f'angle_alive_{solve}'])} | {fmt(r[f'angle_{solve}'])} | "
            f"{r[f'dead_{solve}']} | {r['angle_response']:.2f} | {r['angle_random']:.2f} |"
            for i, r in enumerate(records)]


def cmd_demo(args) -> int:
    """Render a few Hoyer targets with a small prior on the smooth surrogate and on the plain
    ReLU model, invert both, print each verdict and angle beside the feature response."""
    from lucid_ifv import experiment as ex
    from lucid_ifv.imageio import save_png
    from lucid_ifv.plots import plot_images

    model = load_any_model(args.model)
    layer = args.layer or studied_layer(args.model, model)
    out = Path(args.out)
    header = ["| sample | verdict | angle(t, t*) on live features | overall | dead features | angle(t, f) "
              "| angle(t, random) |", "|---|---|---|---|---|---|---|"]
    lines = [f"Model {model.name}, layer {layer}, {args.param} parametrization, {args.n} Hoyer targets, "
             f"{args.adam} Adam + L-BFGS steps until stationary (relative residual {args.converge:g}, at most "
             f"{args.max_lbfgs}), L2 prior {args.prior:g} (relative) on the parameters; angles in degrees."]
    medians = {}
    for mode, smooth in (("smooth surrogate", True), ("plain ReLU network", False)):
        config = ex.ExperimentConfig(layer=layer, n_hoyer=args.n, seed=args.seed, adam_steps=args.adam,
                                     lbfgs_steps=0, converge=args.converge, max_lbfgs_steps=args.max_lbfgs,
                                     prior_weight=args.prior, prior_relative=True, batch_size=args.n,
                                     fft=args.param == "fft", decorrelate=args.param == "fft", smooth=smooth)
        targets, _ = ex.make_targets(config, config.feature_count(model))
        records, arrays = ex.run_batch(model, config, targets, batch_seed=args.seed)
        solve = records[0]["solve"]
        folder = out / ("smooth" if smooth else "relu")
        for i, img in enumerate(arrays["images"]):
            save_png(img, folder / f"realization_{i:02d}.png")
        plot_images(arrays["images"], folder / "realizations.png",
                    titles=[f"{r[f'verdict_{solve}']}, {r[f'angle_alive_{solve}'] or float('nan'):.1f} deg"
                            for r in records])
        alive = [r[f"angle_alive_{solve}"] for r in records if r[f"angle_alive_{solve}"] is not None]
        medians[mode] = (np.median(alive), np.median([r["angle_response"] for r in records]),
                         sum(r[f"verdict_{solve}"] == "identified" for r in records))
        lines += ["", f"### {mode} ({solve} solve)", "", *header, *_demo_rows(records, solve)]
    lines.append("")
    for mode, (angle, response, identified) in medians.items():
        lines.append(f"{mode}: median angle on live features {angle:.2f} deg (feature response {response:.2f} deg); "
                     f"{identified} of {args.n} identified")
    text = "\n".join(lines)
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.md").write_text(text + "\n")
    print(text)
    print(f"\nimages and summary in {out}")
    return 0


# -- entry point ---------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lucid-ifv", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    sub.add_parser("models", help="list the model zoo").set_defaults(func=cmd_models)

    p = sub.add_parser("render", help="render a feature visualization")
    add_fv_options(p)
    group = p.add_mutually_exclusive_group()
    group.add_argument("--channel", type=int, help="Lucid's channel objective (no cosine term)")
    group.add_argument("--targets", help=".npy file of targets [B, k] for the feature objective")
    p.add_argument("--batch", type=int, default=1, help="number of Hoyer targets when neither is given")
    p.add_argument("--transforms", choices=["none", "standard"], default="none",
                   help="Lucid's standard transforms (Adam only) or none (default)")
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_render)

    p = sub.add_parser("invert", help="Grad-IFV on images (PNG, .npy, or a render's .npz)")
    add_fv_options(p, render=False)
    p.add_argument("--images", nargs="+", required=True)
    p.add_argument("--out", help="write the predictions as JSON")
    p.set_defaults(func=cmd_invert)

    p = sub.add_parser("experiment", help="the paper's round trip (resumable)")
    add_fv_options(p)
    p.add_argument("--n-hoyer", type=int, default=30)
    p.add_argument("--n-canonical", type=int, default=0)
    p.add_argument("--warmup", type=int, default=0,
                   help="Adam steps without the prior before --adam (channels dead at the start can activate)")
    p.add_argument("--features", type=int, nargs="+", help="channel subset (default all)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--reoptimize", type=int, default=0, help="Adam steps of the re-optimization check (paper: 500)")
    p.add_argument("--invert-8bit", action="store_true",
                   help="also invert each realization after 8-bit quantization, as a PNG would store it")
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_experiment)

    p = sub.add_parser("compare", help="visualize a network's features and invert them in another network")
    add_fv_options(p)
    p.add_argument("--model-b", help="the network to invert in (shipped name, InceptionV1 or .pb)")
    p.add_argument("--layer-b", help="its layer (default: the shipped model's studied layer)")
    p.add_argument("--permuted", type=int, metavar="SEED",
                   help="instead of --model-b: --model with --layer's channels permuted and rescaled (ground truth)")
    p.add_argument("--relu", action="store_true", help="render and invert on the plain networks (default: smooth)")
    p.add_argument("--features", type=int, nargs="+", help="A's channels (default all)")
    p.add_argument("--warmup", type=int, default=200,
                   help="Adam steps without the prior before the --adam steps (default 200; docs/compare.md)")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--reoptimize", type=int, default=0, help="Adam steps of the re-optimization SSIM in B (0: skip)")
    p.add_argument("--baseline", action="store_true",
                   help="also match by activation correlation on --model's held-out images, and compare")
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_compare, param="pixel", no_decorrelate=True, adam=400, lbfgs=0, converge=1e-3,
                   max_lbfgs=1000)

    p = sub.add_parser("critical", help="Algorithm 1 (critical spaces) on an experiment folder")
    p.add_argument("--run", required=True, help="a `lucid-ifv experiment --out` folder")
    p.add_argument("--eps-lo", type=float, default=1e-6)
    p.add_argument("--eps-hi", type=float, default=0.5)
    p.add_argument("--max-angle", type=float, default=30.0, help="principal-angle cutoff of the merge (degrees)")
    p.set_defaults(func=cmd_critical)

    p = sub.add_parser("demo", help="render and invert a few targets on the default model")
    p.add_argument("--model", default=DEFAULT_MODEL)
    p.add_argument("--layer")
    p.add_argument("--n", type=int, default=6, help="number of Hoyer targets")
    p.add_argument("--param", choices=["fft", "pixel"], default="fft", help="parametrization (default fft)")
    p.add_argument("--adam", type=int, default=400)
    p.add_argument("--converge", type=float, default=1e-3, help="relative stationarity tolerance (default 1e-3)")
    p.add_argument("--max-lbfgs", type=int, default=2000, help="L-BFGS step cap (default 2000)")
    p.add_argument("--prior", type=float, default=1e-4, help="relative L2 prior weight (default 1e-4)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="out/demo")
    p.set_defaults(func=cmd_demo)
    return parser


def main(argv=None) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, KeyError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
