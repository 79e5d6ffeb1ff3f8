"""`lucid-ifv`: render, invert and run round-trip experiments from the command line.

    lucid-ifv models                                  the model zoo
    lucid-ifv render --model M --layer L --channel 3  a Lucid-style visualization
    lucid-ifv invert --model M --layer L --images x.png   Grad-IFV on saved images
    lucid-ifv experiment --model M --layer L --out D  the paper's round trip (resumable)
    lucid-ifv critical --run D                        Algorithm 1 on an experiment's realizations
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
                   help="weight of the L2 prior on the parameters (default 1e-4; 0: the paper's setting)")
    if render:
        p.add_argument("--adam", type=int, default=512, help="Adam steps")
        p.add_argument("--lbfgs", type=int, default=200, help="L-BFGS steps after Adam")
        p.add_argument("--seed", type=int, default=0)


def make_param(model, args, batch):
    from lucid_ifv.param import image_for_model

    return image_for_model(model, batch=batch, fft=args.param == "fft", decorrelate=not args.no_decorrelate,
                           decay_power=args.decay_power, seed=getattr(args, "seed", None))


# -- commands ----------------------------------------------------------------------------
def cmd_render(args) -> int:
    from lucid_ifv import objectives as obj, sampling
    from lucid_ifv.imageio import save_png
    from lucid_ifv.render import render_vis

    model = load_any_model(args.model)
    layer = args.layer or studied_layer(args.model, model)
    k = model.layer(layer).depth
    if args.channel is not None:
        targets = np.eye(k)[[args.channel]]
        objective = obj.channel(layer, args.channel)
    else:
        targets = np.load(args.targets) if args.targets else sampling.sample_hoyer_targets(k, args.batch, args.seed)[0]
        targets = np.atleast_2d(targets)
        objective = obj.feature_objective(layer, targets, args.cossim_pow, args.aggregation, model=model)
    if args.prior:
        objective = objective - args.prior * obj.params_L2()
    param = make_param(model, args, len(targets))
    transforms = None if args.transforms == "standard" else []
    result = render_vis(model, objective, param, transforms=transforms, thresholds=(args.adam,),
                        lbfgs_steps=0 if transforms is None else args.lbfgs, seed=args.seed)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out / "realization.npz", images=result.final, targets=targets,
                        **{f"param_{i}": p for i, p in enumerate(result.params)})
    for i, img in enumerate(result.final):
        save_png(img, out / f"realization_{i:03d}.png")
    print(f"objective {result.objective[0]:.4g} -> {result.objective[-1]:.4g}; wrote {len(targets)} image(s) to {out}")
    return 0


def cmd_invert(args) -> int:
    from lucid_ifv import ifv, metrics, objectives as obj
    from lucid_ifv.imageio import load_images

    model = load_any_model(args.model)
    layer = args.layer or studied_layer(args.model, model)
    images = load_images(args.images, channels=model.image_shape[-1])
    param = make_param(model, args, len(images))
    prior = obj.params_L2() if args.prior else None
    result = ifv.invert(model, layer, images, param=param, cossim_pow=args.cossim_pow,
                        aggregation=args.aggregation, prior=prior)
    targets = None
    if len(args.images) == 1 and args.images[0].endswith(".npz"):
        with np.load(args.images[0]) as data:
            targets = data["targets"] if "targets" in data else None
    rows = []
    for i in range(len(result)):
        top = np.argsort(-result.target[i])[:5]
        row = {"sample": i, "top_features": top.tolist(), "weights": result.target[i][top].round(3).tolist(),
               "gap": float(result.gap[i]), "residual": float(result.residual[i])}
        if targets is not None:
            row["angle_to_target"] = float(metrics.angle_deg(result.target[i], targets[i]))
            row["angle_response_to_target"] = float(metrics.angle_deg(result.response[i], targets[i]))
        rows.append(row)
        print(json.dumps(row))
    if args.out:
        Path(args.out).write_text(json.dumps({"predicted": result.target.tolist(), "rows": rows}, indent=1))
    return 0


def cmd_experiment(args) -> int:
    from lucid_ifv import experiment as ex
    from lucid_ifv.plots import plot_angles

    model = load_any_model(args.model)
    config = ex.ExperimentConfig(
        layer=args.layer or studied_layer(args.model, model), n_hoyer=args.n_hoyer, n_canonical=args.n_canonical,
        seed=args.seed, cossim_pow=args.cossim_pow, aggregation=args.aggregation, fft=args.param == "fft",
        decorrelate=not args.no_decorrelate, decay_power=args.decay_power, adam_steps=args.adam,
        lbfgs_steps=args.lbfgs, prior_weight=args.prior, batch_size=args.batch_size,
        reoptimize_steps=args.reoptimize, features=args.features, invert_8bit=args.invert_8bit,
    )
    out = Path(args.out)
    records = ex.run_experiment(model, config, out)
    summary = ex.summarize(records)
    table = ex.markdown_table(summary)
    command = "lucid-ifv " + " ".join(sys.argv[1:])
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    (out / "summary.md").write_text(f"Command: `{command}`\n\nModel {model.name}, settings: "
                                    f"{json.dumps(dataclasses.asdict(config))}\n\n{table}\n")
    plot_angles(records, out / "angles.png", title=f"{model.name} {config.layer}, prior {config.prior_weight:g}")
    print(table)
    return 0


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


def cmd_demo(args) -> int:
    """Render a few Hoyer targets with a small prior, invert them, print the table."""
    from lucid_ifv import experiment as ex, metrics
    from lucid_ifv.imageio import save_png
    from lucid_ifv.plots import plot_images

    model = load_any_model(args.model)
    layer = args.layer or studied_layer(args.model, model)
    config = ex.ExperimentConfig(layer=layer, n_hoyer=args.n, seed=args.seed, adam_steps=args.adam,
                                 lbfgs_steps=args.lbfgs, prior_weight=args.prior, batch_size=args.n,
                                 fft=args.param == "fft")
    out = Path(args.out)
    k = config.feature_count(model)
    targets, _ = ex.make_targets(config, k)
    records, arrays = ex.run_batch(model, config, targets, batch_seed=args.seed)
    images = arrays["images"]
    for i, img in enumerate(images):
        save_png(img, out / f"realization_{i:02d}.png")
    plot_images(images, out / "realizations.png",
                titles=[f"t*: {r.get('angle_prior_aware', r['angle_paper']):.1f} deg" for r in records])
    aware = "angle_prior_aware" in records[0]
    header = ("| sample | angle(t, t*) | same, on features alive at the realization | angle(t, t*) paper's solve "
              "| angle(t, f) | gap | unsaturated px |")
    lines = [f"Model {model.name}, layer {layer} ({k} features), {args.param} parametrization, {args.n} Hoyer targets, "
             f"{args.adam} Adam + {args.lbfgs} L-BFGS steps, L2 prior {args.prior:g} on the parameters",
             "", header, "|---|---|---|---|---|---|---|"]
    for i, r in enumerate(records):
        best = r["angle_prior_aware"] if aware else r["angle_paper"]
        gap = r["gap_prior_aware"] if aware else r["gap_paper"]
        alive = r["angle_alive_prior_aware"] if aware else r["angle_alive_paper"]
        alive = "-" if alive is None else f"{alive:.2f}"
        lines.append(f"| {i} | {best:.2f} | {alive} | {r['angle_paper']:.2f} | {r['angle_response']:.2f} | {gap:.3g} | "
                     f"{r['unsaturated_pixels']} |")
    summary = metrics.summary([r["angle_prior_aware"] if aware else r["angle_paper"] for r in records])
    lines.append(f"\nmedian angle(t, t*) = {summary['median']:.2f} deg; median angle(t, f) = "
                 f"{np.median([r['angle_response'] for r in records]):.2f} deg")
    text = "\n".join(lines)
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
    p.add_argument("--features", type=int, nargs="+", help="channel subset (default all)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--reoptimize", type=int, default=0, help="Adam steps of the re-optimization check (paper: 500)")
    p.add_argument("--invert-8bit", action="store_true",
                   help="also invert each realization after 8-bit quantization, as a PNG would store it")
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_experiment)

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
    p.add_argument("--lbfgs", type=int, default=300)
    p.add_argument("--prior", type=float, default=1e-4)
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
