"""The paper's Sec. 3.7 / Fig. 4: does the parametrization change Grad-IFV's answer?

    python experiments/parametrization_sweep.py                    # every run, then the table and figures
    python experiments/parametrization_sweep.py --reuse-from runs  # copy identical Issue 8 runs first
    python experiments/parametrization_sweep.py --analyse-only

Pixel + sigmoid (``--param pixel --no-decorrelate``), the paper's plain Fourier + sigmoid
(``--param fft --no-decorrelate --decay-power 0``: no 1/f spectrum scaling), Fourier with
Lucid's 1/f scaling + sigmoid (``--param fft --no-decorrelate``) and Fourier 1/f + Lucid's
colour decorrelation + sigmoid (``--param fft``, the library's default). On a grey input
(``mnist_small``) colour decorrelation does nothing: the last two are the same runs. Each is rendered and inverted on the smooth surrogate (``--smooth``, L-BFGS until stationary to
1e-3, at most 1000 steps) and on the plain ReLU network (at most 300 L-BFGS steps: its optima
sit on kinks and cannot become stationary), on ``mnist_small`` conv2 and ``photos_cnn``
conv2d_3. Everything else is Issue 8's protocol (`experiments/smooth_round_trip.sh`): 30
Hoyer targets of seed 0 (the same targets in every run of a model), relative L2 prior 1e-4,
400 Adam steps, batches of 15. Runs go to ``<out>/<model>_<layer>_<param>_<mode>/`` (the Issue 8
names; ``fft_plain`` and ``fft_nodecorr`` are new) and resume when re-run; ``--reuse-from`` copies an Issue 8
folder whose settings are identical instead of recomputing it.

Outputs in ``--fig-dir``: ``table.md`` (`experiments/collect_results.py`'s tables on these
runs) and ``realizations_<model>.png`` (the same targets' realizations under each setting,
`lucid_ifv.plots.plot_images`, titled with the angle on live features).
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import logging
import shutil
import sys
import time
from pathlib import Path

import numpy as np

MODELS = {"mnist_small": "conv2", "photos_cnn": "conv2d_3"}
# name: (fft, decorrelate, decay power of the 1/f spectrum scaling)
PARAMS = {"pixel": (False, False, 1.0), "fft_plain": (True, False, 0.0), "fft_nodecorr": (True, False, 1.0),
          "fft": (True, True, 1.0)}
PARAM_LABEL = {"pixel": "pixel", "fft_plain": "Fourier, no 1/f", "fft_nodecorr": "Fourier 1/f",
               "fft": "Fourier 1/f + decorr."}
MODES = ("smooth", "relu")


def run_name(model: str, param: str, mode: str) -> str:
    return f"{model}_{MODELS[model]}_{param}_{mode}"


def make_config(args, model: str, param: str, mode: str):
    from lucid_ifv import experiment as ex

    fft, decorrelate, decay_power = PARAMS[param]
    smooth = mode == "smooth"
    return ex.ExperimentConfig(
        layer=MODELS[model], n_hoyer=args.n, seed=args.seed, fft=fft, decorrelate=decorrelate, decay_power=decay_power,
        adam_steps=args.adam, lbfgs_steps=0, prior_weight=args.prior, prior_relative=True, smooth=smooth,
        converge=args.converge, max_lbfgs_steps=args.max_lbfgs if smooth else args.max_lbfgs_relu,
        batch_size=args.batch_size, per_sample_lbfgs=False,  # L-BFGS on the whole batch, as these runs were made
        aggregation="floored_max_pool_mean")  # the surrogate's pool these runs were made with (docs/results.md)


def plan(args) -> list:
    runs = []
    for model in args.models:
        for mode in args.modes:
            for param in args.params:
                name = run_name(model, param, mode)
                if not args.only or any(s in name for s in args.only):
                    runs.append((name, model, param, mode))
    return runs


def _load_collect():
    """experiments/collect_results.py as a module (it is a script, not a package member), its
    setting names extended by the spectrum scaling (it names Fourier runs without it)."""
    path = Path(__file__).resolve().parent / "collect_results.py"
    spec = importlib.util.spec_from_file_location("collect_results", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    describe = module.describe

    def describe_with_decay(settings: dict) -> str:
        text, c = describe(settings), settings["config"]
        if c["fft"]:
            scaling = "no 1/f" if c.get("decay_power", 1.0) == 0 else f"1/f^{c.get('decay_power', 1.0):g}"
            text = text.replace("Fourier", f"Fourier {scaling}", 1)
        return text

    module.describe = describe_with_decay
    return module


def _same_settings(folder: Path, model: str, config) -> bool:
    """``folder`` holds a finished experiment with exactly ``config`` (settings added to the
    library since it was written count with their defaults, as the runner's own check does)."""
    from lucid_ifv import experiment as ex

    path = folder / "settings.json"
    if not path.exists() or not (folder / "records.jsonl").exists():
        return False
    saved = ex.read_as_today(json.loads(path.read_text()))
    defaults = {f.name: f.default for f in dataclasses.fields(ex.ExperimentConfig)}
    wanted = dataclasses.asdict(config)
    have = {key: saved["config"].get(key, defaults.get(key)) for key in wanted}
    return saved.get("model") == model and have == wanted and len(ex.load_records(folder / "records.jsonl")) >= config.n_hoyer


def run_all(args, runs: list) -> dict:
    from lucid_ifv import experiment as ex
    from modelzoo import load_any

    logging.getLogger("tensorflow").setLevel(logging.ERROR)  # retracing notes across runs
    feature_sweep = _feature_sweep()
    models, seconds = {}, {}
    for name, model_name, param, mode in runs:
        folder = Path(args.out) / name
        config = make_config(args, model_name, param, mode)
        if feature_sweep.complete(folder, args.n):
            continue
        source = Path(args.reuse_from) / name if args.reuse_from else None
        if source is not None and not folder.exists() and _same_settings(source, model_name, config):
            shutil.copytree(source, folder, ignore=shutil.ignore_patterns(".lock"))
            print(f"{name}: copied from {source} (identical settings)", file=sys.stderr, flush=True)
            continue
        model = models.setdefault(model_name, load_any(model_name))
        print(f"[{time.strftime('%H:%M:%S')}] {name}", file=sys.stderr, flush=True)
        started = time.perf_counter()
        records = ex.run_experiment(model, config, folder, progress=args.progress)
        seconds[name] = time.perf_counter() - started
        feature_sweep.write_summary(folder, model.name, config, records, "python " + " ".join(sys.argv))
        print(f"[{time.strftime('%H:%M:%S')}] {name}: {len(records)} samples in {seconds[name]:.0f} s",
              file=sys.stderr, flush=True)
    return seconds


def _feature_sweep():
    path = Path(__file__).resolve().parent / "feature_count_sweep.py"
    spec = importlib.util.spec_from_file_location("feature_count_sweep", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def plot_realizations(args, model: str, folders: list, path: Path) -> Path | None:
    """Rows: the settings (smooth first); columns: the first ``--examples`` targets (the same
    in every row); titles: the default solve's angle on live features."""
    from lucid_ifv import experiment as ex
    from lucid_ifv.plots import plot_images

    images, titles = [], []
    for folder, param, mode in folders:
        data = ex.load_realizations(folder)
        records = {r["index"]: r for r in ex.resolve_records(folder)}
        settings = ex.load_settings(folder)
        solve = ex.default_solve(ex.ExperimentConfig(**settings["config"]))
        m = min(args.examples, len(data["images"]))
        for j in range(m):
            index = int(data["indices"][j])
            angle = records[index].get(f"angle_alive_{solve}")
            images.append(data["images"][j])
            label = f"{PARAM_LABEL[param]}, {'smooth' if mode == 'smooth' else 'ReLU'}" if j == 0 else f"#{index}"
            titles.append(f"{label}\n{'-' if angle is None else f'{angle:.2f}'} deg")
        images.extend(np.ones_like(data["images"][0]) for _ in range(args.examples - m))
        titles.extend("" for _ in range(args.examples - m))
    if not images:
        return None
    return plot_images(np.stack(images), path, titles=titles, columns=args.examples)


def analyse(args, runs: list) -> str:
    collect = _load_collect()
    feature_sweep = _feature_sweep()
    done = [(Path(args.out) / name, model, param, mode) for name, model, param, mode in runs
            if feature_sweep.complete(Path(args.out) / name, args.n)
            or (args.analyse_only and (Path(args.out) / name / "records.jsonl").exists())]
    collected = collect.load_runs([str(folder) for folder, *_ in done])
    if not args.no_run_plots:
        collect.plot_runs(collected)
    lines = [("Angles in degrees: median [first quartile, third quartile] (p90: 90th percentile) over the samples "
              "of each run (`experiments/collect_results.py`)."), "", *collect.headline_table(collected), "",
             "Every solve on the same realizations (angle on live features):", "", *collect.solves_table(collected)]
    fig_dir = Path(args.fig_dir)
    fig_dir.mkdir(parents=True, exist_ok=True)
    text = "\n".join(lines) + "\n"
    (fig_dir / "table.md").write_text(text)
    for model in dict.fromkeys(model for _, model, _, _ in done):
        folders = [(folder, param, mode) for folder, m, param, mode in done if m == model]
        plot_realizations(args, model, folders, fig_dir / f"realizations_{model}.png")
    return text


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="runs/sec37", help="folder of the run folders (default runs/sec37)")
    ap.add_argument("--fig-dir", default="docs/results/sec37", help="table and figures (default docs/results/sec37)")
    ap.add_argument("--reuse-from", help="a folder of Issue 8 runs (e.g. runs): copy runs with identical settings")
    ap.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    ap.add_argument("--params", nargs="+", default=list(PARAMS), choices=list(PARAMS))
    ap.add_argument("--modes", nargs="+", default=list(MODES), choices=list(MODES))
    ap.add_argument("--only", nargs="+", help="run only the runs whose name contains one of these")
    ap.add_argument("--n", type=int, default=30, help="Hoyer targets per run (default 30)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--adam", type=int, default=400)
    ap.add_argument("--max-lbfgs", type=int, default=1000, help="L-BFGS cap of the smooth runs (default 1000)")
    ap.add_argument("--max-lbfgs-relu", type=int, default=300, help="L-BFGS cap of the ReLU runs (default 300)")
    ap.add_argument("--converge", type=float, default=1e-3)
    ap.add_argument("--prior", type=float, default=1e-4)
    ap.add_argument("--batch-size", type=int, default=15)
    ap.add_argument("--examples", type=int, default=6, help="realizations per row of the figure (default 6)")
    ap.add_argument("--analyse-only", action="store_true")
    ap.add_argument("--no-analysis", action="store_true")
    ap.add_argument("--no-run-plots", action="store_true", help="do not rewrite each run's angles.png")
    ap.add_argument("--progress", action="store_true")
    return ap.parse_args(argv)


def main(argv=None) -> str:
    args = parse_args(argv)
    runs = plan(args)
    if not args.analyse_only:
        run_all(args, runs)
    return "" if args.no_analysis else analyse(args, runs)


if __name__ == "__main__":
    print(main())
