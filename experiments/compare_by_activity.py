"""Which channels can a permutation comparison place? Split a `lucid-ifv compare --permuted` run (a layer
read after a ReLU: its inactive value is the pool floor) by
whether the render activated its channel and whether the channel fires on natural images.

    python experiments/compare_by_activity.py runs/compare/inception_small_mixed3b_all_p0 [...]

For each run: the renders whose channel response stayed at the log-sum-exp pool's floor
(`T log 9`, the value of an inactive channel: the render never activated it), the channels
that never fire (activation <= 0 everywhere) on the shipped model's held-out images, and the
permutation accuracy on each part. EVALUATION ONLY (it uses the ground truth). Prints one
markdown table. On a ``<layer>_pre_relu`` run the response is signed; at or below the floor it
means the render did not make its unit fire after the ReLU, and "silent" is the same test
(a pre-ReLU value <= 0 everywhere is a ReLU output of 0 everywhere).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def split(run: Path) -> dict:
    """Counts and accuracies of one run (see the module docstring)."""
    from modelzoo.shipped import heldout, load_shipped

    report = json.loads((run / "comparison.json").read_text())
    settings = json.loads((run / "batches" / "settings.json").read_text())
    model_name, layer = settings["a"]
    features = np.asarray(report["features"])
    right = np.asarray(report["best_match"]) == np.asarray(report["ground_truth"])
    parts = [np.load(f) for f in sorted((run / "batches").glob("batch_*.npz"))]
    if any("channel_response" not in p.files for p in parts):
        raise SystemExit(f"error: {run} was written before channel responses were saved; run it again")
    response = np.concatenate([p["channel_response"] for p in parts])
    floor = settings["config"]["pool_temperature"] * np.log(9.0) * (1 + 1e-3)  # 3x3 pool of zeros
    inactive = response <= floor
    model = load_shipped(model_name)
    images, _ = heldout(model_name)
    peak = np.max([np.max(np.asarray(model(images[i:i + 250], [layer])[layer]), axis=(0, 1, 2))
                   for i in range(0, len(images), 250)], axis=0)
    silent = (peak <= 0)[features]
    accuracy = lambda mask: (int(right[mask].sum()), int(mask.sum()))  # noqa: E731
    return {"run": run.name, "n": len(features), "right": accuracy(np.ones_like(right)),
            "inactive": int(inactive.sum()), "silent": int(silent.sum()), "both": int((inactive & silent).sum()),
            "on_active": accuracy(~inactive), "on_firing": accuracy(~silent), "on_inactive": accuracy(inactive),
            "response": (float(response.min()), float(np.median(response)), float(response.max()))}


def _frac(pair) -> str:
    right, n = pair
    return f"{right} of {n}" + (f" ({right / n:.1%})" if n else "")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="`lucid-ifv compare --permuted` folders")
    args = parser.parse_args(argv)
    print("| run | channels | recovered | renders that never activated their channel | channels silent on held-out "
          "images (of them, never activated) | recovered: activated renders | recovered: channels that fire | "
          "recovered: renders never activated | channel response at the render: min / median / max |")
    print("|---|---|---|---|---|---|---|---|---|")
    for run in args.runs:
        s = split(run)
        print(f"| {s['run']} | {s['n']} | {_frac(s['right'])} | {s['inactive']} | {s['silent']} ({s['both']}) | "
              f"{_frac(s['on_active'])} | {_frac(s['on_firing'])} | {_frac(s['on_inactive'])} | "
              "{:.2f} / {:.2f} / {:.2f} |".format(*s["response"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
