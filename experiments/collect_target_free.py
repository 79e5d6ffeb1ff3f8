"""One table over `experiments/target_free.py` channel runs: how often the default target-free
inversion names the right channel from the PNG, and how far its two verdicts can be trusted.

    python experiments/collect_target_free.py runs/target_free/*_channel_redirect

Reads each run's ``summary.json`` (runs made with ``--dither``); prints a markdown table with one
row per run and a row over all of them. "right" = the top channel is the one rendered.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

DEFAULT = "8bit/kinks@default/nonneg"  # `kinks.invert_target_free`'s default solve, from the PNGs


def run_row(summary: dict) -> dict:
    """The counts of one run's channel part (``summary.json`` of a ``--dither`` run)."""
    s = summary["channel"]
    if "8bit/dithered, channel verdict" not in s:
        raise SystemExit(f"error: {summary['command']!r} ran without --dither: no verdicts to collect")
    by_channel, whole = s["8bit/dithered, channel verdict"], s["8bit/dithered"]
    settings = summary["settings"]
    return {"name": f"{settings['model']} {settings['layer']} ({s['depth']})", "n": s["n"],
            "dead": s["target_dead"], "top1": s[DEFAULT]["top1"], "top5": s[DEFAULT]["top5"],
            "identified": by_channel["identified"], "identified_right": by_channel["identified_right"],
            "right": by_channel["right"], "uncertain": by_channel["verdicts"].get("uncertain", 0),
            "no_answer": by_channel["verdicts"].get("no answer", 0),
            "whole_identified": whole["identified"], "whole_right": whole["identified_right"]}


def _ratio(a: int, b: int) -> str:
    return f"{a}/{b}" + (f" ({a / b:.2f})" if b else "")


def table(rows: list) -> str:
    total = {key: sum(r[key] for r in rows) for key in rows[0] if key != "name"}
    lines = ["| model, layer (channels) | n | target dead at the end | top-1 (default solve, PNG) | top-5 | "
             "channel verdict 'identified' | right among them (precision) | right ones it identifies (recall) | "
             "'uncertain' (right among them) | 'no answer' | whole-direction verdict 'identified' (right) |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows + [{"name": "all runs", **total}]:
        lines.append(f"| {r['name']} | {r['n']} | {r['dead']} | {r['top1']}/{r['n']} | {r['top5']}/{r['n']} | "
                     f"{r['identified']} | {_ratio(r['identified_right'], r['identified'])} | "
                     f"{_ratio(r['identified_right'], r['right'])} | "
                     f"{r['uncertain']} ({r['right'] - r['identified_right']}) | {r['no_answer']} | "
                     f"{r['whole_identified']} ({r['whole_right']}) |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", nargs="+", help="target_free.py --out folders (channel part, --dither)")
    args = ap.parse_args(argv)
    rows = []
    for run in args.runs:
        path = Path(run) / "summary.json"
        if not path.exists():
            raise SystemExit(f"error: {path} does not exist (an unfinished or wrong run folder)")
        summary = json.loads(path.read_text())
        if "channel" not in summary:
            raise SystemExit(f"error: {path} has no channel part (--parts channel)")
        rows.append(run_row(summary))
    print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
