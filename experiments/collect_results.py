"""Collect experiment folders into the Markdown tables of docs/results.md.

    python experiments/collect_results.py runs/*/ > table.md
    python experiments/collect_results.py --max-undetermined-mass 0.0076 runs/*/  # + that rule's verdicts

It also rewrites each run's angles.png from the re-solved records.

Each run folder is a `lucid-ifv experiment --out` folder (settings.json, records.jsonl). The
tables report, per run, the angle of the predicted objective t* to the target on the
features alive at the realization (identifiable), the overall angle, the dead count, the
feature-response baseline and a random direction; then every solve side by side; then how
well the verdict "identified" predicts a good answer (angle on live features < 5 deg).
"""

from __future__ import annotations

import functools
import sys
from pathlib import Path

import numpy as np

from lucid_ifv import experiment as ex
from lucid_ifv.ifv import DEFAULT_METHOD_WITH_PRIOR as DEFAULT_SOLVE

GOOD_DEG = ex.GOOD_DEG  # an answer within this angle of the live target counts as right
ACCEPT_MEDIAN_DEG, ACCEPT_P90_DEG = 1.0, 5.0  # issue 8's acceptance on live features (smooth runs)
BOOTSTRAP_DRAWS = 2000


def describe(settings: dict, with_seed: bool = True) -> str:
    """The run's setting in words; the target seed only when it is not 0 and ``with_seed``."""
    c = settings["config"]
    par = ("Fourier" + (" + decorr." if c["decorrelate"] else "") if c["fft"] else "pixel")
    if settings.get("input_kind") == "geometry":  # colour decorrelation does not apply
        par = f"geometry ({'Fourier' if c['fft'] else 'pixel'}, mask {c.get('geometry_mask', 'continuous')})"
    net = "smooth" if c.get("smooth") else "ReLU"
    if c.get("smooth") and (c.get("relu_beta", 10.0), c.get("pool_temperature", 0.05)) != (10.0, 0.05):
        net += f" (beta {c.get('relu_beta', 10.0):g}, T {c.get('pool_temperature', 0.05):g})"
    if c.get("relu_beta_relative"):
        net += ", beta per unit"
    prior = (f"{c['prior_weight']:g}" + (" rel." if c.get("prior_relative") else "")) if c["prior_weight"] else "none"
    agg = "" if c["aggregation"] == "max_pool_mean" else f", {c['aggregation']}"
    joint = "" if c.get("per_sample_lbfgs", True) else ", joint L-BFGS"  # (load_settings: False before it existed)
    conv = (f", conv. {c['converge']:g} (cap {c.get('max_lbfgs_steps', '?')}{joint})" if c.get("converge")
            else f", {c['lbfgs_steps']} L-BFGS")
    if c.get("float64_converge"):
        conv += f", then float64 to {c['float64_converge']:g}"
    warmup = f", warm-up {c['warmup_steps']}" if c.get("warmup_steps") else ""
    seed = f", seed {c['seed']}" if with_seed and c.get("seed", 0) else ""
    return f"{settings['model']} `{c['layer']}` {net}, {par}, p={c['cossim_pow']:g}{agg}, prior {prior}{conv}{warmup}{seed}"


def values(records, key) -> np.ndarray:
    return np.array([r[key] for r in records if r.get(key) is not None], dtype=np.float64)


def fmt(x: np.ndarray, p90: bool = False) -> str:
    if x.size == 0:
        return "-"
    q1, med, q3, p = np.percentile(x, [25, 50, 75, 90])
    return f"{med:.2f} [{q1:.2f}, {q3:.2f}]" + (f", p90 {p:.2f}" if p90 else "")


def load_runs(folders):
    """(folder, settings, records) of every experiment folder that has records; each solve's
    fields are recomputed from the saved Gram statistics (`experiment.resolve_records`)."""
    runs = []
    for folder in map(Path, folders):
        if (folder / "records.jsonl").exists():
            records = ex.load_records(folder / "records.jsonl")
            if records and "solve" in records[0]:  # older folders lack the per-solve records
                runs.append((folder, ex.load_settings(folder), ex.resolve_records(folder)))
    return runs


@functools.lru_cache(maxsize=None)
def selected_critical_space(folder: Path) -> dict | None:
    """The row of the critical space Algorithm 1 selects (`ex.critical_space_analysis`) for
    runs analysed with `lucid-ifv critical`, else None."""
    if not (folder / "critical_space.md").exists():
        return None
    return next((r for r in ex.critical_space_analysis(folder, eps_hi=0.1) if r["selected"]), None)


def critical_angles(folder: Path) -> str:
    """Median [q1, q3] angle modulo the trivial space Algorithm 1 selects and how many
    inversions in that critical space the verdict calls "identified" (how many of those are
    right), else '-'."""
    r = selected_critical_space(folder)
    if r is None:
        return "-"
    return (f"{r['median_angle']:.2f} [{r['q1']:.2f}, {r['q3']:.2f}], p90 {r['p90']:.2f} (dim {r['dim']}; "
            f"identified in it {r['identified']} of {r['n']}, {r['identified_right']} right)")


def default_solve_and_identified(settings: dict, records: list) -> tuple[str, str]:
    """Today's default solve of a run (as re-solved) and "<identified> of <n>" by its verdict."""
    solve = ex.default_solve(ex.ExperimentConfig(**settings["config"]))
    verdicts = [r.get(f"verdict_{solve}") for r in records]
    return solve, f"{verdicts.count('identified')} of {len(records)}"


def stationary_renders(settings: dict, records: list) -> str:
    """"<m> of <n>": renders whose stationarity residual reached the run's ``converge`` (its
    ``float64_converge`` for runs continued in float64; '-' for runs without one)."""
    tol = settings["config"].get("float64_converge") or settings["config"].get("converge")
    residuals = [r.get("render_residual") for r in records]
    if tol is None or any(x is None for x in residuals):
        return "-"
    return f"{sum(x <= tol for x in residuals)} of {len(residuals)}"


def headline_table(runs) -> list:
    lines = ["| setting | n | solve | t* on live features | t* overall | dead features | in the critical space "
             "| feature response f | random | stationary renders | identified |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for folder, settings, records in runs:
        solve, identified = default_solve_and_identified(settings, records)
        dead = values(records, f"dead_{solve}")
        lines.append(
            f"| {describe(settings)} | {len(records)} | {solve} | {fmt(values(records, f'angle_alive_{solve}'), True)} | "
            f"{fmt(values(records, f'angle_{solve}'))} | {np.median(dead):.0f} (max {dead.max():.0f}) | "
            f"{critical_angles(folder)} | {fmt(values(records, 'angle_response'))} | "
            f"{fmt(values(records, 'angle_random'))} | {stationary_renders(settings, records)} | {identified} |")
    return lines


def _beside_live_table(runs, angle: str, count: str, mass: str, headers: tuple) -> list:
    """The default solve's angle on live features beside another angle (record key ``angle``),
    a per-sample count (``count``: median (max)) and a target mass (``mass``); ``headers``
    names those three columns. Runs without the fields are left out."""
    lines = [f"| setting | n | t* on live features | {' | '.join(headers)} | identified |", "|---|---|---|---|---|---|---|"]
    for _, settings, records in runs:
        solve, identified = default_solve_and_identified(settings, records)
        if not records or f"{angle}_{solve}" not in records[0]:
            continue
        counts = values(records, f"{count}_{solve}")
        lines.append(
            f"| {describe(settings)} | {len(records)} | {fmt(values(records, f'angle_alive_{solve}'), True)} | "
            f"{fmt(values(records, f'{angle}_{solve}'), True)} | {np.median(counts):.0f} ({counts.max():.0f}) | "
            f"{fmt(values(records, f'{mass}_{solve}'), True)} | {identified} |")
    return lines


def identifiable_table(runs) -> list:
    """The angle modulo each sample's unidentifiable directions (`ifv.InversionResult.unidentifiable`),
    their count and the target's mass in them."""
    return _beside_live_table(runs, "angle_identifiable", "unidentifiable_dim", "unidentifiable_target_mass",
                              ("t* modulo unidentifiable directions", "unidentifiable directions, median (max)",
                               "target mass in them"))


def determined_table(runs) -> list:
    """The angle on the features the error bars determine (`ifv.InversionResult.sensitivity`
    <= `DETERMINED_TOL`), how many live features are not determined and the target's mass on them."""
    from lucid_ifv.ifv.diagnostics import DETERMINED_TOL

    return _beside_live_table(runs, "angle_determined", "undetermined", "undetermined_target_mass",
                              (f"t* on determined features (error bar <= {DETERMINED_TOL:g})",
                               "live features not determined, median (max)", "target mass on them"))


def bootstrap_interval(x: np.ndarray, q: float, draws: int = BOOTSTRAP_DRAWS, seed: int = 0) -> tuple:
    """95 % percentile-bootstrap interval of the ``q``-th percentile of the samples ``x`` ``[n]``:
    how far the run's figure could move with another draw of the same number of samples."""
    rng = np.random.default_rng(seed)
    stats = np.percentile(x[rng.integers(0, len(x), (draws, len(x)))], q, axis=1)
    lo, hi = np.percentile(stats, [2.5, 97.5])
    return float(lo), float(hi)


def graded_angles(folder: Path, settings: dict, records: list) -> tuple[np.ndarray, str]:
    """The angles the acceptance judges: in the critical space Algorithm 1 selects for runs
    analysed with `lucid-ifv critical` (DenseNet's softmax, Sec. 3.5), else on live features
    (default solve); and which of the two."""
    critical = selected_critical_space(folder)
    if critical is not None:
        angles = np.asarray(critical["angles"], np.float64)
        return angles[np.isfinite(angles)], f"critical space (dim {critical['dim']})"
    solve = ex.default_solve(ex.ExperimentConfig(**settings["config"]))
    return values(records, f"angle_alive_{solve}"), "live features"


def _acceptance(angles: np.ndarray) -> str:
    """Which of the acceptance's two figures ``angles`` ``[n]`` meet."""
    med, p90 = np.percentile(angles, [50, 90])
    met = [name for name, ok in (("median", med <= ACCEPT_MEDIAN_DEG), ("p90", p90 <= ACCEPT_P90_DEG)) if ok]
    if len(met) == 2:
        return "**both met**"
    return f"{met[0]} met" if met else "missed"


def acceptance_table(runs) -> list:
    """Each smooth setting against issue 8's acceptance (median <= 1 deg, p90 <= 5 deg), with 95 %
    bootstrap intervals of both figures (n = 30 puts the p90 between the 27th and 28th value);
    runs of one setting with other target seeds are pooled. Beside it the non-negative solve on
    live features, the one to use for non-negative objective families (not applicable in a
    critical space that is not spanned by features)."""
    lines = [f"| setting | seeds | n | judged on | median [95 % interval] | p90 [95 % interval] | "
             f"median <= {ACCEPT_MEDIAN_DEG:g}, p90 <= {ACCEPT_P90_DEG:g} | non-negative solve: median, p90 |",
             "|---|---|---|---|---|---|---|---|"]
    settings_of = {}
    for run in runs:
        if run[1]["config"].get("smooth"):
            settings_of.setdefault(describe(run[1], with_seed=False), []).append(run)
    for setting, group in settings_of.items():
        graded = [graded_angles(*run) for run in group]
        angles = np.concatenate([a for a, _ in graded])
        judged = {j for _, j in graded}
        if angles.size == 0:
            continue
        judged = judged.pop() if len(judged) == 1 else "mixed: " + "; ".join(sorted(judged))
        med, p90 = np.percentile(angles, [50, 90])
        (m_lo, m_hi), (p_lo, p_hi) = bootstrap_interval(angles, 50), bootstrap_interval(angles, 90)
        nonneg = np.concatenate([values(records, "angle_alive_nonneg") for _, _, records in group])
        beside = ("-" if judged != "live features" or nonneg.size == 0 else
                  "{:.2f}, {:.2f} ({})".format(*np.percentile(nonneg, [50, 90]), _acceptance(nonneg).strip("*")))
        seeds = ", ".join(str(s) for s in sorted(run[1]["config"].get("seed", 0) for run in group))
        lines.append(f"| {setting} | {seeds} | {angles.size} | {judged} | {med:.2f} [{m_lo:.2f}, {m_hi:.2f}] | "
                     f"{p90:.2f} [{p_lo:.2f}, {p_hi:.2f}] | {_acceptance(angles)} | {beside} |")
    return lines


def solves_table(runs) -> list:
    lines = ["| setting | " + " | ".join(ex.SOLVES) + " |", "|---|" + "---|" * len(ex.SOLVES)]
    for _, settings, records in runs:
        cells = [fmt(values(records, f"angle_alive_{m}"), p90=True) for m in ex.SOLVES]
        lines.append(f"| {describe(settings)} | " + " | ".join(cells) + " |")
    return lines


def verdict_quality(runs, solve: str) -> dict:
    """Precision and recall of the verdict "identified" for "angle on live features < GOOD_DEG",
    pooled over the runs' samples."""
    pairs = [(r[f"verdict_{solve}"] == "identified", r[f"angle_alive_{solve}"] < GOOD_DEG)
             for _, _, records in runs for r in records
             if r.get(f"verdict_{solve}") is not None and r.get(f"angle_alive_{solve}") is not None]
    if not pairs:
        return {}
    said, good = np.array(pairs).T
    return {"n": len(pairs), "identified": int(said.sum()), "good": int(good.sum()),
            "precision": float((said & good).sum() / said.sum()) if said.any() else None,
            "recall": float((said & good).sum() / good.sum()) if good.any() else None}


def verdict_table(runs, solves=ex.SOLVES) -> list:
    lines = [f"| runs | solve | samples | said identified | angle on live features < {GOOD_DEG:g} deg "
             "| precision | recall |", "|---|---|---|---|---|---|---|"]
    groups = {"smooth": [r for r in runs if r[1]["config"].get("smooth")],
              "ReLU": [r for r in runs if not r[1]["config"].get("smooth")], "all": runs}
    for name, group in groups.items():
        for solve in solves:
            q = verdict_quality(group, solve)
            if q:
                rate = lambda x: "-" if x is None else f"{x:.2f}"  # noqa: E731
                lines.append(f"| {name} | {solve} | {q['n']} | {q['identified']} | {q['good']} | "
                             f"{rate(q['precision'])} | {rate(q['recall'])} |")
    return lines


def critical_verdict_table(runs) -> list:
    """The verdict inside the critical space Algorithm 1 selects, for the runs analysed with
    `lucid-ifv critical` (known targets; right = below GOOD_DEG modulo the trivial space)."""
    rows = [r for r in (selected_critical_space(folder) for folder, _, _ in runs) if r is not None]
    if not rows:
        return []
    n, said, good, both = (sum(r[key] for r in rows) for key in ("n", "identified", "right", "identified_right"))
    rate = lambda a, b: "-" if b == 0 else f"{a / b:.2f}"  # noqa: E731
    return ["| runs | samples | said identified | < 5 deg modulo the trivial space | precision | recall |",
            "|---|---|---|---|---|---|",
            f"| {len(rows)} run(s) with a critical space | {n} | {said} | {good} | {rate(both, said)} | {rate(both, good)} |"]


def with_rule(runs, **rule) -> list:
    """The runs re-solved with another verdict rule (`ifv.VerdictRule(**rule)`), for the
    side-by-side tables: the rule before error bars, or a stricter undetermined-mass bound."""
    from lucid_ifv.ifv import VerdictRule

    return [(folder, settings, ex.resolve_records(folder, VerdictRule(**rule))) for folder, settings, _ in runs]


def plot_runs(runs) -> None:
    """Rewrite each run's angles.png from its re-solved records (today's default solve)."""
    from lucid_ifv.plots import plot_angles

    for folder, settings, records in runs:
        config = ex.ExperimentConfig(**settings["config"])
        plot_angles(records, folder / "angles.png", solve=ex.default_solve(config),
                    title=f"{settings['model']}{' (smooth)' if config.smooth else ''} {config.layer}, "
                          f"{'Fourier' if config.fft else 'pixel'}, prior {config.prior_weight:g}")


def main(argv):
    max_mass = None
    if argv[:1] == ["--max-undetermined-mass"]:
        if len(argv) < 2:
            raise SystemExit("--max-undetermined-mass needs a value, e.g. 0.0076 (sin^2 of 5 deg)")
        try:
            max_mass = float(argv[1])
        except ValueError:
            raise SystemExit(f"--max-undetermined-mass must be a number in (0, 1], got {argv[1]!r}")
        if not 0 < max_mass <= 1:
            raise SystemExit(f"--max-undetermined-mass must be in (0, 1], got {max_mass}")
        argv = argv[2:]
    runs = load_runs(argv)
    plot_runs(runs)
    out = ["Angles in degrees: median [first quartile, third quartile] (p90: 90th percentile) over the "
           "samples of each run. 'Live' features are those whose Jacobian row is above the solve's "
           "noise level at the realization; a dead feature's target weight cannot be recovered from "
           "the image.", "", *headline_table(runs), "",
           f"Against issue 8's acceptance (smooth runs; median <= {ACCEPT_MEDIAN_DEG:g} and p90 <= "
           f"{ACCEPT_P90_DEG:g} deg), default solve, with 95 % bootstrap intervals ({BOOTSTRAP_DRAWS} resamples "
           "of the samples; runs of one setting with other target seeds pooled); beside it the non-negative "
           "solve (for non-negative objective families):", "",
           *acceptance_table(runs), "",
           "What each realization determines (default solve): the angle after removing, from the "
           "target and t*, the live directions the realization cannot tell apart (near-null "
           "directions of its stationarity equation; a per-sample critical space), their number and "
           "the target's mass in them:", "", *identifiable_table(runs), "",
           "Per-feature error bars (default solve): how far each entry of the unit answer can move when "
           "the stationarity equation is off by as much as its own residual; the angle on the live "
           "features whose error bar is small (determined), how many live features are not, and the "
           "target's mass on those:", "", *determined_table(runs), "",
           "Every solve on the same realizations (angle on live features):", "", *solves_table(runs), "",
           "The verdict: how often 'identified' is right (precision) and how many right answers it "
           "catches (recall):", "", *verdict_table(runs), "",
           "The verdict inside the critical space Algorithm 1 selects (runs analysed with `lucid-ifv critical`; "
           "the default solve in that space):", "", *(critical_verdict_table(runs) or ["(none)"]), "",
           "The same for the verdict rule before error bars (`VerdictRule(determined_tol=None)`), default solve:",
           "", *verdict_table(with_rule(runs, determined_tol=None), solves=[DEFAULT_SOLVE])]
    if max_mass is not None:
        out += ["", f"The same with `VerdictRule(max_undetermined_mass={max_mass:g})` (default 0.05), default solve:",
                "", *verdict_table(with_rule(runs, max_undetermined_mass=max_mass), solves=[DEFAULT_SOLVE])]
    print("\n".join(out))


if __name__ == "__main__":
    main(sys.argv[1:])
