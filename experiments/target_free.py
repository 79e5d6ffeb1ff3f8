"""Target-free Grad-IFV on the plain ReLU nets: "which channel was this visualization made for?"

Two parts, both rendered on the shipped ReLU / max-pool networks themselves (no smooth
surrogate) and inverted without ever using the true target (it is used for scoring only):

(a) ``channel``: Lucid's single-channel objective ``channel(layer, c) - lam * params_L2()``
    (default parametrization: Fourier + decorrelated colours + sigmoid; transforms off),
    saved as an 8-bit PNG, read back and inverted; scored by top-1 / top-5 identification of
    ``c`` among the layer's channels. The inversion assumes the objective's form (spatial
    mean aggregation, ``p = 0``: ``channel`` is ``<mean(acts), e_c>``) and the prior's form
    (``params_L2``, weight unknown), not ``c``.
(b) ``hoyer``: Hoyer-sparse non-negative targets (`sampling.sample_hoyer_targets`) with
    ``feature_objective(layer, t, 1) - lam * params_L2()``; angles between prediction and
    target on the features alive at the realization (Jacobian row not zero), overall,
    the feature response's and a random direction's, for the plain solves and the kink
    projection (`lucid_ifv.kinks`), float and 8-bit PNG.

Solves compared (all from the same Jacobians, prior gradients and kink gradients):
``plain/prior_aware`` (the prior-aware eigen solve; ifv's default is ``anchored``), ``plain/nonneg``, and for each kink
tolerance ``kinks@tol/nonneg`` (= `kinks.invert_target_free`'s default) and
``kinks@tol/anchored``.

Without Lucid's redirected ReLU gradient a channel that is zero at the start never moves:
renders whose target channel is dead at the end are counted and reported, never dropped.

Output in ``--out``: ``settings.json``, ``records_<part>.jsonl`` (one JSON per sample),
``realizations/<part>_batch_NNNN.npz``, ``png/``, ``summary.json`` and ``summary.md``.
Re-running with the same settings skips finished batches.

    python experiments/target_free.py --model mnist_small --n 8 --adam 400 --lbfgs 100 --out runs/tf_mnist
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lucid_ifv import ifv, kinks, metrics, sampling  # noqa: E402
from lucid_ifv import objectives as obj  # noqa: E402
from lucid_ifv.ifv.dither import dither_check  # noqa: E402
from lucid_ifv.imageio import load_images, save_png  # noqa: E402
from lucid_ifv.param import image_for_model  # noqa: E402
from lucid_ifv.render import render_vis  # noqa: E402

#: every shipped model's studied layer (docs/shipped-models.md)
DEFAULT_LAYERS = {"inception_small": "mixed3b", "mnist_small": "conv2", "photos_cnn": "conv2d_3",
                  "densenet_small": "logits", "densenet_small_no4": "logits", "srnet_small": "res_block8",
                  "mnist_small_seed1": "conv2"}
SPARSE = 0.6  # Hoyer sparseness from which a target counts as sparse in the summary
DEFAULT_SOLVE = "kinks@default/nonneg"  # what `kinks.invert_target_free` does by default (tolerance with fallback)
RIGHT_DEG = 5.0  # a Hoyer answer within this angle on live features counts as right for the verdict's precision


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="inception_small", help="shipped model (inception_small, mnist_small, ...)")
    ap.add_argument("--layer", default=None, help="studied layer (default: mixed3b / conv2)")
    ap.add_argument("--n", type=int, default=8, help="renders per part")
    ap.add_argument("--adam", type=int, default=400, help="Adam steps (lr 0.05)")
    ap.add_argument("--lbfgs", type=int, default=100, help="L-BFGS steps after Adam")
    ap.add_argument("--prior", type=float, default=1e-4, help="lam of params_L2 in the FV (unknown to the inversion)")
    ap.add_argument("--tol", type=float, nargs="+", default=[kinks.DEFAULT_TOL],
                    help="kink tolerances to compare (relative to each tensor's RMS); gradients are computed once at the largest")
    ap.add_argument("--rank-tol", type=float, default=kinks.DEFAULT_RANK_TOL)
    ap.add_argument("--parts", default="channel,hoyer", help="comma-separated: channel, hoyer")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--pixel", action="store_true", help="pixel + sigmoid parametrization instead of Fourier")
    ap.add_argument("--redirect", action="store_true",
                    help="render with Lucid's redirected ReLU gradient for the first Adam steps (Lucid's default)")
    ap.add_argument("--dither", type=int, default=0,
                    help="re-dithered inversions checking the default kink solve's answers from the PNGs "
                         "(`invert_target_free`'s check; its verdict is then recorded as '8bit/dithered')")
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    args.layer = args.layer or DEFAULT_LAYERS.get(args.model)
    if args.layer is None:
        ap.error(f"--layer is needed for model {args.model!r}")
    args.parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    bad = [p for p in args.parts if p not in ("channel", "hoyer")]
    if bad or args.n < 1 or args.batch < 1 or args.adam < 1 or args.dither < 0:
        ap.error(f"bad arguments: parts {bad}, n {args.n}, batch {args.batch}, adam {args.adam}, dither {args.dither}")
    if args.dither and not has_default_tols(args):
        ap.error(f"--dither checks the default kink solve: --tol must include "
                 f"{', '.join(f'{t:g}' for t in (kinks.DEFAULT_TOL, *kinks.FALLBACK_TOLS))}")
    args.tol = sorted(set(args.tol))
    return args


def has_default_tols(args) -> bool:
    """Whether --tol holds `invert_target_free`'s tolerances (then its default solve is run too)."""
    return {kinks.DEFAULT_TOL, *kinks.FALLBACK_TOLS} <= set(args.tol)


# -- rendering -------------------------------------------------------------------------------
def make_param(model, args, batch, seed):
    return image_for_model(model, batch=batch, fft=not args.pixel, seed=seed)


def render(model, objective, param, args, seed):
    started = time.perf_counter()
    result = render_vis(model, objective, param, transforms=[], thresholds=(args.adam,), lbfgs_steps=args.lbfgs,
                        seed=seed, progress=False, relu_gradient_override=args.redirect)
    return result, time.perf_counter() - started


def save_and_reload(images, out: Path, names) -> np.ndarray:
    paths = [save_png(img, out / "png" / f"{name}.png") for img, name in zip(images, names)]
    return load_images(paths, channels=images.shape[-1])


# -- inversion variants ------------------------------------------------------------------------
def oracle_residual(f, jac, grads, targets, lam, p, basis=None):
    """EVALUATION ONLY (uses the true target and weight): the relative stationarity residual
    ``|P (s J^T A t - lam g)| / |P s J^T A t|`` of the true target, per sample; ``basis`` the
    kink bases (None: no projection). Near 0 means the realization is stationary (modulo the
    kinks); it tells "not stationary / kinks missed" apart from "the solve failed"."""
    A = ifv.significance_matrix(f, p)
    t = np.asarray(targets, np.float64)
    s = (np.maximum(np.sum(f * t, 1), 0) / np.linalg.norm(f, axis=1)) ** p
    grad_m = s[:, None] * np.einsum("bkd,bkl,bl->bd", jac.astype(np.float64), A, t)
    res = grad_m - lam * grads[:, 0].astype(np.float64)
    out = []
    for b in range(len(t)):
        if basis is not None and basis[b].shape[1]:
            q = basis[b]
            project = lambda v: v - q @ (q.T @ v)  # noqa: E731
        else:
            project = lambda v: v  # noqa: E731
        denom = np.linalg.norm(project(grad_m[b]))
        out.append(float(np.linalg.norm(project(res[b])) / denom) if denom > 0 else None)
    return out


def invert_variants(model, layer, realization, param, aggregation, p, args, targets):
    """All solves of one realization batch from one set of Jacobians (see the module doc).
    ``targets`` are used for the oracle diagnostic only (`oracle_residual`)."""
    timing = {}
    started = time.perf_counter()
    param, params = ifv.resolve_realization(model, realization, param, "params")
    f, jac = ifv.feature_jacobian(model, layer, params, param, aggregation)
    grads = ifv.prior_gradients(model, obj.params_L2(), params, param)
    timing["jacobian"] = time.perf_counter() - started
    started = time.perf_counter()
    found = kinks.find_kinks(model, layer, params, param, tol=max(args.tol), aggregation=aggregation)
    dim = jac.shape[2]
    # the library's default max_kinks: a sample on more kinks than parameters at a tolerance has no
    # kink answer there; gradients are computed up to the largest tolerance it has one at
    needed = found.fit_tolerances(args.tol, dim)
    kgrads = kinks.kink_gradients(model, layer, params, param, tol=max(args.tol), aggregation=aggregation,
                                  kinks=needed)
    full, found = found, needed
    timing["kink_gradients"] = time.perf_counter() - started
    rows = np.linalg.norm(jac.astype(np.float64), axis=2)
    live = rows > ifv.DEAD_FLOOR * rows.max(axis=1, keepdims=True)
    solves, info = {}, {}
    started = time.perf_counter()
    for method in ("prior_aware", "nonneg"):
        solves[f"plain/{method}"] = ifv.solve(f, jac, p, prior_grads=grads, method=method)
    info["plain"] = {"oracle_residual": oracle_residual(f, jac, grads, targets, args.prior, p)}
    # per-sample tolerance of each kink solve (NaN: no answer): every --tol alone, and the library's
    # default (DEFAULT_TOL, falling back to FALLBACK_TOLS: `invert_target_free`) when --tol holds them
    settings = {f"{tol:g}": np.array([tol if int(m.sum()) <= dim else np.nan for m in full.within(tol)])
                for tol in args.tol}
    if has_default_tols(args):
        settings["default"] = full.fit_tolerances([kinks.DEFAULT_TOL, *kinks.FALLBACK_TOLS], dim).sample_tol
    info["plain"]["skipped"] = np.isnan(settings[f"{max(args.tol):g}"]).tolist()
    for name, tols in settings.items():
        skipped = np.isnan(tols)
        keep = np.zeros(kgrads.shape[:2], bool)
        for b, t in enumerate(tols):
            if not skipped[b]:  # needed holds every kink within t for this sample (t <= its fitted tolerance)
                m = found.distance[b] <= t
                keep[b, : len(m)] = m
        selected = kgrads * keep[:, :, None]
        jac_p, grads_p, ranks = kinks.project_out_kinks(jac, grads, selected, args.rank_tol, return_ranks=True)
        for method in ("nonneg", "anchored"):
            result = ifv.solve(f, jac_p, p, prior_grads=grads_p, method=method)
            result.target[skipped] = np.nan
            result.residual[skipped] = np.nan
            solves[f"kinks@{name}/{method}"] = result
        oracle = oracle_residual(f, jac, grads, targets, args.prior, p, kinks.kink_basis(selected, args.rank_tol))
        info[name] = {"count": [int(np.sum(d <= t)) if np.isfinite(t) else int(len(d))
                                for d, t in zip(full.distance, tols)],
                      "tol": [None if sk else float(t) for sk, t in zip(skipped, tols)],
                      "rank": [None if sk else int(r) for sk, r in zip(skipped, ranks)],
                      "oracle_residual": [None if sk else o for sk, o in zip(skipped, oracle)]}
    timing["solves"] = time.perf_counter() - started
    by_kind = full.counts_by_kind()
    return f, live, solves, info, by_kind, timing


def dithered(model, layer, reloaded, param, aggregation, p, args, answer):
    """The default kink solve's ``answer`` from the PNGs checked as `kinks.invert_target_free`
    checks 8-bit inputs: ``args.dither`` re-dithered inversions (`lucid_ifv.ifv.dither`); the
    verdict then judges it without the rounding's share."""
    def invert_images(images):
        return kinks.invert_target_free(model, layer, images, param, cossim_pow=p, aggregation=aggregation, dither=0)

    spread, denoised = dither_check(invert_images, reloaded, answer, args.dither, seed=0, cossim_pow=p)
    return dataclasses.replace(answer, dither_spread=spread, denoised_residual=denoised)


def _dithered_records(result) -> list:
    """Per sample of the re-dithered default answer: both verdicts and what they rest on."""
    verdicts, channel = result.verdicts(), kinks.channel_verdicts(result)
    margins = kinks.margin_angle(result.target)
    return [{"verdict": str(verdicts[b]), "channel_verdict": str(channel[b]), "margin_deg": _finite(margins[b]),
             "spread": _finite(result.dither_spread[b]), "denoised_residual": _finite(result.denoised_residual[b]),
             "residual": _finite(result.residual[b])} for b in range(len(result))]


def _finite(x):
    return float(x) if np.isfinite(x) else None


def _angle(a, b):
    a, b = np.nan_to_num(np.asarray(a, np.float64)), np.asarray(b, np.float64)
    if not (np.linalg.norm(a) > 0 and np.linalg.norm(b) > 0):
        return None
    return float(metrics.angle_deg(a, b))


# -- part (a): single channels ----------------------------------------------------------------------
def channel_batch(model, args, channels, idx, seed, out):
    layer = args.layer
    param = make_param(model, args, len(channels), seed)
    objective = obj.Objective.sum([obj.channel(layer, int(c), batch=b) for b, c in enumerate(channels)])
    objective = objective - args.prior * obj.params_L2()
    rendered, fv_seconds = render(model, objective, param, args, seed)
    images = rendered.final
    acts = np.asarray(model(images, [layer])[layer])
    acts = acts.reshape(len(channels), -1, acts.shape[-1])
    reloaded = save_and_reload(images, out, [f"channel_{i:03d}_c{c}" for i, c in zip(idx, channels)])
    records = [dict(index=int(i), channel=int(c), channel_mean=float(acts[b, :, c].mean()),
                    channel_max=float(acts[b, :, c].max()), target_dead=bool(acts[b, :, c].max() <= 0),
                    seconds_fv=fv_seconds / len(channels),
                    lbfgs_grad_norm=None if rendered.lbfgs is None else rendered.lbfgs["grad_norm"])
               for b, (i, c) in enumerate(zip(idx, channels))]
    for variant, realization in (("float", rendered.params), ("8bit", reloaded)):
        onehot = np.eye(model.layer(layer).depth)[np.asarray(channels)]
        f, live, solves, info, by_kind, timing = invert_variants(model, layer, realization, param, "mean", 0, args,
                                                                 onehot)
        verdicts = {name: res.verdicts() for name, res in solves.items()}
        checked = (_dithered_records(dithered(model, layer, reloaded, param, "mean", 0, args, solves[DEFAULT_SOLVE]))
                   if variant == "8bit" and args.dither else None)
        for b, rec in enumerate(records):
            c = rec["channel"]
            if checked is not None:
                rec["8bit/dithered"] = checked[b]
            response_rank = np.argsort(-f[b], kind="stable")
            rec[f"{variant}/response_top5"] = response_rank[:5].tolist()
            rec[f"{variant}/target_live"] = bool(live[b, c])
            rec[f"{variant}/live_features"] = int(live[b].sum())
            rec[f"{variant}/kinks"] = {tol: {key: v[key][b] for key in v} for tol, v in info.items()}
            rec[f"{variant}/kinks_by_kind"] = by_kind[b]
            rec[f"{variant}/seconds"] = {k: v / len(records) for k, v in timing.items()}
            for name, res in solves.items():
                top = kinks.top_channels(res.target[b:b + 1], 5)[0]
                rec[f"{variant}/{name}/top5"] = top.tolist()
                rec[f"{variant}/{name}/top5_weights"] = [_finite(res.target[b, c]) for c in top]
                rec[f"{variant}/{name}/weight_of_target"] = None if np.isnan(res.target[b, c]) else float(res.target[b, c])
                rec[f"{variant}/{name}/residual"] = _finite(res.residual[b])
                rec[f"{variant}/{name}/verdict"] = str(verdicts[name][b])
    arrays = {"indices": np.array(idx), "channels": np.array(channels), "images": images, "reloaded": reloaded,
              **{f"param_{j}": p for j, p in enumerate(rendered.params)}}
    return records, arrays


# -- part (b): Hoyer targets --------------------------------------------------------------------------
def hoyer_batch(model, args, targets, sparseness, idx, seed, out):
    layer = args.layer
    param = make_param(model, args, len(targets), seed)
    objective = obj.feature_objective(layer, targets, 1) - args.prior * obj.params_L2()
    rendered, fv_seconds = render(model, objective, param, args, seed)
    images = rendered.final
    reloaded = save_and_reload(images, out, [f"hoyer_{i:03d}" for i in idx])
    random = sampling.random_unit_vectors(targets.shape[1], len(targets), np.random.default_rng(seed + 7), nonneg=True)
    records = [dict(index=int(i), sparseness=float(s), seconds_fv=fv_seconds / len(targets),
                    lbfgs_grad_norm=None if rendered.lbfgs is None else rendered.lbfgs["grad_norm"])
               for i, s in zip(idx, sparseness)]
    for variant, realization in (("float", rendered.params), ("8bit", reloaded)):
        f, live, solves, info, by_kind, timing = invert_variants(model, layer, realization, param, None, 1, args,
                                                                 targets)
        verdicts = {name: res.verdicts() for name, res in solves.items()}
        checked = (_dithered_records(dithered(model, layer, reloaded, param, None, 1, args, solves[DEFAULT_SOLVE]))
                   if variant == "8bit" and args.dither else None)
        for b, rec in enumerate(records):
            t, keep = targets[b], live[b]
            if checked is not None:
                rec["8bit/dithered"] = checked[b]
            rec[f"{variant}/dead"] = int((~keep).sum())
            rec[f"{variant}/dead_target_mass"] = float(np.sum(t[~keep] ** 2))
            rec[f"{variant}/response"] = {"live": _angle(f[b] * keep, t * keep), "overall": _angle(f[b], t)}
            rec[f"{variant}/random"] = {"live": _angle(random[b] * keep, t * keep), "overall": _angle(random[b], t)}
            rec[f"{variant}/kinks"] = {tol: {key: v[key][b] for key in v} for tol, v in info.items()}
            rec[f"{variant}/kinks_by_kind"] = by_kind[b]
            rec[f"{variant}/seconds"] = {k: v / len(records) for k, v in timing.items()}
            for name, res in solves.items():
                pred = res.target[b]
                rec[f"{variant}/{name}"] = {"live": _angle(pred * keep, t * keep), "overall": _angle(pred, t),
                                            "residual": _finite(res.residual[b]), "verdict": str(verdicts[name][b])}
    arrays = {"indices": np.array(idx), "targets": targets, "images": images, "reloaded": reloaded,
              **{f"param_{j}": p for j, p in enumerate(rendered.params)}}
    return records, arrays


# -- driver ---------------------------------------------------------------------------------------
def load_records(path: Path) -> list:
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            break  # a torn last line: that batch is redone
    return out


def run_part(model, args, part, out: Path) -> list:
    depth = model.layer(args.layer).depth
    rng = np.random.default_rng(args.seed)
    if part == "channel":
        items = rng.choice(depth, size=args.n, replace=args.n > depth)
    else:
        items, sparseness = sampling.sample_hoyer_targets(depth, args.n, args.seed)
    path = out / f"records_{part}.jsonl"
    records = load_records(path)
    done = {r["index"] for r in records}
    (out / "realizations").mkdir(parents=True, exist_ok=True)
    with open(path, "a") as fh:
        for start in range(0, args.n, args.batch):
            idx = list(range(start, min(start + args.batch, args.n)))
            if all(i in done for i in idx):
                continue
            seed = args.seed * 100003 + start + (0 if part == "channel" else 50000)
            print(f"[{part}] batch {start // args.batch + 1}/{-(-args.n // args.batch)}", flush=True)
            if part == "channel":
                batch_records, arrays = channel_batch(model, args, items[idx], idx, seed, out)
            else:
                batch_records, arrays = hoyer_batch(model, args, items[idx], sparseness[idx], idx, seed, out)
            np.savez_compressed(out / "realizations" / f"{part}_batch_{start:04d}.npz", **arrays)
            for rec in batch_records:
                fh.write(json.dumps(rec) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
            records.extend(batch_records)
    return sorted(records, key=lambda r: r["index"])


def _stats(values):
    values = np.asarray([v for v in values if v is not None], np.float64)
    if values.size == 0:
        return None
    return {"n": int(values.size), "median": float(np.median(values)), "q1": float(np.percentile(values, 25)),
            "q3": float(np.percentile(values, 75)), "min": float(values.min()), "max": float(values.max())}


def _solve_names(records, variant):
    prefix = f"{variant}/"
    names = set()
    for key in records[0]:
        if key.startswith(prefix) and (key.startswith(prefix + "plain/") or key.startswith(prefix + "kinks@")):
            name = key[len(prefix):]
            for suffix in ("/top5", "/top5_weights", "/weight_of_target", "/residual", "/verdict"):
                name = name.removesuffix(suffix)
            names.add(name)
    return sorted(names)


def firing_channels(model, layer) -> np.ndarray:
    """``[depth]`` bool: the channels that fire (activation > 0 somewhere) on the model's
    held-out images. A channel that never fires on natural data is dead in the network; its
    renders carry no trace of it whatever the inversion."""
    from modelzoo.shipped import heldout

    images, _ = heldout(model.name)
    peak = np.zeros(model.layer(layer).depth)
    for start in range(0, len(images), 250):
        acts = np.asarray(model(images[start:start + 250], [layer])[layer])
        peak = np.maximum(peak, acts.reshape(-1, acts.shape[-1]).max(axis=0))
    return peak > 0


def summarize_channel(records, depth, fires) -> dict:
    """Top-1 / top-5 counts per input and solve: over all renders, over those whose target is
    live at the end of the render, and over those whose target channel fires on held-out
    images (`fires`, ``[depth]`` bool)."""
    out = {"n": len(records), "target_dead": int(sum(r["target_dead"] for r in records)), "chance_top1": 1 / depth,
           "chance_top5": min(5, depth) / depth, "channels_firing": int(fires.sum()), "depth": depth,
           "target_fires": int(sum(bool(fires[r["channel"]]) for r in records))}
    for variant in ("float", "8bit"):
        live = [r[f"{variant}/target_live"] for r in records]
        firing = [bool(fires[r["channel"]]) for r in records]
        out[f"{variant}/target_live"] = int(sum(live))
        rows = {"response": [r[f"{variant}/response_top5"] for r in records]}
        rows.update({name: [r[f"{variant}/{name}/top5"] for r in records] for name in _solve_names(records, variant)})
        for name, tops in rows.items():
            hit1 = [top[0] == r["channel"] for top, r in zip(tops, records)]
            hit5 = [r["channel"] in top for top, r in zip(tops, records)]
            out[f"{variant}/{name}"] = {
                "top1": int(sum(hit1)), "top5": int(sum(hit5)),
                "top1_live": int(sum(h for h, ok in zip(hit1, live) if ok)),
                "top5_live": int(sum(h for h, ok in zip(hit5, live) if ok)),
                "top1_fires": int(sum(h for h, ok in zip(hit1, firing) if ok)),
                "top5_fires": int(sum(h for h, ok in zip(hit5, firing) if ok)),
            }
            if name != "response":
                out[f"{variant}/{name}"].update(_verdict_stats([r[f"{variant}/{name}/verdict"] for r in records], hit1))
            if variant == "8bit" and name == DEFAULT_SOLVE and "8bit/dithered" in records[0]:
                out["8bit/dithered"] = _verdict_stats([r["8bit/dithered"]["verdict"] for r in records], hit1)
                out["8bit/dithered, channel verdict"] = _verdict_stats(
                    [r["8bit/dithered"]["channel_verdict"] for r in records], hit1)
        out.update(_kink_stats(records, variant))
    return out


def _verdict_stats(verdicts, right) -> dict:
    """Verdict counts, and how many "identified" answers are right (``right`` ``[n]`` bool):
    the verdict's precision is ``identified_right / identified``, its recall
    ``identified_right / right``."""
    identified = [v == "identified" for v in verdicts]
    return {"verdicts": {v: verdicts.count(v) for v in sorted(set(verdicts))}, "identified": int(sum(identified)),
            "identified_right": int(sum(i and h for i, h in zip(identified, right))), "right": int(sum(right))}


def summarize_hoyer(records) -> dict:
    out = {"n": len(records)}
    sparse = [r["sparseness"] >= SPARSE for r in records]
    out["n_sparse"] = int(sum(sparse))
    for variant in ("float", "8bit"):
        out[f"{variant}/dead"] = _stats([r[f"{variant}/dead"] for r in records])
        for name in ["response", "random"] + _solve_names(records, variant):
            cells = [r[f"{variant}/{name}"] for r in records]
            out[f"{variant}/{name}"] = {
                "live": _stats([c["live"] for c in cells]), "overall": _stats([c["overall"] for c in cells]),
                "live_sparse": _stats([c["live"] for c, s in zip(cells, sparse) if s]),
                "live_dense": _stats([c["live"] for c, s in zip(cells, sparse) if not s]),
            }
            if "verdict" in cells[0]:
                right = [c["live"] is not None and c["live"] < RIGHT_DEG for c in cells]
                out[f"{variant}/{name}"].update(_verdict_stats([c["verdict"] for c in cells], right))
                if variant == "8bit" and name == DEFAULT_SOLVE and "8bit/dithered" in records[0]:
                    out["8bit/dithered"] = _verdict_stats([r["8bit/dithered"]["verdict"] for r in records], right)
        out.update(_kink_stats(records, variant))
    return out


def _kink_stats(records, variant) -> dict:
    out = {}
    for tol, cell in records[0][f"{variant}/kinks"].items():
        column = lambda key: [r[f"{variant}/kinks"][tol][key] for r in records]  # noqa: E731
        out[f"{variant}/kink_stats@{tol}"] = {key: _stats(column(key)) for key in cell if key != "skipped"}
    out[f"{variant}/kink_skipped"] = int(sum(r[f"{variant}/kinks"]["plain"]["skipped"] for r in records))  # at the largest tol
    return out


def _cell(s, digits=1):
    return "-" if s is None else f"{s['median']:.{digits}f} [{s['q1']:.{digits}f}, {s['q3']:.{digits}f}]"


def markdown(summary, args, command) -> str:
    lines = [f"# Target-free IFV: {args.model} `{args.layer}`", "", f"Command: `{command}`", "",
             f"FV: Adam {args.adam} (lr 0.05) + L-BFGS {args.lbfgs}, no transforms, "
             f"{'pixel' if args.pixel else 'Fourier (+ colour decorrelation on RGB)'} + sigmoid, prior {args.prior:g} * params_L2; "
             f"redirected ReLU gradient {'on (first Adam steps, as Lucid)' if args.redirect else 'off'}; "
             f"seed {args.seed}; kink tolerances {', '.join(f'{t:g}' for t in args.tol)} (relative to RMS), "
             f"rank tol {args.rank_tol:g}.", ""]
    if "channel" in summary:
        s = summary["channel"]
        lines += ["## (a) Single-channel objective (`channel(layer, c)`), which channel?", "",
                  f"n = {s['n']} renders; target channel dead at the end of the render (max activation 0): "
                  f"{s['target_dead']}; target channel fires on the held-out images: {s['target_fires']} "
                  f"({s['channels_firing']} of the layer's {s['depth']} channels do); chance: top-1 "
                  f"{s['chance_top1']:.3f}, top-5 {s['chance_top5']:.3f}. "
                  "Inversion assumes spatial-mean aggregation, p = 0, prior params_L2 (weight unknown).", "",
                  "| input | solve | top-1 | top-5 | top-1 (target live) | top-5 (target live) | "
                  "top-1 (target fires on held-out) | top-5 (fires) |", "|---|---|---|---|---|---|---|---|"]
        for variant in ("float", "8bit"):
            n_live = s[f"{variant}/target_live"]
            for key, cell in s.items():
                if key.startswith(f"{variant}/") and isinstance(cell, dict) and "top1" in cell:
                    name = key[len(variant) + 1:]
                    lines.append(f"| {variant} | {name} | {cell['top1']}/{s['n']} | {cell['top5']}/{s['n']} | "
                                 f"{cell['top1_live']}/{n_live} | {cell['top5_live']}/{n_live} | "
                                 f"{cell['top1_fires']}/{s['target_fires']} | {cell['top5_fires']}/{s['target_fires']} |")
        lines += [""] + _verdict_lines(s, "top-1 right") + _kink_lines(s)
    if "hoyer" in summary:
        s = summary["hoyer"]
        lines += ["## (b) Hoyer targets, `feature_objective(layer, t, 1) - lam params_L2`", "",
                  f"n = {s['n']} ({s['n_sparse']} with sparseness >= {SPARSE}). Cells: median [q1, q3] in degrees; "
                  "'live' angles leave out samples whose whole target sits on dead features "
                  f"(float: {_n_of(s, 'float')} of {s['n']} have live target mass).", "",
                  "| input | solve | angle, live features | overall | live, sparse | live, dense |", "|---|---|---|---|---|---|"]
        for variant in ("float", "8bit"):
            for key, cell in s.items():
                if key.startswith(f"{variant}/") and isinstance(cell, dict) and "live" in cell:
                    lines.append(f"| {variant} | {key[len(variant) + 1:]} | {_cell(cell['live'])} | {_cell(cell['overall'])} | "
                                 f"{_cell(cell['live_sparse'])} | {_cell(cell['live_dense'])} |")
        lines.append("")
        for variant in ("float", "8bit"):
            lines.append(f"- {variant}: dead features per sample {_cell(s[f'{variant}/dead'])}")
        lines += [""] + _verdict_lines(s, f"under {RIGHT_DEG:g} deg on live features") + _kink_lines(s)
    return "\n".join(lines)


def _verdict_lines(s, right: str) -> list:
    """The verdict of every solve against the truth: precision and recall of "identified"."""
    lines = [f"Verdicts (the library's rule, `ifv.VerdictRule()`; right = {right}). '8bit/dithered': "
             f"the default solve ({DEFAULT_SOLVE}) from the PNGs with `invert_target_free`'s re-dithering check; "
             "', channel verdict': `kinks.channel_verdicts` on it (is the top channel sound?):", "",
             "| input | solve | identified | right among them (precision) | right in all | recall | verdicts |",
             "|---|---|---|---|---|---|---|"]
    for key, cell in s.items():
        if isinstance(cell, dict) and "identified" in cell:
            variant, _, name = key.partition("/")
            n_id, n_ok, n_right = cell["identified"], cell["identified_right"], cell["right"]
            precision = f"{n_ok}/{n_id}" + (f" ({n_ok / n_id:.2f})" if n_id else "")
            recall = f"{n_ok}/{n_right}" + (f" ({n_ok / n_right:.2f})" if n_right else "")
            counts = ", ".join(f"{v} {c}" for v, c in cell["verdicts"].items())
            lines.append(f"| {variant} | {name} | {n_id} | {precision} | {n_right} | {recall} | {counts} |")
    return lines + [""]


def _n_of(s, variant) -> int:
    cell = s.get(f"{variant}/response", {}).get("live")
    return 0 if cell is None else cell["n"]


def _kink_lines(s) -> list:
    skipped = ", ".join(f"{v}: {s[f'{v}/kink_skipped']}" for v in ("float", "8bit") if f"{v}/kink_skipped" in s)
    lines = [f"Samples on more kinks than parameters at the largest tolerance (no kink-projected answer there, "
             f"counted as misses; the span rank column leaves them out): {skipped}.", "",
             "Kinks per sample, rank of their gradients' span, and the oracle residual "
             "|P(s J^T A t - lam g)| / |P s J^T A t| of the TRUE target (evaluation only; P the "
             "projection, I for 'plain'; near 0 = stationary modulo the kinks):", "",
             "| input | kinks | count | span rank | oracle residual |", "|---|---|---|---|---|"]
    for key, v in s.items():
        if "/kink_stats@" in key:
            variant, tol = key.split("/kink_stats@")
            lines.append(f"| {variant} | {tol} | {_cell(v.get('count'))} | {_cell(v.get('rank'))} | "
                         f"{_cell(v.get('oracle_residual'), 3)} |")
    return lines + [""]


def main(argv=None):
    args = parse_args(argv)
    from modelzoo.shipped import load_shipped

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    settings = {k: v for k, v in vars(args).items() if k != "out"}
    settings_path = out / "settings.json"
    if settings_path.exists():
        previous = {"redirect": False, "dither": 0, **json.loads(settings_path.read_text())}  # older runs
        if {k: v for k, v in previous.items() if k != "parts"} != {k: v for k, v in settings.items() if k != "parts"}:
            raise SystemExit(f"{out} holds a run with other settings ({settings_path}); use another --out")
    settings_path.write_text(json.dumps(settings, indent=2))
    model = load_shipped(args.model)
    summary = {}
    for part in args.parts:
        records = run_part(model, args, part, out)
        summary[part] = (summarize_channel(records, model.layer(args.layer).depth, firing_channels(model, args.layer))
                         if part == "channel"
                         else summarize_hoyer(records))
    command = "python experiments/target_free.py " + " ".join(argv if argv is not None else sys.argv[1:])
    (out / "summary.json").write_text(json.dumps({"command": command, "settings": settings, **summary}, indent=2))
    (out / "summary.md").write_text(markdown(summary, args, command))
    print(markdown(summary, args, command))


if __name__ == "__main__":
    main()
