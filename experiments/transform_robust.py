"""Issue 12: inverting visualizations rendered with random transforms (docs/results.md).

    python experiments/transform_robust.py --out runs/transform_robust [--model photos_cnn --layer conv2d_3]

For each setting (Lucid's `standard_transforms` and a mild set scaled to 32-pixel inputs,
both with Lucid's schedule: Adam(0.05) only, 512 steps, L-BFGS needing a deterministic
objective; and a one-pixel jitter with a learning rate halved every 100 steps, 800 steps, so
the render settles near a stationary point of the expected objective), render Hoyer targets on
the smooth surrogate with the library's FV objective (p = 1, relative L2 prior 1e-4), then invert each realization twice: plainly (`ifv.invert`,
as if rendered without transforms) and transformation-robustly (`ifv.invert_robust`,
``n_transforms`` seeded draws of the same transforms; module `lucid_ifv.ifv.robust`). Writes
``records.json`` and ``table.md`` (angles on live features and overall, verdicts, feature
response baseline) into ``--out``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np


def transform_sets():
    """name -> (transforms, optimizer factory or None for Lucid's Adam(0.05), Adam steps)."""
    import tensorflow as tf

    from lucid_ifv import transform as T

    def decaying():  # halves every 100 steps: the render settles near a stationary point
        return tf.keras.optimizers.Adam(tf.keras.optimizers.schedules.ExponentialDecay(0.05, 100, 0.5))

    return {
        "standard": (list(T.standard_transforms), None, 512),
        "mild": ([T.pad(2), T.jitter(2), T.random_scale([0.95, 0.975, 1.0, 1.025, 1.05]),
                  T.random_rotate(list(range(-5, 6))), T.jitter(1)], None, 512),
        "jitter(1), decaying lr": ([T.jitter(1)], decaying, 800),
    }


def run(model_name, layer, n, batch, n_transforms, out: Path) -> list:
    from lucid_ifv import experiment, ifv, metrics, sampling
    from lucid_ifv import objectives as obj
    from lucid_ifv.render import render_vis
    from modelzoo.shipped import load_shipped

    model = load_shipped(model_name)
    config = experiment.ExperimentConfig(layer=layer, fft=False, decorrelate=False, prior_weight=1e-4,
                                         prior_relative=True, smooth=True, converge=None, float64_converge=None,
                                         aggregation="floored_max_pool_mean")  # as run (docs/results.md)
    setup = experiment.prepare(model, config)
    targets, _ = sampling.sample_hoyer_targets(model.layer(layer).depth, n, 0)
    saved = out / "records.json"
    records = json.loads(saved.read_text()) if saved.exists() else []  # resume
    done = {(r["transforms"], r["index"]) for r in records}
    for name, (transforms, optimizer, steps) in transform_sets().items():
        for start in range(0, n, batch):
            if (name, start) in done:
                continue
            t = targets[start:start + batch]
            param = experiment.realization_param(setup.model, config, len(t), start)
            rendered = render_vis(setup.model, experiment.fv_objective(config, setup, t), param, transforms=transforms,
                                  optimizer=optimizer, thresholds=(steps,), seed=start, progress=False)
            common = dict(param=param, aggregation=setup.aggregation, prior=obj.params_L2(), method="anchored")
            answers = {"plain": ifv.invert(setup.model, layer, rendered.params, **common),
                       "robust": ifv.invert_robust(setup.model, layer, rendered.params, transforms=transforms,
                                                   n_transforms=n_transforms, **common)}
            f, _ = ifv.feature_jacobian(setup.model, layer, rendered.params, param, setup.aggregation)
            for i in range(len(t)):
                row = {"transforms": name, "index": start + i,
                       "angle_response": float(metrics.objective_angle_deg(f[i], t[i], 1))}
                for how, result in answers.items():
                    alive = t[i] * ~result.dead_features[i]
                    row[f"angle_{how}"] = float(metrics.objective_angle_deg(result.target[i], t[i], 1))
                    row[f"angle_alive_{how}"] = (float(metrics.objective_angle_deg(result.target[i], alive, 1))
                                                 if alive.any() else None)
                    row[f"verdict_{how}"] = str(result.verdicts()[i])
                records.append(row)
            (out / "records.json").write_text(json.dumps(records, indent=1))
    return records


def _cell(values) -> str:
    values = np.asarray([v for v in values if v is not None], float)
    q1, med, q3 = np.percentile(values, [25, 50, 75])
    return f"{med:.1f} [{q1:.1f}, {q3:.1f}]"


def table(records, model_name, layer, n_transforms) -> str:
    lines = [f"{model_name} `{layer}`, smooth, pixel, p = 1, relative prior 1e-4, Adam under the transforms "
             f"(module docstring); robust inversion from {n_transforms} draws. Angles in degrees: median [q1, q3].", "",
             "| transforms | n | inversion | t* on live features | t* overall | identified | feature response f |",
             "|---|---|---|---|---|---|---|"]
    for name in dict.fromkeys(r["transforms"] for r in records):
        rows = [r for r in records if r["transforms"] == name]
        for how in ("plain", "robust"):
            identified = sum(r[f"verdict_{how}"] == "identified" for r in rows)
            lines.append(f"| {name} | {len(rows)} | {how} | {_cell(r[f'angle_alive_{how}'] for r in rows)} | "
                         f"{_cell(r[f'angle_{how}'] for r in rows)} | {identified} of {len(rows)} | "
                         f"{_cell(r['angle_response'] for r in rows)} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="photos_cnn")
    parser.add_argument("--layer", default="conv2d_3")
    parser.add_argument("--n", type=int, default=30)
    parser.add_argument("--batch", type=int, default=15)
    parser.add_argument("--n-transforms", type=int, default=16)
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    records = run(args.model, args.layer, args.n, args.batch, args.n_transforms, out)
    text = table(records, args.model, args.layer, args.n_transforms)
    (out / "table.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
