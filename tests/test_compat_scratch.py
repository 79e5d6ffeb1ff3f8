"""lucid_ifv.compat.scratch (Lucid's ``lucid.scratch``: ``web.svelte``, ``parameter_editor``,
``rl_util``) and Lucid's other zoo models (``modelzoo.nets_factory``, ``vision_models.*_slim``,
``*_caffe``, ...), compared with Lucid 0.3.10's own code where it runs without a session.

The zoo metadata ships as data (``lucid_ifv/compat/modelzoo/lucid_zoo.json``); it was written
from Lucid's classes by running this file as a script::

    python tests/test_compat_scratch.py --write-zoo-json
"""

from __future__ import annotations

import copy
import functools
import importlib
import importlib.util
import json
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

ROOT = Path(__file__).resolve().parents[1]
ZOO_JSON = ROOT / "lucid_ifv" / "compat" / "modelzoo" / "lucid_zoo.json"


# -- Lucid's own modules (they import IPython, filelock, cachetools and tf.gfile at import) ---------


def _stub_lucid_imports() -> dict:
    """Stand-ins for the modules Lucid's ``lucid.misc.io`` imports at import time but that
    are not installed here (IPython, filelock, cachetools) and TF1's ``tf.gfile``; returns
    what was replaced, for `_restore`."""
    ipython, display = types.ModuleType("IPython"), types.ModuleType("IPython.display")
    core, magic = types.ModuleType("IPython.core"), types.ModuleType("IPython.core.magic")
    magic.register_cell_magic = lambda f: f
    ipython.display, ipython.core, core.magic = display, core, magic
    filelock = types.ModuleType("filelock")
    filelock.FileLock = object
    cachetools, cache_func = types.ModuleType("cachetools"), types.ModuleType("cachetools.func")
    cache_func.lru_cache = functools.lru_cache
    cachetools.func = cache_func
    future, standard_library = types.ModuleType("future"), types.ModuleType("future.standard_library")
    standard_library.install_aliases = lambda: None
    future.standard_library = standard_library
    contrib, slim = types.ModuleType("tensorflow.contrib"), types.ModuleType("tensorflow.contrib.slim")
    contrib.slim = slim
    stubs = {"IPython": ipython, "IPython.display": display, "IPython.core": core, "IPython.core.magic": magic,
             "filelock": filelock, "cachetools": cachetools, "cachetools.func": cache_func, "future": future,
             "future.standard_library": standard_library, "tensorflow.contrib": contrib,
             "tensorflow.contrib.slim": slim}
    saved = {k: sys.modules.get(k) for k in stubs}
    for name, module in stubs.items():
        if saved[name] is None:
            sys.modules[name] = module
    saved["tf.gfile"] = tf.__dict__.get("gfile")
    if saved["tf.gfile"] is None:
        tf.gfile = tf.io.gfile
    return saved


def _restore(saved: dict) -> None:
    for name, module in saved.items():
        if name == "tf.gfile":
            if module is None:
                del tf.gfile
        elif module is None:
            sys.modules.pop(name, None)


def _import_lucid(module: str, *, required: bool = False):
    """A Lucid module imported with `_stub_lucid_imports` (skip the test without Lucid)."""
    saved = _stub_lucid_imports()
    try:
        return importlib.import_module(module)
    except ImportError as err:
        if required:
            raise
        pytest.skip(f"Lucid not installed: {err}")
    finally:
        _restore(saved)


def _plain(value):
    """JSON form of a Lucid class attribute (NumPy arrays -> lists, tuples -> lists)."""
    if isinstance(value, np.ndarray):
        return [float(v) for v in value.tolist()]
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def lucid_zoo_records(tag_order: dict | None = None) -> list[dict]:
    """Lucid's ``nets_factory.models_map`` as JSON records: every zoo class's metadata.

    `tag_order`: layer name -> tags in Lucid's source order (Lucid keeps tags as a set)."""
    vision_models = _import_lucid("lucid.modelzoo.vision_models")
    nets_factory = _import_lucid("lucid.modelzoo.nets_factory")
    vision_base = _import_lucid("lucid.modelzoo.vision_base")
    records = []
    for name, cls in sorted(nets_factory.models_map.items()):
        parent = cls.__mro__[1]
        layers = []
        for layer in cls.layers or ():
            tags = (tag_order or {}).get((name, layer.name)) or sorted(layer.tags)
            assert set(tags) == set(layer.tags)
            layers.append({"name": layer.name, "depth": int(layer.depth), "tags": list(tags)})
        doc = " ".join((cls.__dict__.get("__doc__") or "").split())
        records.append({
            "name": name,
            "lucid_module": cls.__module__,
            "base": None if parent is vision_base.Model else parent.__name__,
            "doc": doc,
            "model_path": cls.model_path,
            "labels_path": getattr(cls, "labels_path", None),
            "synsets_path": getattr(cls, "synsets_path", None),
            "dataset": getattr(cls, "dataset", None),
            "model_name": cls.model_name,
            "image_shape": _plain(cls.image_shape),
            "image_value_range": _plain(cls.image_value_range),
            "input_name": cls.input_name,
            "is_BGR": bool(getattr(cls, "is_BGR", False)),
            "layers": layers,
        })
    assert set(nets_factory.models_map) == set(vision_models.__all__) - {"Model"}
    return records


@pytest.fixture
def lucid_tf1(monkeypatch):
    """TF1 names Lucid's session code uses, as aliases of ``tf.compat.v1`` (restored after)."""
    for name in ("Session", "placeholder", "placeholder_with_default", "import_graph_def", "get_default_graph"):
        if not hasattr(tf, name):
            monkeypatch.setattr(tf, name, getattr(tf.compat.v1, name), raising=False)


def _lucid_rl_util():
    """Lucid's ``rl_util`` submodules (its package ``__init__`` needs a running IPython)."""
    base = Path(_import_lucid("lucid.scratch").__file__).parent / "rl_util"
    _import_lucid("lucid.optvis.render")
    _import_lucid("lucid.misc.io.collapse_channels")
    _import_lucid("lucid.misc.channel_reducer")
    if "lucid_rl_util_ref" not in sys.modules:
        package = types.ModuleType("lucid_rl_util_ref")
        package.__path__ = [str(base)]
        sys.modules["lucid_rl_util_ref"] = package
        saved = _stub_lucid_imports()
        try:
            for name in ("attribution", "util", "nmf"):
                spec = importlib.util.spec_from_file_location(f"lucid_rl_util_ref.{name}", base / f"{name}.py")
                module = importlib.util.module_from_spec(spec)
                sys.modules[spec.name] = module
                spec.loader.exec_module(module)
                setattr(package, name, module)
        finally:
            _restore(saved)
    return sys.modules["lucid_rl_util_ref"]


# -- Lucid's other zoo models and nets_factory -----------------------------------------------------


def test_zoo_metadata_matches_lucids_classes():
    """Every class of Lucid's ``nets_factory.models_map``: the shipped JSON and the compat
    classes carry Lucid's metadata (layer tags compared as sets: Lucid keeps them as sets)."""
    import lucid_ifv.compat.modelzoo.nets_factory as nets
    import lucid_ifv.compat.modelzoo.vision_models as models

    lucid_nets = _import_lucid("lucid.modelzoo.nets_factory")
    records = lucid_zoo_records()
    shipped = json.loads(ZOO_JSON.read_text())["models"]
    for ours, theirs in zip(shipped, records, strict=True):
        assert {**ours, "layers": None} == {**theirs, "layers": None}
        assert [(l["name"], l["depth"], set(l["tags"])) for l in ours["layers"]] == \
            [(l["name"], l["depth"], set(l["tags"])) for l in theirs["layers"]]
    assert list(nets.models_map) == list(lucid_nets.models_map) and len(nets.models_map) == 31
    for name, lucid_cls in lucid_nets.models_map.items():
        cls = nets.models_map[name]
        assert cls is getattr(models, name) and issubclass(cls, models.Model) and name in models.__all__
        assert cls.model_path == lucid_cls.model_path and cls.input_name == lucid_cls.input_name
        assert cls.labels_path == lucid_cls.labels_path and cls.dataset == getattr(lucid_cls, "dataset", None)
        assert cls.synsets_path == getattr(lucid_cls, "synsets_path", None)
        assert list(cls.image_shape) == list(lucid_cls.image_shape)
        for ours_v, lucid_v in zip(cls.image_value_range, lucid_cls.image_value_range, strict=True):
            np.testing.assert_array_equal(ours_v, lucid_v)
        assert cls.is_BGR == getattr(lucid_cls, "is_BGR", False)
        assert [(l.name, l.depth, set(l.tags)) for l in cls.layers] == \
            [(l.name, l.depth, l.tags) for l in lucid_cls.layers]
        assert issubclass(cls, models.InceptionV1) == issubclass(lucid_cls, lucid_nets.vision_models.InceptionV1)
    assert models.InceptionV4_slim.layers[-1].name == "InceptionV4/Logits/Predictions"


def test_get_model_and_its_error_match_lucids():
    import lucid_ifv.compat.modelzoo.nets_factory as nets

    lucid_nets = _import_lucid("lucid.modelzoo.nets_factory")
    model = nets.get_model("ResnetV2_50_slim")
    assert type(model).__name__ == "ResnetV2_50_slim" and model.image_value_range == (-1.0, 1.0)
    assert not model.is_loaded and model.layer("resnet_v2_50/predictions/Softmax").depth == 1001
    with pytest.raises(ValueError) as ours:
        nets.get_model("Inception_")
    with pytest.raises(ValueError) as theirs:
        lucid_nets.get_model("Inception_")
    assert str(ours.value) == str(theirs.value)


def test_zoo_graphs_are_downloads_and_fail_offline_naming_the_url(tmp_path, monkeypatch):
    import socket

    import lucid_ifv.compat.modelzoo.vision_models as models
    from modelzoo.fetch import DownloadError

    def no_network(*args, **kwargs):
        raise socket.gaierror("offline (test)")

    monkeypatch.setattr(socket, "getaddrinfo", no_network)
    for cls in (models.InceptionV4_slim, models.VGG16_caffe):
        model = cls(cache_dir=tmp_path, progress=False)
        with pytest.raises(DownloadError) as err:
            model.load_graphdef()
        url = cls.model_path.replace("gs://", "https://storage.googleapis.com/")
        assert url in str(err.value) and not model.is_loaded


def _input_graph(path, input_name):
    """A Lucid-format-less graph: Placeholder `input_name` -> Identity ``out`` and Relu ``r``."""
    from modelzoo import lucid_format

    with tf.Graph().as_default() as g:
        x = tf.compat.v1.placeholder(tf.float32, (None, None, None, 3), name=input_name)
        tf.identity(x, name="out")
        tf.nn.relu(x, name="r")
    lucid_format.write_graph_def(g.as_graph_def(), path)
    return path


def test_bgr_per_channel_input_is_lucids(tmp_path):
    """Lucid flips a BGR model's [0, 1] RGB input and maps each channel to its range; the
    loaded graph does the same, also in the redirected-ReLU variant ``render_vis`` uses."""
    import lucid_ifv.compat.modelzoo.vision_models as models
    from lucid_ifv.redirected_relu import redirected_model

    lucid_cls = _import_lucid("lucid.modelzoo.vision_models").VGG16_caffe
    pb = _input_graph(tmp_path / "vgg.pb", models.VGG16_caffe.input_name)
    model = models.VGG16_caffe(model_path=str(pb), layers=["out", "r"], image_shape=(8, 8, 3))
    assert model.image_value_range == (0.0, 1.0) and model.is_BGR
    x = np.random.default_rng(0).random((2, 8, 8, 3)).astype(np.float32)
    lo, hi = lucid_cls.image_value_range
    expected = lo + x[..., ::-1] * (hi - lo)  # Lucid's create_input
    np.testing.assert_allclose(model(x, ["out"])["out"], expected, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(redirected_model(model)(x, ["out"])["out"], expected, rtol=1e-5, atol=1e-4)
    assert model.graph_def is model.graph_model.graph_def
    scalar = models.InceptionV4_slim(model_path=str(_input_graph(tmp_path / "v4.pb", "input")), layers=["out"],
                                     image_shape=(8, 8, 3))
    np.testing.assert_allclose(scalar(x, ["out"])["out"], -1 + 2 * x, rtol=1e-5, atol=1e-5)


# -- parameter_editor ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_inception(tmp_path_factory):
    import fake_inception as fi

    import lucid_ifv.compat.modelzoo.vision_models as models

    pb = fi.write(tmp_path_factory.mktemp("inception") / "InceptionV1.pb")
    return lambda: models.InceptionV1(model_path=str(pb), image_shape=(64, 64, 3),
                                      layers=[l.name for l in models.InceptionV1.layers])


def test_parameter_editor_reads_as_lucids(small_inception):
    from lucid_ifv.compat.scratch.parameter_editor import ParameterEditor

    lucid_editor = _import_lucid("lucid.scratch.parameter_editor").ParameterEditor
    ours_gd, lucid_gd = (copy.deepcopy(small_inception().graph_def) for _ in range(2))
    ours, theirs = ParameterEditor(ours_gd), lucid_editor(lucid_gd)
    for key in ["conv2d0_w", ("conv2d0_w", slice(None), 1, slice(None), 0), ("mixed3a_1x1_b", 2)]:
        np.testing.assert_array_equal(ours[key], theirs[key])
    assert ours_gd.node[-1] == lucid_gd.node[-1] and ours_gd.node[-1].name == "lucid_is_edited"
    ParameterEditor(ours_gd)  # marks once
    assert [n.name for n in ours_gd.node].count("lucid_is_edited") == 1


def test_parameter_editor_edits_loaded_models(small_inception):
    """Edits of ``model.graph_def`` change what the model computes (it is re-imported), in
    copies independently, and drop the cached redirected-ReLU variant."""
    from lucid_ifv.compat.scratch.parameter_editor import ParameterEditor
    from lucid_ifv.redirected_relu import redirected_model

    model = small_inception()
    x = np.random.default_rng(0).random((2, 64, 64, 3)).astype(np.float32)
    before = model(x, ["conv2d0"])["conv2d0"].numpy()
    edited = copy.deepcopy(model)
    assert edited.graph_def is not model.graph_def
    editor = ParameterEditor(edited.graph_def)
    editor["conv2d0_w", :, :, :, 0] *= -1
    after = edited(x, ["conv2d0_pre_relu"])["conv2d0_pre_relu"].numpy()
    original = model(x, ["conv2d0_pre_relu"])["conv2d0_pre_relu"].numpy()
    bias = editor["conv2d0_b"]
    np.testing.assert_allclose(after[..., 0] - bias[0], -(original[..., 0] - bias[0]), rtol=1e-4, atol=1e-4)
    np.testing.assert_array_equal(after[..., 1:], original[..., 1:])
    np.testing.assert_array_equal(model(x, ["conv2d0"])["conv2d0"], before)

    from lucid_ifv import render

    redirected_model(model)  # what render_vis(relu_gradient_override=True) builds and caches
    assert "_redirected" in model.__dict__
    render._RENDERS[("stale",)] = None  # compiled renders know the model by identity
    ParameterEditor(model)["conv2d0_b"] = np.full(bias.shape, 5.0, bias.dtype)
    assert "_redirected" not in model.__dict__ and not render._RENDERS
    shifted = model(x, ["conv2d0_pre_relu"])["conv2d0_pre_relu"].numpy()
    np.testing.assert_allclose(shifted, original - bias + 5.0, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(redirected_model(model)(x, ["conv2d0_pre_relu"])["conv2d0_pre_relu"], shifted,
                               rtol=1e-6)
    with pytest.raises(ValueError, match="shape"):
        ParameterEditor(model)["conv2d0_b"] = np.zeros(3)
    with pytest.raises(KeyError, match="not a constant"):
        ParameterEditor(model.graph_def)["no_such_constant"]


def test_parameter_editor_on_a_shipped_graph_model():
    import lucid_ifv.compat.modelzoo.vision_models as models
    from lucid_ifv.compat.scratch.parameter_editor import ParameterEditor

    model = models.mnist_small()
    x = np.random.default_rng(1).random((3, 28, 28, 1)).astype(np.float32)
    layer = model.layer_names[-1]
    before = model(x, [layer])[layer].numpy()
    editor = ParameterEditor(model.graph_def)
    name = next(n for n in editor.nodes if editor[n].ndim == 4)
    editor[name] = np.zeros_like(editor[name])
    assert not np.allclose(model(x, [layer])[layer], before)


# -- web.svelte --------------------------------------------------------------------------------


_COMPONENT_JS = """var Hello = (function () { 'use strict';
  function Hello(options) { this.root = options.target; this.root.textContent = options.data.msg + " $name"; }
  return Hello;
}());
"""


def test_svelte_component_matches_lucids_html(tmp_path, monkeypatch):
    from lucid_ifv.compat.misc.io import SHOW_DIR_ENV
    from lucid_ifv.compat.scratch.web import svelte

    js = tmp_path / "Hello.js"
    js.write_text(_COMPONENT_JS)
    monkeypatch.setenv(SHOW_DIR_ENV, str(tmp_path / "show"))
    path = svelte.SvelteComponent("Hello", str(js))({"msg": "hi", "n": np.int64(3)})
    html = Path(path).read_text()
    [widget_id] = set(__import__("re").findall(r"Hello_[0-9a-f_]{36}", html))
    assert _COMPONENT_JS in html and f"document.querySelector('#{widget_id}')" in html
    assert 'data: {"msg": "hi", "n": 3}' in html and "new Hello({" in html

    lucid_svelte = _import_lucid("lucid.scratch.web.svelte")
    shown = []
    display = types.SimpleNamespace(display=shown.append, HTML=lambda h: h)
    monkeypatch.setattr(lucid_svelte._display_html.__globals__["IPython"], "display", display, raising=False)
    lucid_svelte.SvelteComponent("Hello", str(js))({"msg": "hi", "n": 3})
    [lucid_html] = shown
    [lucid_id] = set(__import__("re").findall(r"Hello_[0-9a-f_]{36}", lucid_html))
    # Lucid's chained replace also rewrites "$name" inside the component's code; ours does not
    assert html.replace(widget_id, "ID") == lucid_html.replace(lucid_id, "ID").replace('" Hello"', '" $name"')


def _fake_svelte_cli(tmp_path, monkeypatch, body):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    cli = bin_dir / "svelte"
    cli.write_text(f"#!/bin/sh\n{body}\n")
    cli.chmod(0o755)
    monkeypatch.setenv("PATH", str(bin_dir))


def test_svelte_html_needs_the_compiler(tmp_path, monkeypatch):
    from lucid_ifv.compat.scratch.web import svelte

    source = tmp_path / "Hello.html"
    source.write_text("<p>{{msg}}</p>")
    monkeypatch.setenv("PATH", str(tmp_path))  # no svelte here
    with pytest.raises(RuntimeError, match=r"npm install -g svelte@2.*compiled \.js"):
        svelte.SvelteComponent("Hello", str(source))
    with pytest.raises(ValueError, match="neither"):
        svelte.SvelteComponent("Hello", str(tmp_path / "Hello.txt"))
    _fake_svelte_cli(tmp_path, monkeypatch, 'echo "syntax error in $4" >&2; exit 3')
    with pytest.raises(RuntimeError, match="(?s)exit 3.*syntax error in"):
        svelte.SvelteComponent("Hello", str(source))


def test_svelte_cell_magic_with_a_compiler(tmp_path, monkeypatch):
    """``%%html_define_svelte`` registers with a running IPython only, compiles the cell and
    binds the component in the module, as Lucid's."""
    from lucid_ifv.compat.misc.io import SHOW_DIR_ENV
    from lucid_ifv.compat.scratch.web import svelte

    assert not svelte._register_magic()  # IPython is not running here
    registered = []
    ipython = types.ModuleType("IPython")
    ipython.get_ipython = lambda: types.SimpleNamespace(register_magic_function=lambda *a: registered.append(a))
    monkeypatch.setitem(sys.modules, "IPython", ipython)
    assert svelte._register_magic() and registered == [(svelte.html_define_svelte, "cell", "html_define_svelte")]
    monkeypatch.delitem(sys.modules, "IPython")

    # the fake compiler names the IIFE after the file, as `svelte compile --format iife` does
    _fake_svelte_cli(tmp_path, monkeypatch, 'n=${4##*/}; echo "var ${n%.html} = function (o) {};"')
    monkeypatch.setenv(SHOW_DIR_ENV, str(tmp_path / "show"))
    with pytest.raises(AttributeError, match="%%html_define_svelte"):
        svelte.Greeting  # noqa: B018
    monkeypatch.setattr(svelte, "Greeting", None, raising=False)  # removed again after the test
    svelte.html_define_svelte("Greeting", "<p>{{msg}}</p>")
    html = Path(svelte.Greeting({"msg": "hi"})).read_text()
    assert "var Greeting_" in html and "new Greeting_" in html


# -- rl_util -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def rl_graph():
    """A small RL-style frozen graph: conv/relu blocks, a max pool, a linear value head."""
    rng = np.random.default_rng(0)
    with tf.Graph().as_default() as g:
        x = tf.compat.v1.placeholder(tf.float32, (None, None, None, 3), name="input")

        def conv(h, cin, cout, scope):
            w = tf.constant((rng.normal(size=(3, 3, cin, cout)) * 0.4).astype(np.float32), name=f"{scope}/conv2d/kernel")
            b = tf.constant((rng.normal(size=cout) * 0.1).astype(np.float32), name=f"{scope}/conv2d/bias")
            return tf.nn.relu(tf.nn.bias_add(tf.nn.conv2d(h, w, 1, "SAME"), b), name=f"{scope}/Relu")

        h = conv(x, 3, 6, "1a")
        h = tf.nn.max_pool2d(h, 2, 2, "SAME", name="1a/pool")
        h = conv(conv(h, 6, 8, "2a"), 8, 8, "2b")
        pooled = tf.reduce_mean(h, axis=[1, 2], name="pool")
        tf.reshape(tf.matmul(pooled, tf.constant(rng.normal(size=(8, 1)).astype(np.float32))), [-1], name="value")
    return g.as_graph_def()


@pytest.fixture(scope="module")
def rl_models(rl_graph):
    """(lucid-ifv GraphModel, Lucid Model) of `rl_graph`; observations in [0, 1] map to [-1, 2]."""
    from modelzoo.graph import GraphModel
    from modelzoo.lucid_format import Metadata

    meta = {"input_name": "input", "image_shape": [16, 16, 3], "image_value_range": [-1, 2],
            "layers": [{"name": "2b/Relu", "depth": 8}]}
    ours = GraphModel(rl_graph, Metadata.from_dict(meta))
    vision_base = _import_lucid("lucid.modelzoo.vision_base")

    class LucidRL(vision_base.Model):
        model_path = "unused.pb"
        input_name, image_shape, image_value_range = "input", [16, 16, 3], (-1, 2)

    theirs = LucidRL()
    theirs._graph_def = rl_graph
    return ours, theirs


def test_rl_util_attribution_matches_lucids_session_code(rl_models, lucid_tf1):
    """get_acts / get_grad / get_attr (integrated, at an intermediate layer, with
    maxpool_override, act_dir, act_poses), get_var, get_shape, LayerNMF of attributions,
    get_multi_path_attr and the dataset visualizations, vs Lucid's code run in a TF1 graph."""
    import lucid_ifv.compat.scratch.rl_util as ours

    lucid = _lucid_rl_util()
    model, lucid_model = rl_models
    obs = np.random.default_rng(1).random((6, 16, 16, 3)).astype(np.float32)
    for name in ("2b/Relu", "value"):
        np.testing.assert_allclose(ours.get_acts(model, name, obs), lucid.attribution.get_acts(lucid_model, name, obs),
                                   rtol=1e-5, atol=1e-6)
    assert ours.get_shape(model, "2b/Relu") == lucid.util.get_shape(lucid_model, "2b/Relu") == [None, None, None, 8]
    np.testing.assert_array_equal(ours.get_var(model, "2a/conv2d/kernel"),
                                  lucid.util.get_var(lucid_model, "2a/conv2d/kernel"))
    cases = [("value", "2a/Relu", {"integrate_steps": 1}), ("value", "2a/Relu", {"integrate_steps": 4}),
             ("value", None, {"integrate_steps": 3, "override": "maxpool"}),
             ("2b/Relu", "1a/Relu", {"act_dir": np.arange(8.0), "act_poses": np.array([[1, 2]] * 6)})]
    for layer, prev, kwargs in cases:
        mine, theirs = dict(kwargs), dict(kwargs)
        if kwargs.get("override"):
            mine["override"], theirs["override"] = ours.maxpool_override(), lucid.attribution.maxpool_override()
        np.testing.assert_allclose(ours.get_attr(model, layer, prev, obs, **mine),
                                   lucid.attribution.get_attr(lucid_model, layer, prev, obs, **theirs),
                                   rtol=1e-4, atol=1e-6, err_msg=f"{layer} {prev} {kwargs}")
    np.testing.assert_allclose(ours.get_grad(model, "value", obs), lucid.attribution.get_grad(lucid_model, "value", obs),
                               rtol=1e-4, atol=1e-6)
    smooth = ours.get_grad(model, "value", obs, override=ours.maxpool_override())
    assert not np.allclose(smooth, ours.get_grad(model, "value", obs))  # the override is honoured

    opts = {"integrate_steps": 3}
    nmf = ours.LayerNMF(model, "2a/Relu", obs, features=3, attr_layer_name="value", attr_opts=opts)
    lucid_nmf = lucid.nmf.LayerNMF(lucid_model, "2a/Relu", obs, features=3, attr_layer_name="value", attr_opts=opts)
    np.testing.assert_allclose(nmf.channel_dirs, lucid_nmf.channel_dirs, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(nmf.acts_reduced, lucid_nmf.acts_reduced, rtol=1e-4, atol=1e-4)
    for feature in range(3):
        for f, kw in (("vis_dataset_thumbnail", {"num_mult": 2, "expand_mult": 2}),
                      ("vis_dataset", {"subdiv_mult": 2, "expand_mult": 1})):
            (img, idx), (lucid_img, lucid_idx) = getattr(nmf, f)(feature, **kw), getattr(lucid_nmf, f)(feature, **kw)
            np.testing.assert_allclose(img, lucid_img, rtol=1e-4, atol=1e-5)
            assert idx == lucid_idx
    np.random.seed(3)
    multi = ours.get_multi_path_attr(model, "value", "2a/Relu", obs, nmf, max_paths=3, integrate_steps=3)
    np.random.seed(3)
    lucid_multi = lucid.attribution.get_multi_path_attr(lucid_model, "value", "2a/Relu", obs, lucid_nmf, max_paths=3,
                                                        integrate_steps=3)
    np.testing.assert_allclose(multi, lucid_multi, rtol=1e-4, atol=1e-6)


def test_rl_util_numpy_helpers_match_lucids():
    import lucid_ifv.compat.scratch.rl_util as ours

    lucid = _lucid_rl_util()
    rng = np.random.default_rng(2)
    img = rng.random((2, 5, 7, 3))
    np.testing.assert_array_equal(ours.zoom_to(img, 20), lucid.util.zoom_to(img, 20))
    np.testing.assert_array_equal(ours.concatenate_horizontally(img), lucid.util.concatenate_horizontally(img))
    acts = rng.random((4, 3, 5))
    for warp in (True, False):
        np.testing.assert_allclose(ours.channels_to_rgb(acts, warp), lucid.util.channels_to_rgb(acts, warp))
        for angle in (0, 37.5, 180, 359, 725):
            np.testing.assert_allclose(ours.hue_to_rgb(angle, warp), lucid.util.hue_to_rgb(angle, warp))
    for args in ((15,), (6, 1), (7, np.inf, lambda n: 1 / (1 + n), False)):
        np.testing.assert_array_equal(ours.norm_filter(*args), lucid.util.norm_filter(*args))
    np.testing.assert_array_equal(ours.brightness_to_opacity(img), lucid.util.brightness_to_opacity(img))
    x = rng.random((5, 4, 6))
    for kwargs in ({}, {"max_rep": 2, "max_rep_strict": True}, {"max_rep": 1, "max_rep_strict": False}):
        for axes in ([0], [1, 2]):
            for a, b in zip(ours.argmax_nd(x, axes, **kwargs), lucid.nmf.argmax_nd(x, axes, **kwargs), strict=True):
                np.testing.assert_array_equal(a, b)
    rgba = rng.random((3, 6, 6, 4))
    rgba[0, ..., 3] = 0
    for kwargs in ({}, {"keep_zeros": True, "opaque_frac": 0.3}):
        np.testing.assert_array_equal(ours.rescale_opacity(rgba, **kwargs), lucid.nmf.rescale_opacity(rgba, **kwargs))
    # Lucid's conv2d is TF1 session code with TF1's `filter=` keyword: run it with those aliases
    tf1 = types.SimpleNamespace(Graph=tf.Graph, Session=tf.compat.v1.Session, tensordot=tf.tensordot,
                                nn=types.SimpleNamespace(conv2d=tf.compat.v1.nn.conv2d))
    lucid_conv2d = types.FunctionType(lucid.util.conv2d.__code__, {**lucid.util.conv2d.__globals__, "tf": tf1})
    np.testing.assert_allclose(ours.conv2d(img, ours.norm_filter(5)), lucid_conv2d(img, lucid.util.norm_filter(5)),
                               rtol=1e-6)


def test_rl_util_on_a_keras_model(small_model):
    """Activations and input gradients work on any lucid-ifv model; feeding an intermediate
    layer needs a frozen graph and says so."""
    import lucid_ifv.compat.scratch.rl_util as ours

    x = np.random.default_rng(0).random((3, 16, 16, 3)).astype(np.float32)
    np.testing.assert_allclose(ours.get_acts(small_model, "conv2", x), small_model(x, ["conv2"])["conv2"], rtol=1e-6)
    grad = ours.get_grad(small_model, "logits", x, integrate_steps=2)
    expected = 0
    for alpha in (0.5, 1.0):  # integrated gradients: the gradient at alpha * x, averaged
        images = tf.constant(x * alpha)
        with tf.GradientTape() as tape:
            tape.watch(images)
            score = tf.reduce_sum(small_model(images, ["logits"])["logits"])
        expected += tape.gradient(score, images).numpy() / 2
    np.testing.assert_allclose(grad, expected, rtol=1e-4, atol=1e-6)
    with pytest.raises(NotImplementedError, match="frozen graph"):
        ours.get_attr(small_model, "logits", "conv2", x)
    with pytest.raises(TypeError, match="frozen graph"):
        ours.get_var(small_model, "conv1")


def test_layer_nmf_vis_traditional_renders_one_image_per_feature(rl_models, monkeypatch):
    import lucid_ifv.compat.optvis.render as render
    import lucid_ifv.compat.scratch.rl_util as ours

    calls = []
    original = render.render_vis

    def short(model, objective, param_f=None, optimizer=None, transforms=None, thresholds=(512,), **kwargs):
        calls.append(thresholds)
        return original(model, objective, param_f, optimizer, transforms, (0,), verbose=False,
                        relu_gradient_override=False)

    monkeypatch.setattr(render, "render_vis", short)
    obs = np.random.default_rng(1).random((5, 16, 16, 3)).astype(np.float32)
    nmf = ours.LayerNMF(rl_models[0], "2b/Relu", obs, features=2)
    assert nmf.channel_dirs.shape == (2, 8) and nmf.acts_reduced.shape == (5, 8, 8, 2)
    images = nmf.vis_traditional()
    assert calls == [(512,)] and images.shape == (2, 64, 64, 3)


def test_joblib_round_trip_and_no_remote_unpickling(tmp_path):
    from lucid_ifv.compat.scratch.rl_util import load_joblib, save_joblib

    pytest.importorskip("joblib")
    value = {"observations": np.arange(6.0).reshape(2, 3), "name": "coinrun"}
    save_joblib(value, str(tmp_path / "d" / "x.jd"))
    loaded = load_joblib(str(tmp_path / "d" / "x.jd"))
    assert loaded["name"] == "coinrun" and np.array_equal(loaded["observations"], value["observations"])
    with open(tmp_path / "d" / "x.jd", "rb") as handle:
        assert load_joblib(handle)["name"] == "coinrun"
    with pytest.raises(ValueError, match="pickles"):
        load_joblib("https://example.com/x.jd")


def test_rl_util_star_import_binds_lucids_names():
    lucid_names = ["np", "tf", "Model", "ChannelReducer", "param", "objectives", "render", "transform", "show",
                   "save", "_image_url", "_display_html", "lucid_svelte", "load_joblib", "save_joblib", "zoom_to",
                   "get_var", "get_shape", "concatenate_horizontally", "hue_to_rgb", "channels_to_rgb", "conv2d",
                   "norm_filter", "brightness_to_opacity", "gradient_override_map", "maxpool_override", "get_acts",
                   "get_grad_or_attr", "get_attr", "get_grad", "get_paths", "get_multi_path_attr", "argmax_nd",
                   "LayerNMF", "rescale_opacity", "all_", "reload"]
    namespace = {}
    exec("from lucid_ifv.compat.scratch.rl_util import *", namespace)
    assert namespace["all_"]() == lucid_names and set(lucid_names) <= set(namespace)
    from lucid_ifv.compat.modelzoo.vision_base import Model

    assert namespace["Model"] is Model and namespace["lucid_svelte"].__name__.endswith("scratch.web.svelte")


def test_notebook_runner_counts_magic_defined_components_as_dependencies(tmp_path):
    """experiments/lucid_notebooks.py: ``lucid_svelte.Name`` of a component only a skipped
    ``%%html_define_svelte Name`` cell defines is a dependency failure, not a library failure."""
    spec = importlib.util.spec_from_file_location("lucid_notebooks_for_scratch", ROOT / "experiments" / "lucid_notebooks.py")
    ln = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = ln
    spec.loader.exec_module(ln)
    sources = ["import lucid.scratch.web.svelte as lucid_svelte", "%%html_define_svelte Widget\n<p>{{x}}</p>",
               "lucid_svelte.Widget({'x': 1})", "lucid_svelte.Other({'x': 1})"]
    cells = [{"cell_type": "code", "metadata": {}, "execution_count": None, "outputs": [], "source": src}
             for src in sources]
    path = tmp_path / "nb.ipynb"
    path.write_text(json.dumps({"cells": cells, "metadata": {}, "nbformat": 4, "nbformat_minor": 0}))
    result = ln.run_notebook(path, model_attrs={}, max_steps=1)
    assert [(c.category, c.status) for c in result] == [(ln.OPTVIS, ln.RAN), (ln.MAGIC, ln.SKIPPED),
                                                        (ln.OPTVIS, ln.DEPENDENCY), (ln.OPTVIS, ln.FAILED)]
    assert "`%%html_define_svelte` cell magic of cell 1" in result[2].reason
    usage = ln.api_usage({"nb.ipynb": result})
    assert "lucid.scratch.web.svelte.Widget" not in usage and not usage["lucid.scratch.web.svelte.Other"]["available"]


def _format_zoo_json(data: dict) -> str:
    """`data` as JSON with one model key, and one layer, per line."""
    def model(record):
        items = []
        for key, value in record.items():
            if key == "layers" and value:
                rows = ",\n".join(f"    {json.dumps(layer)}" for layer in value)
                items.append(f'   "layers": [\n{rows}\n   ]')
            else:
                items.append(f"   {json.dumps(key)}: {json.dumps(value)}")
        return "  {\n" + ",\n".join(items) + "\n  }"

    head = ",\n".join(f" {json.dumps(k)}: {json.dumps(v)}" for k, v in data.items() if k != "models")
    return "{\n" + head + ',\n "models": [\n' + ",\n".join(map(model, data["models"])) + "\n ]\n}\n"


def _write_zoo_json() -> None:
    """Regenerate `ZOO_JSON` from the installed Lucid 0.3.10 (tags in Lucid's source order)."""
    saved = _stub_lucid_imports()
    try:
        vision_base = importlib.import_module("lucid.modelzoo.vision_base")
        assert "lucid.modelzoo.vision_models" not in sys.modules, "run this as a fresh script"
        order = {}
        original = vision_base._layers_from_list_of_dicts

        def recording(model_instance, list_of_dicts):
            for d in list_of_dicts:
                order[(type(model_instance).__name__, d["name"])] = list(d["tags"])
            return original(model_instance, list_of_dicts)

        vision_base._layers_from_list_of_dicts = recording
        try:
            importlib.import_module("lucid.modelzoo.vision_models")
        finally:
            vision_base._layers_from_list_of_dicts = original
        lucid = importlib.import_module("lucid")
    finally:
        _restore(saved)
    for (cls_name, layer), tags in list(order.items()):  # subclasses inherit their parent's layers
        order.setdefault((cls_name, layer), tags)
    records = lucid_zoo_records({**order, **{
        (r, l): t for (c, l), t in order.items() for r in ("InceptionV1_adv_finetuned",) if c == "InceptionV1"}})
    data = {
        "source": f"lucid {getattr(lucid, '__version__', '0.3.10')}: lucid.modelzoo.nets_factory.models_map "
                  "(class attributes; written by `python tests/test_compat_scratch.py --write-zoo-json`)",
        "license": "Apache-2.0 (The Lucid Authors): metadata and docstrings of Lucid's model classes",
        "models": records,
    }
    ZOO_JSON.write_text(_format_zoo_json(data), encoding="utf-8")
    print(f"wrote {ZOO_JSON}: {len(records)} models")


if __name__ == "__main__":
    if sys.argv[1:] == ["--write-zoo-json"]:
        _write_zoo_json()
    else:
        sys.exit("usage: python tests/test_compat_scratch.py --write-zoo-json (tests: run pytest)")
