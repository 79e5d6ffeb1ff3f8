"""experiments/lucid_notebooks.py: the source transform, the cell classifier, the threshold
cap, the runner and the report, on small synthetic notebooks (Lucid's own notebooks are not
needed: CI has no copy of them)."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest
from conftest import experiment_script


@pytest.fixture(scope="module")
def ln():
    return experiment_script("lucid_notebooks")


def notebook(tmp_path, *sources, name="nb.ipynb") -> Path:
    """A notebook with a markdown cell first, then one code cell per source."""
    cells = [{"cell_type": "markdown", "metadata": {}, "source": ["# title"]}]
    cells += [{"cell_type": "code", "metadata": {}, "execution_count": None, "outputs": [],
               "source": src.splitlines(keepends=True)} for src in sources]
    path = tmp_path / name
    path.write_text(json.dumps({"cells": cells, "metadata": {}, "nbformat": 4, "nbformat_minor": 0}))
    return path


def classified(ln, tmp_path, *sources):
    cells = ln.read_cells(notebook(tmp_path, *sources))
    ln.classify(cells)
    return cells


# -- the source transform ---------------------------------------------------------------------------


def test_prefix_swap_in_imports_only(ln):
    src = ("import lucid.optvis.render as render\n"
           "from lucid.misc.io import show, load\n"
           "from lucid.optvis import objectives, param\n"
           "import numpy as np\n"
           "name = 'lucid.optvis.render'  # lucid.optvis\n")
    t = ln.transform(src)
    assert t.swapped == 3 and not t.magic and not t.stripped
    assert t.source.splitlines() == [
        "import lucid_ifv.compat.optvis.render as render",
        "from lucid_ifv.compat.misc.io import show, load",
        "from lucid_ifv.compat.optvis import objectives, param",
        "import numpy as np",
        "name = 'lucid.optvis.render'  # lucid.optvis",
    ]


def test_prefix_swap_keeps_the_bound_name(ln):
    assert ln.transform("import lucid\n").source == "import lucid_ifv.compat as lucid\n"
    # ``import lucid.a.b`` binds ``lucid``; the swapped form still does
    t = ln.transform("import lucid.optvis.param\n")
    assert t.source == "import lucid_ifv.compat.optvis.param; import lucid_ifv.compat as lucid\n"
    assert {"lucid", "lucid_ifv"} <= ln.bound_names(ast.parse(t.source))
    # multi-line imports, imports inside blocks, other packages starting with "lucid"
    t = ln.transform("from lucid.optvis.param import (spatial,\n    color)\nif True:\n    import lucidity\n")
    assert t.source.splitlines()[0] == "from lucid_ifv.compat.optvis.param import spatial, color"
    assert "import lucidity" in t.source and t.swapped == 1


def test_install_pin_and_setup_lines_are_stripped(ln):
    src = ("!pip install --quiet lucid==0.2.3\n"
           "!pip -q install umap-learn>=0.3.7\n"
           "!npm install -g svelte-cli@2.2.0\n"
           "%tensorflow_version 1.x\n"
           "%load_ext autoreload\n"
           "import tensorflow as tf\n"
           "assert tf.__version__.startswith('1')\n"
           "assert x.startswith('1')\n")
    t = ln.transform(src)
    assert [k for k, _ in t.stripped] == ["installation"] * 3 + ["TF1 pin", "IPython set-up", "TF1 pin"]
    assert not t.magic and t.syntax_error is None
    assert t.source.splitlines() == ["pass"] * 5 + ["import tensorflow as tf", "pass", "assert x.startswith('1')"]


def test_stripped_lines_keep_blocks_valid(ln):
    t = ln.transform("try:\n  import lucid\nexcept ImportError:\n  !pip install -q lucid\n")
    assert t.syntax_error is None and not t.magic
    assert t.source == "try:\n  import lucid_ifv.compat as lucid\nexcept ImportError:\n  pass\n"


def test_other_magics_are_kept_as_magic(ln):
    assert ln.transform("x = 1\n%%html\n<b>hi</b>\n").magic == ["%%html", "<b>hi</b>"]
    assert ln.transform("%%html_define_svelte W\n<div/>\n").magic[0] == "%%html_define_svelte W"
    assert ln.transform("out = !curl -s http://x\n").magic == ["out = !curl -s http://x"]
    assert ln.transform("%aimport lucid\n").magic == ["%aimport lucid"]
    assert ln.transform("!ls\nimport os\n").magic == ["!ls"]
    assert ln.transform("ls -lh\n").magic == ["ls -lh"]  # IPython automagic
    assert not ln.transform("ls = 3\nrm(x)\ncat = ls - 1\n").magic


# -- the classifier ---------------------------------------------------------------------------------

SESSION_CELLS = [
    "with tf.Graph().as_default(), tf.Session() as sess:\n  pass",
    "sess = create_session()",
    "t = tf.placeholder(tf.float32, [None, 3])",
    "def f(img):\n  with tf.Session():\n    return T('mixed4a').eval()",
    "tf.global_variables_initializer().run()",
    "vars = tf.get_collection(tf.GraphKeys.TRAINABLE_VARIABLES)",
    "from tensorflow.contrib import slim",
    "train_op = tf.train.AdamOptimizer(0.01).minimize(loss)",
    "def global_step():\n  return tf.train.get_or_create_global_step()",
]


@pytest.mark.parametrize("src", SESSION_CELLS)
def test_session_cells(ln, tmp_path, src):
    [cell] = classified(ln, tmp_path, src)
    assert cell.category == ln.SESSION, cell.reason


def test_optvis_cells(ln, tmp_path):
    cells = classified(
        ln, tmp_path,
        "import lucid.optvis.render as render\nimport tensorflow as tf",
        "optimizer = tf.compat.v1.train.AdamOptimizer(0.05)  # no session: a TF1 optimizer passed to render_vis\n"
        "_ = render.render_vis(model, 'mixed4a_pre_relu:476', optimizer=optimizer)",
        "# tf.Session() and sess.run() only in a comment\nx = 1",
        "url = 'https://example.com/a.png'  # only a string, nothing downloaded",
        "def spritemap(layer):\n  return 'https://example.com/%s.jpeg' % layer",
    )
    assert [c.category for c in cells] == [ln.OPTVIS] * 5, [c.reason for c in cells]


def test_environment_cells(ln, tmp_path):
    cells = classified(
        ln, tmp_path,
        "import numpy as np\nfrom google.colab import files",       # a module that is not installed
        "uploaded = files.upload()",                                  # ... and its name later
        "img = load('https://storage.googleapis.com/x/dog_cat.png')",  # a download
        "snorkel_url = 'https://example.com/snorkel.png'",
        "background = load(snorkel_url)",                             # a download through a name
        "urls = ['https://example.com/a.png', 'https://example.com/b.png']\nimgs = [load(u) for u in urls]",
        "writer = FFMPEG_VideoWriter('a.mp4', (2, 2), 60.0)",
    )
    assert [c.category for c in cells] == [ln.ENV, ln.ENV, ln.ENV, ln.OPTVIS, ln.ENV, ln.ENV, ln.ENV], \
        [c.reason for c in cells]
    assert "google.colab" in cells[0].reason and "`files`" in cells[1].reason


def test_empty_magic_and_python2_cells(ln, tmp_path):
    cells = classified(
        ln, tmp_path,
        "# Licensed under the Apache License\n#\n",
        "",
        "!pip install --quiet lucid==0.0.5\n%tensorflow_version 1.x",
        "%%html\n<style></style>",
        "print 'hello'",
        "ls -lh",
    )
    assert [c.category for c in cells] == [ln.EMPTY, ln.EMPTY, ln.MAGIC, ln.MAGIC, ln.NOT_PY3, ln.MAGIC]
    assert [c.index for c in cells] == [1, 2, 3, 4, 5, 6]  # markdown cell 0 counts


def test_rules_in_order(ln, tmp_path):
    """Magic before Python 3, Python 3 before session, session before environment."""
    cells = classified(
        ln, tmp_path,
        "!ls\nprint 'x'",
        "print 'x'\nsess = create_session()",
        "from google.colab import files\nsess = create_session()",
    )
    assert [c.category for c in cells] == [ln.MAGIC, ln.NOT_PY3, ln.SESSION]


# -- thresholds --------------------------------------------------------------------------------------


@pytest.mark.parametrize("thresholds, max_steps, expected", [
    ((512,), 4, (3,)),
    ((1, 32, 128, 256, 2048), 4, (0, 1, 2, 3, 4)),  # more thresholds than steps: one step each
    ((32, 256, 1024), 4, (1, 2, 3)),
    ((0, 1), 4, (0, 1)),
    (range(10), 4, tuple(range(10))),
    ((1,), 1, (0,)),
    ((2,), 8, (2,)),
])
def test_cap_thresholds(ln, thresholds, max_steps, expected):
    assert tuple(ln.cap_thresholds(thresholds, max_steps)) == expected


def test_bad_thresholds_are_left_to_the_library(ln):
    assert ln.cap_thresholds((5, 3), 4) == (5, 3)
    assert ln.cap_thresholds("x", 4) == "x"


# -- running (no model) -------------------------------------------------------------------------------


def test_dependencies_environment_and_failures(ln, tmp_path):
    path = notebook(
        tmp_path,
        "import math",
        "import os.path\ndef f():\n  with tf.Session() as sess:\n    return 1",   # session: skipped (its import runs)
        "y = f()",                                                                  # dependency
        "z = undefined_name + 1",                                                   # fails: bound nowhere
        "w = z * 2",                                                                # dependency on a failed cell
        "def get(u):\n  import urllib.request\n  return urllib.request.urlopen(u, timeout=5)",
        "host = 'http://' + 'example.com'\npage = get(host)",                       # network at run time
        "v = os.path.join('a', 'b')",                                               # the session cell's import ran
        "arr = load_it('../tests/fixtures/noise.jpeg')",                            # fails: load_it bound nowhere
        "open('written_by_a_skipped_cell.npy')",                                    # data file: dependency
        "import no_such_module_xyz",                                                # not installed: environment
    )
    cells = ln.run_notebook(path, model_attrs={}, max_steps=2)
    status = {c.index: (c.category, c.status) for c in cells}
    assert status == {
        1: (ln.OPTVIS, ln.RAN), 2: (ln.SESSION, ln.SKIPPED), 3: (ln.OPTVIS, ln.DEPENDENCY),
        4: (ln.OPTVIS, ln.FAILED), 5: (ln.OPTVIS, ln.DEPENDENCY), 6: (ln.OPTVIS, ln.RAN),
        7: (ln.ENV, ln.SKIPPED), 8: (ln.OPTVIS, ln.RAN), 9: (ln.OPTVIS, ln.FAILED),
        10: (ln.OPTVIS, ln.DEPENDENCY), 11: (ln.ENV, ln.SKIPPED),
    }
    by = {c.index: c for c in cells}
    assert "`f` is bound by cell 2 (TF1 session)" in by[3].reason
    assert by[4].error.startswith("NameError") and "bound by no cell" in by[4].reason
    assert "`z` is bound by cell 4 (failed)" in by[5].reason
    assert "network" in by[7].reason
    assert "written_by_a_skipped_cell.npy" in by[10].reason
    assert "no_such_module_xyz" in by[11].reason


def test_star_import_of_a_missing_module_is_a_dependency(ln, tmp_path):
    path = notebook(tmp_path, "from lucid.scratch.no_such_thing import *", "print(helper())")
    cells = ln.run_notebook(path, model_attrs={}, max_steps=2)
    assert [(c.status, c.category) for c in cells] == [(ln.FAILED, ln.OPTVIS), (ln.DEPENDENCY, ln.OPTVIS)]
    assert "lucid_ifv.compat.scratch" in cells[0].error
    assert "may come from `from lucid_ifv.compat.scratch.no_such_thing import *` in cell 1" in cells[1].reason


def test_real_lucid_is_not_importable(ln, tmp_path):
    path = notebook(tmp_path, "import importlib\nm = importlib.import_module('lucid.optvis.render')")
    [cell] = ln.run_notebook(path, model_attrs={}, max_steps=2)
    assert cell.status == ln.FAILED and "blocked by the runner" in cell.error


# -- end to end on the small fake InceptionV1 -------------------------------------------------------------


def test_end_to_end_on_the_small_fake_graph(ln, tmp_path):
    import fake_inception as fi

    import lucid_ifv.compat.optvis.render as compat_render
    from lucid_ifv.model import LayerInfo
    from modelzoo.vision import InceptionV1

    pb = ln.build_model_pb(tmp_path / "InceptionV1.pb", divisor=16, size=fi.SIZE)
    layers = tuple(LayerInfo(n, d, ("dense",) if n.startswith(("nn", "softmax")) else ("conv",))
                   for n, d in fi.FAKE_DEPTHS.items())
    attrs = {"model_path": str(pb), "image_shape": (fi.SIZE, fi.SIZE, 3), "layers": layers}
    path = notebook(
        tmp_path,
        "!pip install --quiet lucid==0.2.3\n"
        "import tensorflow as tf\n"
        "import lucid.modelzoo.vision_models as models\n"
        "import lucid.optvis.render as render\n"
        "model = models.InceptionV1()\n"
        "model.load_graphdef()",
        'images = render.render_vis(model, "mixed3a_pre_relu:0", thresholds=(1,))',
        "with tf.Session() as sess:\n  print(sess.run(model))",
    )
    original_path, original_render = InceptionV1.model_path, compat_render.render_vis
    cells = ln.run_notebook(path, model_attrs=attrs, max_steps=1)
    assert [(c.category, c.status) for c in cells] == [
        (ln.OPTVIS, ln.RAN), (ln.OPTVIS, ln.RAN), (ln.SESSION, ln.SKIPPED)], [c.error for c in cells]
    assert cells[1].renders == [[[1], [0]]]  # thresholds (1,) capped to one step
    # everything the runner patched is restored
    assert InceptionV1.model_path == original_path and compat_render.render_vis is original_render
    assert InceptionV1.image_shape == (224, 224, 3)


# -- the report --------------------------------------------------------------------------------------------


def test_report(ln, tmp_path):
    def cell(index, category, status, error="", reason=""):
        return {"index": index, "first_line": f"line {index}", "category": category, "status": status,
                "error": error, "reason": reason, "where": "cell line 1"}

    results = {"a.ipynb": [cell(1, ln.OPTVIS, ln.RAN), cell(2, ln.OPTVIS, ln.FAILED, "TypeError: boom"),
                           cell(3, ln.SESSION, ln.SKIPPED, reason="a session object `sess`"),
                           cell(4, ln.OPTVIS, ln.DEPENDENCY, "NameError: f", "`f` is bound by cell 3")],
               "b.ipynb": [cell(0, ln.OPTVIS, ln.RAN), cell(1, ln.EMPTY, ln.SKIPPED)]}
    out = tmp_path / "report.md"
    totals = ln.write_report(results, out, command="python experiments/lucid_notebooks.py --max-steps 3",
                             max_steps=3, source_label="synthetic", unreadable={"c.ipynb": "empty file"},
                             model_desc="fake")
    text = out.read_text()
    assert totals["optvis"] == 4 and totals["ran"] == 2 and totals["dependency"] == 1
    assert totals["percent"] == 50.0 and totals["percent_without_dependency"] == pytest.approx(200 / 3)
    assert "python experiments/lucid_notebooks.py --max-steps 3" in text and "`--max-steps 3`" in text
    assert "**2 of 4 optvis cells ran (50.0%)**" in text
    assert "| a.ipynb | 2 | `line 2` | TypeError: boom |" in text
    assert "| a.ipynb | 4 | `line 4` | 'f' is bound by cell 3 |" in text
    assert "| c.ipynb | empty file |" in text
    for label, _ in ln.SESSION_RULES:
        assert label.replace("`", "") in text.replace("`", "")


def test_dynamic_namespace_updates_are_dependencies(ln, tmp_path):
    path = notebook(tmp_path, "data = get_data_that_is_not_here()\nlocals().update(data)", "print(layer_names)")
    cells = ln.run_notebook(path, model_attrs={}, max_steps=2)
    assert [c.status for c in cells] == [ln.FAILED, ln.DEPENDENCY]
    assert "locals().update(data)" in cells[1].reason


def test_diagnoses_match_their_error(ln, monkeypatch):
    monkeypatch.setattr(ln, "WHY", {("a.ipynb", 3, "boom"): ("python2", "because")})
    assert ln._why("a.ipynb", {"index": 3, "error": "TypeError: boom"}) == ("python2", "because")
    cause, text = ln._why("a.ipynb", {"index": 3, "error": "ValueError: other"})
    assert cause == "" and "out of date" in text and text.endswith("because")
    assert ln._why("a.ipynb", {"index": 4, "error": "AttributeError: module 'tensorflow._api.v2.train' has no "
                                                    "attribute 'AdamOptimizer'"})[0] == "tf1_api"


def test_tf1_only_names_are_found_against_the_installed_tensorflow(ln):
    import ast

    tree = ast.parse("opt = tf.train.AdamOptimizer(0.05)\nx = tf.image.resize_images(a, [2, 2])\n"
                     "y = tf.compat.v1.train.AdamOptimizer(0.1)\nz = tf.reduce_mean(a)")
    assert ln.tf1_only_names(tree) == ["tf.image.resize_images", "tf.train.AdamOptimizer"]


def test_tf1_api_cells(ln, tmp_path):
    """A cell using a name TensorFlow 2 lacks needs a TF2 edit whatever the library: its own category."""
    [cell] = classified(ln, tmp_path, "optimizer = tf.train.AdamOptimizer(0.05)\nx = 1")
    assert cell.category == ln.TF1_API and "tf.train.AdamOptimizer" in cell.reason
