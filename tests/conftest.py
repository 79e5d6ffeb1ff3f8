"""Shared fixtures: Lucid (the real 0.3.10, for parity tests) and tiny Keras models."""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
import types

import numpy as np
import pytest
import tensorflow as tf

REQUIRE_LUCID = os.environ.get("LUCID_IFV_REQUIRE_LUCID") == "1" or os.environ.get("CI") == "true"


def _import_lucid(module: str):
    """Import a Lucid module; fail (CI) or skip (dev) when Lucid is not installed."""
    if "tensorflow.contrib" not in sys.modules:  # Lucid's param package imports tf.contrib
        contrib = types.ModuleType("tensorflow.contrib")
        contrib.slim = types.ModuleType("tensorflow.contrib.slim")
        sys.modules["tensorflow.contrib"] = contrib
        sys.modules["tensorflow.contrib.slim"] = contrib.slim
    try:
        return importlib.import_module(module)
    except ImportError as err:
        if REQUIRE_LUCID:
            pytest.fail(f"Lucid 0.3.10 is required for parity tests ({err}); run `make test`")
        pytest.skip(f"Lucid not installed: {err}")


@pytest.fixture(scope="session")
def lucid_objectives():
    return _import_lucid("lucid.optvis.objectives")


@pytest.fixture(scope="session")
def lucid_param():
    for name in ("py_func", "get_default_graph"):  # TF1 names Lucid's clamp gradient override uses
        if not hasattr(tf, name):
            setattr(tf, name, getattr(tf.compat.v1, name))
    spatial = _import_lucid("lucid.optvis.param.spatial")
    color = _import_lucid("lucid.optvis.param.color")
    return types.SimpleNamespace(spatial=spatial, color=color)


def experiment_script(name: str):
    """``experiments/<name>.py`` loaded as a module (registered in ``sys.modules`` as `name`)."""
    from pathlib import Path

    spec = importlib.util.spec_from_file_location(name, Path(__file__).resolve().parents[1] / "experiments" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def converged_small_experiment(model, out):
    """A tiny smooth, converged experiment on ``model``'s conv2 (3 Hoyer targets) -> its records."""
    from lucid_ifv import experiment as ex

    config = ex.ExperimentConfig(layer="conv2", n_hoyer=3, batch_size=3, fft=False, decorrelate=False,
                                 adam_steps=100, lbfgs_steps=0, prior_weight=1e-3, prior_relative=True,
                                 smooth=True, converge=1e-3, max_lbfgs_steps=200, float64_converge=None)
    return ex.run_experiment(model, config, out, progress=False)


def small_convnet(seed=0, input_shape=(16, 16, 3)):
    """A tiny conv net whose `conv2` channels are linear (never dead): conv1 (relu, 8) ->
    conv2 (linear, 6) -> relu -> global average pool -> dense `logits` (4)."""
    tf.keras.utils.set_random_seed(seed)
    inp = tf.keras.Input(input_shape)
    x = tf.keras.layers.Conv2D(8, 3, activation="relu", name="conv1",
                               bias_initializer=tf.keras.initializers.Constant(0.1))(inp)
    x = tf.keras.layers.Conv2D(6, 3, name="conv2")(x)
    x = tf.keras.layers.ReLU(name="conv2_relu")(x)
    x = tf.keras.layers.GlobalAveragePooling2D(name="pool")(x)
    x = tf.keras.layers.Dense(4, name="logits")(x)
    return tf.keras.Model(inp, x, name="small_convnet")


@pytest.fixture(scope="session")
def small_model():
    from lucid_ifv.model import KerasModel

    return KerasModel(small_convnet())


def softmax_model(k=6, dead=0, seed=0):
    from lucid_ifv.model import KerasModel

    """8x8 grey input -> dense logits -> softmax: every response sums to 1 (J^T 1 = 0) and
    feature ``dead`` never fires (zero weights, bias -30), so e_dead and 1/sqrt(k) are trivial."""
    rng = np.random.default_rng(seed)
    W = rng.normal(size=(k, 64)) * 0.3
    b = np.zeros(k)
    W[dead], b[dead] = 0.0, -30.0
    inp = tf.keras.Input((8, 8, 1))
    logits = tf.keras.layers.Dense(k, name="logits")(tf.keras.layers.Flatten()(inp))
    model = tf.keras.Model(inp, tf.keras.layers.Softmax(name="softmax")(logits))
    model.get_layer("logits").set_weights([W.T.astype(np.float32), b.astype(np.float32)])
    return KerasModel(model)
