"""`lucid-ifv`: render, invert and run round-trip experiments from the command line.

    lucid-ifv models                                  the model zoo
    lucid-ifv render --model M --layer L --channel 3  a Lucid-style visualization
    lucid-ifv invert --model M --layer L --images x.png   Grad-IFV on saved images
    lucid-ifv which-channel --model M --images x.png  which channel a Lucid visualization was made for
    lucid-ifv experiment --model M --layer L --out D  the paper's round trip (resumable)
    lucid-ifv critical --run D                        Algorithm 1 on an experiment's realizations
    lucid-ifv compare --model A --model-b B --out D   visualize A's features, invert them in B
    lucid-ifv demo --out D                            render + invert on the default model
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import re
import sys
from pathlib import Path

import numpy as np

from lucid_ifv import threads  # no TensorFlow at import: check_args runs before it

DEFAULT_MODEL = "inception_small"


class CliError(SystemExit):
    """A one-line ``error: ...`` (printed by `main`), exit status 2. A SystemExit whose
    ``str`` is the message, as the `raise SystemExit("error: ...")` it replaces."""

    def __init__(self, message: str):
        super().__init__(message)
        self.code = 2


# -- models ------------------------------------------------------------------------------
def load_any_model(spec: str):
    """`modelzoo.load_any`: a shipped model's name, "InceptionV1" or a .pb path/URL."""
    from modelzoo import load_any

    return load_any(spec)


def _shipped_names() -> list:
    """The shipped models' names from the files in modelzoo/data, without importing modelzoo
    (which imports TensorFlow): the registry's entries each have a file there."""
    import importlib.util

    spec = importlib.util.find_spec("modelzoo")
    if spec is None or not spec.submodule_search_locations:
        return []
    data = Path(next(iter(spec.submodule_search_locations))) / "data"
    return sorted({p.stem for p in data.glob("*") if p.suffix in (".pb", ".keras", ".json")})


def check_model_spec(spec: str, option: str = "--model") -> None:
    """Refuse a model argument that cannot load, before TensorFlow is imported."""
    if spec in _shipped_names() or spec == "InceptionV1" or "://" in spec:
        return
    path = Path(spec)
    if path.is_dir():
        raise SystemExit(f"error: {option} {spec} is a folder; expected a shipped model name, InceptionV1, "
                         "or a .pb file")
    if path.exists():
        if path.stat().st_size == 0:
            raise SystemExit(f"error: {option} {spec} is empty (0 bytes); expected a frozen graph (.pb)")
        return
    raise SystemExit(f"error: unknown model {spec!r}: expected one of {_shipped_names()}, InceptionV1, "
                     "or a .pb path/URL")


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
def add_fv_options(p, render=True, smooth=True, smooth_flag=True):
    """The options that say how a visualization was made: model, layer, parametrization, the
    objective's form, the prior; with ``render`` the optimizer's, else the solve. ``smooth=False``:
    the plain network only (no --smooth options); ``smooth_flag=False``: the surrogate's settings
    without --smooth (a command that decides itself, e.g. compare's --relu)."""
    p.add_argument("--model", default=DEFAULT_MODEL, help="shipped model name, InceptionV1, or .pb path/URL")
    p.add_argument("--layer", help="studied layer (default: the shipped model's)")
    p.add_argument("--param", choices=["fft", "pixel"], default="fft", help="parametrization (default fft)")
    p.add_argument("--no-decorrelate", action="store_true", help="no colour decorrelation")
    p.add_argument("--decay-power", type=float, default=1.0)
    p.add_argument("--mask", choices=["continuous", "one"], default="continuous",
                   help="geometry-image models (srnet_small): the hit mask is a parameter in (0, 1) "
                        "(continuous, default) or fixed to 1 (one)")
    p.add_argument("--cossim-pow", type=float, default=1.0, help="p of the significance (default 1; compare: 0)")
    p.add_argument("--aggregation", default="max_pool_mean",
                   choices=["max_pool_mean", "homogeneous_max_pool_mean", "floorless_max_pool_mean",
                            "floored_max_pool_mean", "mean", "center", "identity"],
                   help="feature response (default max_pool_mean: with --smooth a log-mean-exp pool; compare: "
                        "homogeneous_max_pool_mean; floorless_max_pool_mean: the same as max_pool_mean; "
                        "floored_max_pool_mean: with --smooth the log-sum-exp pool, the default until "
                        "2026-12-04; lucid_ifv.aggregation)")
    if render:
        p.add_argument("--prior", type=float, default=1e-4,
                       help="weight of the L2 prior on the parameters, relative to the layer's response scale "
                            "(default 1e-4; 0: the paper's setting; see --prior-absolute)")
    else:
        p.add_argument("--prior", type=float, default=1e-4, metavar="WEIGHT",
                       help="the L2 prior weight the images were rendered with (render's --prior, relative "
                            "unless --prior-absolute; default 1e-4; 0: rendered without a prior, so the paper's "
                            "solve). The solve estimates the weight itself: this value says whether the prior is "
                            "modelled and is the reference of the check 'estimated weight below 1%% of it: not "
                            "stationary' (both are in the output)")
    p.add_argument("--prior-absolute", action="store_true",
                   help="--prior is an absolute weight, as in Lucid's `- w * L2()` (default: relative)")
    if not smooth:  # the plain network only
        p.set_defaults(smooth=False, relu_beta=10.0, relu_beta_relative=False, pool_temperature=0.05)
    else:
        add_smooth_options(p, smooth_flag)
    if render:
        p.add_argument("--adam", type=int, default=512, help="Adam steps")
        p.add_argument("--lbfgs", type=int, default=200, help="L-BFGS steps after Adam")
        p.add_argument("--converge", type=_tolerance_arg, default=None, metavar="TOL",
                       help="continue L-BFGS until each sample's relative stationarity residual is below TOL, or "
                            "'off' (default: 1e-3 with --smooth, else off; docs/rendering.md)")
        p.add_argument("--max-lbfgs", type=int, default=4000,
                       help="step cap of --converge and --float64-converge (default %(default)s; 10000 before 2026-12-06)")
        p.add_argument("--joint-lbfgs", action="store_true",
                       help="--converge with SciPy's L-BFGS-B on the whole batch, as before 2026-12-04 (default: "
                            "one L-BFGS per sample; docs/rendering.md)")
        p.add_argument("--seed", type=int, default=0)
    else:
        p.add_argument("--method", choices=["auto", "paper", "prior_aware", "anchored", "nonneg"], default="auto",
                       help="the solve (default auto: the anchored solve with a prior; nonneg for objectives known to be non-negative: docs/ifv.md, 'Which solve')")


def add_float64_options(p, inverted: str) -> None:
    """--float64-converge and --float32 of the rendering commands (smooth mode's float64 stage,
    `lucid_ifv.smooth_defaults`); ``inverted`` says what happens to the float64 renders."""
    p.add_argument("--float64-converge", type=float, default=None, metavar="TOL",
                   help="after --converge, continue each sample on float64 copies of the network and parametrization "
                        "until its residual is below TOL (at most --max-lbfgs steps); " + inverted + " (default: "
                        "1e-8 with --smooth, unless --float32 or --joint-lbfgs; docs/ifv.md, 'Precision'; frozen "
                        "graphs and Keras models)")
    p.add_argument("--float32", action="store_true",
                   help="--smooth without its float64 continuation: faster, but float32's rounding limits the "
                        "inversion (docs/results.md, 'Smooth mode's defaults')")


def apply_smooth_defaults(args) -> None:
    """Smooth mode's tolerances (`smooth_defaults.smooth_mode_tolerances`) for --converge and
    --float64-converge where the user left them unset (render and experiment; not with
    --transforms standard, which is Adam only); ``--converge off`` is None (no convergence)."""
    from lucid_ifv.smooth_defaults import AUTO, smooth_mode_tolerances

    given = getattr(args, "converge", None)
    if given == "off":
        args.converge = None
    if args.command not in ("render", "experiment"):
        return
    if args.float32 and args.float64_converge is not None:
        raise ValueError(f"--float32 and {_label(args, 'float64_converge')} contradict each other: give one")
    smooth = args.smooth and getattr(args, "transforms", "none") == "none"
    converge = AUTO if given is None else args.converge
    float64_converge = None if args.float32 else AUTO if args.float64_converge is None else args.float64_converge
    args.converge, args.float64_converge = smooth_mode_tolerances(smooth, converge, float64_converge,
                                                                  not args.joint_lbfgs)
    args.float64_by_default = float64_converge == AUTO and args.float64_converge is not None


def float64_unless_unsupported(args, model) -> None:
    """Smooth mode's default float64 stage is dropped, with a note on stderr, for a model (or
    parametrization) that has no float64 copy (e.g. a graph with ResizeBilinear); asked for
    with --float64-converge it is an error instead (`precision.check_float64_support`)."""
    if not getattr(args, "float64_by_default", False):
        return
    from lucid_ifv.precision import float64_support

    reason = float64_support(model, make_param(model, args, 1))
    if reason is not None:
        print(f"note: no float64 stage on {model.name} ({reason}): smooth mode renders in float32 only here",
              file=sys.stderr)
        args.float64_converge = None


def add_smooth_options(p, flag: bool = True) -> None:
    """--smooth (with ``flag``) and the surrogate's settings."""
    if flag:
        p.add_argument("--smooth", action="store_true",
                       help="use the smooth surrogate of the model (softplus ReLUs, log-sum-exp pools): "
                            "visualizations rendered on it are invertible by construction")
    p.add_argument("--relu-beta", type=float, default=10.0, help="softplus sharpness of --smooth (default 10)")
    p.add_argument("--relu-beta-relative", action=argparse.BooleanOptionalAction, default=False,
                   help="each ReLU unit's softplus sharpness is --relu-beta / the RMS of its input on seeded noise "
                        "images, so a rescaled unit keeps the same smoothing; docs/smooth.md (default off)")
    p.add_argument("--pool-temperature", type=float, default=0.05,
                   help="log-sum-exp pool temperature of --smooth (default 0.05)")


def prepared_model(args, check=None):
    """The model of ``--model`` (its smooth surrogate with ``--smooth``), its aggregation and
    the absolute prior weight of ``--prior``. ``check(model, layer)`` runs as soon as the
    model is loaded, before any computation (the relative prior evaluates the model)."""
    from lucid_ifv.experiment import prepare_network

    if args.relu_beta_relative and not args.smooth:
        raise ValueError("--relu-beta-relative sets the surrogate's softplus: it needs --smooth")
    model = load_any_model(args.model)
    layer = args.layer or studied_layer(args.model, model)
    model.layer(layer)  # KeyError naming the known layers
    if check is not None:
        check(model, layer)
    setup = prepare_network(model, layer, args.aggregation, args.prior, prior_relative=not args.prior_absolute,
                            smooth=args.smooth, relu_beta=args.relu_beta, pool_temperature=args.pool_temperature,
                            relu_beta_relative=args.relu_beta_relative)
    return setup.model, layer, setup.aggregation, setup.prior_weight


def make_param(model, args, batch):
    from lucid_ifv.param import image_for_model

    return image_for_model(model, batch=batch, fft=args.param == "fft", decorrelate=not args.no_decorrelate,
                           decay_power=args.decay_power, seed=getattr(args, "seed", None), mask=args.mask)


# -- commands ----------------------------------------------------------------------------
def _check_render_inputs(args, model, layer) -> None:
    """--channel, --targets and --mask against the model (the rest was checked before TensorFlow)."""
    from lucid_ifv.param.images import check_mask_for_model

    check_mask_for_model(model, args.mask)
    k = model.layer(layer).depth
    if args.channel is not None and args.channel >= k:
        raise ValueError(f"--channel {args.channel} is out of range: layer {layer!r} of {model.name} has {k} "
                         f"channels (valid: 0 to {k - 1})")
    if args.targets and args.target_array.shape[-1] != k:
        raise ValueError(f"{args.targets}: targets of length {args.target_array.shape[-1]} (shape "
                         f"{args.target_array.shape}) for layer {layer!r} of {model.name}, which has {k} channels; "
                         f"expected [B, {k}]")


def cmd_render(args) -> int:
    from lucid_ifv import objectives as obj, sampling
    from lucid_ifv.imageio import save_npz, save_png
    from lucid_ifv.render import converge_each_sample, per_sample_objectives, render_vis

    model, layer, aggregation, prior = prepared_model(args, lambda m, name: _check_render_inputs(args, m, name))
    float64_unless_unsupported(args, model)
    if args.float64_converge is not None:
        from lucid_ifv.precision import check_float64_support

        check_float64_support(model, make_param(model, args, 1), "--float32")
    k = model.layer(layer).depth
    if args.channel is not None:
        targets = np.eye(k)[[args.channel]]
    else:
        targets = args.target_array if args.targets else sampling.sample_hoyer_targets(k, args.batch, args.seed)[0]
        targets = np.atleast_2d(targets)

    def objective_for(t):
        objective = (obj.channel(layer, args.channel) if args.channel is not None
                     else obj.feature_objective(layer, t, args.cossim_pow, aggregation, model=model))
        return objective - prior * obj.params_L2() if prior else objective

    param = make_param(model, args, len(targets))
    transforms = None if args.transforms == "standard" else []
    deterministic = transforms is not None
    each = deterministic and args.converge is not None and not args.joint_lbfgs  # each sample alone
    result = render_vis(model, objective_for(targets), param, transforms=transforms, thresholds=(args.adam,),
                        lbfgs_steps=args.lbfgs if deterministic and not each else 0, seed=args.seed,
                        converge=args.converge if deterministic and not each else None, max_lbfgs_steps=args.max_lbfgs)
    if each:
        result = converge_each_sample(model, per_sample_objectives(objective_for, targets), result,
                                      make_param(model, args, 1), args.converge, args.max_lbfgs, args.lbfgs, seed=args.seed)
    if args.float64_converge is not None:
        from lucid_ifv.precision import converge_in_float64

        result = converge_in_float64(model, per_sample_objectives(objective_for, targets), result,
                                     make_param(model, args, 1), args.float64_converge, args.max_lbfgs, seed=args.seed)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    save_npz(out / "realization.npz", images=result.final, targets=targets,
             **{f"param_{i}": p for i, p in enumerate(result.params)})
    images = getattr(model, "input_kind", "image") == "image"  # a geometry model's inputs: the .npz only
    for i, img in enumerate(result.final if images else []):
        save_png(img, out / f"realization_{i:03d}.png")
    residual = "" if result.residual is None else f"; stationarity residual {np.max(result.residual):.2g} (max)"
    print(f"objective {result.objective[0]:.4g} -> {result.objective[-1]:.4g}{residual}; "
          f"wrote {len(targets)} {'image(s)' if images else f'{model.input_kind} input(s) (realization.npz)'} to {out}")
    return 0


def _tolerance_arg(text: str):
    """``--converge``: a number, or 'off' (`apply_smooth_defaults` makes it None)."""
    if text == "off":
        return text
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a tolerance (e.g. 1e-3) or 'off', got {text!r}") from None


def _dither_arg(text: str):
    """``--dither``: 'auto' or an integer >= 0."""
    if text == "auto":
        return text
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected 'auto' or an integer >= 0, got {text!r}")
    return value


def _check_invert_inputs(args, model, layer, checked: dict) -> None:
    """The images (channels converted or refused, size) and an .npz's targets against the model."""
    from lucid_ifv.imageio import stack_images

    images = stack_images(args.image_batches, args.images, model.image_shape[-1])
    if tuple(images.shape[1:3]) != tuple(model.image_shape[:2]):
        raise ValueError(f"the images are {images.shape[1]}x{images.shape[2]} pixels but model {model.name} takes "
                         f"{model.image_shape[0]}x{model.image_shape[1]}")
    targets, k = args.npz_targets, model.layer(layer).depth
    if targets is not None and targets.shape != (len(images), k):
        raise ValueError(f"{args.images[0]}: 'targets' has shape {targets.shape}; expected [{len(images)}, {k}] "
                         f"(one target per image, {k} channels of layer {layer!r} of {model.name})")
    trivial = args.trivial_basis
    if trivial is not None and not trivial.shape[1] < trivial.shape[0] == k:
        raise ValueError(f"--trivial {args.trivial} has shape {trivial.shape}; expected [{k}, r] with 1 <= r < {k} "
                         f"({k} channels of layer {layer!r} of {model.name})")
    checked["images"] = images


def cmd_invert(args) -> int:
    from lucid_ifv import ifv, metrics, objectives as obj
    from lucid_ifv.critical_space import critical_basis

    checked = {}
    model, layer, aggregation, prior_weight = prepared_model(
        args, lambda m, name: _check_invert_inputs(args, m, name, checked))
    images = checked["images"]
    param = make_param(model, args, len(images))
    float64 = getattr(args, "float64", False)
    if float64 is None:  # invert's default: as precise as the images
        float64 = images.dtype == np.float64
        if float64:
            print("inverting in float64: the images are float64 arrays (--float32 to invert in float32)")
    if float64:
        from lucid_ifv.precision import Float64Param, float64_model

        model, param = float64_model(model), Float64Param(param)
    prior = obj.params_L2() if prior_weight else None
    method = None if args.method == "auto" else args.method
    trivial = args.trivial_basis
    target_free = args.command == "which-channel"
    if target_free:
        from lucid_ifv import kinks

        result = kinks.invert_target_free(model, layer, images, param, prior=prior, cossim_pow=args.cossim_pow,
                                          method=method, tol=args.tol, aggregation=aggregation, dither=args.dither)
    else:
        result = ifv.invert(model, layer, images, param=param, cossim_pow=args.cossim_pow, aggregation=aggregation,
                            prior=prior, method=method, dither=args.dither,
                            critical_space=None if trivial is None else critical_basis(trivial),
                            expected_prior_weight=(prior_weight or None) if method != "paper" else None)
    modulo = (None if trivial is None or args.npz_targets is None else
              ifv.angle_modulo_trivial(result.target, args.npz_targets, result.response, trivial, args.cossim_pow))
    targets = args.npz_targets
    verdicts = result.verdicts()
    rows = []
    n_top = getattr(args, "top", 5)
    for i in range(len(result)):
        top = np.argsort(-np.nan_to_num(result.target[i], nan=-np.inf), kind="stable")[:n_top]
        row = {"sample": i, "verdict": str(verdicts[i]), "top_features": top.tolist(),
               "weights": [_json_number(w) for w in result.target[i][top].round(3)],
               "solve": result.solve_method,
               "gap": _json_number(result.gap[i]), "residual": _json_number(result.residual[i]),
               "dead_features": int(result.dead_features[i].sum())}
        if target_free:  # the question asked first: which channel, and can the answer be trusted
            fields, line = _channel_answer(result, i, top)
            row.update(fields)
            print(f"sample {i}: {line}")
            print(f"sample {i}: {_top_channels_line(result, i, top)}")
            print(f"sample {i}: the whole direction: {result.describe(i)}")
        else:
            print(f"sample {i}: {result.describe(i)}")
        if result.prior_weights is not None:
            row["prior_weight_estimated"] = result.prior_weights[i].tolist()
            row["prior_weight_expected"] = prior_weight
        if result.dither_spread is not None:
            row["dither_spread_deg"] = _json_number(result.dither_spread[i])
            row["denoised_residual"] = _json_number(result.denoised_residual[i])
        if result.sensitivity is not None:  # error bars of the top weights; NaN (dead) as None
            row["error_bars"] = [None if np.isnan(e) else round(float(e), 4) for e in result.sensitivity[i][top]]
            row["undetermined_features"] = int(np.sum(~result.determined()[i] & ~result.dead_features[i]))
        if targets is not None:
            alive = targets[i] * ~result.dead_features[i]
            row["angle_to_target"] = float(metrics.angle_deg(result.target[i], targets[i]))
            row["angle_to_target_live"] = float(metrics.angle_deg(result.target[i], alive)) if alive.any() else None
            row["angle_response_to_target"] = float(metrics.angle_deg(result.response[i], targets[i]))
            if modulo is not None:
                row["angle_to_target_modulo_trivial"] = float(modulo[i])
        rows.append(row)
        print(json.dumps(row))
    if args.out:
        from lucid_ifv.experiment import write_text_atomic

        bars = None if result.sensitivity is None else np.where(np.isnan(result.sensitivity), None,
                                                                  result.sensitivity).tolist()
        write_text_atomic(Path(args.out), json.dumps({"predicted": result.target.tolist(), "error_bars": bars,
                                                      "rows": rows}, indent=1))
    return 0


def _json_number(x) -> float | None:
    """A float for JSON; None for NaN or infinity (JSON has neither)."""
    x = float(x)
    return x if math.isfinite(x) else None


def _channel_answer(result, i: int, top) -> tuple[dict, str]:
    """The channel verdict of sample ``i`` of a target-free result: JSON fields and a line."""
    from lucid_ifv import kinks

    verdict = str(result.channel_verdicts()[i])
    margin = float(kinks.margin_angle(result.target[i:i + 1])[0])
    fields = {"channel_verdict": verdict, "margin_deg": _json_number(margin),
              "kinks": int(result.kink_count[i]), "kink_rank": int(result.kink_rank[i]),
              "kink_tol": _json_number(result.kink_tol[i])}
    if verdict == "no answer":
        line = "no answer (next line)"
    else:
        line = f"top channel {top[0]}: {verdict} (the nearest answer with another top channel is {margin:.1f} deg away"
        spread = None if result.dither_spread is None else float(result.dither_spread[i])
        if verdict == "unchecked":
            line += "; not re-dithered, so nothing measured how far the answer moves: --dither 4)"
        else:
            line += (f", {margin / spread:.1f}x the re-dithered spread of {spread:.2f} deg; identified above "
                     f"{kinks.CHANNEL_MARGIN_FACTOR:g}x)" if spread and np.isfinite(spread) else ")")
    return fields, line


def _top_channels_line(result, i: int, top) -> str:
    """Sample ``i`` of a target-free result in words: its top channels and what was projected out."""
    if result.kink_rank[i] < 0:
        return (f"no answer: the image sits on {result.kink_count[i]} kinks, more than it has parameters, at every "
                "tolerance tried (flat regions tie many pool windows; a grey render of a dead channel ties them "
                "all): nothing is left to solve with")
    weights = ", ".join(f"{c} ({w:.2f})" for c, w in zip(top, result.target[i][top]))
    return (f"top channels (weight): {weights}; {result.kink_count[i]} kinks projected out (span rank "
            f"{result.kink_rank[i]}, tolerance {result.kink_tol[i]:g})")


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
    float64_unless_unsupported(args, model)
    config = ex.ExperimentConfig(
        layer=args.layer or studied_layer(args.model, model), n_hoyer=args.n_hoyer, n_canonical=args.n_canonical,
        seed=args.seed, cossim_pow=args.cossim_pow, aggregation=args.aggregation, fft=args.param == "fft",
        decorrelate=not args.no_decorrelate, decay_power=args.decay_power, geometry_mask=args.mask,
        adam_steps=args.adam, lbfgs_steps=args.lbfgs, prior_weight=args.prior, prior_relative=not args.prior_absolute,
        batch_size=args.batch_size, reoptimize_steps=args.reoptimize, features=args.features,
        invert_8bit=args.invert_8bit, smooth=args.smooth, relu_beta=args.relu_beta,
        relu_beta_relative=args.relu_beta_relative, pool_temperature=args.pool_temperature,
        converge=args.converge, max_lbfgs_steps=args.max_lbfgs, per_sample_lbfgs=not args.joint_lbfgs,
        warmup_steps=args.warmup, float64_converge=args.float64_converge,
    )
    out = Path(args.out)
    client = None
    if args.workers is not None or args.scheduler is not None:
        from lucid_ifv import distributed

        client = distributed.connect(args.scheduler) if args.scheduler else distributed.local_cluster(args.workers)
    try:
        runner = None if client is None else distributed.dask_runner(client, args.model)
        records = ex.run_experiment(model, config, out, runner=runner)
    finally:
        if client is not None:
            client.close()
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
    from lucid_ifv import metrics
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
                            decay_power=args.decay_power, geometry_mask=args.mask, cossim_pow=args.cossim_pow,
                            aggregation=args.aggregation, prior_weight=args.prior, prior_relative=not args.prior_absolute, smooth=not args.relu,
                            relu_beta=args.relu_beta, relu_beta_relative=args.relu_beta_relative,
                            pool_temperature=args.pool_temperature, adam_steps=args.adam,
                            lbfgs_steps=args.lbfgs, converge=args.converge, max_lbfgs_steps=args.max_lbfgs,
                            per_sample_lbfgs=not args.joint_lbfgs, seed=args.seed, batch_size=args.batch_size, warmup_steps=args.warmup)
    out = Path(args.out)
    result = compare(model_a, layer_a, model_b, layer_b, config, features=args.features,
                     reoptimize_steps=args.reoptimize, retries=args.retries, out_dir=out / "batches",
                     feature_units=args.feature_units)
    report = result.to_dict()
    report.update(model_a=model_a.name, model_b=model_b.name, command="lucid-ifv " + " ".join(sys.argv[1:]))
    if truth is not None:
        report.update(permuted_seed=args.permuted, permutation_accuracy=result.accuracy(truth),
                      ground_truth=truth[result.features].tolist(),
                      permutation_accuracy_identified=result.accuracy(truth, only_identified=True))
        if result.sound is not None and result.sound.any():
            right = result.best_match == truth[result.features]
            report.update(permutation_accuracy_sound=float(np.mean(right[result.sound])))
        if result.row_norms is not None:
            report.update(permutation_accuracy_gradient=result.accuracy(truth, by="gradient"))
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
    if result.sound is not None:
        print(f"sound visualizations (A's own inversion identifies the channel): {int(result.sound.sum())} of "
              f"{len(result.sound)}, after up to {args.retries} retries")
    if args.converge is not None and result.render_residual is not None:
        stationary = int(np.sum(result.render_residual <= args.converge))
        print(f"renders stationary to --converge {args.converge:g}: {stationary} of {len(result.features)}"
              + ("" if stationary == len(result.features) else
                 f" (the others stopped at --max-lbfgs {args.max_lbfgs})"))
    negative = int(result.negative.sum())
    if negative and metrics.sign_symmetric(args.cossim_pow):
        print(f"note: {negative} of {len(result.features)} visualizations drive their channel negative: with an odd "
              f"--cossim-pow the objective is even in the channel's sign; on a layer whose features can be negative "
              f"use --cossim-pow 0 (Lucid's channel objective) or 2 (docs/compare.md, 'Which objective')")
    if truth is not None:
        print(f"permutation recovered for {report['permutation_accuracy']:.1%} of the features "
              f"({report['permutation_accuracy_identified']:.1%} of those 'identified' in B)"
              + ("" if result.row_norms is None else
                 f"; by the scale-free gradient share: {report['permutation_accuracy_gradient']:.1%}"))
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
        titles = [f"A{result.features[i]}: inv B{result.best_match[i]} ({result.best_score[i]:.2f})\n"
                  f"corr B{by_corr[i]} (r {corr[i, by_corr[i]]:.2f})" for i in differ]
        plot_images(result.images[differ], out / "disagreements.png", titles=titles, columns=4)


def _natural_images_for(args, model):
    """--images (read by `check_args`) or the shipped model's held-out set, in the model's
    channels and checked against its input size."""
    from lucid_ifv.imageio import to_channels

    natural = args.natural_images
    if natural is None:
        from modelzoo.shipped import SHIPPED, heldout

        if args.model not in SHIPPED:
            raise SystemExit("error: --images is required for a model that is not shipped (no held-out set)")
        natural = heldout(args.model)[0]
    natural = to_channels(natural, model.image_shape[-1], args.images or "the held-out images")
    if tuple(natural.shape[1:]) != tuple(model.image_shape):
        raise SystemExit(f"error: --images are {natural.shape[1]}x{natural.shape[2]}; the model takes "
                         f"{model.image_shape[0]}x{model.image_shape[1]}")
    return natural


def cmd_fidelity(args) -> int:
    """How closely the smooth surrogate follows --model on natural images, per beta
    (docs/smooth.md, "Fidelity"), and the smallest beta that follows it."""
    from lucid_ifv.smooth import FIDELITY_LOW, fidelity_summary, smooth_model, surrogate_fidelity

    model = load_any_model(args.model)
    layer = args.layer or studied_layer(args.model, model)
    model.layer(layer)  # KeyError naming the known layers
    natural = _natural_images_for(args, model)[: args.n]
    lines = [f"| beta | correlation median (min) | channels below {FIDELITY_LOW} | constant on the images "
             "| largest activation ratio median (min) |", "|---|---|---|---|---|"]
    suggested = None
    calibration = "noise" if args.relu_beta_relative else None
    for beta in sorted(args.betas):
        surrogate = smooth_model(model, beta, args.pool_temperature, calibration)
        summary = fidelity_summary(surrogate_fidelity(model, surrogate, layer, natural))
        lines.append(f"| {beta:g} | {summary['median_correlation']:.3f} ({summary['min_correlation']:.3f}) | "
                     f"{len(summary['low_channels'])} | {summary['constant']} | {summary['median_max_ratio']:.2f} "
                     f"({summary['min_max_ratio']:.2f}) |")
        if suggested is None and summary["median_correlation"] >= args.min_median:
            suggested = beta
    per_unit = ", beta per ReLU unit: beta / RMS of its input" if args.relu_beta_relative else ""
    print(f"{model.name} {layer}: the surrogate against the network on {len(natural)} natural images "
          f"(T = {args.pool_temperature:g}{per_unit})\n" + "\n".join(lines))
    if suggested is None:
        print(f"no beta reaches a median correlation of {args.min_median:g}: try larger --betas")
    else:
        flags = f"--relu-beta {suggested:g}" + (" --relu-beta-relative" if args.relu_beta_relative else "")
        print(f"smallest beta with median correlation >= {args.min_median:g}: {flags}")
    return 0


def cmd_trust(args) -> int:
    """A trust report for a visualization of --layer's --channel (docs/trust.md): inversion
    consistency, Geirhos et al.'s path similarity against natural images, a flag."""
    from lucid_ifv import trust

    model = load_any_model(args.model)
    layer = args.layer or studied_layer(args.model, model)
    k = model.layer(layer).depth  # KeyError naming the known layers
    if args.channel >= k:
        raise SystemExit(f"error: --channel {args.channel} out of range for layer {layer!r} with {k} channels")
    natural = _natural_images_for(args, model)
    visualization = args.visualization_image
    if visualization is not None:
        from lucid_ifv.imageio import to_channels

        visualization = to_channels(visualization, model.image_shape[-1], args.visualization)
        if tuple(visualization.shape[1:]) != tuple(model.image_shape):
            raise SystemExit(f"error: --visualization is {visualization.shape[1]}x{visualization.shape[2]}; the "
                             f"model takes {model.image_shape[0]}x{model.image_shape[1]}")
    if args.fooled:
        from lucid_ifv.fooling import fooling_circuit

        model = fooling_circuit(model, layer, args.channel, natural).model
    report = trust.trust_report(model, layer, args.channel, visualization, natural, seed=args.seed,
                                top_k=args.top_k, max_angle=args.max_angle, min_path_score=args.min_path_score,
                                max_activation_ratio=args.max_activation_ratio)
    if args.json:
        print(json.dumps(report.to_dict(), indent=1))
    else:
        print(report.text())
    return 0


def cmd_critical(args) -> int:
    """Algorithm 1 on an experiment folder, then IFV inside each candidate critical space."""
    from lucid_ifv import experiment as ex

    rows = ex.critical_space_analysis(args.run, args.eps_lo, args.eps_hi, args.max_angle)
    good = f"{ex.GOOD_DEG:g}"
    lines = ["| trivial dim | eps | median angle modulo T | q1 | q3 | p90 | selected | angle of 1/sqrt(k) to T "
             f"| features with e_j within 5 deg of T | identified in it (right: < {good} deg modulo T) "
             f"| < {good} deg modulo T |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['dim']} | {r['eps']:.3g} | {r['median_angle']:.2f} | {r['q1']:.2f} | {r['q3']:.2f} | "
                     f"{r['p90']:.2f} | "
                     f"{'yes' if r['selected'] else ''} | {r['ones_angle_deg']:.3f} | "
                     f"{', '.join(map(str, r['dead_like_features'])) or '-'} | "
                     f"{r['identified']} of {r['n']} ({r['identified_right']} right) | {r['right']} of {r['n']} |")
    text = "\n".join(lines)
    Path(args.run, "critical_space.md").write_text(f"Command: `lucid-ifv {' '.join(sys.argv[1:])}`\n\n{text}\n")
    print(text)
    if args.save:
        from lucid_ifv.atomic import write_atomic

        selected = [r for r in rows if r["selected"]]
        if not selected:
            raise ValueError(f"no critical space was selected in {args.run} (no candidate with at most half the "
                             "features trivial); nothing saved to --save")
        write_atomic(args.save, lambda fh: np.save(fh, selected[0]["trivial_basis"]))
        print(f"saved the selected trivial space ({selected[0]['dim']} direction(s), [k, r] orthonormal columns) "
              f"to {args.save}: invert in its critical space with `lucid-ifv invert ... --trivial {args.save}`")
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
             f"{args.max_lbfgs}; float32 only, for speed: `lucid-ifv experiment --smooth` also continues in float64), L2 prior "
             f"{args.prior:g} (relative) on the parameters; angles in degrees."]
    medians = {}
    for mode, smooth in (("smooth surrogate", True), ("plain ReLU network", False)):
        config = ex.ExperimentConfig(layer=layer, n_hoyer=args.n, seed=args.seed, adam_steps=args.adam,
                                     lbfgs_steps=0, converge=args.converge, max_lbfgs_steps=args.max_lbfgs,
                                     prior_weight=args.prior, prior_relative=True, batch_size=args.n,
                                     fft=args.param == "fft", decorrelate=args.param == "fft", smooth=smooth,
                                     float64_converge=None)  # float32: quick (smooth mode's default adds float64)
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


# -- checks before any work ------------------------------------------------------------------
# Every argument is checked before TensorFlow is imported or a model loaded: numbers here,
# files and folders in `check_args`; what needs the model (channel range, target length,
# image channels and size) right after it loads (`prepared_model`'s ``check``).
INT_MINIMUM = {"adam": 1, "lbfgs": 0, "max_lbfgs": 1, "seed": 0, "batch": 1, "channel": 0, "n_hoyer": 0,
               "n_canonical": 0, "warmup": 0, "batch_size": 1, "reoptimize": 0, "n": 1, "permuted": 0,
               "retries": 0, "top": 1}
FLOAT_MINIMUM = {"decay_power": (0, False), "cossim_pow": (0, False), "prior": (0, False), "relu_beta": (0, True),
                 "pool_temperature": (0, True), "converge": (0, True), "float64_converge": (0, True), "eps_lo": (0, True), "eps_hi": (0, True),
                 "max_angle": (0, True), "tol": (0, False)}  # (minimum, strictly above it)
# `experiment` names its settings as settings.json and ExperimentConfig do
SETTING_NAMES = {"adam": "adam_steps", "lbfgs": "lbfgs_steps", "max_lbfgs": "max_lbfgs_steps",
                 "prior": "prior_weight", "reoptimize": "reoptimize_steps", "warmup": "warmup_steps"}


def _label(args, dest: str) -> str:
    if args.command == "experiment":
        return SETTING_NAMES.get(dest, dest)
    return "--" + dest.replace("_", "-")


def changed_options(parser, args) -> set:
    """The options of ``args.command`` whose value is not the subcommand's default (what the
    user set; typing a default is the same as not typing it)."""
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices[args.command]
    return {a.dest for a in sub._actions if a.dest in vars(args) and getattr(args, a.dest) != sub.get_default(a.dest)}


def check_not_ignored(args) -> None:
    """Refuse options that the other options make irrelevant (they would be dropped silently)."""
    changed = getattr(args, "changed_options", set())

    def refuse(options, reason):
        given = [_label(args, d) for d in options if d in changed and getattr(args, d)]  # 0/False/None: harmless
        if given:
            raise ValueError(f"{' and '.join(given)} {'has' if len(given) == 1 else 'have'} no effect {reason}")

    if "smooth" in vars(args) and not args.smooth:
        refuse(("relu_beta", "pool_temperature"), "without --smooth (they set the smooth surrogate)")
        if args.command in ("render", "experiment"):
            refuse(("float32",), "without --smooth (it turns off smooth mode's float64 continuation)")
    if args.command == "render":
        if args.channel is not None:
            refuse(("cossim_pow", "aggregation"), "with --channel (Lucid's channel objective: the channel's mean)")
        if args.channel is not None or args.targets:
            refuse(("batch",), "with --channel or --targets (they give the batch)")
        if args.transforms == "standard":
            refuse(("lbfgs", "converge", "joint_lbfgs", "max_lbfgs", "float64_converge"),
                   "with --transforms standard (random transforms: Adam only; L-BFGS needs a fixed objective)")


def check_not_empty(args) -> None:
    """Refuse an option given as an empty string (``--out ""`` would mean the current folder,
    ``--layer ""`` the default layer): name it."""
    for dest, value in vars(args).items():
        if any(isinstance(v, str) and not v.strip() for v in (value if isinstance(value, list) else [value])):
            raise ValueError(f"{_label(args, dest)} is empty ({value!r}); expected a value")


def check_numbers(args) -> None:
    """Integer options >= their minimum, float options finite and above theirs (None stays
    allowed where it is the default), and the few rules between options."""
    from lucid_ifv.validation import check_feature_indices

    values = vars(args)
    for dest, minimum in INT_MINIMUM.items():
        value = values.get(dest)
        if value is not None and value < minimum:
            note = " (negative indices are refused: -1 is not the last channel)" if dest == "channel" else ""
            raise ValueError(f"{_label(args, dest)} must be an integer >= {minimum}, got {value}{note}")
    for dest, (minimum, strict) in FLOAT_MINIMUM.items():
        value = values.get(dest)
        if value is not None and not (math.isfinite(value) and (value > minimum if strict else value >= minimum)):
            raise ValueError(f"{_label(args, dest)} must be a finite number {'>' if strict else '>='} {minimum:g}, "
                             f"got {value!r}")
    if values.get("max_angle") is not None and args.max_angle > 90:
        raise ValueError(f"--max-angle must be an angle in (0, 90] degrees, got {args.max_angle!r}")
    if values.get("eps_lo") is not None and not args.eps_lo < args.eps_hi:
        raise ValueError(f"--eps-lo must be below --eps-hi, got {args.eps_lo!r} and {args.eps_hi!r}")
    if values.get("converge") is not None and values.get("lbfgs") is not None and args.max_lbfgs < args.lbfgs:
        raise ValueError(f"{_label(args, 'max_lbfgs')} must be >= {_label(args, 'lbfgs')} when converging, got "
                         f"{args.max_lbfgs} and {args.lbfgs}")
    if values.get("float64_converge") is not None and (values.get("converge") is None or values.get("joint_lbfgs")):
        raise ValueError(f"{_label(args, 'float64_converge')} continues converged realizations, each sample alone: it "
                         f"needs {_label(args, 'converge')} and not {_label(args, 'joint_lbfgs')}")
    features = values.get("features")
    if features is not None:
        check_feature_indices(features, None, _label(args, "features"))


def _load_targets(path) -> np.ndarray:
    """``--targets``: a .npy array (or a .npz's ``targets``, as render writes) ``[k]`` or ``[B, k]``."""
    from lucid_ifv.imageio import load_array
    from lucid_ifv.validation import check_finite

    path = Path(path)
    t = load_array(path, "targets" if path.suffix == ".npz" else None, "targets file").astype(np.float64)
    if t.ndim not in (1, 2) or 0 in t.shape:
        raise ValueError(f"{path}: targets of shape {t.shape}; expected [k] or [B, k] with B, k >= 1")
    check_finite(t, f"{path}: targets")
    if not (np.linalg.norm(np.atleast_2d(t), axis=-1) > 0).all():
        raise ValueError(f"{path}: every target must be non-zero")
    return t


def _npz_targets(paths) -> np.ndarray | None:
    """The ``targets`` of a single .npz given to invert (for the angles), checked; None without."""
    from lucid_ifv.imageio import load_array
    from lucid_ifv.validation import check_finite

    if len(paths) != 1 or Path(paths[0]).suffix != ".npz":
        return None
    with open(paths[0], "rb") as fh, np.load(fh, allow_pickle=False) as data:  # its images were read already
        if "targets" not in data.files:
            return None
    targets = load_array(paths[0], "targets").astype(np.float64)
    if targets.ndim != 2:
        raise ValueError(f"{paths[0]}: 'targets' has shape {targets.shape}; expected [B, k], one target per image")
    return check_finite(targets, f"{paths[0]}: targets")


def _check_npy_name(path, flag: str) -> None:
    if Path(path).suffix != ".npy":
        raise ValueError(f"{flag} {path}: expected a .npy file name")


def _load_trivial(path) -> np.ndarray:
    """`invert --trivial`: trivial directions ``[k, r]`` (orthonormal columns, r >= 1) from a
    .npy file (as `critical --save` writes), checked; the feature count is checked later."""
    from lucid_ifv.imageio import load_array
    from lucid_ifv.validation import check_orthonormal

    _check_npy_name(path, "--trivial")
    basis = check_orthonormal(load_array(path, what="--trivial file"), f"--trivial {path}")
    if basis.shape[1] == 0:
        raise ValueError(f"--trivial {path} has shape {basis.shape}: no trivial direction; omit --trivial instead")
    return basis


def _check_run_folder(run) -> None:
    """`critical --run`: an experiment folder with settings and readable realizations."""
    from lucid_ifv.imageio import load_array

    run = Path(run)
    expected = "expected the --out folder of `lucid-ifv experiment`"
    if not run.exists():
        raise FileNotFoundError(f"no experiment folder at {run}; {expected}")
    if not run.is_dir():
        raise ValueError(f"--run {run} is a file; {expected}")
    settings = run / "settings.json"
    if not settings.is_file():
        raise ValueError(f"{run} has no settings.json; {expected}")
    try:
        config = json.loads(settings.read_text()).get("config")
    except (ValueError, AttributeError, UnicodeDecodeError) as err:
        raise ValueError(f"{settings} is not a valid settings file ({' '.join(str(err).split())})") from None
    if not isinstance(config, dict):
        raise ValueError(f"{settings} has no 'config' object; {expected}")
    files = sorted((run / "realizations").glob("batch_*.npz"))
    if not files:
        raise FileNotFoundError(f"no realizations in {run}/realizations (run the experiment first)")
    for path in files:
        try:
            with open(path, "rb") as fh, np.load(fh, allow_pickle=False) as data:
                keys = list(data.files)
        except Exception as err:  # a damaged archive fails in zipfile, zlib or numpy
            raise ValueError(f"{path} is truncated or corrupt: {' '.join(str(err).split())}") from None
        for key in keys:
            load_array(path, key)


def check_args(args) -> None:
    """Every check that needs no model, before TensorFlow is imported: numbers, model names,
    input files (read and checked), output folders (created and probed)."""
    from lucid_ifv.imageio import read_image_file
    from lucid_ifv.validation import check_out_dir, check_out_file

    check_not_empty(args)
    apply_smooth_defaults(args)
    check_numbers(args)
    check_not_ignored(args)
    if args.threads is not None and args.threads < 1:
        raise SystemExit(f"error: --threads must be an integer >= 1, got {args.threads}")
    command = args.command
    if command == "compare":
        if args.model_b and args.permuted is not None:
            raise SystemExit("error: give --model-b or --permuted, not both")
        if not args.model_b and args.permuted is None:
            raise SystemExit("error: give --model-b (another network) or --permuted SEED (a permuted copy of --model)")
        if args.baseline and args.model not in _shipped_names():
            raise SystemExit("error: --baseline needs a shipped --model (its held-out images are the natural inputs)")
        if args.model_b:
            check_model_spec(args.model_b, "--model-b")
    if getattr(args, "model", None) is not None:
        check_model_spec(args.model)
    if command == "render":
        args.target_array = _load_targets(args.targets) if args.targets else None
        check_out_dir(args.out)
    elif command in ("invert", "which-channel"):
        if args.prior == 0 and args.method in ("prior_aware", "anchored", "nonneg"):
            raise ValueError(f"--method {args.method} needs the prior the images were rendered with, but --prior 0 "
                             "says there was none (use --method paper, or give the prior's weight)")
        args.image_batches = [read_image_file(p) for p in args.images]
        args.npz_targets = _npz_targets(args.images)
        args.trivial_basis = _load_trivial(args.trivial) if args.trivial else None
        if args.out:
            check_out_file(args.out)
    elif command == "experiment":
        check_out_dir(args.out, "experiment folder")
        if args.workers is not None or args.scheduler is not None:
            import importlib.util

            if args.workers is not None and args.workers < 1:
                raise SystemExit(f"error: --workers must be an integer >= 1, got {args.workers}")
            if importlib.util.find_spec("distributed") is None:
                raise SystemExit("error: --workers/--scheduler need dask.distributed: pip install 'lucid-ifv[dask]'")
    elif command in ("compare", "demo"):
        check_out_dir(args.out)
    elif command == "critical":
        if args.save:
            _check_npy_name(args.save, "--save")
            check_out_file(args.save, "--save file")
        _check_run_folder(args.run)
    elif command == "trust":  # thresholds, and the image files read (and checked) before TensorFlow
        from lucid_ifv.imageio import read_image_file

        if args.top_k < 2:
            raise SystemExit(f"error: --top-k must be an integer >= 2, got {args.top_k}")
        if not 0 <= args.min_path_score <= 1:  # NaN fails too
            raise SystemExit(f"error: --min-path-score must be in [0, 1] (a percentile of random natural images), "
                             f"got {args.min_path_score!r}")
        if not args.max_activation_ratio > 0:  # inf is allowed: no activation check
            raise SystemExit(f"error: --max-activation-ratio must be a number > 0, got {args.max_activation_ratio!r}")
        args.visualization_image = read_image_file(args.visualization) if args.visualization else None
        if args.visualization_image is not None and len(args.visualization_image) != 1:
            raise SystemExit(f"error: --visualization {args.visualization} holds {len(args.visualization_image)} "
                             "images; expected one")
        args.natural_images = _read_natural_images(args.images, args.top_k + 2,
                                                   f"the path-similarity check with --top-k {args.top_k}")
    elif command == "fidelity":
        bad = [b for b in args.betas if not (math.isfinite(b) and b > 0)]
        if bad:
            raise SystemExit(f"error: --betas must be finite numbers > 0, got {bad[0]!r}")
        if args.n < 2:
            raise SystemExit(f"error: --n must be an integer >= 2 (a correlation needs two images), got {args.n}")
        if not 0 < args.min_median <= 1:
            raise SystemExit(f"error: --min-median must be a number in (0, 1], got {args.min_median!r}")
        args.natural_images = _read_natural_images(args.images, 2, "a correlation")


def _read_natural_images(images, minimum: int, needed_by: str):
    """--images (a folder of PNG/JPEG files, or one image file) read and checked, or None."""
    from lucid_ifv.imageio import load_images, read_image_file

    if not images:
        return None
    path = Path(images)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg"))
        if not files:
            raise SystemExit(f"error: --images {images} is a folder without PNG or JPEG files")
        try:
            natural = load_images(files)
        except ValueError as err:  # e.g. images of different sizes: say which folder
            raise SystemExit(f"error: --images {images}: {err}") from None
    else:
        natural = read_image_file(path)
    if len(natural) < minimum:
        raise SystemExit(f"error: --images holds {len(natural)} images; {needed_by} needs at least {minimum} "
                         "natural images")
    return natural


# -- entry point ---------------------------------------------------------------------------
class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (``error: ...``, exit status 2), and negative or
    non-finite numbers read as values (``--prior -1e-4``, ``--prior -inf``) so that they
    reach our checks instead of argparse's "expected one argument"."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._negative_number_matcher = re.compile(
            r"^-(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$|^-(inf|infinity|nan)$", re.IGNORECASE)

    def error(self, message):
        self.exit(2, f"error: {' '.join(message.split())} (see `{self.prog} --help`)\n")


def add_image_options(p) -> None:
    """--images, --dither and --out of the inverting commands."""
    p.add_argument("--images", nargs="+", required=True)
    p.add_argument("--dither", default="auto", type=_dither_arg, metavar="N",
                   help="re-dithered inversions that check answers from 8-bit images (PNGs), each one more "
                        "inversion; 'auto' (default): 4 when every value lies on the 8-bit grid, else 0 "
                        "(docs/ifv.md, 'Quantized images')")
    p.add_argument("--out", help="write the predictions as JSON")


def _set_defaults_with_help(p, why: str, **defaults) -> None:
    """``p.set_defaults(**defaults)``, and each option's help says its default here and why."""
    p.set_defaults(**defaults)
    for action in p._actions:
        if action.dest in defaults:
            action.help = f"{(action.help or '').split(' (default')[0]} (default here {defaults[action.dest]}: {why})"


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="lucid-ifv", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=None, metavar="N",
                        help=f"TensorFlow intra-op and BLAS threads (inter-op 1); default ${threads.ENV_VAR} or "
                             f"TensorFlow's own choice (lucid_ifv/threads.py)")
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
    add_float64_options(p, "the .npz keeps the float64 parameters and images (invert reads them in float64)")
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_render)

    p = sub.add_parser("invert", help="Grad-IFV on images (PNG, .npy, or a render's .npz)")
    add_fv_options(p, render=False)
    add_image_options(p)
    p.add_argument("--trivial", metavar="FILE.npy",
                   help="trivial directions [k, r] (`critical --save`): solve and judge in their complement, the "
                        "critical space (paper Sec. 2.2, 3.5)")
    precision = p.add_mutually_exclusive_group()
    precision.add_argument("--float64", action="store_true", default=None,
                           help="invert on float64 copies of the network and parametrization (default: when the "
                                "images are float64 arrays, e.g. a --smooth render's .npz: float32 would round their "
                                "stationarity away; docs/ifv.md, 'Precision')")
    precision.add_argument("--float32", dest="float64", action="store_false",
                           help="invert in float32 even when the images are float64 arrays")
    p.set_defaults(func=cmd_invert)

    p = sub.add_parser("which-channel", help="which channel (or direction) a visualization of the ReLU network was "
                                             "made for: target-free inversion (docs/target_free.md)")
    add_fv_options(p, render=False, smooth=False)  # renders of --smooth: `invert --smooth`
    add_image_options(p)
    p.add_argument("--tol", type=float, default=1e-3,
                   help="kink tolerance, relative to each tensor's RMS (default 1e-3; an image on more kinks than "
                        "parameters falls back to 3e-4; docs/target_free.md)")
    p.add_argument("--top", type=int, default=5, help="channels to list per image (default 5)")
    _set_defaults_with_help(p, "Lucid's channel objective; docs/target_free.md", aggregation="mean", cossim_pow=0.0, method="nonneg")
    p.set_defaults(func=cmd_invert, trivial=None)

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
    add_float64_options(p, "each sample is inverted in float64")
    cluster = p.add_mutually_exclusive_group()
    cluster.add_argument("--workers", type=int, metavar="N",
                         help="run the batches on a local Dask cluster of N processes (needs lucid-ifv[dask])")
    cluster.add_argument("--scheduler", metavar="ADDRESS",
                         help="run the batches on the Dask cluster at ADDRESS, e.g. tcp://host:8786 (dask-jobqueue)")
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_experiment)

    p = sub.add_parser("compare", help="visualize a network's features and invert them in another network")
    add_fv_options(p, smooth_flag=False)
    p.add_argument("--model-b", help="the network to invert in (shipped name, InceptionV1 or .pb)")
    p.add_argument("--layer-b", help="its layer (default: the shipped model's studied layer)")
    p.add_argument("--permuted", type=int, metavar="SEED",
                   help="instead of --model-b: --model with --layer's channels permuted and rescaled (ground truth; "
                        "for '<layer>_pre_relu' the units it carries)")
    p.add_argument("--relu", action="store_true", help="render and invert on the plain networks (default: smooth)")
    p.add_argument("--features", type=int, nargs="+", help="A's channels (default all)")
    p.add_argument("--warmup", type=int, default=200,
                   help="Adam steps without the prior before the --adam steps (default 200; docs/compare.md)")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--reoptimize", type=int, default=0, help="Adam steps of the re-optimization SSIM in B (0: skip)")
    p.add_argument("--retries", type=int, default=0,
                   help="render a feature again (new seed) while A's own inversion does not identify it, at most "
                        "this many times (default 0; docs/compare.md); a larger value on a finished --out "
                        "re-renders only its rows still unsound")
    p.add_argument("--feature-units", choices=("raw", "rms"), default="raw",  # compare.FEATURE_UNITS
                   help="read each compared feature in raw units (default) or divided by its RMS on the "
                        "calibration noise images ('rms': scale-free; docs/compare.md, 'Feature units')")
    p.add_argument("--baseline", action="store_true",
                   help="also match by activation correlation on --model's held-out images, and compare")
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_compare)
    _set_defaults_with_help(p, "compare.default_config; docs/compare.md", param="pixel", no_decorrelate=True,
                            cossim_pow=0.0, aggregation="homogeneous_max_pool_mean", relu_beta_relative=True,
                            adam=400, lbfgs=0, converge=1e-3, max_lbfgs=4000)  # tests/test_compare.py

    p = sub.add_parser("critical", help="Algorithm 1 (critical spaces) on an experiment folder")
    p.add_argument("--run", required=True, help="a `lucid-ifv experiment --out` folder")
    p.add_argument("--eps-lo", type=float, default=1e-6)
    p.add_argument("--eps-hi", type=float, default=0.5)
    p.add_argument("--max-angle", type=float, default=30.0, help="principal-angle cutoff of the merge (degrees)")
    p.add_argument("--save", metavar="FILE.npy",
                   help="write the selected trivial space ([k, r] orthonormal columns) for `invert --trivial`")
    p.set_defaults(func=cmd_critical)

    p = sub.add_parser("fidelity", help="how closely the smooth surrogate follows the network (per beta)")
    p.add_argument("--model", default=DEFAULT_MODEL, help="shipped model name, InceptionV1, or .pb path/URL")
    p.add_argument("--layer", help="the layer compared (default: the shipped model's studied layer)")
    p.add_argument("--betas", type=float, nargs="+", default=[10.0, 30.0, 100.0],
                   help="softplus sharpness values to try (default 10 30 100)")
    p.add_argument("--pool-temperature", type=float, default=0.05, help="log-sum-exp pool temperature (default 0.05)")
    p.add_argument("--images", help="natural images: a folder of PNGs, or a .npy / .npz ([N, H, W, C] in [0, 1]); "
                                    "default: the shipped model's held-out set")
    p.add_argument("--n", type=int, default=500, help="use at most this many images (default 500)")
    p.add_argument("--min-median", type=float, default=0.9,
                   help="median per-channel correlation a suggested beta must reach (default 0.9)")
    p.add_argument("--relu-beta-relative", action=argparse.BooleanOptionalAction, default=False,
                   help="each beta per ReLU unit, relative to its input's RMS (as --smooth --relu-beta-relative)")
    p.set_defaults(func=cmd_fidelity)

    p = sub.add_parser("trust", help="trust report for a unit's visualization (inversion + path similarity)")
    p.add_argument("--model", default=DEFAULT_MODEL, help="shipped model name, InceptionV1, or .pb path/URL")
    p.add_argument("--layer", help="the unit's layer (default: the shipped model's studied layer)")
    p.add_argument("--channel", type=int, required=True, help="the unit (a channel of --layer)")
    p.add_argument("--visualization", help="the visualization to judge (PNG, .npy or .npz; default: render one "
                                           "with the library's defaults)")
    p.add_argument("--images", help="natural images: a folder of PNGs, or a .npy / .npz ([N, H, W, C] in [0, 1]); "
                                    "default: the shipped model's held-out set")
    p.add_argument("--top-k", type=int, default=16, help="natural images that activate the unit most (default 16)")
    p.add_argument("--max-angle", type=float, default=10.0,
                   help="largest angle (deg) between inverted and claimed objective for 'trusted' (default 10)")
    p.add_argument("--min-path-score", type=float, default=0.25,
                   help="smallest path score (percentile among random natural images) for 'trusted' "
                        "(default 0.25, calibrated on mnist_small conv2; docs/trust.md)")
    p.add_argument("--max-activation-ratio", type=float, default=1.98,
                   help="largest ratio of the visualization's unit activation to the largest natural one for "
                        "'trusted' (default 1.98, calibrated on mnist_small conv2; docs/trust.md)")
    p.add_argument("--fooled", action="store_true",
                   help="judge a copy of --model with a fooling circuit on --channel (lucid_ifv.fooling)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=cmd_trust)

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
    """Run one subcommand. Bad input is one line ``error: ...`` on stderr and status 2: returned,
    or raised as `CliError` (a SystemExit) where the code raises ``SystemExit("error: ...")``."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as err:  # --help (0) or an argument error, already printed in one line
        return err.code if isinstance(err.code, int) else 2
    args.changed_options = changed_options(parser, args)
    try:
        check_args(args)
        threads.configure_from_env() if args.threads is None else threads.configure_threads(args.threads)
        return args.func(args)
    except SystemExit as err:
        if isinstance(err.code, str):
            message = " ".join(err.code.split())
            print(message, file=sys.stderr)
            raise CliError(message) from None
        raise
    except KeyError as err:  # unknown layer...: its message, without KeyError's quotes
        message = err.args[0] if len(err.args) == 1 and isinstance(err.args[0], str) else str(err)
        print(f"error: {' '.join(message.split())}", file=sys.stderr)
        return 2
    except (ValueError, OSError) as err:
        message = str(err) if not isinstance(err, OSError) or not err.filename else f"{err.filename}: {err.strerror}"
        print(f"error: {' '.join(message.split())}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
