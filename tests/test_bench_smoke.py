"""`make bench`'s code runs: benchmarks/bench_peers.py --smoke (every code path at tiny sizes).

Run as a subprocess with this interpreter, so its thread pinning stays out of the test
session. The package's own environment has neither Xplique nor tf-keras-vis: their rows
are skipped, everything else must run. No timing assertions (the numbers mean nothing at
these sizes on a shared machine).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent / "benchmarks" / "bench_peers.py"


def test_bench_smoke_writes_a_report(tmp_path):
    out, fig_dir, raw = tmp_path / "benchmarks.md", tmp_path / "fig", tmp_path / "results.json"
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    proc = subprocess.run([sys.executable, str(BENCH), "--smoke", "--out", str(out), "--fig-dir", str(fig_dir),
                           "--json", str(raw)], capture_output=True, text=True, timeout=900, env=env)
    assert proc.returncode == 0, proc.stderr[-4000:]
    results = json.loads(raw.read_text())
    text = out.read_text()
    assert (fig_dir / "benchmarks.png").stat().st_size > 0
    for heading in ("## Machine and settings", "## Targets (issue 11)", "## 1. Feature visualization",
                    "## 2. Feature Jacobian", "### Cold start and peak memory", "## 3. Inversion end to end"):
        assert heading in text
    # every FV row ran ours and the floor; a peer's column is there exactly when it is installed
    for row in results["fv"]["rows"]:
        assert {"ours", "floor"} <= set(row["rates"])
        assert ("xplique" in row["rates"]) == results["peers"]["xplique"]
        assert ("tf-keras-vis" in row["rates"]) == (results["peers"]["tf_keras_vis"] and row["param"] == "pixel")
    for cfg in results["jac"]["configs"]:
        for row in cfg["rows"]:
            assert row["ours"] > 0 and row["loop"] > 0 and row["limit"] > 0
            assert row["max_rel_diff"] < 1e-3  # ours and the per-feature loop give the same Jacobian
    assert results["cold"] and all("error" not in w for w in results["cold"]), results["cold"]
    assert results["inv"]["rows"] and results["inv"]["large"] is not None
    # the report can be written again from the raw results, without measuring
    again = tmp_path / "again.md"
    proc = subprocess.run([sys.executable, str(BENCH), "--smoke", "--from-json", str(raw), "--out", str(again),
                           "--fig-dir", str(fig_dir)], capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert again.read_text() == text


def test_ab_jacobian_lean_runs():
    """benchmarks/ab_jacobian.py lean runs (tiny: mnist_small, k = 4, one round) and prints
    one table row whose two arms gave the same Jacobian (max rel. diff column; that the arms
    trace different gradients is checked by tests/test_lean_gradients.py, not here)."""
    script = BENCH.parent / "ab_jacobian.py"
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    proc = subprocess.run([sys.executable, str(script), "lean", "--model", "mnist_small", "--layer", "conv2",
                           "--batch", "2", "--k", "4", "--rounds", "1", "--gradients", "MaxPool"],
                          capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr[-4000:]
    row = proc.stdout.strip().splitlines()[-1].split("|")
    assert row[2].strip() == "MaxPool" and float(row[6]) < 1e-5


def test_ab_fv_step_runs():
    """benchmarks/ab_fv_step.py runs (tiny: photos_cnn, batch 1 and 4, one round of 2 steps)
    and prints one row per parametrization, transforms and batch."""
    script = BENCH.parent / "ab_fv_step.py"
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    proc = subprocess.run([sys.executable, str(script), "--model", "photos_cnn", "--layer", "conv2d_4",
                           "--batches", "1", "4", "--rounds", "1", "--steps", "2"],
                          capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr[-4000:]
    rows = [line for line in proc.stdout.splitlines() if line.startswith("| photos_cnn")]
    assert len(rows) == 8 and all(float(row.split("|")[-2]) > 0 for row in rows)
