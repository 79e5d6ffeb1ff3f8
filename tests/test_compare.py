"""Network comparison (`lucid_ifv.compare`) and its ground truth (`lucid_ifv.symmetry`)."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import tensorflow as tf

from lucid_ifv import compare as compare_module
from lucid_ifv.compare import compare, default_config
from lucid_ifv.model import KerasModel
from lucid_ifv.symmetry import inverse_permutation, permute_channels, random_symmetry
from modelzoo.shipped import load_shipped

FAST = dict(adam_steps=120, max_lbfgs_steps=150, batch_size=4)


def _images(model, n=3, seed=0):
    return tf.constant(np.random.default_rng(seed).uniform(size=(n, *model.image_shape)), tf.float32)


@pytest.mark.parametrize("name, layer, extra", [("mnist_small", "conv2", []),
                                                 ("inception_small", "mixed3b", ["mixed3b_pre_relu"]),
                                                 ("photos_cnn", "conv2d_3", []),
                                                 ("densenet_small", "block3_layer4", [])])
def test_permuted_network_has_the_same_function_and_permuted_channels(name, layer, extra):
    a = load_shipped(name)
    b = permute_channels(a, layer, seed=3)
    images = _images(a)
    logits = "logits"
    out_a = a(images, [layer, logits])
    out_b = b.model(images, [layer, logits])
    np.testing.assert_allclose(out_b[logits], out_a[logits], rtol=1e-4, atol=1e-4 * np.abs(out_a[logits]).max())
    expected = out_a[layer].numpy()[..., b.perm] * b.scales
    np.testing.assert_allclose(out_b[layer], expected, atol=1e-5 * np.abs(expected).max())
    assert not np.allclose(out_b[layer], out_a[layer])  # the layer did change
    assert (b.perm != np.arange(len(b.perm))).mean() > 0.5 and b.scales.min() < 0.9 < 1.1 < b.scales.max()
    for alias in extra:  # the pre-ReLU alias is permuted and scaled the same way
        got = b.model.layer(alias) and b.model(images, [alias])[alias].numpy()
        want = a(images, [alias])[alias].numpy()[..., b.perm] * b.scales
        np.testing.assert_allclose(got, want, atol=1e-5 * np.abs(want).max())


def test_a_pre_relu_alias_permutes_the_units_it_carries():
    """Asking for ``mixed3b_pre_relu`` permutes mixed3b's units (the same seed gives the same
    symmetry), and the result keeps the alias as its layer, the one a comparison studies."""
    a = load_shipped("inception_small")
    by_alias, by_layer = permute_channels(a, "mixed3b_pre_relu", seed=5), permute_channels(a, "mixed3b", seed=5)
    assert by_alias.layer == "mixed3b_pre_relu"
    np.testing.assert_array_equal(by_alias.perm, by_layer.perm)
    np.testing.assert_array_equal(by_alias.scales, by_layer.scales)
    images = _images(a, n=2)
    want = a(images, ["mixed3b_pre_relu"])["mixed3b_pre_relu"].numpy()[..., by_alias.perm] * by_alias.scales
    got = by_alias.model(images, ["mixed3b_pre_relu"])["mixed3b_pre_relu"].numpy()
    np.testing.assert_allclose(got, want, atol=1e-5 * np.abs(want).max())
    assert (want < 0).mean() > 0.1  # a signed layer: the comparison must use p = 0 or 2 there


def test_a_residual_stream_is_permuted_as_a_whole():
    """srnet_small's res_block layers are Adds of one residual stream: permuting res_block5
    permutes and scales every tensor of the stream alike (conv_in to res_block8), the
    blocks' inner units and the image output stay as they were."""
    a = load_shipped("srnet_small")
    b = permute_channels(a, "res_block5", seed=2)
    images = _images(a, n=2)
    stream, inner = ["conv_in", "res_block1", "res_block5", "res_block8"], ["upsample1", "output"]
    out_a, out_b = a(images, stream + inner), b.model(images, stream + inner)
    for name in stream:
        want = out_a[name].numpy()[..., b.perm] * b.scales
        np.testing.assert_allclose(out_b[name], want, atol=1e-5 * np.abs(want).max(), err_msg=name)
    for name in inner:
        np.testing.assert_allclose(out_b[name], out_a[name], atol=1e-4 * np.abs(out_a[name]).max(), err_msg=name)
    assert (b.perm != np.arange(len(b.perm))).mean() > 0.5
    with pytest.raises(ValueError, match="DepthToSpace"):
        permute_channels(a, "upsample1")


def test_a_dense_block_is_permuted_unit_by_unit():
    """densenet_small's block3_layer4 concatenates transition2's pooled output and four 3x3
    convs: each is permuted within its channels, and so are the block's earlier
    concatenations (prefixes of it), read by BatchNorms that absorb the scales."""
    a = load_shipped("densenet_small")
    b = permute_channels(a, "block3_layer4", seed=4)
    start = 0
    for width in (42, 12, 12, 12, 12):
        assert sorted(b.perm[start:start + width]) == list(range(start, start + width))
        start += width
    assert start == len(b.perm) == 90
    images = _images(a, n=2)
    out_a, out_b = a(images, ["transition2_pool", "block2_layer4"]), b.model(images, ["transition2_pool", "block2_layer4"])
    want = out_a["transition2_pool"].numpy()[..., b.perm[:42]] * b.scales[:42]
    np.testing.assert_allclose(out_b["transition2_pool"], want, atol=1e-5 * np.abs(want).max())
    np.testing.assert_allclose(out_b["block2_layer4"], out_a["block2_layer4"], rtol=1e-6)  # upstream untouched


def test_inception_permutation_stays_within_branches():
    a = load_shipped("inception_small")
    perm = permute_channels(a, "mixed3a", seed=0).perm
    from modelzoo.architectures import INCEPTION_SMALL_MIXED

    n1, _, n3, _, n5, npool = INCEPTION_SMALL_MIXED["mixed3a"]
    start = 0
    for width in (n1, n3, n5, npool):  # mixed3a's branches (1x1, 3x3, 5x5, pool projection)
        assert sorted(perm[start:start + width]) == list(range(start, start + width))
        start += width
    assert start == len(perm)
    with pytest.raises(ValueError, match="within each"):
        permute_channels(a, "mixed3a", perm=np.roll(np.arange(128), 1), scales=np.ones(128))


def test_matching_inverts_the_permutation():
    perm, scales = random_symmetry([5, 3], seed=1)
    assert sorted(perm[:5]) == list(range(5)) and sorted(perm[5:]) == [5, 6, 7]
    matching = inverse_permutation(perm)
    assert (perm[matching] == np.arange(8)).all() and (scales > 0).all()


def test_permute_refuses_what_it_cannot_undo():
    with pytest.raises(ValueError, match="Softmax"):
        permute_channels(load_shipped("densenet_small"), "logits")
    inp = tf.keras.Input((8, 8, 1))
    x = tf.keras.layers.Conv2D(4, 3, activation="tanh", name="conv")(inp)
    model = KerasModel(tf.keras.Model(inp, tf.keras.layers.Dense(2, name="logits")(tf.keras.layers.Flatten()(x))))
    with pytest.raises(ValueError, match="tanh"):
        permute_channels(model, "conv")
    with pytest.raises(ValueError, match="permutation of range"):
        permute_channels(load_shipped("mnist_small"), "conv2", perm=[0, 0] + list(range(2, 32)), scales=np.ones(32))


@pytest.fixture(scope="module")
def mnist_comparison(tmp_path_factory):
    """mnist_small conv2 against a permuted copy: 4 channels, short renders."""
    a = load_shipped("mnist_small")
    b = permute_channels(a, "conv2", seed=1)
    out = tmp_path_factory.mktemp("compare")
    result = compare(a, "conv2", b.model, "conv2", default_config(**FAST), features=[0, 5, 17, 30], out_dir=out,
                     progress=False)
    return a, b, result, out


def test_compare_recovers_a_permutation(mnist_comparison):
    a, b, result, _ = mnist_comparison
    assert result.matrix.shape == (4, 32)
    np.testing.assert_allclose(np.sum(result.matrix ** 2, axis=1), 1.0, rtol=1e-6)
    assert result.accuracy(b.matching) == 1.0
    assert (result.best_match == b.matching[[0, 5, 17, 30]]).all()
    # one B feature explains each image: the best match dominates the rest of its row
    assert np.median(result.best_score) > 0.9
    assert result.represented(min_score=0.0) == result.identified.mean()


def test_compare_resumes_from_its_folder_and_refuses_other_settings(mnist_comparison, monkeypatch):
    a, b, result, out = mnist_comparison

    def fail(*args, **kwargs):
        raise AssertionError("a finished batch was recomputed")

    monkeypatch.setattr(compare_module, "_compare_batch", fail)
    again = compare(a, "conv2", b.model, "conv2", default_config(**FAST), features=[0, 5, 17, 30], out_dir=out,
                    progress=False)
    np.testing.assert_array_equal(again.matrix, result.matrix)
    assert again.verdicts == result.verdicts
    with pytest.raises(ValueError, match=r"other settings \(features: saved \[0, 5, 17, 30\], given \[1\]\)"):
        compare(a, "conv2", b.model, "conv2", default_config(**FAST), features=[1], out_dir=out, progress=False)


def test_compare_rejects_bad_inputs():
    a = load_shipped("mnist_small")
    with pytest.raises(ValueError, match=r"features \[32\] out of range"):
        compare(a, "conv2", a, "conv2", features=[32])
    with pytest.raises(ValueError, match="different inputs"):
        compare(a, "conv2", load_shipped("photos_cnn"), "conv2d_3")
    with pytest.raises(KeyError, match="nope"):
        compare(a, "conv2", a, "nope")


def test_cli_compare_defaults_are_the_librarys():
    """`lucid-ifv compare` without options renders with `default_config`'s settings."""
    from lucid_ifv.cli import build_parser

    args = build_parser().parse_args(["compare", "--model", "mnist_small", "--permuted", "0", "--out", "x"])
    config = default_config()
    cli = dict(adam_steps=args.adam, lbfgs_steps=args.lbfgs, converge=args.converge, max_lbfgs_steps=args.max_lbfgs,
               warmup_steps=args.warmup, cossim_pow=args.cossim_pow, aggregation=args.aggregation,
               relu_beta_relative=args.relu_beta_relative, batch_size=args.batch_size, fft=args.param == "fft",
               decorrelate=not args.no_decorrelate, prior_weight=args.prior)
    assert cli == {key: getattr(config, key) for key in cli}
    assert config.max_lbfgs_steps == 4000  # docs/compare.md, "Retrying"


def test_cli_compare_writes_the_matrix_report_and_figure(tmp_path, capsys):
    from lucid_ifv.cli import main

    out = tmp_path / "cmp"
    assert main(["compare", "--model", "mnist_small", "--permuted", "2", "--features", "3", "9", "--adam", "100",
                 "--max-lbfgs", "100", "--out", str(out)]) == 0
    report = json.loads((out / "comparison.json").read_text())
    assert report["permutation_accuracy"] == 1.0 and len(report["best_match"]) == 2
    residuals = np.asarray(report["render_residual"], float)
    assert residuals.shape == (2,) and (residuals >= 0).all()
    stationary = int(np.sum(residuals <= 1e-3))  # compare's default --converge
    assert f"renders stationary to --converge 0.001: {stationary} of 2" in capsys.readouterr().out
    assert np.load(out / "matrix.npy").shape == (2, 32)
    settings = json.loads((out / "batches" / "settings.json").read_text())["config"]
    assert settings["aggregation"] == default_config().aggregation == "homogeneous_max_pool_mean"
    assert settings["relu_beta_relative"] is default_config().relu_beta_relative is True
    from skimage import io

    figure = io.imread(out / "matching.png")[..., :3].astype(float)
    assert figure.std() > 20  # a heatmap, not a blank canvas
    with pytest.raises(SystemExit, match="give --model-b"):
        main(["compare", "--model", "mnist_small", "--out", str(out)])
    assert report["permuted_seed"] == 2


def test_compare_misses_reports_the_wrong_rows(tmp_path, capsys):
    """experiments/compare_misses.py on a CLI run whose first row is made wrong by hand."""
    from conftest import experiment_script
    from lucid_ifv.cli import main

    out = tmp_path / "cmp"
    assert main(["compare", "--model", "mnist_small", "--permuted", "2", "--features", "3", "9", "--adam", "60",
                 "--max-lbfgs", "60", "--out", str(out)]) == 0
    misses = experiment_script("compare_misses")
    misses.main([str(out)])
    assert "no wrong rows" in capsys.readouterr().out
    report = json.loads((out / "comparison.json").read_text())
    report["best_match"][0] = (report["ground_truth"][0] + 1) % 32
    (out / "comparison.json").write_text(json.dumps(report))
    misses.main([str(out)])
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| 3 |")]
    assert len(rows) == 1 and f"| 3 | {report['ground_truth'][0]} |" in rows[0], rows
    report["best_match"][0] = report["ground_truth"][0]  # back to the run's own answer
    (out / "comparison.json").write_text(json.dumps(report))
    checked = experiment_script("compare_scale_check").check(out)
    saved = int(np.sum(np.asarray(report["best_match"]) == np.asarray(report["ground_truth"])))
    assert checked["n"] == 2 and checked["saved"] == saved
    assert checked["again"] == saved  # inverting the saved renders again gives the run's answers
    assert 0 <= checked["unit_scales"] <= 2


def test_reoptimization_ssim_is_reported_per_row():
    a = load_shipped("mnist_small")
    b = permute_channels(a, "conv2", seed=4)
    result = compare(a, "conv2", b.model, "conv2", default_config(warmup_steps=20, adam_steps=60, max_lbfgs_steps=60,
                                                                   batch_size=2),
                     features=[2, 9], reoptimize_steps=10, progress=False)
    assert result.ssim.shape == (2,) and np.all((result.ssim > -1) & (result.ssim <= 1))
    assert result.to_dict()["ssim"] == result.ssim.tolist()
    with pytest.raises(ValueError, match="reoptimize_steps must be >= 0"):
        compare(a, "conv2", b.model, "conv2", features=[2], reoptimize_steps=-1)


def test_retries_replace_only_unsound_rows_by_sound_renders(monkeypatch):
    """The retry loop: new seeds for the unsound rows only, a row replaced only by a sound
    render, at most ``retries`` rounds, ``attempts`` counted per row."""
    calls = []
    outcomes = {0: [True, False, False], 1: [False, True], 2: [True]}  # per round: sound per rendered row

    def fake(setup_a, config_a, setup_b, config_b, features, k_a, seed, reoptimize_steps, scales_a=None, scales_b=None):
        round_ = len(calls)
        calls.append((features.tolist(), seed))
        n = len(features)
        return {"features": features, "predicted": np.full((n, 2), float(round_)), "sound": np.array(outcomes[round_]),
                "verdicts": np.array([f"r{round_}"] * n, dtype="U32")}

    monkeypatch.setattr(compare_module, "_render_and_invert", fake)
    out = compare_module._compare_batch(None, None, None, None, np.array([4, 7, 9]), 10, 5, 0, retries=3)
    stride = compare_module.RETRY_SEED_STRIDE
    assert calls == [([4, 7, 9], 5), ([7, 9], 5 + stride), ([7], 5 + 2 * stride)]  # stops once all are sound
    assert out["attempts"].tolist() == [1, 3, 2]
    assert out["predicted"][:, 0].tolist() == [0.0, 2.0, 1.0]  # each row from its first sound render
    assert out["verdicts"].tolist() == ["r0", "r2", "r1"] and out["sound"].all()
    calls.clear()
    out = compare_module._compare_batch(None, None, None, None, np.array([4, 7, 9]), 10, 5, 0, retries=1)
    assert len(calls) == 2 and out["attempts"].tolist() == [1, 2, 2]
    assert out["sound"].tolist() == [True, False, True] and out["predicted"][1, 0] == 0.0  # unsound retry not kept


def test_more_retries_continue_a_saved_comparison(tmp_path, monkeypatch):
    """Raising ``retries`` on a folder re-renders only what the smaller budget left unsound,
    and ends where the larger budget from the start ends; fewer retries are refused."""
    calls = []

    def fake(setup_a, config_a, setup_b, config_b, features, k_a, seed, reoptimize_steps, scales_a=None, scales_b=None):
        calls.append((features.tolist(), seed))
        n = len(features)
        return {"features": features, "predicted": np.tile(np.eye(k_a)[features], 1) * (seed % 7 + 1),
                "sound": (features + seed) % 3 == 0, "verdicts": np.array(["x"] * n, dtype="U32"),
                "render_residual": np.zeros(n)}  # each retry's seed shifts (features + seed) % 3 by one

    monkeypatch.setattr(compare_module, "_render_and_invert", fake)
    a = load_shipped("mnist_small")
    config = default_config(batch_size=3)
    features = [1, 2, 3, 4, 5]

    def run(folder, retries):
        return compare(a, "conv2", a, "conv2", config, features=features, retries=retries, out_dir=tmp_path / folder,
                       progress=False)

    once = run("grown", 1)
    assert not once.sound.all() and once.attempts.max() == 2
    calls.clear()
    grown = run("grown", 3)
    assert calls and all(seed > config.seed + 3 for _, seed in calls)  # no first render again
    fresh = run("fresh", 3)
    assert fresh.sound.all() and fresh.attempts.max() == 3
    np.testing.assert_array_equal(grown.matrix, fresh.matrix)
    np.testing.assert_array_equal(grown.attempts, fresh.attempts)
    assert json.loads((tmp_path / "grown" / "settings.json").read_text())["retries"] == 3
    calls.clear()
    run("grown", 3)
    assert calls == []  # finished: nothing recomputed
    with pytest.raises(ValueError, match="with retries=3, got retries=1: give at least 3"):
        run("grown", 1)


def test_sound_means_identified_in_a_with_the_rendered_channel(mnist_comparison):
    a, b, result, _ = mnist_comparison
    assert result.sound is not None and result.attempts.tolist() == [1, 1, 1, 1]
    assert all(s <= (v == "identified") for s, v in zip(result.sound, result.verdicts_a))
    with pytest.raises(ValueError, match="retries must be >= 0, got -1"):
        compare(a, "conv2", b.model, "conv2", features=[0], retries=-1)


def test_channel_response_and_negative_renders(mnist_comparison):
    _, _, result, _ = mnist_comparison
    # conv2 is read after its (softplus) ReLU: every render's channel response is positive
    assert result.channel_response.shape == (4,) and (result.channel_response > 0).all()
    assert not result.negative.any() and result.to_dict()["negative"] == [False] * 4
    signed = dataclasses.replace(result, channel_response=np.array([0.5, -2.0, 1.0, -0.1]))
    assert signed.negative.tolist() == [False, True, False, True]
    older = dataclasses.replace(result, channel_response=None)  # folders written before it was saved
    assert not older.negative.any()


def test_compare_by_convergence_splits_a_run_by_branch(tmp_path, capsys):
    """experiments/compare_by_convergence.py: rows counted per mixed4a branch, by whether the
    render reached the run's tolerance, sound and right."""
    from conftest import experiment_script

    run = tmp_path / "inception_run"
    (run / "batches").mkdir(parents=True)
    features = np.array([0, 70, 200, 250, 251])  # 1x1, 3x3, 5x5, pool, pool
    residual = np.array([1e-4, 5e-3, 2e-2, 1e-3, 0.1])
    sound = np.array([True, False, False, True, False])
    np.savez(run / "batches" / "batch_0000.npz", features=features, render_residual=residual, sound=sound)
    (run / "batches" / "settings.json").write_text(json.dumps({"a": ["inception_small", "mixed4a"],
                                                               "config": {"converge": 1e-3}}))
    truth = [5, 6, 7, 8, 9]
    (run / "comparison.json").write_text(json.dumps({"features": features.tolist(), "ground_truth": truth,
                                                     "best_match": [5, 6, 0, 8, 9]}))
    script = experiment_script("compare_by_convergence")
    rows = {row["part"]: row for row in script.split(run)}
    assert list(rows) == ["1x1", "3x3", "5x5", "pool"]
    assert rows["pool"]["n"] == 2  # a residual equal to the tolerance counts as reached:
    assert rows["pool"]["converged"] == {"n": 1, "sound": 1, "right": 1}
    assert rows["pool"]["not converged"] == {"n": 1, "sound": 0, "right": 1}
    assert rows["5x5"]["not converged"] == {"n": 1, "sound": 0, "right": 0}
    assert rows["1x1"]["converged"]["n"] == 1 and rows["1x1"]["not converged"]["n"] == 0
    assert script.main([str(run)]) == 0
    assert "| inception_run | pool | 2 | 1 (tol 0.001): 1, 1 | 1: 0, 1 |" in capsys.readouterr().out
    assert [part for part, _, _ in script.branches("mnist_small", "conv2")] == ["all"]


def test_compare_by_activity_splits_a_run(tmp_path, capsys):
    """experiments/compare_by_activity.py on a tiny CLI run: the parts add up to the whole."""
    from conftest import experiment_script

    from lucid_ifv.cli import main

    out = tmp_path / "cmp"
    assert main(["compare", "--model", "mnist_small", "--permuted", "1", "--features", "3", "9", "--adam", "60",
                 "--max-lbfgs", "60", "--out", str(out)]) == 0
    script = experiment_script("compare_by_activity")
    s = script.split(out)
    report = json.loads((out / "comparison.json").read_text())
    right = int(np.sum(np.asarray(report["best_match"]) == np.asarray(report["ground_truth"])))
    assert s["n"] == 2 and s["right"] == (right, 2)
    assert s["on_active"][1] + s["on_inactive"][1] == 2 and s["on_active"][0] + s["on_inactive"][0] == right
    assert 0 <= s["both"] <= min(s["inactive"], s["silent"])
    low, mid, high = s["response"]
    assert low <= mid <= high and (low <= 0.05 * np.log(9) * 1.001) == (s["inactive"] > 0)
    capsys.readouterr()
    assert script.main([str(out)]) == 0 and "| cmp | 2 |" in capsys.readouterr().out
    by_gradient = int(np.sum(np.asarray(report["best_match_gradient"]) == np.asarray(report["ground_truth"])))
    table = experiment_script("collect_compare").main([str(out)])
    assert f"({right} of 2)" in table and f"by gradient share: {by_gradient / 2:.1%} ({by_gradient} of 2)" in table


def test_collect_compare_combines_runs_that_split_a_layer(tmp_path):
    """``--combine``: one row for runs over disjoint features of one comparison."""
    from conftest import experiment_script

    collect = experiment_script("collect_compare")
    base = {"model_a": "m", "layer_a": "l", "model_b": "m~permuted", "layer_b": "l", "command": "compare --retries 3"}
    parts = [dict(base, features=[0, 3], best_match=[5, 1], ground_truth=[5, 2], best_score=[1.0, 0.5],
                  verdicts=["identified", "ambiguous"], sound=[True, False], attempts=[1, 4], represented=0.5),
             dict(base, features=[1], best_match=[4], ground_truth=[4], best_score=[0.9],
                  verdicts=["identified"], sound=None, attempts=[2], represented=1.0)]
    runs = []
    for i, report in enumerate(parts):
        (tmp_path / f"r{i}").mkdir()
        (tmp_path / f"r{i}" / "comparison.json").write_text(json.dumps(report))
        runs.append(str(tmp_path / f"r{i}"))
    table = collect.main(["--combine", *runs]).splitlines()
    assert len(table) == 3
    assert "| 3 | 66.7% (2 of 3); among 'identified': 2 of 2 |" in table[2] and "3 retries" in table[2]
    assert "| - |" in table[2]  # soundness not recorded in every run: not shown
    assert "| 0.67 |" in table[2]  # represented, weighted by the runs' feature counts
    assert "| 1 of 2 (1 re-rendered) |" in collect.main([runs[0]]).splitlines()[2]  # rows that needed a retry
    with pytest.raises(SystemExit, match="disjoint"):
        collect.main(["--combine", runs[0], runs[0]])


def test_gradient_matching_is_kept_and_recovers_the_permutation(mnist_comparison):
    _, b, result, _ = mnist_comparison
    assert result.row_norms.shape == (4, 32) and (result.row_norms >= 0).all()
    np.testing.assert_allclose(np.sum(result.gradient_matrix ** 2, axis=1), 1.0, rtol=1e-6)
    assert result.accuracy(b.matching, by="gradient") == 1.0
    report = result.to_dict()
    assert report["best_match_gradient"] == result.match("gradient").tolist()
    with pytest.raises(ValueError, match="by must be one of"):
        result.match("cosine")
    with pytest.raises(ValueError, match="row norms"):
        dataclasses.replace(result, row_norms=None).gradient_matrix


def test_gradient_matching_does_not_change_when_b_rescales_a_feature():
    """A spread row: rescaling B's feature 1 by s divides its t* by s and multiplies its gradient
    by s. The target score's best match moves; the gradient share's does not."""
    predicted = np.array([[0.6, 0.5, 0.2]])
    norms = np.array([[1.0, 1.0, 1.0]])
    row = compare_module.Comparison("a", "b", np.array([0]), np.abs(predicted), predicted, ["ambiguous"],
                                    row_norms=norms)
    s = np.array([1.0, 0.25, 1.0])  # B's feature 1 made 4x smaller
    rescaled_t = predicted / s
    rescaled_t /= np.linalg.norm(rescaled_t)
    rescaled = dataclasses.replace(row, matrix=np.abs(rescaled_t), predicted=rescaled_t, row_norms=norms * s)
    assert row.best_match.tolist() == [0] and rescaled.best_match.tolist() == [1]
    np.testing.assert_allclose(rescaled.gradient_matrix, row.gradient_matrix)
    assert rescaled.match("gradient").tolist() == row.match("gradient").tolist() == [0]


def test_in_rms_units_a_rescaled_copy_meets_the_same_solve_and_verdicts():
    """``feature_units="rms"``: B's features are A's, permuted and rescaled; each read in units
    of its RMS on the calibration noise, B's inversion of A's render is A's, permuted, with the
    same dead features and verdicts (in raw units the dead-feature rule and error bars see
    B's scales)."""
    a = load_shipped("mnist_small")
    b = permute_channels(a, "conv2", seed=2)
    config = dataclasses.replace(default_config(**FAST), layer="conv2", features=None)
    setup_a, setup_b = (compare_module.experiment.prepare(m, config) for m in (a, b.model))
    scales_a, scales_b = (compare_module._feature_scales(s, config, "rms") for s in (setup_a, setup_b))
    np.testing.assert_allclose(scales_b, scales_a[b.perm] * b.scales, rtol=1e-4)
    features = np.array([3, 11, 20])
    param = compare_module.experiment.realization_param(a, config, len(features), 0)
    rendered = compare_module.experiment.realize(setup_a, config, np.eye(32)[features], param, 0)

    def invert_in(setup, scales):
        return compare_module.ifv.invert(setup.model, "conv2", rendered.params, param=param, cossim_pow=0.0,
                                         aggregation=setup.aggregation, prior=compare_module.obj.params_L2(),
                                         feature_scales=scales)

    in_a, in_b = invert_in(setup_a, scales_a), invert_in(setup_b, scales_b)
    np.testing.assert_allclose(in_b.target, in_a.target[:, b.perm], atol=1e-3 * np.abs(in_a.target).max())
    assert [str(v) for v in in_b.verdicts()] == [str(v) for v in in_a.verdicts()]
    np.testing.assert_array_equal(in_b.n_dead, in_a.n_dead)
    raw_b = invert_in(setup_b, None)  # without the units, B's answer is A's only up to its scales
    assert not np.allclose(raw_b.target, in_a.target[:, b.perm], atol=1e-3 * np.abs(in_a.target).max())
    with pytest.raises(ValueError, match="feature_scales must be 32 positive"):
        invert_in(setup_a, np.ones(31))
    with pytest.raises(ValueError, match="feature_units must be one of"):
        compare(a, "conv2", b.model, "conv2", features=[0], feature_units="std")


def test_cli_compare_takes_feature_units(capsys):
    from lucid_ifv.cli import build_parser

    args = build_parser().parse_args(["compare", "--model", "mnist_small", "--permuted", "0", "--out", "x",
                                      "--feature-units", "rms"])
    assert args.feature_units == "rms"
    assert build_parser().parse_args(["compare", "--model", "mnist_small", "--out", "x"]).feature_units == "raw"
    with pytest.raises(SystemExit):
        build_parser().parse_args(["compare", "--model", "mnist_small", "--out", "x", "--feature-units", "std"])
    assert "invalid choice: 'std'" in capsys.readouterr().err


def test_feature_units_script_prints_both_networks_in_both_units(capsys):
    from conftest import experiment_script

    script = experiment_script("compare_feature_units")
    with pytest.raises(SystemExit, match="--features must be channels"):
        script.main(["--model", "mnist_small", "--layer", "conv2", "--features", "32"])
    assert script.main(["--model", "mnist_small", "--layer", "conv2", "--features", "3"]) == 0
    rows = [line.split(" | ") for line in capsys.readouterr().out.splitlines()[2:]]
    assert [(r[1], r[2]) for r in rows] == [("raw", "A"), ("raw", "B"), ("rms", "A"), ("rms", "B")]
    # in RMS units B's verdict, dead count and match are A's, and its residual is A's to float32
    # rounding (the printed 3 digits can straddle a rounding boundary: 0.000347 vs 0.000348)
    assert rows[2][3] == rows[3][3] and rows[2][5:] == rows[3][5:]
    np.testing.assert_allclose(float(rows[3][4]), float(rows[2][4]), rtol=5e-3)
