"""`experiments/target_free.py` runs end to end on mnist_small (tiny render, both inputs)."""

from __future__ import annotations

import json

import pytest
from conftest import experiment_script


def load_script():
    return experiment_script("target_free")


def test_channel_part_with_redirected_relu_runs_and_resumes(tmp_path):
    script = load_script()
    argv = ["--model", "mnist_small", "--parts", "channel", "--n", "2", "--batch", "2", "--adam", "20",
            "--lbfgs", "3", "--redirect", "--out", str(tmp_path / "run")]
    script.main(argv)
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["settings"]["redirect"] is True
    channel = summary["channel"]
    assert channel["n"] == 2 and channel["chance_top1"] == pytest.approx(1 / 32)
    assert 0 <= channel["target_fires"] <= 2 and 0 < channel["channels_firing"] <= 32
    for variant in ("float", "8bit"):
        cell = channel[f"{variant}/kinks@0.001/nonneg"]
        assert 0 <= cell["top1"] <= cell["top5"] <= 2 and cell["top1_fires"] <= cell["top1"]
    assert "redirected ReLU gradient on" in (tmp_path / "run" / "summary.md").read_text()
    assert len(list((tmp_path / "run" / "png").glob("*.png"))) == 2
    script.main(argv)  # resumes: the finished batch is not redone
    assert len((tmp_path / "run" / "records_channel.jsonl").read_text().splitlines()) == 2
    with pytest.raises(SystemExit, match="other settings"):
        script.main([a for a in argv if a != "--redirect"])


def test_every_shipped_model_has_a_studied_layer():
    from modelzoo.shipped import list_shipped

    script = load_script()
    for row in list_shipped():
        assert script.DEFAULT_LAYERS[row["name"]] in row["studied_layers"], row["name"]
