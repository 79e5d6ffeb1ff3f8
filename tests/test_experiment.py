"""The resumable round-trip experiment: records, resume after an interruption, settings guard."""

from __future__ import annotations

import json

import numpy as np
import pytest

from lucid_ifv import experiment as ex

CONFIG = dict(layer="conv2_relu", n_hoyer=3, n_canonical=1, adam_steps=20, lbfgs_steps=5,
              prior_weight=1e-3, batch_size=2, fft=False, decorrelate=False)


def test_records_and_summary(small_model, tmp_path):
    records = ex.run_experiment(small_model, ex.ExperimentConfig(**CONFIG, reoptimize_steps=3, invert_8bit=True),
                                tmp_path, progress=False)
    assert [r["index"] for r in records] == [0, 1, 2, 3]
    assert [r["kind"] for r in records] == ["hoyer"] * 3 + ["canonical"]
    for r in records:
        assert 0 <= r["angle_paper"] <= 180 and 0 <= r["angle_prior_aware"] <= 180
        np.testing.assert_allclose(np.linalg.norm(r["target"]), 1, rtol=1e-6)
        assert 0 <= r["ssim_predicted"] <= 1
        assert 0 <= r["angle_8bit"] <= 180
    saved = np.load(tmp_path / "realizations" / "batch_0000.npz")
    assert saved["images"].shape == (2, 16, 16, 3) and saved["jjt"].shape == (2, 6, 6)
    assert saved["jg"].shape == (2, 6, 1) and saved["gg"].shape == (2, 1, 1)
    summary = ex.summarize(records)
    assert summary["n"] == 4 and "angle_prior_aware" in summary
    assert "| angle_paper |" in ex.markdown_table(summary)


def test_resume_after_interruption(small_model, tmp_path, monkeypatch):
    config = ex.ExperimentConfig(**CONFIG)
    real_run_batch = ex.run_batch
    calls = []

    def interrupted_second_batch(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real_run_batch(*args, **kwargs)

    monkeypatch.setattr(ex, "run_batch", interrupted_second_batch)
    with pytest.raises(KeyboardInterrupt):
        ex.run_experiment(small_model, config, tmp_path, progress=False)
    lines = (tmp_path / "records.jsonl").read_text().splitlines()
    assert [json.loads(line)["index"] for line in lines] == [0, 1]  # the first batch is kept
    monkeypatch.setattr(ex, "run_batch", real_run_batch)
    with open(tmp_path / "records.jsonl", "a") as fh:
        fh.write('{"index": 2, "angle')  # a torn line from a hard kill
    records = ex.run_experiment(small_model, config, tmp_path, progress=False)
    assert [r["index"] for r in records] == [0, 1, 2, 3]


def test_settings_guard_and_bad_config(small_model, tmp_path):
    ex.run_experiment(small_model, ex.ExperimentConfig(**{**CONFIG, "n_hoyer": 1, "n_canonical": 0}), tmp_path, progress=False)
    with pytest.raises(ValueError, match="other settings .*n_hoyer: saved 1, given 2"):
        ex.run_experiment(small_model, ex.ExperimentConfig(**{**CONFIG, "n_hoyer": 2}), tmp_path, progress=False)
    with pytest.raises(KeyError, match="unknown layer"):
        ex.run_experiment(small_model, ex.ExperimentConfig(**{**CONFIG, "layer": "nope"}), tmp_path / "b", progress=False)
    with pytest.raises(ValueError, match="\\[9\\] out of range: the layer has 6 channels"):
        ex.run_experiment(small_model, ex.ExperimentConfig(**{**CONFIG, "features": [0, 9]}), tmp_path / "c", progress=False)
    with pytest.raises(ValueError, match="no targets"):
        ex.run_experiment(small_model, ex.ExperimentConfig(**{**CONFIG, "n_hoyer": 0, "n_canonical": 0}), tmp_path / "d", progress=False)
    with pytest.raises(ValueError, match="relu_beta_relative=True needs smooth=True"):
        ex.run_experiment(small_model, ex.ExperimentConfig(**{**CONFIG, "relu_beta_relative": True}), tmp_path / "e", progress=False)


def test_critical_space_analysis_finds_the_trivial_directions(tmp_path):
    """Offline Algorithm 1 + re-solve on a softmax layer with a dead class (cf. test_ifv)."""
    from conftest import softmax_model

    model = softmax_model()
    config = ex.ExperimentConfig(layer="softmax", n_hoyer=12, adam_steps=300, lbfgs_steps=300, prior_weight=1e-3,
                                 batch_size=12, fft=False, decorrelate=False)
    records = ex.run_experiment(model, config, tmp_path, progress=False)
    rows = ex.critical_space_analysis(tmp_path, eps_lo=1e-6, eps_hi=0.1)
    by_dim = {r["dim"]: r for r in rows}
    assert 2 in by_dim and by_dim[2]["selected"]
    assert by_dim[2]["median_angle"] < 1.0 and by_dim[2]["q3"] <= by_dim[2]["p90"]
    assert by_dim[2]["ones_angle_deg"] < 5 and by_dim[2]["dead_like_features"] == [0]
    assert np.median([r["angle_prior_aware"] for r in records]) > 5  # without the critical space
    # the verdict: "ambiguous" in the ambient space (the trivial directions are near-null), but
    # inside the selected critical space it identifies the answers, and rightly (modulo T)
    assert not any(r[f"verdict_{m}"] == "identified" for r in records for m in ("prior_aware", "anchored"))
    assert by_dim[2]["n"] == 12 and by_dim[2]["identified"] >= 10
    assert by_dim[2]["identified_right"] == by_dim[2]["identified"] <= by_dim[2]["right"]
    # the results tables (experiments/collect_results.py) pool these counts
    collect = _collect_results()
    (tmp_path / "critical_space.md").write_text("analysed\n")  # what `lucid-ifv critical` leaves behind
    row = by_dim[2]
    line = collect.critical_verdict_table(collect.load_runs([tmp_path]))[-1]
    assert line.startswith(f"| 1 run(s) with a critical space | 12 | {row['identified']} | {row['right']} | 1.00 |")
    # the acceptance judges such a run in that space, on the same per-sample angles
    angles, judged = collect.graded_angles(*collect.load_runs([tmp_path])[0])
    assert judged == "critical space (dim 2)" and angles.size == 12
    assert np.median(angles) == pytest.approx(row["median_angle"])


def _collect_results():
    """experiments/collect_results.py as a module."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "experiments" / "collect_results.py"
    spec = importlib.util.spec_from_file_location("collect_results", path)
    collect = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(collect)
    return collect


def test_the_acceptance_table_pools_runs_of_one_setting_with_other_target_seeds(tmp_path):
    import dataclasses

    collect = _collect_results()

    def run(seed, angles, layer="c"):
        config = dataclasses.asdict(ex.ExperimentConfig(layer=layer, seed=seed, smooth=True, prior_weight=1e-4,
                                                        converge=None, float64_converge=None))
        records = [{"angle_alive_anchored": a, "angle_alive_nonneg": a / 2} for a in angles]
        return tmp_path / f"{layer}{seed}", {"model": "m", "config": config}, records

    runs = [run(0, [0.5] * 26 + [9.0] * 4), run(1, [0.5] * 30), run(0, [2.0] * 30, layer="d")]
    assert collect.describe(runs[1][1]).endswith(", seed 1") and "seed" not in collect.describe(runs[0][1])
    lines = collect.acceptance_table(runs)[2:]
    assert len(lines) == 2  # two settings, the first from two seeds
    assert "| 0, 1 | 60 | live features | 0.50 [" in lines[0] and "| **both met** |" in lines[0]
    assert "| 0.25, 0.25 (both met) |" in lines[0]  # the non-negative solve, pooled too
    assert "| 0 | 30 | live features | 2.00 [2.00, 2.00] |" in lines[1] and "| p90 met |" in lines[1]
    # alone, the seed-0 run's four large angles put its p90 above the bound
    assert "| 0 | 30 |" in collect.acceptance_table(runs[:1])[2] and "| median met |" in collect.acceptance_table(runs[:1])[2]


def test_bootstrap_interval_brackets_the_figure_and_narrows_with_more_samples():
    collect = _collect_results()
    assert collect.bootstrap_interval(np.full(30, 2.0), 90) == (2.0, 2.0)
    rng = np.random.default_rng(1)
    few, many = rng.exponential(size=30), rng.exponential(size=3000)
    for x in (few, many):
        lo, hi = collect.bootstrap_interval(x, 90)
        assert x.min() <= lo <= np.percentile(x, 90) <= hi <= x.max()
        assert collect.bootstrap_interval(x, 90) == (lo, hi)  # seeded
    assert np.subtract(*collect.bootstrap_interval(many, 90)[::-1]) < np.subtract(*collect.bootstrap_interval(few, 90)[::-1])


def test_smooth_mode_reports_every_solve_with_a_verdict(small_model, tmp_path):
    config = ex.ExperimentConfig(**{**CONFIG, "n_canonical": 0, "lbfgs_steps": 0}, smooth=True, converge=1e-3,
                                 max_lbfgs_steps=300, prior_relative=True, float64_converge=None)
    records = ex.run_experiment(small_model, config, tmp_path, progress=False)
    verdicts = ("identified", "ambiguous", "not stationary", "no signal")
    for r in records:
        assert r["solve"] == ex.default_solve(config)
        for method in ex.SOLVES:
            assert r[f"verdict_{method}"] in verdicts
            assert 0 <= r[f"dead_{method}"] <= 6 and r[f"angle_alive_{method}"] is not None
        assert r["render_residual"] is not None
    # rendered and inverted on the surrogate, to convergence: the default solve recovers the live targets
    assert max(r[f"angle_alive_{r['solve']}"] for r in records) < 5
    summary = ex.summarize(records)
    assert all(sum(summary[f"verdicts_{method}"].values()) == 3 for method in ex.SOLVES)
    # the acceptance table (experiments/collect_results.py) judges a smooth run on its live angles
    collect = _collect_results()
    line = collect.acceptance_table(collect.load_runs([tmp_path]))[-1]
    live = np.array([r[f"angle_alive_{r['solve']}"] for r in records])
    assert f"| 0 | {len(records)} | live features | {np.median(live):.2f} [" in line
    verdicts = ("both met", "median met", "p90 met", "missed")
    met, beside = line.split("|")[-3:-1]
    assert met.strip().strip("*") in verdicts
    nonneg = np.array([r["angle_alive_nonneg"] for r in records])  # beside it: the non-negative solve
    assert beside.strip().startswith(f"{np.median(nonneg):.2f}, ") and beside.strip()[:-1].endswith(verdicts)


def test_a_second_smooth_experiment_on_the_same_model_traces_nothing_again(small_model, tmp_path):
    """`prepare` hands back the same surrogate and an aggregation with the same key, so the
    compiled renders and Jacobians of the first run serve the second."""
    from lucid_ifv import render
    from lucid_ifv.graph_keys import state_key
    from lucid_ifv.ifv import jacobian

    config = ex.ExperimentConfig(**{**CONFIG, "n_canonical": 0, "lbfgs_steps": 0, "adam_steps": 5}, smooth=True,
                                 aggregation="homogeneous_max_pool_mean", converge=None)
    first, second = ex.prepare(small_model, config), ex.prepare(small_model, config)
    assert first.model is second.model and state_key(first.aggregation) == state_key(second.aggregation)
    ex.run_experiment(small_model, config, tmp_path / "one", progress=False)
    traces = (jacobian.cache_info()["traces"], render._STATS["traces"])
    ex.run_experiment(small_model, config, tmp_path / "two", progress=False)
    assert (jacobian.cache_info()["traces"], render._STATS["traces"]) == traces


def test_a_folder_written_before_a_setting_existed_matches_only_its_default():
    """`with_settings_added_since` (experiment and compare folders): a setting missing from a
    folder's saved settings counts as its `ExperimentConfig` default, nothing else."""
    base = {"layer": "conv2", "per_sample_lbfgs": True, "converge": None, "float64_converge": None}
    saved = {"model": "m", "config": dict(base)}
    at_default = {"model": "m", "config": {**base, "relu_beta_relative": False}}
    changed = {"model": "m", "config": {**base, "relu_beta_relative": True}}
    assert ex.with_settings_added_since(saved, at_default) == at_default
    assert ex.with_settings_added_since(saved, changed) != changed
    assert saved == {"model": "m", "config": base}  # not modified


def test_a_folder_written_before_the_per_sample_lbfgs_resumes_with_the_joint_one(small_model, tmp_path):
    """Folders rendered before the per-sample L-BFGS became the default (no ``per_sample_lbfgs``
    saved) read as the joint L-BFGS: they resume with it and refuse today's default."""
    converging = {**CONFIG, "n_hoyer": 2, "n_canonical": 0, "adam_steps": 3, "lbfgs_steps": 0, "converge": 1e-3,
                  "max_lbfgs_steps": 5}
    old = tmp_path / "old"
    records = ex.run_experiment(small_model, ex.ExperimentConfig(**converging, per_sample_lbfgs=False), old,
                                progress=False)
    saved = json.loads((old / "settings.json").read_text())
    assert saved["config"].pop("per_sample_lbfgs") is False
    (old / "settings.json").write_text(json.dumps(saved))  # as folders were written before
    assert ex.load_settings(old)["config"]["per_sample_lbfgs"] is False
    again = ex.run_experiment(small_model, ex.ExperimentConfig(**converging, per_sample_lbfgs=False), old,
                              progress=False)
    assert [r["index"] for r in again] == [r["index"] for r in records]
    with pytest.raises(ValueError, match="other settings .*per_sample_lbfgs: saved False, given True"):
        ex.run_experiment(small_model, ex.ExperimentConfig(**converging), old, progress=False)


def test_a_smooth_folder_written_before_the_floorless_default_keeps_its_pool(small_model, tmp_path):
    """A smooth-mode folder records the pool its aggregation resolves to on the surrogate; a
    folder saved before that (no ``surrogate_aggregation``) smoothed "max_pool_mean" with the
    log-sum-exp pool, so it reads as "floored_max_pool_mean": it resumes with that name and
    refuses today's default, whose pool is the log-mean-exp one."""
    smooth = {**CONFIG, "n_hoyer": 2, "n_canonical": 0, "adam_steps": 3, "lbfgs_steps": 0, "smooth": True,
              "converge": None}
    ex.run_experiment(small_model, ex.ExperimentConfig(**smooth), tmp_path / "new", progress=False)
    assert ex.load_settings(tmp_path / "new")["surrogate_aggregation"].startswith("lme_pool_mean(")
    old = tmp_path / "old"
    records = ex.run_experiment(small_model, ex.ExperimentConfig(**smooth, aggregation="floored_max_pool_mean"), old,
                                progress=False)
    saved = json.loads((old / "settings.json").read_text())
    assert saved.pop("surrogate_aggregation").startswith("lse_pool_mean(")
    saved["config"]["aggregation"] = "max_pool_mean"  # as folders were written before 2026-12-04 evening
    (old / "settings.json").write_text(json.dumps(saved))
    read = ex.load_settings(old)
    assert read["config"]["aggregation"] == "floored_max_pool_mean"
    assert read["surrogate_aggregation"].startswith("lse_pool_mean(")
    again = ex.run_experiment(small_model, ex.ExperimentConfig(**smooth, aggregation="floored_max_pool_mean"), old,
                              progress=False)
    assert [r["index"] for r in again] == [r["index"] for r in records]
    with pytest.raises(ValueError, match="other settings .*aggregation: saved 'floored_max_pool_mean', given "
                                         "'max_pool_mean'; surrogate_aggregation: saved 'lse_pool_mean"):
        ex.run_experiment(small_model, ex.ExperimentConfig(**smooth), old, progress=False)
    plain = {"model": "m", "config": {"layer": "conv2", "aggregation": "max_pool_mean", "smooth": False,
                                      "per_sample_lbfgs": True, "converge": None, "float64_converge": None}}
    assert ex.read_as_today(plain) == plain  # the plain network's max-pool never changed
    homogeneous = ex.read_as_today({"config": {"smooth": True, "aggregation": "homogeneous_max_pool_mean"}})
    assert homogeneous["config"]["aggregation"] == "homogeneous_max_pool_mean"
    assert homogeneous["surrogate_aggregation"].startswith("relative_lse_pool_mean(")
