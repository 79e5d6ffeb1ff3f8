"""Issue 12: inverting imperfect visualizations (8-bit files, resized images, early stops).

    python experiments/imperfect_inputs.py --run runs/photos_cnn_conv2d_3_pixel_smooth \
        --out docs/results/imperfect [--n 30] [--early 50 100 200] [--polish 50] [--weighted] [--dither N]

``--run`` is a converged `lucid-ifv experiment` folder (smooth mode; see the command in
docs/results.md). Its realizations (rendered to a relative stationarity of 1e-3) are degraded
and inverted with the run's default solve, the target never used:

- ``float``: as rendered (the reference);
- ``8bit``: rounded to 8 bits, what a PNG holds;
- ``half``: shrunk to half size (area average) and enlarged back (bilinear), what a
  thumbnail does;
- ``upscaled``: enlarged 4x (bilinear) and shrunk back (area average), what saving a large
  copy for display and reading it at the model's size does;
- ``adam<N>``: rendered again from the same targets and seeds, stopped after N Adam steps
  (no L-BFGS, not stationary); ``adam<N> 8bit``: that render rounded to 8 bits.

The 8-bit inputs are checked by re-dithering (`lucid_ifv.ifv.dither`, `invert`'s default for
images on the 8-bit grid); every input is judged by four verdict rules (`rules`).

Remedy (``--polish S``, target-free): from the degraded image, S L-BFGS steps of the FV
objective towards the first inversion's answer t1 (plus the run's prior), then invert again.
The polish moves the image to a nearby stationary point; it can only help if that point's
objective is close to t (it uses t1, never t).

Remedy (``--weighted``, target-free, rows ``8bit + weighted``): each of the D stationarity
equations weighted by the inverse of its 8-bit noise. With a pixel parametrization through a
sigmoid, rounding ``x`` by up to 1/510 moves the parameter by ``dx / (x (1 - x))``, so row d
gets ``w_d = x_d (1 - x_d)`` (``dx/dz``; saturated pixels, whose parameter is lost, get ~0):
weighted least squares for white noise in the image. Pixel parametrizations whose map is
elementwise only (no colour decorrelation, no Fourier basis).

Writes ``records.json`` and ``table.md``: per input, the angle on live features and
overall, the dead count, the verdicts, the feature-response baseline; and the verdict's
precision and recall for "angle on live features < 5 deg" over all degraded inputs.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

GOOD_DEG = 5.0


def degrade(images: np.ndarray, kind: str) -> np.ndarray:
    """``images`` ``[B, H, W, C]`` in [0, 1] after degradation ``kind`` (see the docstring)."""
    import tensorflow as tf

    from lucid_ifv.imageio import quantize_8bit

    h, w = images.shape[1:3]
    x = tf.constant(images, tf.float32)
    if kind == "8bit":
        return quantize_8bit(images)
    if kind == "half":
        small = tf.image.resize(x, (h // 2, w // 2), method="area")
        return np.clip(tf.image.resize(small, (h, w), method="bilinear").numpy(), 0, 1)
    if kind == "upscaled":
        big = tf.image.resize(x, (4 * h, 4 * w), method="bilinear")
        return np.clip(tf.image.resize(big, (h, w), method="area").numpy(), 0, 1)
    raise ValueError(f"unknown degradation {kind!r}; expected 8bit, half or upscaled")


def invert(setup, config, images, dither="auto"):
    """The run's default inversion of ``images``; ``dither``: re-dithered draws for images on
    the 8-bit grid ('auto': the library's default), none for the others."""
    from lucid_ifv import ifv
    from lucid_ifv import objectives as obj
    from lucid_ifv.experiment import default_solve, realization_param
    from lucid_ifv.ifv.dither import on_8bit_grid

    if dither != "auto" and not on_8bit_grid(images):
        dither = 0

    param = realization_param(setup.model, config, len(images), 0)
    return ifv.invert(setup.model, config.layer, images, param=param, cossim_pow=config.cossim_pow,
                      aggregation=setup.aggregation, features=config.features,
                      prior=obj.params_L2() if setup.prior_weight else None, method=default_solve(config),
                      dither=dither)


def noise_weights(param, params) -> np.ndarray:
    """``[B, D]``: ``dx_d / dz_d`` of an elementwise parametrization at ``params``, per sample
    divided by its largest (module docstring, ``--weighted``)."""
    import tensorflow as tf

    if not is_elementwise(param):
        raise ValueError(f"--weighted needs a pixel parametrization without colour decorrelation, got {param!r}")
    z = [tf.constant(p) for p in params]
    with tf.GradientTape() as tape:
        tape.watch(z)
        total = tf.reduce_sum(param.forward(z))  # elementwise map: its gradient is the diagonal
    slope = np.concatenate([g.numpy().reshape(len(params[0]), -1) for g in tape.gradient(total, z)], axis=1)
    return slope / np.abs(slope).max(axis=1, keepdims=True)


def is_elementwise(param) -> bool:
    """Whether each input value depends on its own parameter only (pixels, no decorrelation)."""
    from lucid_ifv.param.color import SigmoidParam, ValidRGBParam
    from lucid_ifv.param.spatial import PixelParam

    pointwise = isinstance(param, SigmoidParam) or (isinstance(param, ValidRGBParam) and not param.decorrelate)
    return pointwise and isinstance(param.inner, PixelParam)


def invert_weighted(setup, config, images):
    """`invert` with the equations weighted by `noise_weights` (``--weighted``)."""
    from lucid_ifv import ifv
    from lucid_ifv import objectives as obj
    from lucid_ifv.experiment import default_solve, realization_param

    param = realization_param(setup.model, config, len(images), 0)
    _, params = ifv.resolve_realization(setup.model, images, param, "params")
    f, jac = ifv.feature_jacobian(setup.model, config.layer, params, param, setup.aggregation, config.features)
    grads = ifv.prior_gradients(setup.model, obj.params_L2(), params, param) if setup.prior_weight else None
    w = noise_weights(param, params)[:, None, :]
    return ifv.solve(f, jac * w, config.cossim_pow, prior_grads=None if grads is None else grads * w,
                     method=default_solve(config))


def polish(setup, config, images, targets_hat, steps):
    """``steps`` L-BFGS steps of the FV objective towards ``targets_hat`` from ``images``."""
    from lucid_ifv.experiment import _render, fv_objective, realization_param

    param = realization_param(setup.model, config, len(images), 0)
    param.assign_from_image(images)
    result = _render(setup.model, fv_objective(config, setup, targets_hat), param, transforms=[], thresholds=(0,),
                     lbfgs_steps=steps, progress=False)
    return result.final


#: The verdict rules compared on every input (the library's default first).
def rules() -> dict:
    from lucid_ifv.ifv import VerdictRule

    return {"verdict": VerdictRule(), "verdict_bar_leaning": VerdictRule(dither_leaning="error_bars"),
            "verdict_undithered": VerdictRule(max_dither_spread=None),
            "verdict_before_error_bars": VerdictRule(determined_tol=None, max_dither_spread=None)}


def rows_of(name, result, targets, response, cossim_pow):
    from lucid_ifv.metrics import objective_angle_deg

    verdicts = {key: result.verdicts(rule) for key, rule in rules().items()}
    rows = []
    for i in range(len(targets)):
        alive = targets[i] * ~result.dead_features[i]
        rows.append({
            "input": name, "sample": i,
            "angle_alive": float(objective_angle_deg(result.target[i], alive, cossim_pow)) if alive.any() else None,
            "angle": float(objective_angle_deg(result.target[i], targets[i], cossim_pow)),
            "dead": int(result.dead_features[i].sum()), **{key: str(v[i]) for key, v in verdicts.items()},
            "angle_response": float(objective_angle_deg(response[i], targets[i], cossim_pow)),
        })
        if result.dither_spread is not None:
            rows[-1].update(dither_spread=float(result.dither_spread[i]),
                            denoised_residual=float(result.denoised_residual[i]), residual=float(result.residual[i]))
    return rows


def run(run_dir: Path, n: int, early: list, polish_steps: int, batch: int, weighted: bool = False,
        dither="auto") -> list:
    from lucid_ifv import experiment as ex
    from lucid_ifv.cli import load_any_model

    settings = ex.load_settings(run_dir)
    config = ex.ExperimentConfig(**settings["config"])
    model = load_any_model(settings["model"])
    setup = ex.prepare(model, config)
    saved = ex.load_realizations(run_dir)
    images_all, targets_all, response_all = saved["images"][:n], saved["targets"][:n], saved["response"][:n]
    records = []
    for start in range(0, len(images_all), batch):
        images = images_all[start:start + batch]
        targets, response = targets_all[start:start + batch], response_all[start:start + batch]
        inputs = {"float": images, **{kind: degrade(images, kind) for kind in ("8bit", "half", "upscaled")}}
        for steps in early:
            short = ex.ExperimentConfig(**{**settings["config"], "adam_steps": steps, "lbfgs_steps": 0,
                                           "converge": None, "warmup_steps": 0})
            seed = ex.batch_seed(config, list(range(start, start + len(images))))
            param = ex.realization_param(setup.model, short, len(images), seed)
            inputs[f"adam{steps}"] = ex.realize(setup, short, targets, param, seed).final
            inputs[f"adam{steps} 8bit"] = degrade(inputs[f"adam{steps}"], "8bit")  # a PNG of a render stopped short
        for name, x in inputs.items():
            result = invert(setup, config, x, dither)
            rows = rows_of(name, result, targets, response, config.cossim_pow)
            if polish_steps and name != "float":
                t1 = result.target * np.where(result.target.sum(1, keepdims=True) < 0, -1, 1)  # (odd p: sign-free)
                polished = polish(setup, config, x, t1 / np.linalg.norm(t1, axis=1, keepdims=True), polish_steps)
                rows += rows_of(f"{name} + polish", invert(setup, config, polished, dither), targets, response,
                                config.cossim_pow)
            if weighted and name == "8bit":
                rows += rows_of(f"{name} + weighted", invert_weighted(setup, config, x), targets, response,
                                config.cossim_pow)
            for row in rows:
                row["sample"] += start
            records += rows
        print(f"samples {start}-{start + len(images) - 1} done", flush=True)
    return records


def fmt(values) -> str:
    values = np.asarray([v for v in values if v is not None], np.float64)
    if values.size == 0:
        return "-"
    q1, med, q3, p90 = np.percentile(values, [25, 50, 75, 90])
    return f"{med:.2f} [{q1:.2f}, {q3:.2f}], p90 {p90:.2f}"


def table(records: list, run_dir) -> str:
    names = list(dict.fromkeys(r["input"] for r in records))
    lines = [f"Realizations of `{run_dir}` (converged to 1e-3), inverted with the run's default solve; angles in "
             "degrees, median [q1, q3], p90.", "",
             "| input | n | t* on live features | t* overall | dead (median) | identified | right (< 5 deg) among "
             "identified | feature response f |", "|---|---|---|---|---|---|---|---|"]
    for name in names:
        rows = [r for r in records if r["input"] == name]
        ident = [r for r in rows if r["verdict"] == "identified"]
        right = sum(1 for r in ident if r["angle_alive"] is not None and r["angle_alive"] < GOOD_DEG)
        lines.append(f"| {name} | {len(rows)} | {fmt(r['angle_alive'] for r in rows)} | "
                     f"{fmt(r['angle'] for r in rows)} | {np.median([r['dead'] for r in rows]):.0f} | "
                     f"{len(ident)} of {len(rows)} | {right} of {len(ident)} | "
                     f"{fmt(r['angle_response'] for r in rows)} |")
    degraded = [r for r in records if r["input"] != "float" and r["angle_alive"] is not None]
    lines += ["", "The verdict's precision and recall for 'angle on live features < 5 deg', by rule "
              "(`verdict`: the library's default, re-dithered 8-bit inputs judged by their spread; "
              "`verdict_bar_leaning`: the same with `dither_leaning=\"error_bars\"` (the rescaled error bars, "
              "not the spread, check what the answer leans on: the rule before this one); `verdict_undithered`: "
              "the same answers by the residual-based checks; "
              "`verdict_before_error_bars`: `VerdictRule(determined_tol=None)`):", "",
              "| rule | inputs | said identified | right | precision | right answers | recall | "
              "wrong answers flagged |", "|---|---|---|---|---|---|---|---|"]
    groups = {"all degraded (polished included)": degraded,
              "8-bit files (8bit, adamN 8bit)": [r for r in degraded if r["input"].endswith("8bit")]}
    for key in rules():
        for group, rows in groups.items():
            said = [r for r in rows if r.get(key) == "identified"]
            good = [r for r in rows if r["angle_alive"] < GOOD_DEG]
            bad = [r for r in rows if r["angle_alive"] >= GOOD_DEG]
            tp = sum(1 for r in said if r["angle_alive"] < GOOD_DEG)
            flagged = sum(1 for r in bad if r.get(key) != "identified")
            lines.append(f"| {key} | {group} ({len(rows)}) | {len(said)} | {tp} | "
                         f"{tp / len(said) if said else float('nan'):.2f} | {len(good)} | "
                         f"{tp / len(good) if good else float('nan'):.2f} | {flagged} of {len(bad)} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True, help="a converged `lucid-ifv experiment` folder")
    parser.add_argument("--out", required=True, help="folder for records.json and table.md")
    parser.add_argument("--n", type=int, default=30, help="realizations used (default 30)")
    parser.add_argument("--early", type=int, nargs="*", default=[50, 100, 200], help="Adam steps of the early stops")
    parser.add_argument("--polish", type=int, default=50, help="L-BFGS steps of the remedy (0: none)")
    parser.add_argument("--batch", type=int, default=15)
    parser.add_argument("--weighted", action="store_true", help="also the noise-weighted solve of the 8-bit inputs")
    parser.add_argument("--dither", default="auto", type=lambda v: v if v == "auto" else int(v),
                        help="re-dithered inversions per 8-bit input ('auto': the library's default, "
                             "lucid_ifv.ifv.dither.DITHER_SAMPLES)")
    args = parser.parse_args(argv)
    for name in ("n", "batch"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be >= 1, got {getattr(args, name)}")
    if args.polish < 0 or any(s < 1 for s in args.early):
        parser.error(f"--polish must be >= 0 and --early steps >= 1, got {args.polish} and {args.early}")
    run_dir = Path(args.run)
    if not (run_dir / "settings.json").exists():
        parser.error(f"--run {run_dir} is not an experiment folder (no settings.json)")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.dither != "auto" and args.dither < 0:
        parser.error(f"--dither must be 'auto' or >= 0, got {args.dither}")
    records = run(run_dir, args.n, args.early, args.polish, args.batch, args.weighted, args.dither)
    (out / "records.json").write_text(json.dumps(records, indent=1))
    (out / "table.md").write_text(table(records, run_dir))
    print((out / "table.md").read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
