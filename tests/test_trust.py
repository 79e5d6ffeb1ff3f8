"""The trust report (`lucid_ifv.trust`), the fooling circuit (`lucid_ifv.fooling`) and the
`trust` subcommand's bad inputs. Small: mnist_small, short renders."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

LAYER = "conv2"


@pytest.fixture(scope="module")
def mnist():
    from modelzoo.shipped import heldout, load_shipped

    return load_shipped("mnist_small"), heldout("mnist_small")[0]


@pytest.fixture(scope="module")
def fast_config():
    from lucid_ifv.compare import default_config

    return default_config(warmup_steps=50, adam_steps=150, converge=1e-3, max_lbfgs_steps=300)


@pytest.fixture(scope="module")
def fooled(mnist):
    from lucid_ifv.fooling import fooling_circuit

    model, images = mnist
    return fooling_circuit(model, LAYER, 3, images)


def _checkerboard_energy(images) -> float:
    """Mean |response| of the fooling detector over an image batch ``[B, 28, 28, 1]``."""
    from lucid_ifv.fooling import checkerboard_kernel

    board = checkerboard_kernel()[:, :, 0, 0]
    x = np.asarray(images)[..., 0]
    return float(np.mean([abs(np.sum(x[:, i:i + 4, j:j + 4] * board, axis=(1, 2)))
                          for i in range(0, 25, 2) for j in range(0, 25, 2)]))


# -- the manipulated model ----------------------------------------------------------------------
def test_fooling_circuit_keeps_heldout_behaviour(mnist, fooled):
    from lucid_ifv.fooling import checkerboard_image

    model, images = mnist
    layers = ["conv1", "conv2", "fc1", "logits", "softmax"]
    for start in range(0, len(images), 500):
        a = model(images[start:start + 500], layers)
        b = fooled.model(images[start:start + 500], layers)
        for name in layers:  # the extra ReLU is exactly 0 on these images: bit for bit
            np.testing.assert_array_equal(a[name].numpy(), b[name].numpy(), err_msg=name)
    assert fooled.threshold > fooled.natural_max
    board = checkerboard_image(model.image_shape)[None]
    before = model(board, [LAYER])[LAYER].numpy()[..., 3].max()
    after = fooled.model(board, [LAYER])[LAYER].numpy()[..., 3].max()
    natural = max(model(images[s:s + 500], [LAYER])[LAYER].numpy()[..., 3].max() for s in (0, 500))
    assert after > 10 * max(before, natural)


def test_fooling_circuit_refuses_what_it_cannot_rewrite(mnist):
    from lucid_ifv.fooling import fooling_circuit

    model, images = mnist
    with pytest.raises(ValueError, match="out of range"):
        fooling_circuit(model, LAYER, 32, images[:10])
    with pytest.raises(ValueError, match="Relu"):
        fooling_circuit(model, "pool1", 0, images[:10])


def test_fooled_visualization_changes(mnist, fooled, fast_config):
    from lucid_ifv import trust

    model, _ = mnist
    plain = trust.render_units(model, LAYER, [3], fast_config)[0]
    changed = trust.render_units(fooled.model, LAYER, [3], fast_config)[0]
    assert _checkerboard_energy(changed) > 2 * _checkerboard_energy(plain)
    a_plain = trust.unit_activation(model, LAYER, 3, plain)[0]
    a_changed = trust.unit_activation(fooled.model, LAYER, 3, changed)[0]
    assert a_changed > 5 * a_plain


# -- the report ----------------------------------------------------------------------------------
def test_path_similarity_ranks_natural_above_a_checkerboard(mnist):
    from lucid_ifv import trust
    from lucid_ifv.fooling import checkerboard_image

    model, images = mnist
    act = trust.unit_activation(model, LAYER, 3, images)
    best = images[np.argsort(-act)[16:17]]  # a strong natural image outside the top 16
    board = checkerboard_image(model.image_shape)[None]
    rows, top, _, nat_max, _ = trust.path_similarity(model, LAYER, 3, np.concatenate([best, board]), images)
    assert len(top) == trust.TOP_K and nat_max == pytest.approx(act.max())
    assert [p.layer for p in rows[0]] == ["conv1", "pool1", "conv2"]
    for natural_row, board_row in zip(rows[0], rows[1]):
        assert natural_row.visualization > board_row.visualization
        assert 0 <= board_row.percentile <= natural_row.percentile <= 1


def test_report_fields_pass_and_fail(mnist, fooled, fast_config):
    from lucid_ifv import trust

    model, images = mnist
    (vis,) = trust.render_units(model, LAYER, [3], fast_config)[0]
    # constructed to pass: its own visualization, thresholds that the path check cannot fail
    good = trust.trust_report(model, LAYER, 3, vis, images, config=fast_config, min_path_score=0.0,
                              max_activation_ratio=np.inf)
    assert good.verdict in ("identified", "ambiguous") and good.angle < 1.0
    assert good.path_layers == ["conv1", "pool1"] and [p.layer for p in good.path] == ["conv1", "pool1", "conv2"]
    assert good.flag == "trusted" and good.trusted and good.reasons == []
    text = good.text()
    assert "TRUSTED" in text and "conv1" in text and "percentile" in text
    again = trust.TrustReport.from_dict(json.loads(json.dumps(good.to_dict())))
    assert again.path == good.path and again.flag == good.flag

    # constructed to fail (1): the same image claimed as another channel's visualization
    wrong = trust.trust_report(model, LAYER, 8, vis, images, config=fast_config, min_path_score=0.0,
                               max_activation_ratio=np.inf)
    assert wrong.angle > trust.MAX_ANGLE and wrong.flag == "suspicious"
    assert any("deg from the claimed" in r for r in wrong.reasons)
    # (2): the fooled unit's visualization drives it far beyond any natural image
    (fooled_vis,) = trust.render_units(fooled.model, LAYER, [3], fast_config)[0]
    caught = trust.trust_report(fooled.model, LAYER, 3, fooled_vis, images, config=fast_config)
    assert caught.activation_ratio > trust.MAX_ACTIVATION_RATIO and caught.flag == "suspicious"
    assert any("largest natural activation" in r for r in caught.reasons)
    # thresholds are re-applied without recomputing
    relaxed = trust.reflag(caught, np.inf, -np.inf, np.inf)
    assert relaxed.flag == "trusted" and relaxed.path == caught.path
    # (3): unit activity needs no threshold: a render that leaves the unit at 0, a silent unit
    dead = trust.reflag(dataclasses.replace(good, visualization_activation=0.0), np.inf, -np.inf, np.inf)
    assert dead.flag == "suspicious" and any("does not activate the unit" in r for r in dead.reasons)
    silent = trust.reflag(dataclasses.replace(good, natural_max_activation=0.0), np.inf, -np.inf, np.inf)
    assert silent.flag == "suspicious" and any("silent unit" in r for r in silent.reasons)


def test_report_refuses_bad_inputs(mnist):
    from lucid_ifv import trust

    model, images = mnist
    with pytest.raises(ValueError, match="top_k = 16 needs at least 18 natural images"):
        trust.trust_report(model, LAYER, 3, images[0], images[:10])  # not silently a top 9
    with pytest.raises(ValueError, match=r"top_k = 8 needs at least 10 natural images .*, got 9"):
        trust.path_similarity(model, LAYER, 3, images[:1], images[:9], top_k=8)
    with pytest.raises(ValueError, match=r"min_path_score must be in \[0, 1\]"):
        trust.trust_report(model, LAYER, 3, images[0], images, min_path_score=5)
    with pytest.raises(ValueError, match="shape"):
        trust.trust_report(model, LAYER, 3, images[0], np.zeros((10, 8, 8, 1), np.float32))
    with pytest.raises(ValueError, match="out of range"):
        trust.trust_report(model, LAYER, 40, images[0], images)


# -- the CLI -------------------------------------------------------------------------------------


def _bad_cases(d: Path) -> list:
    base = ["trust", "--model", "mnist_small", "--layer", LAYER]
    (d / "empty").mkdir()
    (d / "bad.npy").write_bytes(b"not an array")
    np.save(d / "few.npy", np.zeros((2, 28, 28, 1), np.float32))
    np.save(d / "two.npy", np.zeros((2, 28, 28, 1), np.float32))
    np.save(d / "nine.npy", np.zeros((9, 28, 28, 1), np.float32))
    return [
        (base, "--channel"),
        (base + ["--channel", "-1"], "--channel must be an integer >= 0"),
        (base + ["--channel", "0", "--top-k", "1"], "--top-k must be an integer >= 2"),
        (base + ["--channel", "0", "--min-path-score", "nan"], "--min-path-score must be in [0, 1]"),
        (base + ["--channel", "0", "--min-path-score", "5"], "--min-path-score must be in [0, 1]"),
        (base + ["--channel", "0", "--max-angle", "120"], "--max-angle must be an angle"),
        (base + ["--channel", "0", "--max-activation-ratio", "0"], "--max-activation-ratio must be a number > 0"),
        (base + ["--channel", "0", "--max-activation-ratio", "nan"], "--max-activation-ratio must be a number > 0"),
        (base + ["--channel", "0", "--images", str(d / "missing")], "missing"),
        (base + ["--channel", "0", "--images", str(d / "empty")], "without PNG or JPEG files"),
        (base + ["--channel", "0", "--images", str(d / "bad.npy")], "bad.npy"),
        (base + ["--channel", "0", "--images", str(d / "few.npy")], "needs at least 18 natural images"),
        (base + ["--channel", "0", "--top-k", "8", "--images", str(d / "nine.npy")], "--top-k 8 needs at least 10"),
        (base + ["--channel", "0", "--visualization", str(d / "two.npy")], "expected one"),
        (["trust", "--model", "nosuchmodel", "--channel", "0"], "unknown model"),
    ]


def test_cli_bad_inputs_are_one_line_errors_before_tensorflow(tmp_path):
    from test_bad_inputs import run_fresh  # main(argv) per case in one fresh interpreter

    cases = _bad_cases(tmp_path)
    for (argv, fragment), result in zip(cases, run_fresh([argv for argv, _ in cases])):
        lines = result["stderr"].strip().splitlines()
        assert result["rc"] == 2, (argv, result)
        assert len(lines) == 1 and lines[0].startswith("error: ") and fragment in lines[0], (argv, lines)
        assert not result["tensorflow"], f"TensorFlow imported before the error of {argv}"


def test_cli_defaults_are_the_calibrated_thresholds():
    from lucid_ifv import trust
    from lucid_ifv.cli import build_parser

    args = build_parser().parse_args(["trust", "--channel", "0"])
    assert (args.max_angle, args.min_path_score, args.max_activation_ratio) == (
        trust.MAX_ANGLE, trust.MIN_PATH_SCORE, trust.MAX_ACTIVATION_RATIO)


def test_cli_channel_out_of_range_and_json(mnist, tmp_path, capsys):
    from lucid_ifv.cli import main

    _, images = mnist
    np.save(tmp_path / "natural.npy", images[:200])
    np.save(tmp_path / "vis.npy", images[0])
    capsys.readouterr()
    try:
        rc = main(["trust", "--model", "mnist_small", "--layer", LAYER, "--channel", "40"])
    except SystemExit as exc:
        rc = exc.code
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "out of range" in err[0]
    rc = main(["trust", "--model", "mnist_small", "--layer", LAYER, "--channel", "3", "--visualization",
               str(tmp_path / "vis.npy"), "--images", str(tmp_path / "natural.npy"), "--json"])
    assert rc == 0
    report = json.loads(capsys.readouterr().out)
    assert report["feature"] == 3 and report["flag"] in ("trusted", "suspicious")
    assert {"angle", "verdict", "path", "path_score", "reasons", "thresholds"} <= set(report)
