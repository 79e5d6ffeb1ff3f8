"""`experiments/target_free.py` runs end to end on mnist_small (tiny render, both inputs)."""

from __future__ import annotations

import json

import pytest
from conftest import experiment_script


def load_script():
    return experiment_script("target_free")


def test_channel_part_with_redirected_relu_runs_and_resumes(tmp_path, capsys):
    script = load_script()
    argv = ["--model", "mnist_small", "--parts", "channel", "--n", "2", "--batch", "2", "--adam", "20",
            "--lbfgs", "3", "--redirect", "--dither", "1", "--tol", "3e-4", "1e-3", "--out", str(tmp_path / "run")]
    script.main(argv)
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["settings"]["redirect"] is True
    channel = summary["channel"]
    assert channel["n"] == 2 and channel["chance_top1"] == pytest.approx(1 / 32)
    assert 0 <= channel["target_fires"] <= 2 and 0 < channel["channels_firing"] <= 32
    for variant in ("float", "8bit"):
        cell = channel[f"{variant}/kinks@0.001/nonneg"]
        assert 0 <= cell["top1"] <= cell["top5"] <= 2 and cell["top1_fires"] <= cell["top1"]
        assert sum(cell["verdicts"].values()) == 2 and cell["identified_right"] <= min(cell["identified"], cell["top1"])
        assert cell["right"] == cell["top1"]
    dithered = channel["8bit/dithered"]  # the default solve from the PNGs, re-dithered as invert_target_free does
    assert sum(dithered["verdicts"].values()) == 2 and dithered["right"] == channel["8bit/kinks@default/nonneg"]["top1"]
    records = [json.loads(line) for line in (tmp_path / "run" / "records_channel.jsonl").read_text().splitlines()]
    assert all(r["8bit/dithered"]["spread"] is None or r["8bit/dithered"]["spread"] >= 0 for r in records)
    assert all(r[f"{v}/kinks"]["default"]["tol"] in (1e-3, 3e-4, None) for r in records for v in ("float", "8bit"))
    assert "| 8bit | dithered |" in (tmp_path / "run" / "summary.md").read_text()
    by_channel = channel["8bit/dithered, channel verdict"]
    assert set(by_channel["verdicts"]) <= {"identified", "uncertain", "no answer"}
    assert all(r["8bit/dithered"]["channel_verdict"] != "identified"
               or r["8bit/dithered"]["margin_deg"] > 2.44 * r["8bit/dithered"]["spread"] for r in records)
    assert "redirected ReLU gradient on" in (tmp_path / "run" / "summary.md").read_text()
    assert len(list((tmp_path / "run" / "png").glob("*.png"))) == 2
    collect = experiment_script("collect_target_free")
    collect.main([str(tmp_path / "run")])
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| mnist_small conv2 (32) | 2 |")]
    assert len(rows) == 1 and f"| {dithered['identified']} | " in rows[0]
    with pytest.raises(SystemExit, match="does not exist"):
        collect.main([str(tmp_path / "missing")])
    script.main(argv)  # resumes: the finished batch is not redone
    assert len((tmp_path / "run" / "records_channel.jsonl").read_text().splitlines()) == 2
    with pytest.raises(SystemExit, match="other settings"):
        script.main([a for a in argv if a != "--redirect"])
    with pytest.raises(SystemExit):  # the check needs the default solve's tolerance
        script.main(argv[:-5] + ["--tol", "3e-4", "--out", str(tmp_path / "other")])


def test_every_shipped_model_has_a_studied_layer():
    from modelzoo.shipped import list_shipped

    script = load_script()
    for row in list_shipped():
        assert script.DEFAULT_LAYERS[row["name"]] in row["studied_layers"], row["name"]
