"""Experiments on a Dask cluster: a 2-process local cluster gives the records of a serial run,
even when a worker dies mid-batch; the driver stays the single writer (no duplicates)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

pytest.importorskip("distributed")

ARGS = ["experiment", "--model", "mnist_small", "--layer", "conv2", "--param", "pixel", "--no-decorrelate",
        "--n-hoyer", "4", "--batch-size", "1", "--adam", "12", "--lbfgs", "0", "--smooth",
        "--converge", "off"]


def cli(args, env_extra=None):
    env = {k: v for k, v in os.environ.items() if k != "LUCID_IFV_THREADS"}
    env.update({"TF_CPP_MIN_LOG_LEVEL": "2", **(env_extra or {})})
    return subprocess.run([sys.executable, "-m", "lucid_ifv.cli", *args], capture_output=True, text=True, env=env,
                          timeout=900)


def records(folder):
    lines = [json.loads(line) for line in (folder / "records.jsonl").read_text().splitlines()]
    return lines, sorted(({k: v for k, v in r.items() if not k.startswith("seconds_")} for r in lines),
                         key=lambda r: r["index"])


def test_dask_cluster_matches_serial_even_when_a_worker_dies(tmp_path):
    """Serial with one thread vs two worker processes of one thread each (``--workers 2`` on
    two cores): the same records, bit for bit; one worker is killed on its first batch (the
    batch is run again elsewhere) and every sample is recorded exactly once."""
    serial = cli([*ARGS, "--out", str(tmp_path / "serial")], {"LUCID_IFV_THREADS": "1"})
    assert serial.returncode == 0, serial.stderr[-2000:]
    marker = tmp_path / "killed"
    parallel = cli([*ARGS, "--workers", "2", "--out", str(tmp_path / "dask")],
                   {"LUCID_IFV_TEST_KILL_WORKER_ONCE": str(marker)})
    assert parallel.returncode == 0, parallel.stderr[-2000:]
    assert marker.exists(), "the kill hook did not fire: no worker died"
    lines, by_index = records(tmp_path / "dask")
    assert sorted(r["index"] for r in lines) == [0, 1, 2, 3]  # each once
    assert by_index == records(tmp_path / "serial")[1]
    assert sorted(p.name for p in (tmp_path / "dask" / "realizations").iterdir()) == [
        f"batch_{i:04d}.npz" for i in range(4)]


def test_cluster_options_are_checked_before_any_work(tmp_path):
    done = cli([*ARGS, "--workers", "0", "--out", str(tmp_path / "x")])
    assert done.returncode == 2 and done.stderr.strip() == "error: --workers must be an integer >= 1, got 0"
    done = cli([*ARGS, "--workers", "2", "--scheduler", "tcp://127.0.0.1:1", "--out", str(tmp_path / "y")])
    assert done.returncode == 2 and "not allowed with argument" in done.stderr
