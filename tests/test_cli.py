"""The command line: every subcommand runs on a shipped model, and bad input is reported."""

from __future__ import annotations

import json

import numpy as np
import pytest

from lucid_ifv.cli import main

VERDICTS = ("identified", "ambiguous", "not stationary", "no signal")


def test_models_lists_the_zoo(capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    for name in ("inception_small", "densenet_small", "densenet_small_no4", "mnist_small", "InceptionV1"):
        assert name in out


def test_render_then_invert_npz_and_png(tmp_path, capsys):
    out = tmp_path / "r"
    assert main(["render", "--model", "mnist_small", "--batch", "2", "--param", "pixel", "--adam", "30",
                 "--lbfgs", "10", "--prior", "1e-3", "--out", str(out)]) == 0
    assert (out / "realization.npz").exists() and (out / "realization_001.png").exists()
    capsys.readouterr()
    assert main(["invert", "--model", "mnist_small", "--param", "pixel", "--prior", "1e-3",
                 "--images", str(out / "realization.npz"), "--out", str(tmp_path / "inv.json")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("sample 0: ") and lines[0].split(": ")[1].split(":")[0] in VERDICTS  # verdict first
    rows = [json.loads(line) for line in lines if line.startswith("{")]
    assert len(rows) == 2 and all(0 <= r["angle_to_target"] <= 180 and r["verdict"] in VERDICTS for r in rows)
    saved = json.loads((tmp_path / "inv.json").read_text())
    assert np.asarray(saved["predicted"]).shape == (2, 32)
    bars = np.array(saved["error_bars"], dtype=float)  # None (dead) -> NaN
    assert bars.shape == (2, 32) and np.all(np.isnan(bars) | (bars >= 0))
    for r, i in zip(rows, range(2)):  # the rows' error bars are the saved ones of their top features
        np.testing.assert_allclose(np.array(r["error_bars"], float), bars[i][r["top_features"]], atol=1e-4)
        assert r["undetermined_features"] == int(np.sum(bars[i] > 0.05))
    capsys.readouterr()
    png = ["invert", "--model", "mnist_small", "--param", "pixel", "--images", str(out / "realization_000.png")]
    assert main(png) == 0  # a PNG is on the 8-bit grid: re-dithered by default
    lines = capsys.readouterr().out.splitlines()
    assert "re-dithered answers within" in lines[0] and "dither_spread_deg" in json.loads(lines[1])
    assert main(png + ["--dither", "0"]) == 0
    assert "dither_spread_deg" not in json.loads(capsys.readouterr().out.splitlines()[1])
    assert main(png + ["--dither", "-2"]) == 2
    assert "expected 'auto' or an integer >= 0, got '-2'" in capsys.readouterr().err


def test_which_channel_on_a_lucid_channel_png(tmp_path, capsys):
    """`which-channel`: a channel visualization of the plain ReLU net, saved as a PNG, inverted
    without its channel (kinks projected out, re-dithered): verdict first, then the top channels."""
    out = tmp_path / "r"
    assert main(["render", "--model", "mnist_small", "--channel", "3", "--param", "pixel", "--adam", "60",
                 "--lbfgs", "20", "--out", str(out)]) == 0
    capsys.readouterr()
    png = str(out / "realization_000.png")
    args = ["which-channel", "--model", "mnist_small", "--param", "pixel", "--images", png, "--dither", "1",
            "--top", "3", "--out", str(tmp_path / "which.json")]
    assert main(args) == 0
    lines = capsys.readouterr().out.splitlines()
    row = json.loads(lines[3])
    assert row["solve"] == "nonneg" and len(row["top_features"]) == 3 and row["kinks"] >= 0
    assert row["channel_verdict"] in ("identified", "uncertain") and row["margin_deg"] >= 0
    assert lines[0].startswith(f"sample 0: top channel {row['top_features'][0]}: {row['channel_verdict']} (")
    assert "re-dithered spread" in lines[0]
    assert lines[1].startswith("sample 0: top channels (weight): ") and "kinks projected out" in lines[1]
    assert row["top_features"][0] == int(lines[1].split(": ")[2].split(" ")[0])  # the line lists the row's answer
    assert lines[2].startswith("sample 0: the whole direction: ") and "re-dithered answers within" in lines[2]
    assert row["verdict"] in VERDICTS and lines[2].split(": ")[2].split(":")[0] == row["verdict"]
    saved = json.loads((tmp_path / "which.json").read_text())
    assert np.asarray(saved["predicted"]).shape == (1, 32)


@pytest.mark.parametrize("extra, message", [
    (["--tol", "-1e-3"], "--tol must be a finite number >= 0, got -0.001"),
    (["--top", "0"], "--top must be an integer >= 1, got 0"),
    (["--prior", "0"], "--method nonneg needs the prior the images were rendered with"),
    (["--smooth"], "unrecognized arguments: --smooth"),
])
def test_which_channel_refuses_bad_input_in_one_line(tmp_path, capsys, extra, message):
    image = tmp_path / "x.npy"
    np.save(image, np.zeros((1, 28, 28, 1), np.float32))
    assert main(["which-channel", "--model", "mnist_small", "--images", str(image), *extra]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_render_channel_with_standard_transforms(tmp_path):
    assert main(["render", "--model", "mnist_small", "--channel", "3", "--transforms", "standard",
                 "--adam", "5", "--prior", "0", "--out", str(tmp_path)]) == 0


def test_experiment_writes_summary(tmp_path, capsys):
    out = tmp_path / "e"
    assert main(["experiment", "--model", "mnist_small", "--n-hoyer", "2", "--adam", "20", "--lbfgs", "5",
                 "--param", "pixel", "--batch-size", "2", "--out", str(out)]) == 0
    out_text = capsys.readouterr().out
    assert "| angle_prior_aware |" in out_text and "| angle_alive_nonneg |" in out_text
    assert "verdicts of the prior_aware solve" in out_text
    for name in ("summary.md", "summary.json", "angles.png", "records.jsonl"):
        assert (out / name).exists()
    assert "Command: `lucid-ifv" in (out / "summary.md").read_text()
    assert main(["critical", "--run", str(out)]) == 0
    assert "| trivial dim |" in capsys.readouterr().out and (out / "critical_space.md").exists()


def test_critical_save_then_invert_in_the_critical_space(tmp_path, capsys):
    """`critical --save` writes the selected trivial space; `invert --trivial` solves in its
    complement and measures the angle modulo it, as the offline analysis did."""
    out, fv = tmp_path / "e", ["--model", "densenet_small", "--layer", "softmax", "--param", "pixel", "--no-decorrelate"]
    assert main(["experiment", *fv, "--n-hoyer", "3", "--adam", "30", "--lbfgs", "10", "--batch-size", "3",
                 "--out", str(out)]) == 0
    capsys.readouterr()
    assert main(["critical", "--run", str(out), "--save", str(tmp_path / "T.npy")]) == 0
    table = capsys.readouterr().out
    selected = next(line.split("|") for line in table.splitlines() if "| yes |" in line)
    trivial = np.load(tmp_path / "T.npy")
    assert trivial.shape == (10, int(selected[1])) and np.allclose(trivial.T @ trivial, np.eye(trivial.shape[1]))
    assert np.linalg.norm(trivial.T @ np.ones(10)) / np.sqrt(10) > 0.999  # softmax's shift is trivial
    assert main(["invert", *fv, "--images", str(out / "realizations" / "batch_0000.npz"),
                 "--trivial", str(tmp_path / "T.npy")]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    modulo = [r["angle_to_target_modulo_trivial"] for r in rows]
    assert len(modulo) == 3 and abs(np.median(modulo) - float(selected[3])) < 0.5  # the offline median


def test_demo_shows_smooth_and_plain_with_verdicts(tmp_path, capsys):
    assert main(["demo", "--model", "mnist_small", "--param", "pixel", "--n", "2", "--adam", "20",
                 "--max-lbfgs", "10", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "### smooth surrogate" in out and "### plain ReLU network" in out
    assert "smooth surrogate: median angle on live features" in out and "(feature response" in out
    rows = [line for line in out.splitlines() if line.startswith("| 0 |") or line.startswith("| 1 |")]
    assert len(rows) == 4 and all(row.split(" | ")[1] in VERDICTS for row in rows)
    for mode in ("smooth", "relu"):
        assert (tmp_path / mode / "realizations.png").exists()
    assert (tmp_path / "summary.md").exists()


def test_errors(tmp_path, capsys):
    with pytest.raises(SystemExit, match="unknown model 'nope'"):
        main(["render", "--model", "nope", "--out", str(tmp_path)])
    assert main(["render", "--model", "mnist_small", "--layer", "conv9", "--out", str(tmp_path)]) == 2
    assert "unknown layer 'conv9'" in capsys.readouterr().err
    assert main(["invert", "--model", "mnist_small", "--images", str(tmp_path / "missing.png")]) == 2
    assert "no image file" in capsys.readouterr().err
    assert main(["render", "--model", "mnist_small", "--relu-beta-relative", "--out", str(tmp_path)]) == 2
    assert "--relu-beta-relative sets the surrogate's softplus: it needs --smooth" in capsys.readouterr().err


def test_fidelity_prints_the_table_and_a_suggested_beta(tmp_path, capsys):
    natural = np.random.default_rng(0).uniform(size=(30, 28, 28, 1)).astype(np.float32)
    np.save(tmp_path / "natural.npy", natural)
    assert main(["fidelity", "--model", "mnist_small", "--betas", "100", "10", "--images",
                 str(tmp_path / "natural.npy")]) == 0
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith("| 10 ") or line.startswith("| 100 ")]
    assert [r.split()[1] for r in rows] == ["10", "100"]  # ascending beta
    assert "on 30 natural images" in out
    assert "--relu-beta" in out or "no beta reaches" in out
    assert main(["fidelity", "--model", "mnist_small", "--betas", "10", "--relu-beta-relative", "--images",
                 str(tmp_path / "natural.npy")]) == 0
    assert "beta per ReLU unit: beta / RMS of its input" in capsys.readouterr().out


@pytest.mark.parametrize("joint", [False, True])
def test_render_converge_each_sample_or_jointly(tmp_path, capsys, joint):
    """`render --converge` converges each sample alone by default; --joint-lbfgs moves the
    batch with one L-BFGS (as before 2026-12-04, evening). Both report the residual."""
    argv = ["render", "--model", "mnist_small", "--smooth", "--param", "pixel", "--no-decorrelate", "--batch", "2",
            "--adam", "30", "--lbfgs", "0", "--converge", "1e-3", "--max-lbfgs", "400", "--float32", "--out",
            str(tmp_path)]
    assert main(argv + (["--joint-lbfgs"] if joint else [])) == 0
    out = capsys.readouterr().out
    residual = float(out.split("stationarity residual ")[1].split(" ")[0])
    assert residual <= 1e-3, out  # mnist_small's surrogate: both reach the tolerance within the cap
    assert np.load(tmp_path / "realization.npz")["images"].shape == (2, 28, 28, 1)
