"""The figure helpers write non-empty PNGs from the data they are given."""

from __future__ import annotations

import matplotlib.image
import numpy as np

from lucid_ifv import metrics, plots


def test_figures(tmp_path):
    records = [{"solve": "anchored", "angle_alive_anchored": a, "angle_anchored": a + 20, "angle_paper": a + 40,
                "angle_response": 50.0, "angle_random": 60.0} for a in (2.0, 4.0, 9.0)]
    images = np.random.default_rng(0).uniform(size=(3, 8, 8, 3))
    rng = np.random.default_rng(1)
    vectors = np.linalg.qr(rng.normal(size=(5, 5)))[0]
    coefficients = metrics.singular_coefficients(rng.normal(size=(4, 5)), np.stack([vectors] * 4))
    for path in (plots.plot_angles(records, tmp_path / "a.png"),
                 plots.plot_images(images, tmp_path / "i.png", titles=["x", "y", "z"]),
                 plots.plot_images(images[..., :1], tmp_path / "g.png"),
                 plots.plot_singular_coefficients(coefficients, tmp_path / "c.png")):
        pixels = matplotlib.image.imread(path)
        assert pixels.shape[0] > 50 and pixels.std() > 0
