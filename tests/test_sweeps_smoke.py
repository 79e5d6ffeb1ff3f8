"""The Sec. 3.6 / 3.7 sweep scripts' code paths at tiny sizes (experiments/feature_count_sweep.py,
experiments/parametrization_sweep.py): 2 targets, a few optimizer steps, 1-2 runs each, into
tmp_path. Checks the outputs exist, that the Fig. 3 coefficients are those of a full
orthonormal basis (squares sum to 1 per sample), and that a second call resumes (skips the
finished runs) instead of recomputing them."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import experiment_script

TINY = ["--n", "2", "--batch-size", "2", "--adam", "5", "--max-lbfgs", "5"]


def _script(name: str):
    return experiment_script(name)


def test_feature_count_sweep_tiny(tmp_path):
    sweep = _script("feature_count_sweep")
    runs, figs = tmp_path / "runs", tmp_path / "figs"
    argv = [*TINY, "--out", str(runs), "--fig-dir", str(figs), "--models", "mnist_small", "--counts", "4", "8",
            "--powers", "0", "--aggregations", "max_pool_mean"]
    rows = sweep.main(argv)
    assert [(r["k"], r["p"], r["n"]) for r in rows] == [(4, 0.0, 2), (8, 0.0, 2)]
    for name in ("mnist_small_k04_p0_max_pool_mean", "mnist_small_k08_p0_max_pool_mean"):
        folder = runs / name
        for file in ("records.jsonl", "summary.md", "summary.json", "coefficients.npz", "coefficients.png"):
            assert (folder / file).stat().st_size > 0, file
        dec = np.load(folder / "coefficients.npz")
        k = json.loads((folder / "settings.json").read_text())["config"]["features"]
        for key in ("prior_aware", "paper"):
            sq = np.nansum(dec[key] ** 2, axis=1)
            assert np.all(sq <= 1 + 1e-9), (key, sq)
            live = ~np.all(np.isnan(dec[key]), axis=1)
            np.testing.assert_allclose(sq[live], 1.0, atol=1e-9)  # a full basis of the live system
        assert dec["paper"].shape == (2, len(k)) and dec["prior_aware"].shape == (2, len(k) + 1)
    assert (figs / "fig3_mnist_small.png").stat().st_size > 0
    table = (figs / "table.md").read_text()
    assert table.count("| mnist_small `conv2` |") == 2
    assert len(json.loads((figs / "results.json").read_text())) == 2
    # complete runs are skipped: nothing is recomputed, the records stay as they are
    before = (runs / "mnist_small_k04_p0_max_pool_mean" / "records.jsonl").read_bytes()
    assert sweep.run_all(sweep.parse_args(argv), sweep.plan(sweep.parse_args(argv))) == {}
    assert (runs / "mnist_small_k04_p0_max_pool_mean" / "records.jsonl").read_bytes() == before


def test_parametrization_sweep_tiny(tmp_path):
    sweep = _script("parametrization_sweep")
    runs, figs = tmp_path / "runs", tmp_path / "figs"
    argv = [*TINY, "--max-lbfgs-relu", "3", "--out", str(runs), "--fig-dir", str(figs), "--models", "mnist_small",
            "--params", "fft_plain", "--modes", "smooth", "--examples", "2"]
    text = sweep.main(argv)
    for name in ("mnist_small_conv2_fft_plain_smooth",):
        assert (runs / name / "records.jsonl").exists() and (runs / name / "angles.png").exists()
        settings = json.loads((runs / name / "settings.json").read_text())["config"]
        assert settings["smooth"] and settings["fft"] and not settings["decorrelate"] and settings["decay_power"] == 0
    assert "smooth, Fourier no 1/f, p=1" in text  # collect_results' setting name, with the spectrum scaling
    assert (figs / "table.md").read_text() == text
    assert (figs / "realizations_mnist_small.png").stat().st_size > 0


@pytest.mark.parametrize("script", ["feature_count_sweep", "parametrization_sweep"])
def test_sweep_help_names_the_shrinking_flags(script, capsys):
    with pytest.raises(SystemExit):
        _script(script).parse_args(["--help"])
    out = capsys.readouterr().out
    for flag in ("--n", "--adam", "--max-lbfgs", "--out", "--fig-dir"):
        assert flag in out
