"""Which verdict check turns down each 8-bit input (evaluation: uses the saved targets).

    python experiments/dither_checks.py --run runs/photos_cnn_conv2d_3_pixel_smooth [--n 15]

Inverts the first ``--n`` realizations of a converged `lucid-ifv experiment` folder after
8-bit rounding (re-dithered, `ifv.invert`'s default), and prints per sample the angle on live
features, the verdicts by the rescaled error bars (``dither_leaning="error_bars"``) and by the
spread (the default), the spread, the error-bar scale ``denoised / raw residual``, the
near-null dimension and whether the rescaled bars resolve it or say the answer leans on
undetermined weights (docs/results.md, "Imperfect inputs").
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True, help="a converged `lucid-ifv experiment` folder")
    parser.add_argument("--n", type=int, default=15, help="realizations inverted (default 15)")
    args = parser.parse_args(argv)
    if args.n < 1:
        parser.error(f"--n must be >= 1, got {args.n}")
    run = Path(args.run)
    if not (run / "settings.json").exists():
        parser.error(f"--run {run} is not an experiment folder (no settings.json)")

    import imperfect_inputs as ii

    from lucid_ifv import experiment as ex
    from lucid_ifv.cli import load_any_model
    from lucid_ifv.ifv import diagnostics as d
    from lucid_ifv.metrics import objective_angle_deg

    settings = ex.load_settings(run)
    config = ex.ExperimentConfig(**settings["config"])
    setup = ex.prepare(load_any_model(settings["model"]), config)
    saved = ex.load_realizations(run)
    targets = saved["targets"][:args.n]
    result = ii.invert(setup, config, ii.degrade(saved["images"][:args.n], "8bit"))
    by_bars, by_spread = d.VerdictRule(dither_leaning="error_bars"), d.VerdictRule()
    scale = d._error_bar_scale(result, by_bars)
    resolved, leaning = d._error_bar_checks(result, by_bars, scale)
    null = d.null_space_dim(result.stationarity_singular_values, by_bars.null_rtol)
    print("| sample | angle on live features | verdict (error bars) | verdict (spread) | spread | bar scale | "
          "near-null dim | bars resolve | bars: leaning |")
    print("|---|---|---|---|---|---|---|---|---|")
    for i, (v_bars, v_spread) in enumerate(zip(d.verdicts(result, by_bars), d.verdicts(result, by_spread))):
        alive = targets[i] * ~result.dead_features[i]
        angle = objective_angle_deg(result.target[i], alive, config.cossim_pow)
        print(f"| {i} | {angle:.2f} | {v_bars} | {v_spread} | {result.dither_spread[i]:.2f} | {scale[i]:.2f} | "
              f"{null[i]} | {bool(resolved[i])} | {bool(leaning[i])} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
