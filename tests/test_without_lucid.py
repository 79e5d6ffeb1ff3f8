"""The package imports and renders with Lucid absent (it is an optional companion)."""

from __future__ import annotations

import subprocess
import sys
import textwrap


def test_works_without_lucid():
    code = textwrap.dedent("""
        import sys
        sys.modules["lucid"] = None  # any `import lucid...` now raises ImportError
        import numpy as np, tensorflow as tf
        import lucid_ifv, modelzoo
        from lucid_ifv import objectives as obj, param, ifv, critical_space, experiment, cli, transform
        from lucid_ifv.model import KerasModel
        from lucid_ifv.render import render_vis
        inp = tf.keras.Input((8, 8, 3))
        m = KerasModel(tf.keras.Model(inp, tf.keras.layers.Conv2D(4, 3, name="c")(inp)))
        r = render_vis(m, obj.channel("c", 1), param.image(8), transforms=[], thresholds=(3,), progress=False)
        assert "lucid" not in {k.split(".")[0] for k, v in sys.modules.items() if v is not None}
        print("ok", r.final.shape)
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "ok (1, 8, 8, 3)" in done.stdout
