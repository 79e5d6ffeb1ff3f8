"""Float64 copies of networks and parametrizations (`lucid_ifv.precision`): the same functions
in float64, rendered, converged and inverted in float64, through the experiment runner too."""

import dataclasses
import json

import numpy as np
import pytest
import tensorflow as tf

from lucid_ifv import experiment as ex
from lucid_ifv import ifv, metrics
from lucid_ifv.ifv import diagnostics as dg
from lucid_ifv import objectives as obj
from lucid_ifv import param as P
from lucid_ifv.model import KerasModel
from lucid_ifv.precision import Float64Param, float64_model
from lucid_ifv.render import render_vis
from lucid_ifv.smooth import smooth_model
from modelzoo import load_shipped


@pytest.fixture(scope="module")
def mnist_setup():
    return ex.prepare_network(load_shipped("mnist_small"), "conv2", "max_pool_mean", 1e-4, smooth=True)


def _relative_difference(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.abs(a - b).max() / np.abs(a).max())


def test_float64_graph_model_computes_the_same_network_in_float64(mnist_setup):
    model = mnist_setup.model
    copy = float64_model(model)
    assert float64_model(model) is copy  # built once per model
    assert copy.dtype == tf.float64 and copy.layer_names == model.layer_names
    assert copy.smoothing == model.smoothing
    images = np.random.default_rng(0).random((2, *model.image_shape))
    for layer in ("conv1", "conv2"):
        ours = copy(images, [layer])[layer]
        assert ours.dtype == tf.float64
        assert _relative_difference(ours, model(images, [layer])[layer]) < 1e-5
    # float32 tensors are widened, not refused
    assert copy(tf.constant(images, tf.float32), ["conv2"])["conv2"].dtype == tf.float64


def test_float64_keras_model_with_batchnorm_dropout_and_nested_model():
    tf.keras.utils.set_random_seed(0)
    inner = tf.keras.Sequential([tf.keras.Input((8, 8, 4)), tf.keras.layers.Conv2D(4, 3, padding="same", name="inner_conv"),
                                 tf.keras.layers.ReLU(name="inner_relu")], name="block")
    inputs = tf.keras.Input((8, 8, 3))
    x = tf.keras.layers.Conv2D(4, 3, activation="relu", name="conv")(inputs)
    x = tf.keras.layers.BatchNormalization(name="bn")(x)
    x = tf.keras.layers.ZeroPadding2D(1)(x)
    x = inner(x)
    x = tf.keras.layers.MaxPooling2D(name="pool")(x)
    x = tf.keras.layers.Dropout(0.5)(tf.keras.layers.Flatten()(x))
    outputs = tf.keras.layers.Dense(3, name="logits")(x)
    model = KerasModel(tf.keras.Model(inputs, outputs), image_value_range=(0, 255))
    for base in (model, smooth_model(model)):
        copy = float64_model(base)
        assert copy.dtype == tf.float64 and copy.image_value_range == base.image_value_range
        images = np.random.default_rng(1).random((2, 8, 8, 3))
        ours = copy(images, ["logits"])["logits"]
        assert ours.dtype == tf.float64
        assert _relative_difference(ours, base(images, ["logits"])["logits"]) < 1e-5
        assert {w.dtype for layer in copy.keras_model.layers for w in layer.weights} == {"float64"}


def test_float64_model_refuses_what_it_cannot_copy():
    with pytest.raises(TypeError, match="cannot copy a str"):
        float64_model("mnist_small")
    with pytest.raises(ValueError, match="ResizeBilinear.*always output float32"):
        float64_model(load_shipped("srnet_small"))


@pytest.mark.parametrize("make", [lambda: P.image(8, batch=2, fft=False), lambda: P.image(8, batch=2)],
                         ids=["pixel", "fourier+decorrelation"])
def test_float64_param_is_the_same_map_in_float64(make):
    param = make()
    copy = Float64Param(param)
    assert [v.dtype for v in copy.variables] == [tf.float64] * len(param.variables)
    assert copy().dtype == tf.float64
    assert _relative_difference(copy(), param()) < 1e-6
    values = [np.asarray(v.numpy()) * 0.5 for v in param.variables]
    copy.assign(values)  # assigned in float64, not rounded to float32
    assert copy.variables[0].numpy().dtype == np.float64


def test_float64_param_refuses_a_map_with_float32_constants():
    with pytest.raises(ValueError, match="does not compute in float64"):
        Float64Param(P.lowres_tensor((1, 8, 8, 3), (1, 4, 4, 3)))


def test_float64_render_converges_past_float32_and_inverts_to_the_target(mnist_setup):
    model, aggregation, weight = mnist_setup.model, mnist_setup.aggregation, mnist_setup.prior_weight
    target = np.zeros((1, 32))
    target[0, [3, 7, 19]] = [1.0, 0.5, 0.25]

    def objective():
        return obj.feature_objective("conv2", target, 1, aggregation) - weight * obj.params_L2()

    param = P.image(28, batch=1, channels=1, fft=False, seed=0)
    first = render_vis(model, objective(), param, transforms=[], thresholds=(100,), converge=1e-3,
                       max_lbfgs_steps=300, progress=False, relu_gradient_override=False)
    assert first.residual[0] <= 1e-3
    param64 = Float64Param(param)
    refined = render_vis(float64_model(model), objective(), param64, transforms=[], thresholds=(0,), converge=1e-8,
                         max_lbfgs_steps=1500, progress=False)
    assert refined.params[0].dtype == np.float64 and refined.converged[0]
    assert refined.residual[0] <= 1e-8 < first.residual[0] * 1e-3
    f, jac = ifv.feature_jacobian(float64_model(model), "conv2", refined.params, param64, aggregation)
    f32, jac32 = ifv.feature_jacobian(model, "conv2", refined.params, param, aggregation)
    assert f.dtype == jac.dtype == np.float64 and jac32.dtype == np.float32
    assert _relative_difference(jac, jac32) < 1e-4
    answer = ifv.invert(float64_model(model), "conv2", refined.params, param=param64, aggregation=aggregation,
                        prior=obj.params_L2())
    live = ~answer.dead_features[0]
    assert live[[3, 7, 19]].all()
    assert metrics.objective_angle_deg(answer.target[0], target[0] * live, 1) < 1e-2
    # its error bars are floored at float64's rounding (never above float32's floor)
    grads = ifv.prior_gradients(float64_model(model), obj.params_L2(), refined.params, param64)
    floored32 = ifv.solve(f, jac, 1, prior_grads=grads, method="anchored")
    assert np.nanmax(answer.sensitivity / floored32.sensitivity) <= 1 + 1e-9
    # the residual is the equation's own (from the QR factor of [J^T | g]), about the render's ~1e-8;
    # from the Gram matrices alone (`GramStatistics` without root) it is resolved only to ~1e-7 (`gram_norm`)
    stats = ifv.gram_statistics(jac, grads, dg.EQUATION_PRECISION_FLOAT64)
    gram_only = ifv.solve_gram(f, dataclasses.replace(stats, root=None), 1, method="anchored")
    assert 0 < answer.residual[0] < 3e-8 < gram_only.residual[0]


def test_experiment_continues_in_float64_and_records_both_residuals(tmp_path):
    model = load_shipped("mnist_small")
    config = ex.ExperimentConfig(layer="conv2", n_hoyer=2, batch_size=2, adam_steps=60, lbfgs_steps=0, converge=1e-2,
                                 max_lbfgs_steps=800, smooth=True, prior_weight=1e-4, prior_relative=True,
                                 float64_converge=1e-7)
    records = ex.run_experiment(model, config, tmp_path, progress=False)
    for record in records:
        assert record["render_residual"] <= 1e-7 < record["render_residual_float32"] <= 1e-2
    saved = ex.load_realizations(tmp_path)
    assert saved["param_0"].dtype == np.float64
    assert ex.equation_precision(config) == np.finfo(np.float64).eps
    assert ex.equation_precision(dataclasses.replace(config, float64_converge=None)) == np.finfo(np.float32).eps
    assert json.loads((tmp_path / "settings.json").read_text())["config"]["float64_converge"] == 1e-7


@pytest.mark.parametrize("changes, message", [
    (dict(float64_converge=-1.0), "float64_converge must be a relative tolerance > 0"),
    (dict(float64_converge=1e-8, converge=None), "needs converge"),
    (dict(float64_converge=1e-8, converge=1e-3, per_sample_lbfgs=False), "per-sample L-BFGS"),
])
def test_experiment_refuses_bad_float64_settings(changes, message):
    config = ex.ExperimentConfig(layer="conv2", **changes)
    with pytest.raises(ValueError, match=message):
        config.validate(load_shipped("mnist_small"))


def test_cli_render_float64_then_invert_float64(tmp_path, capsys):
    from lucid_ifv.cli import main

    out = tmp_path / "r"
    args = ["--model", "mnist_small", "--smooth", "--param", "pixel", "--no-decorrelate"]
    assert main(["render", *args, "--batch", "1", "--adam", "60", "--lbfgs", "0", "--converge", "1e-2",
                 "--max-lbfgs", "1500", "--float64-converge", "1e-7", "--out", str(out)]) == 0
    saved = np.load(out / "realization.npz")
    assert saved["images"].dtype == saved["param_0"].dtype == np.float64
    residuals, printed = [], []
    for extra in (["--float64"], ["--float32"], []):
        capsys.readouterr()
        assert main(["invert", *args, "--images", str(out / "realization.npz"), *extra]) == 0
        printed.append(capsys.readouterr().out)
        line = json.loads(next(s for s in printed[-1].splitlines() if s.startswith("{")))
        assert line["verdict"] == "identified"
        residuals.append(line["residual"])
    # the float64 inversion resolves the render's float64 stationarity (~1e-8); float32 Jacobians of the
    # same images hold the equation only to their rounding
    assert residuals[0] < 3e-8 < residuals[1] < 1e-5
    # without a flag, invert is as precise as the images: float64 arrays in, float64 inversion, said so
    assert residuals[2] == residuals[0] and "inverting in float64" in printed[2]
    assert "inverting in float64" not in printed[0] + printed[1]


def test_cli_refuses_float64_converge_without_converge(capsys):
    from lucid_ifv.cli import main

    assert main(["render", "--model", "mnist_small", "--smooth", "--converge", "off", "--float64-converge", "1e-8",
                 "--out", "x"]) != 0
    assert "--float64-converge continues converged realizations" in capsys.readouterr().err
