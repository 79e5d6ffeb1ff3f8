"""Validate the trust report (`lucid_ifv.trust`) on fooling circuits (`lucid_ifv.fooling`).

    python experiments/trust_report.py --out docs/results/trust
    python experiments/trust_report.py --model inception_small --layer conv2d2 --out docs/results/trust_inception

On a shipped frozen graph's ``Relu(BiasAdd)`` layer (default mnist_small conv2, 32 channels;
the circuit needs such a layer, `lucid_ifv.fooling`), with a seeded split of 16 untouched
channels:
  - calibration: 8 channels rendered on the original model; the path-score threshold is the
    5th percentile of their path scores, the activation-ratio threshold the 95th percentile of
    their ratios (the only thresholds picked on data; MAX_ANGLE is fixed a priori);
  - test, original model: the other 8 channels' reports (should pass);
  - test, manipulated: for each of those 8 channels a fooled model (`fooling_circuit`, the
    model's training and held-out images as the natural data it must not change), the channel re-rendered there
    (should be flagged); the held-out logits and the channel's activations are checked equal;
  - untouched on a manipulated model: the 15 other untouched channels rendered on the fooled
    model of the first test channel (should pass);
  - swapped claims: each test channel's original visualization claimed as another test
    channel's (inversion consistency should flag it).
Renders and reports are cached in --out (delete the folder to redo); writes report.json,
table.md, visualizations.png.
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

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lucid_ifv import fooling, trust

DATASETS = ("mnist", "shapes10")  # the frozen graphs' training data (modelzoo.datasets)


def training_images(dataset: str) -> np.ndarray:
    """The natural images a fooling circuit must leave unchanged besides the held-out set."""
    from modelzoo import datasets

    return datasets.mnist("train")[0] if dataset == "mnist" else datasets.shapes10_split("train", 20000)[0]


def _cached(path: Path, make):
    """Reports (a list of dicts) and their images, cached in ``path`` (.json + .npz)."""
    if path.with_suffix(".json").exists():
        reports = [trust.TrustReport.from_dict(d) for d in json.loads(path.with_suffix(".json").read_text())]
        with np.load(path.with_suffix(".npz")) as data:
            images = data["images"]
        for r, image in zip(reports, images):
            r.visualization = image
        return reports
    reports = make()
    path.with_suffix(".json").write_text(json.dumps([r.to_dict() for r in reports], indent=1))
    np.savez(path.with_suffix(".npz"), images=np.stack([r.visualization for r in reports]))
    return reports


def expected_flag(report, group_flag: str) -> str:
    """What the report should say: the group's flag, except that a render which leaves the unit
    at 0, or a unit silent on natural images, shows nothing to trust (`trust.activity_reasons`)."""
    return "suspicious" if group_flag == "suspicious" or trust.activity_reasons(report) else "trusted"


def _rate(reports, group_flag: str) -> str:
    hits = sum(r.flag == expected_flag(r, group_flag) for r in reports)
    return f"{hits}/{len(reports)}"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="mnist_small", help="a shipped frozen-graph model")
    parser.add_argument("--layer", default="conv2", help="a Relu(BiasAdd) layer of it")
    parser.add_argument("--out", default="docs/results/trust")
    parser.add_argument("--n-untouched", type=int, default=16, help="untouched channels (half calibrate, half test)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--percentile", type=float, default=5.0, help="of the calibration path scores")
    parser.add_argument("--joint-lbfgs", action="store_true",
                        help="converge the renders' L-BFGS on the whole batch (as docs/results.md's reports were "
                             "made, before 2026-12-04 evening; default: each sample alone)")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    started = time.time()

    from modelzoo.shipped import heldout, load_shipped, spec

    MODEL, LAYER = args.model, args.layer
    dataset = spec(MODEL).dataset
    if dataset not in DATASETS:
        parser.error(f"--model {MODEL!r} ({dataset} data): expected a frozen graph trained on one of {DATASETS}")
    model = load_shipped(MODEL)
    images, _ = heldout(MODEL)
    train = training_images(dataset)
    k = model.layer(LAYER).depth
    channels = np.random.default_rng(args.seed).permutation(k)[:args.n_untouched]
    half = args.n_untouched // 2
    calibration, test = sorted(channels[:half].tolist()), sorted(channels[half:].tolist())
    print(f"calibration channels {calibration}, test channels {test}")
    loose = dict(images=images, seed=args.seed, min_path_score=-np.inf, max_activation_ratio=np.inf)
    if args.joint_lbfgs:
        loose["config"] = dataclasses.replace(trust.default_config(), per_sample_lbfgs=False)
    profiles = trust._profiles(model, images, trust._layers_up_to(model, LAYER))  # unchanged by the circuits

    original = _cached(out / "original", lambda: trust.trust_reports(model, LAYER, calibration + test, **loose))
    by_channel = {r.feature: r for r in original}
    # thresholds from the calibration units that have something to trust (`trust.activity_reasons`)
    active = [c for c in calibration if not trust.activity_reasons(by_channel[c])]
    if len(active) < 3:
        raise SystemExit(f"only {len(active)} of the calibration channels {calibration} fire in their render and on "
                         "natural images; expected at least 3: use more --n-untouched")
    cal_scores = np.array([by_channel[c].path_score for c in active])
    threshold = float(np.percentile(cal_scores, args.percentile))
    cal_ratios = np.array([by_channel[c].activation_ratio for c in active])
    ratio_threshold = float(np.percentile(cal_ratios, 100 - args.percentile))
    print(f"calibration path scores {np.round(cal_scores, 3).tolist()}; threshold (p{args.percentile:g}) "
          f"{threshold:.3f}; activation ratios {np.round(cal_ratios, 3).tolist()}; threshold "
          f"(p{100 - args.percentile:g}) {ratio_threshold:.3f}")

    fooled_reports, checks = [], []
    for c in test:
        fooled = fooling.fooling_circuit(model, LAYER, c, np.concatenate([train, images]))
        a = model(images, ["logits", LAYER])
        b = fooled.model(images, ["logits", LAYER])
        checks.append({"channel": c, "threshold": fooled.threshold, "natural_max": fooled.natural_max,
                       "logits_max_diff": float(np.abs(a["logits"].numpy() - b["logits"].numpy()).max()),
                       "unit_max_diff": float(np.abs(a[LAYER].numpy()[..., c] - b[LAYER].numpy()[..., c]).max())})
        fooled_reports += _cached(out / f"fooled_{c}", lambda fooled=fooled, c=c: trust.trust_reports(
            fooled.model, LAYER, [c], natural_profiles=profiles, **loose))
        if c == test[0]:
            others = [u for u in calibration + test if u != c]
            fooled_untouched = _cached(out / f"fooled_{c}_untouched", lambda fooled=fooled, others=others:
                                       trust.trust_reports(fooled.model, LAYER, others, natural_profiles=profiles,
                                                           **loose))
    swapped_claims = test[1:] + test[:1]
    swapped = _cached(out / "swapped", lambda: trust.trust_reports(
        model, LAYER, swapped_claims, visualizations=np.stack([by_channel[c].visualization for c in test]),
        natural_profiles=profiles, **loose))

    def flagged(reports, angle=trust.MAX_ANGLE, path=None, ratio=None):
        path = threshold if path is None else path
        ratio = ratio_threshold if ratio is None else ratio
        return [trust.reflag(r, angle, path, ratio) for r in reports]

    def by_signal(reports, group_flag):
        """Rates as expected with one signal at a time: inversion, path similarity, activation
        ratio, unit activity."""
        fails = [lambda r: r.verdict in ("not stationary", "no signal") or not r.angle <= trust.MAX_ANGLE,
                 lambda r: not r.path_score >= threshold, lambda r: not r.activation_ratio <= ratio_threshold,
                 lambda r: bool(trust.activity_reasons(r))]
        return [f"{sum(bool(fail(r)) == (expected_flag(r, group_flag) == 'suspicious') for r in reports)}"
                f"/{len(reports)}" for fail in fails]

    groups = {
        "untouched, original model (test half)": flagged([by_channel[c] for c in test]),
        "untouched, original model (calibration half; threshold set on these)": flagged(
            [by_channel[c] for c in calibration]),
        f"untouched, fooled model of channel {test[0]}": flagged(fooled_untouched),
        "manipulated channel, fooled model (one model per channel)": flagged(fooled_reports),
        "swapped claim (channel i's image claimed as channel j's), original model": flagged(swapped),
    }
    expected = {name: ("suspicious" if name.startswith(("manipulated", "swapped")) else "trusted") for name in groups}
    board = fooling.checkerboard_kernel(fooling.PATTERN_SIZE)[:, :, 0, 0]

    def energy(im):
        """Mean |checkerboard detector response| of the grey image over a stride-2 grid of 4x4 windows."""
        grey = im.mean(axis=-1)
        h, w = grey.shape
        return float(np.abs(np.array([[np.sum(grey[i:i + 4, j:j + 4] * board) for j in range(0, w - 3, 2)]
                                      for i in range(0, h - 3, 2)])).mean())

    change = []
    for c, r in zip(test, fooled_reports):
        before, after = by_channel[c].visualization, r.visualization
        change.append({"channel": c, "pixel_correlation": float(np.corrcoef(before.ravel(), after.ravel())[0, 1]),
                       "checkerboard_energy_before": energy(before), "checkerboard_energy_after": energy(after),
                       "activation_before": by_channel[c].visualization_activation,
                       "activation_after": r.visualization_activation})

    lines = [f"Command: `python experiments/trust_report.py --model {MODEL} --layer {LAYER} --out {args.out}` "
             f"({MODEL} {LAYER}, seed {args.seed}; {time.time() - started:.0f} s on 2 CPU cores, "
             "less with cached renders in the folder)",
             "", f"Thresholds from the calibration channels {active} (of {calibration}: those that fire in their "
             f"render and on natural images) on the original model: path score >= "
             f"{threshold:.3f} ({args.percentile:g}th percentile), activation ratio <= {ratio_threshold:.2f} "
             f"({100 - args.percentile:g}th percentile); max angle {trust.MAX_ANGLE:g} deg (fixed a priori).", "",
             "'expected' is the case's flag, except for renders that leave the unit at 0 and units that "
             "never fire on the natural images: those show nothing to trust (expected suspicious; their "
             "count in parentheses).", "",
             "| case | n | expected | combined flag as expected | inversion only | path similarity only | "
             "activation ratio only | unit activity only | verdicts identified / ambiguous | median angle (deg) | "
             "median path score | median activation ratio |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, reports in groups.items():
        sig = by_signal(reports, expected[name])
        inactive = sum(bool(trust.activity_reasons(r)) for r in reports)
        shown = expected[name] if expected[name] == "suspicious" else f"trusted ({inactive} inactive: suspicious)"
        lines.append(f"| {name} | {len(reports)} | {shown} | {_rate(reports, expected[name])} | "
                     f"{sig[0]} | {sig[1]} | {sig[2]} | {sig[3]} | "
                     f"{sum(r.verdict == 'identified' for r in reports)} / "
                     f"{sum(r.verdict == 'ambiguous' for r in reports)} | "
                     f"{np.median([r.angle for r in reports]):.2f} | {np.median([r.path_score for r in reports]):.2f} | "
                     f"{np.median([r.activation_ratio for r in reports]):.2f} |")
    lines += ["", "Per test channel (original vs fooled model):", "",
              "| channel | logits max diff (held-out) | unit max diff | FV pixel corr. orig/fooled | checkerboard energy "
              "orig -> fooled | activation ratio orig -> fooled | path score orig -> fooled | flag orig / fooled |",
              "|---|---|---|---|---|---|---|---|"]
    for chk, ch, r in zip(checks, change, groups["manipulated channel, fooled model (one model per channel)"]):
        o = groups["untouched, original model (test half)"][test.index(chk["channel"])]
        lines.append(f"| {chk['channel']} | {chk['logits_max_diff']:.1e} | {chk['unit_max_diff']:.1e} | "
                     f"{ch['pixel_correlation']:.2f} | {ch['checkerboard_energy_before']:.2f} -> "
                     f"{ch['checkerboard_energy_after']:.2f} | {o.activation_ratio:.2f} -> "
                     f"{r.activation_ratio:.2f} | {o.path_score:.2f} -> {r.path_score:.2f} | {o.flag} / {r.flag} |")
    table = "\n".join(lines)
    (out / "table.md").write_text(table + "\n")
    (out / "report.json").write_text(json.dumps({
        "threshold": threshold, "ratio_threshold": ratio_threshold, "calibration": calibration, "test": test, "checks": checks, "change": change,
        "groups": {n: [r.to_dict() for r in rs] for n, rs in groups.items()}}, indent=1))
    try:
        from lucid_ifv.plots import plot_images

        pics = np.stack([by_channel[c].visualization for c in test] + [r.visualization for r in fooled_reports])
        titles = [f"orig {c}" for c in test] + [f"fooled {c}" for c in test]
        plot_images(pics, out / "visualizations.png", titles=titles, columns=len(test))
    except Exception as err:  # the figure is a convenience
        print(f"no figure: {err}")
    print(table)
    print(f"{time.time() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
