"""The paper's Sec. 3.6 / Fig. 3: Grad-IFV as the feature count grows, with and without the
cosine term (p = 1, p = 0), for each aggregation (max-pool + mean, mean, centre pick).

    python experiments/feature_count_sweep.py                      # every run, then the analysis
    python experiments/feature_count_sweep.py --n 12 --only photos_cnn_k64
    python experiments/feature_count_sweep.py --analyse-only       # tables and figures from runs/sec36

For each model (``mnist_small`` conv2, ``photos_cnn`` conv2d_3), feature count ``k``, power
``p`` and aggregation, one round trip (`lucid_ifv.experiment.run_experiment`, the Issue 8
protocol: smooth surrogate, pixel + sigmoid, relative L2 prior 1e-4, 400 Adam steps, L-BFGS
until every sample's relative stationarity residual is <= 1e-3 (at most 1000 steps), Hoyer
targets of seed 0) in ``<out>/<model>_k<k>_p<p>_<aggregation>/``. The feature subset is the
layer's **first k channels**, as in the paper ("the first ... filters of dense3"); the
subsets are nested. A run whose records are complete is skipped; an unfinished one resumes.

Then, per realization, from the saved Gram statistics (``J J^T``, ``J g``, ``g^T g``, the
response ``f`` and the target ``t``; `lucid_ifv.experiment.load_realizations`), the paper's
Fig. 3 decomposition: the target's squared coefficients in the left-singular basis of the
inversion's system, ascending singular values (`lucid_ifv.metrics.singular_coefficients`).
Two systems, both restricted to the features alive at the realization (the default solve's
per-sample dead features leave the solve, `docs/ifv.md`):

- **prior-aware** (the headline): the FV had an L2 prior, so an optimum satisfies
  ``s J^T A t = lam g``, i.e. ``H x = 0`` with ``H = [J^T A B | -g]`` and
  ``x = (s B^T t; lam)`` (``B``: the live coordinates, ``s = (<f, t> / |f|)^p``, ``lam`` the
  FV's absolute prior weight). The left-singular vectors of ``H^T`` (eigenvectors of its
  Gram matrix, ``[d + 1, d + 1]``) form a full basis; ``x``'s mass on the smallest one is the
  share the solve can see. Without a prior this is exactly the paper's Fig. 3.
- **paper's** system ``B^T A J`` (no prior column), the target ``B^T t``: the paper's solve
  ignores the prior, so with a prior its smallest vector need not hold the target.

Outputs: per run ``coefficients.npz`` and ``coefficients.png``
(`lucid_ifv.plots.plot_singular_coefficients`); in ``--fig-dir``: ``table.md``,
``results.json``, ``fig3_<model>.png`` (stacked bars of the mean squared coefficients per
feature count, one panel per (p, aggregation), as the paper's Fig. 3; prior-aware system) and
``fig3_<model>_paper_system.png`` (the same for the paper's system; with ``--prior 0``, the
paper's own setting, the two systems coincide and only ``fig3_<model>.png`` is written).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
import time
import warnings
from pathlib import Path

import numpy as np

MODELS = {"mnist_small": ("conv2", (4, 8, 16, 32)), "photos_cnn": ("conv2d_3", (4, 8, 16, 32, 64))}
AGGREGATIONS = ("max_pool_mean", "mean", "center")
POWERS = (1.0, 0.0)
# the surrogate's pool these runs were made with (docs/results.md): the smooth default until 2026-12-04
FLOORED = {"max_pool_mean": "floored_max_pool_mean"}
SWEEP_NAME = {saved: name for name, saved in FLOORED.items()}
AGG_LABEL = {"max_pool_mean": "max-pool + mean", "mean": "mean", "center": "centre pick"}


def run_name(model: str, k: int, p: float, aggregation: str) -> str:
    return f"{model}_k{k:02d}_p{p:g}_{aggregation}"


def make_config(args, layer: str, depth: int, k: int, p: float, aggregation: str):
    from lucid_ifv import experiment as ex

    return ex.ExperimentConfig(
        layer=layer, features=None if k >= depth else list(range(k)), n_hoyer=args.n, seed=args.seed,
        cossim_pow=float(p), aggregation=FLOORED.get(aggregation, aggregation),
        fft=args.param == "fft", decorrelate=args.param == "fft",
        adam_steps=args.adam, lbfgs_steps=0, prior_weight=args.prior, prior_relative=True,
        smooth=True, converge=args.converge, max_lbfgs_steps=args.max_lbfgs, batch_size=args.batch_size,
        per_sample_lbfgs=False)  # L-BFGS on the whole batch, as these runs were made (docs/results.md)


def plan(args) -> list:
    """``(name, model, layer, k, p, aggregation)`` of every run, in run order: models, then
    counts ascending, then p, then aggregations."""
    runs = []
    for model in args.models:
        layer, default_counts = MODELS[model]
        counts = args.counts or default_counts
        for k in counts:
            for p in args.powers:
                for agg in args.aggregations:
                    name = run_name(model, k, p, agg)
                    if not args.only or any(s in name for s in args.only):
                        runs.append((name, model, layer, k, p, agg))
    return runs


def complete(folder: Path, n: int) -> bool:
    from lucid_ifv import experiment as ex

    path = folder / "records.jsonl"
    return path.exists() and len(ex.load_records(path)) >= n


def write_summary(folder: Path, model_name: str, config, records: list, command: str) -> None:
    """summary.md / summary.json as `lucid-ifv experiment` writes them."""
    from lucid_ifv import experiment as ex

    summary = ex.summarize(records)
    ex.write_text_atomic(folder / "summary.json", json.dumps(summary, indent=1))
    ex.write_text_atomic(folder / "summary.md", f"Command: `{command}`\n\nModel {model_name}, settings: "
                         f"{json.dumps(dataclasses.asdict(config))}\n\n{ex.markdown_table(summary)}\n")


def run_all(args, runs: list) -> dict:
    """Run (or resume) every planned run; returns wall seconds per run run here."""
    from lucid_ifv import experiment as ex
    from modelzoo import load_any

    logging.getLogger("tensorflow").setLevel(logging.ERROR)  # retracing notes across runs
    models, seconds = {}, {}
    for name, model_name, layer, k, p, agg in runs:
        folder = Path(args.out) / name
        if complete(folder, args.n):
            continue
        model = models.setdefault(model_name, load_any(model_name))
        depth = model.layer(layer).depth
        if k > depth:
            print(f"skip {name}: {layer} has {depth} channels", file=sys.stderr)
            continue
        config = make_config(args, layer, depth, k, p, agg)
        started = time.perf_counter()
        print(f"[{time.strftime('%H:%M:%S')}] {name}", file=sys.stderr, flush=True)
        records = ex.run_experiment(model, config, folder, progress=args.progress)
        seconds[name] = time.perf_counter() - started
        write_summary(folder, model.name, config, records, "python " + " ".join(sys.argv))
        print(f"[{time.strftime('%H:%M:%S')}] {name}: {len(records)} samples in {seconds[name]:.0f} s",
              file=sys.stderr, flush=True)
    return seconds


# -- the Fig. 3 decomposition ----------------------------------------------------------------
def _pad(rows: list, width: int) -> np.ndarray:
    out = np.full((len(rows), width), np.nan)
    for i, row in enumerate(rows):
        out[i, : row.size] = row
    return out


def decompose(folder) -> dict:
    """Squared-coefficient decomposition of every sample of a run folder (module docstring).

    Returns ``prior_aware`` ``[n, k + 1]`` and ``paper`` ``[n, k]`` coefficients (not squared;
    ascending singular values; NaN-padded where dead features left the solve, and for samples
    with no live feature), the matching singular values, ``dead`` ``[n, k]`` and ``indices``.
    """
    from lucid_ifv import experiment as ex
    from lucid_ifv import ifv, metrics

    folder = Path(folder)
    config = ex.ExperimentConfig(**ex.load_settings(folder)["config"])
    records = {r["index"]: r for r in ex.load_records(folder / "records.jsonl")}
    data = ex.load_realizations(folder)
    keep = np.isin(data["indices"], list(records))
    indices, f, targets = data["indices"][keep], data["response"][keep], data["targets"][keep]
    jjt = data["jjt"][keep]
    jg, gg = (data["jg"][keep], data["gg"][keep]) if "jg" in data else (None, None)
    p = config.cossim_pow
    lam = records[int(indices[0])].get("prior_weight_abs") or 0.0
    method = ex.default_solve(config)
    result = ifv.solve_gram(f, ifv.GramStatistics(jjt, jg, gg), p, method=method,
                            expected_prior_weight=None if method == "paper" else lam)
    A = ifv.significance_matrix(f, p)
    k = f.shape[1]
    prior_rows, paper_rows, prior_sv, paper_sv = [], [], [], []
    for b in range(len(f)):
        live = ~result.dead_features[b]
        t = targets[b] / np.linalg.norm(targets[b])
        if not live.any() or not np.any(t[live]):
            prior_rows.append(np.zeros(0))
            paper_rows.append(np.zeros(0))
            prior_sv.append(np.zeros(0))
            paper_sv.append(np.zeros(0))
            continue
        C = A[b][:, live]  # A B for the live coordinates B
        M = C.T @ jjt[b] @ C  # (B^T A J)(B^T A J)^T
        values, vectors = np.linalg.eigh(M)
        paper_rows.append(metrics.singular_coefficients(t[live], vectors, values))
        paper_sv.append(np.sqrt(np.clip(np.sort(values), 0, None)))
        cos = f[b] @ t / np.linalg.norm(f[b])
        s = cos ** p if float(p).is_integer() else max(cos, 0.0) ** p
        if jg is not None:
            cross = -C.T @ jg[b]  # [d, 1]
            gram = np.block([[M, cross], [cross.T, gg[b]]])
            x = np.r_[s * t[live], lam]
        else:  # no prior: the paper's system itself
            gram, x = M, s * t[live]
        values, vectors = np.linalg.eigh(gram)
        prior_rows.append(metrics.singular_coefficients(x, vectors, values))
        prior_sv.append(np.sqrt(np.clip(np.sort(values), 0, None)))
    return {"prior_aware": _pad(prior_rows, k + 1), "paper": _pad(paper_rows, k),
            "prior_aware_sv": _pad(prior_sv, k + 1), "paper_sv": _pad(paper_sv, k),
            "dead": result.dead_features, "indices": indices}


def mass(coefficients: np.ndarray, m: int) -> np.ndarray:
    """Per sample, the squared mass on the ``m`` smallest singular vectors (NaN rows stay NaN)."""
    sq = coefficients ** 2
    out = np.nansum(sq[:, :m], axis=1)
    out[np.all(np.isnan(sq), axis=1)] = np.nan
    return out


def fmt(x, digits: int = 2) -> str:
    x = np.asarray(x, np.float64)
    x = x[np.isfinite(x)]
    if x.size == 0:
        return "-"
    q1, med, q3 = np.percentile(x, [25, 50, 75])
    return f"{med:.{digits}f} [{q1:.{digits}f}, {q3:.{digits}f}]"


def analyse_run(folder: Path, plot: bool = True) -> dict:
    """One run's row: angles and dead counts from the re-solved records, the decomposition."""
    from lucid_ifv import experiment as ex
    from lucid_ifv.plots import plot_singular_coefficients

    settings = ex.load_settings(folder)
    config = ex.ExperimentConfig(**settings["config"])
    records = ex.resolve_records(folder)
    solve = ex.default_solve(config)
    dec = decompose(folder)
    np.savez_compressed(folder / "coefficients.npz", **dec)
    k = dec["paper"].shape[1]
    if plot:
        plot_singular_coefficients(dec["prior_aware"], folder / "coefficients.png",
                                   title=f"{settings['model']} k={k} p={config.cossim_pow:g} {config.aggregation}")
    vals = lambda key: np.array([r[key] for r in records if r.get(key) is not None], np.float64)
    pa, pp = dec["prior_aware"], dec["paper"]
    row = {
        "run": folder.name, "model": settings["model"], "layer": config.layer, "k": k, "p": config.cossim_pow,
        "aggregation": SWEEP_NAME.get(config.aggregation, config.aggregation), "n": len(records), "solve": solve,
        "angle_alive": vals(f"angle_alive_{solve}").tolist(), "angle": vals(f"angle_{solve}").tolist(),
        "angle_response": vals("angle_response").tolist(), "dead": vals(f"dead_{solve}").tolist(),
        "identified": sum(r.get(f"verdict_{solve}") == "identified" for r in records),
        "render_residual": vals("render_residual").tolist(),
        "c1_sq": (pa[:, 0] ** 2).tolist(), "paper_c1_sq": (pp[:, 0] ** 2).tolist(),
        "mass1": np.nanmean(mass(pa, 1)), "mass2": np.nanmean(mass(pa, 2)), "mass4": np.nanmean(mass(pa, 4)),
        "mean_sq": np.nanmean(pa ** 2, axis=0).tolist(), "paper_mean_sq": np.nanmean(pp ** 2, axis=0).tolist(),
        "sum_sq_max_dev": float(np.nanmax(np.abs(np.nansum(pa ** 2, axis=1) - 1))),
        "seconds_fv_per_sample": float(np.median(vals("seconds_fv"))),
    }
    return row


def table(rows: list) -> list:
    lines = [("| model | k | p | aggregation | n | t* on live features | t* overall | dead | feature response f "
              "| c1^2 (median [q1, q3]) | mass on smallest 1 / 2 / 4 (mean) | paper's system c1^2 | identified |"),
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        dead = np.asarray(r["dead"])
        lines.append(
            f"| {r['model']} `{r['layer']}` | {r['k']} | {r['p']:g} | {AGG_LABEL.get(r['aggregation'], r['aggregation'])} "
            f"| {r['n']} | {fmt(r['angle_alive'])} | {fmt(r['angle'])} | {np.median(dead):.0f} (max {dead.max():.0f}) "
            f"| {fmt(r['angle_response'])} | {fmt(r['c1_sq'], 3)} | {r['mass1']:.3f} / {r['mass2']:.3f} / {r['mass4']:.3f} "
            f"| {fmt(r['paper_c1_sq'], 3)} | {r['identified']} of {r['n']} |")
    return lines


SEGMENTS = ((0, 1, "1st (smallest)"), (1, 2, "2nd"), (2, 4, "3rd-4th"), (4, None, "rest"))


def plot_grid(rows: list, path: Path, key: str = "mean_sq", system: str = "prior-aware system") -> Path:
    """The paper's Fig. 3 for one model: per (p, aggregation) panel, one stacked bar per
    feature count with the mean squared coefficients (``key`` of the rows: ``mean_sq``, the
    prior-aware system; ``paper_mean_sq``, the paper's) on the smallest, 2nd, 3rd-4th and the
    remaining singular vectors."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    powers = sorted({r["p"] for r in rows}, reverse=True)
    aggs = [a for a in AGGREGATIONS if any(r["aggregation"] == a for r in rows)]
    fig, axes = plt.subplots(len(powers), len(aggs), figsize=(3.1 * len(aggs), 2.6 * len(powers)),
                             squeeze=False, sharey=True)
    colors = plt.cm.viridis(np.linspace(0.1, 0.9, len(SEGMENTS)))
    for i, p in enumerate(powers):
        for j, agg in enumerate(aggs):
            ax = axes[i, j]
            sel = sorted((r for r in rows if r["p"] == p and r["aggregation"] == agg), key=lambda r: r["k"])
            x = np.arange(len(sel))
            bottom = np.zeros(len(sel))
            for (lo, hi, label), color in zip(SEGMENTS, colors):
                h = np.array([np.nansum(np.asarray(r[key], np.float64)[lo:hi]) for r in sel])
                ax.bar(x, h, bottom=bottom, color=color, label=label, width=0.7)
                bottom += h
            ax.set_xticks(x, [str(r["k"]) for r in sel])
            ax.set_ylim(0, 1.02)
            ax.set_title(f"p = {p:g}, {AGG_LABEL.get(agg, agg)}", fontsize=9)
            if i == len(powers) - 1:
                ax.set_xlabel("feature count k")
            if j == 0:
                ax.set_ylabel("mean squared coefficient")
    model = rows[0]["model"] if rows else ""
    fig.suptitle(f"{model}: target mass per left-singular vector of the {system} (ascending)", fontsize=10)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, title="singular vector (ascending singular value)", fontsize=8, title_fontsize=8,
               loc="lower center", ncol=len(SEGMENTS), frameon=False)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=130, bbox_inches="tight")
    plt.close(fig)
    return path


def analyse(args, runs: list) -> list:
    rows = []
    for name, *_ in runs:
        folder = Path(args.out) / name
        if complete(folder, args.n) or (args.analyse_only and (folder / "records.jsonl").exists()):
            with warnings.catch_warnings():  # NaN-padded columns (dead features) make empty means
                warnings.filterwarnings("ignore", "Mean of empty slice", RuntimeWarning)
                rows.append(analyse_run(folder, plot=not args.no_run_plots))
    fig_dir = Path(args.fig_dir)
    fig_dir.mkdir(parents=True, exist_ok=True)
    (fig_dir / "table.md").write_text("\n".join(table(rows)) + "\n")
    (fig_dir / "results.json").write_text(json.dumps(rows, indent=1))
    for model in dict.fromkeys(r["model"] for r in rows):
        sel = [r for r in rows if r["model"] == model]
        if args.prior:
            plot_grid(sel, fig_dir / f"fig3_{model}.png")
            plot_grid(sel, fig_dir / f"fig3_{model}_paper_system.png", "paper_mean_sq",
                      "paper's system B^T A J (prior ignored)")
        else:  # without a prior both systems are the paper's: one figure
            plot_grid(sel, fig_dir / f"fig3_{model}.png", system="paper's system B^T A J (no prior: the paper's setting)")
    return rows


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="runs/sec36", help="folder of the run folders (default runs/sec36)")
    ap.add_argument("--fig-dir", default="docs/results/sec36", help="table and figures (default docs/results/sec36)")
    ap.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    ap.add_argument("--counts", nargs="+", type=int, help="feature counts (default: mnist 4 8 16 32, photos_cnn ... 64)")
    ap.add_argument("--powers", nargs="+", type=float, default=list(POWERS), help="cossim powers p (default 1 0)")
    ap.add_argument("--aggregations", nargs="+", default=list(AGGREGATIONS), choices=list(AGGREGATIONS))
    ap.add_argument("--only", nargs="+", help="run only the runs whose name contains one of these")
    ap.add_argument("--n", type=int, default=30, help="Hoyer targets per run (default 30)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--param", choices=("pixel", "fft"), default="pixel", help="pixel (default) or fft + decorrelation")
    ap.add_argument("--adam", type=int, default=400, help="Adam steps (default 400)")
    ap.add_argument("--max-lbfgs", type=int, default=1000, help="L-BFGS step cap of --converge (default 1000)")
    ap.add_argument("--converge", type=float, default=1e-3)
    ap.add_argument("--prior", type=float, default=1e-4, help="relative L2 prior weight (default 1e-4)")
    ap.add_argument("--batch-size", type=int, default=15)
    ap.add_argument("--analyse-only", action="store_true", help="no runs: analyse what is in --out")
    ap.add_argument("--no-analysis", action="store_true", help="runs only")
    ap.add_argument("--no-run-plots", action="store_true", help="no per-run coefficients.png")
    ap.add_argument("--progress", action="store_true", help="progress bars")
    return ap.parse_args(argv)


def main(argv=None) -> list:
    args = parse_args(argv)
    runs = plan(args)
    if not args.analyse_only:
        run_all(args, runs)
    return [] if args.no_analysis else analyse(args, runs)


if __name__ == "__main__":
    main()
