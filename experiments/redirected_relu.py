"""How many channel visualizations stay flat, with and without Lucid's redirected ReLU gradient.

    python experiments/redirected_relu.py --out docs/results/redirected_relu [--channels 16] [--steps 256]

For ``--channels`` channels of ``inception_small`` mixed3b (sampled with seed 0) and of
``mnist_small`` conv2, renders Lucid's channel objective from the same initial image (seed 0;
``param.image_for_model``) with ``relu_gradient_override`` on and off, with Lucid's standard
transforms and without transforms. A render is *dead* when the channel's objective is still
exactly 0 at the end; *flat* when the image's 1-99 percentile spread is below 0.1 (the notebook
test's threshold). Writes ``results.json`` and ``results.md``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from lucid_ifv import objectives as obj, param
from lucid_ifv.render import render_vis
from modelzoo.shipped import load_shipped

MODELS = (("inception_small", "mixed3b"), ("mnist_small", "conv2"))


def contrast(image) -> float:
    low, high = np.percentile(image, [1, 99])
    return float(high - low)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True)
    parser.add_argument("--channels", type=int, default=16)
    parser.add_argument("--steps", type=int, default=256)
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for name, layer in MODELS:
        model = load_shipped(name)
        k = model.layer(layer).depth
        channels = sorted(np.random.default_rng(0).choice(k, size=min(args.channels, k), replace=False).tolist())
        for transforms in ("standard", "none"):
            for override in (True, False):
                dead = flat = 0
                for channel in channels:
                    result = render_vis(model, obj.channel(layer, channel), param.image_for_model(model, seed=0),
                                        transforms=None if transforms == "standard" else [],
                                        thresholds=(args.steps,), seed=0, progress=False,
                                        relu_gradient_override=override)
                    dead += max(result.objective) == 0.0 and result.objective[-1] == 0.0
                    flat += contrast(result.final[0]) < 0.1
                rows.append({"model": name, "layer": layer, "transforms": transforms, "override": override,
                             "channels": channels, "dead": int(dead), "flat": int(flat)})
                print(rows[-1])
    command = "python experiments/redirected_relu.py " + " ".join(argv or sys.argv[1:])
    (out / "results.json").write_text(json.dumps({"command": command, "rows": rows}, indent=1))
    lines = [f"Command: `{command}`", "",
             f"{args.channels} channels per model (seed 0), {args.steps} Adam steps, seed-0 initial image:", "",
             "| model, layer | transforms | redirected ReLU gradient | dead (objective 0 throughout) | flat image |",
             "|---|---|---|---|---|"]
    for r in rows:
        n = len(r["channels"])
        lines.append(f"| {r['model']} {r['layer']} | {r['transforms']} | {'on' if r['override'] else 'off'} | "
                     f"{r['dead']} of {n} | {r['flat']} of {n} |")
    (out / "results.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
