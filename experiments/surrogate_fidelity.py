"""How closely the smooth surrogate follows each shipped network, per studied layer and beta.

    python experiments/surrogate_fidelity.py --out docs/results/fidelity [--betas 10 30 100] [--n 500]

For every shipped model and studied layer, `lucid_ifv.smooth.surrogate_fidelity` of
``smooth_model(model, beta, T)`` on the first ``--n`` held-out images (`modelzoo.shipped.heldout`)
for each ``--betas`` (T = ``--temperature``, default 0.05): the per-channel correlation of the
surrogate's activations with the network's over images and positions, and the ratio of their
largest activations. Channels constant on the images (e.g. never active in the network) have
no correlation and are counted apart. Writes ``table.md`` and ``results.json`` in ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path


os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

def measure(names, betas, temperature: float, n: int) -> list:
    from lucid_ifv.smooth import fidelity_summary, smooth_model, surrogate_fidelity
    from modelzoo.shipped import SHIPPED, heldout, load_shipped

    rows = []
    for name in names:
        model = load_shipped(name)
        images = heldout(name)[0][:n]
        for beta in betas:
            surrogate = smooth_model(model, beta, temperature)
            for layer in SHIPPED[name].studied_layers:
                fid = surrogate_fidelity(model, surrogate, layer, images)
                rows.append({"model": name, "layer": layer, "beta": beta, "temperature": temperature, "n": len(images),
                             "correlation": fid["correlation"].tolist(), "max_ratio": fid["max_ratio"].tolist(),
                             **fidelity_summary(fid)})
                print(f"{name} {layer} beta {beta:g}: correlation median {rows[-1]['median_correlation']:.3f} "
                      f"min {rows[-1]['min_correlation']:.3f}, {len(rows[-1]['low_channels'])} low", flush=True)
    return rows


def table(rows) -> str:
    from lucid_ifv.smooth import FIDELITY_LOW

    lines = [f"| model | layer | beta | channels | constant on the images | correlation median (min) | channels "
             f"below {FIDELITY_LOW} | largest activation ratio median (min) |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['model']} | `{r['layer']}` | {r['beta']:g} | {len(r['correlation'])} | {r['constant']} | "
                     f"{r['median_correlation']:.3f} ({r['min_correlation']:.3f}) | {len(r['low_channels'])} | "
                     f"{r['median_max_ratio']:.2f} ({r['min_max_ratio']:.2f}) |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    from modelzoo.shipped import SHIPPED

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="docs/results/fidelity")
    parser.add_argument("--models", nargs="+", default=[m for m in SHIPPED if m != "srnet_small"],
                        choices=list(SHIPPED), help="default: every shipped classifier")
    parser.add_argument("--betas", nargs="+", type=float, default=[10.0, 30.0, 100.0])
    parser.add_argument("--temperature", type=float, default=0.05)
    parser.add_argument("--n", type=int, default=500, help="held-out images (default 500)")
    args = parser.parse_args(argv)
    if args.n < 2 or min(args.betas) <= 0 or args.temperature <= 0:
        raise SystemExit(f"error: need --n >= 2 and positive --betas/--temperature, got {args.n}, {args.betas}, "
                         f"{args.temperature}")
    rows = measure(args.models, args.betas, args.temperature, args.n)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    command = "python experiments/surrogate_fidelity.py " + " ".join(argv if argv is not None else sys.argv[1:])
    (out / "results.json").write_text(json.dumps({"command": command, "rows": rows}, indent=1))
    (out / "table.md").write_text(f"Command: `{command}`\n\n" + table(rows))
    print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
