"""Smooth mode's defaults (`lucid_ifv.smooth_defaults`): converge in float32, then in float64,
unless the caller says otherwise; the plain network and explicit settings are left alone."""

import json

import pytest
from modelzoo.shipped import load_shipped

from lucid_ifv import experiment as ex
from lucid_ifv.cli import apply_smooth_defaults, build_parser, main
from lucid_ifv.smooth_defaults import AUTO, SMOOTH_CONVERGE, SMOOTH_FLOAT64_CONVERGE, smooth_mode_tolerances


@pytest.mark.parametrize("smooth, converge, float64_converge, each, expected", [
    (True, AUTO, AUTO, True, (SMOOTH_CONVERGE, SMOOTH_FLOAT64_CONVERGE)),
    (True, AUTO, AUTO, False, (SMOOTH_CONVERGE, None)),  # joint L-BFGS: no per-sample float64 stage
    (True, 1e-4, AUTO, True, (1e-4, SMOOTH_FLOAT64_CONVERGE)),
    (True, AUTO, None, True, (SMOOTH_CONVERGE, None)),  # float32 only
    (True, None, AUTO, True, (None, None)),  # no convergence, so nothing to continue
    (True, 1e-2, 1e-6, True, (1e-2, 1e-6)),
    (False, AUTO, AUTO, True, (None, None)),  # the plain ReLU network: optima on kinks, no defaults
    (False, 1e-3, AUTO, True, (1e-3, None)),
])
def test_smooth_mode_tolerances(smooth, converge, float64_converge, each, expected):
    assert smooth_mode_tolerances(smooth, converge, float64_converge, each) == expected


def test_experiment_config_defaults_follow_smooth_mode():
    smooth = ex.ExperimentConfig(layer="conv2", smooth=True)
    assert (smooth.converge, smooth.float64_converge, smooth.max_lbfgs_steps) == (1e-3, 1e-8, 4000)
    plain = ex.ExperimentConfig(layer="conv2")
    assert (plain.converge, plain.float64_converge) == (None, None)
    assert ex.ExperimentConfig(layer="conv2", smooth=True, per_sample_lbfgs=False).float64_converge is None
    assert ex.ExperimentConfig(layer="conv2", smooth=True, float64_converge=None).float64_converge is None
    with pytest.raises(ValueError, match="converge must be a relative tolerance > 0 or None, got 'fast'"):
        ex.ExperimentConfig(layer="conv2", smooth=True, converge="fast").validate(load_shipped("mnist_small"))


def test_folders_saved_before_the_defaults_read_as_they_ran():
    """A smooth folder written before ``converge``/``float64_converge`` existed ran without
    them: it is read so, not as today's smooth defaults."""
    saved = {"config": {"layer": "conv2", "smooth": True, "per_sample_lbfgs": True, "prior_weight": 1e-4},
             "surrogate_aggregation": "log_mean_exp"}
    config = ex.ExperimentConfig(**ex.read_as_today(saved)["config"])
    assert (config.converge, config.float64_converge) == (None, None)
    assert ex.equation_precision(config) == ex.equation_precision({"float64_converge": None})


def resolved(*argv):
    args = build_parser().parse_args(list(argv))
    apply_smooth_defaults(args)
    return args.converge, args.float64_converge


def test_cli_smooth_defaults_and_their_opt_outs():
    base = ("experiment", "--model", "mnist_small", "--out", "x")
    assert resolved(*base, "--smooth") == (1e-3, 1e-8)
    assert resolved(*base) == (None, None)
    assert resolved(*base, "--smooth", "--float32") == (1e-3, None)
    assert resolved(*base, "--smooth", "--converge", "off") == (None, None)
    assert resolved(*base, "--smooth", "--joint-lbfgs") == (1e-3, None)
    assert resolved(*base, "--smooth", "--converge", "1e-4", "--float64-converge", "1e-7") == (1e-4, 1e-7)
    render = ("render", "--model", "mnist_small", "--smooth", "--out", "x")
    assert resolved(*render) == (1e-3, 1e-8)
    assert resolved(*render, "--transforms", "standard") == (None, None)  # Adam only


@pytest.mark.parametrize("argv, message", [
    (["render", "--smooth", "--float32", "--float64-converge", "1e-8"],
     "--float32 and --float64-converge contradict each other"),
    (["render", "--float32"], "--float32 has no effect without --smooth"),
    (["experiment", "--float32"], "float32 has no effect without --smooth"),
    (["render", "--smooth", "--converge", "soon"], "expected a tolerance (e.g. 1e-3) or 'off', got 'soon'"),
])
def test_cli_refuses_contradicting_precision_options(tmp_path, capsys, argv, message):
    assert main([*argv, "--model", "mnist_small", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1, err


def test_cli_experiment_smooth_runs_the_float64_stage_by_default(tmp_path):
    """`experiment --smooth` with no precision option: each sample converged in float32, then
    in float64, and inverted in float64 (the saved settings say so, the records show both)."""
    out = tmp_path / "run"
    assert main(["experiment", "--model", "mnist_small", "--layer", "conv2", "--param", "pixel", "--no-decorrelate",
                 "--n-hoyer", "2", "--batch-size", "2", "--adam", "60", "--lbfgs", "0", "--max-lbfgs", "600",
                 "--smooth", "--out", str(out)]) == 0
    config = json.loads((out / "settings.json").read_text())["config"]
    assert (config["converge"], config["float64_converge"]) == (1e-3, 1e-8)
    records = [json.loads(line) for line in (out / "records.jsonl").read_text().splitlines()]
    for r in records:
        assert r["render_residual_float32"] is not None
        assert r["render_residual"] < r["render_residual_float32"], r  # the float64 stage moved on from float32's


def test_a_model_without_a_float64_copy_renders_in_float32_by_default_and_refuses_it_when_asked(tmp_path, capsys):
    """srnet_small (a ResizeBilinear, which always outputs float32) has no float64 copy: smooth
    mode's default float64 stage is dropped with a note; asked for explicitly, it is refused
    before any rendering. Its inputs are geometry, not images: the .npz only, no PNG."""
    argv = ["render", "--model", "srnet_small", "--smooth", "--adam", "2", "--lbfgs", "0", "--max-lbfgs", "2"]
    assert main([*argv, "--out", str(tmp_path / "default")]) == 0
    captured = capsys.readouterr()
    assert "note: no float64 stage on srnet_small~smooth (cannot make this graph float64:" in captured.err
    assert sorted(p.name for p in (tmp_path / "default").iterdir()) == ["realization.npz"]
    assert "geometry input(s) (realization.npz)" in captured.out
    assert main([*argv, "--float64-converge", "1e-8", "--out", str(tmp_path / "asked")]) == 2
    err = capsys.readouterr().err
    assert "always output float32; to render without the float64 stage: --float32" in err
    assert not (tmp_path / "asked" / "realization.npz").exists()
