"""Figure of an experiment's geometry-image realizations (normals as RGB, depth, mask).

    python experiments/plot_geometry_realizations.py RUN_FOLDER --out figure.png [--n 8]

The titles give each sample's angle of the default solve's answer to the target on live
features and the feature response's angle, in degrees.
"""

from __future__ import annotations

import argparse

from lucid_ifv import experiment as ex
from lucid_ifv.plots import plot_geometry_images


def _deg(angle) -> str:
    return "-" if angle is None else f"{angle:.1f}"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", help="a `lucid-ifv experiment --out` folder of a geometry-image model")
    parser.add_argument("--out", required=True, help="the PNG to write")
    parser.add_argument("--n", type=int, default=8, help="samples shown (default 8)")
    args = parser.parse_args(argv)
    if args.n < 1:
        parser.error(f"--n must be >= 1, got {args.n}")
    images = ex.load_realizations(args.run)["images"][: args.n]
    records = sorted(ex.load_records(f"{args.run}/records.jsonl"), key=lambda r: r["index"])[: len(images)]
    titles = [f"#{r['index']}: t* {_deg(r.get('angle_alive_' + r['solve']))}\nf {_deg(r['angle_response'])}"
              for r in records]
    print(plot_geometry_images(images, args.out, titles))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
