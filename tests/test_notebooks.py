"""The notebooks run top to bottom (their code cells, in order, in one namespace)."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib
import pytest

NOTEBOOKS = sorted((Path(__file__).parents[1] / "notebooks").glob("*.ipynb"))
# figures a notebook writes into its working directory, which must have content
FIGURES = {"compare.ipynb": ("matching_permuted.png", "matching_two_seeds.png", "two_seeds_visualizations.png")}


#: an image a notebook shows must span at least this much of [0, 1] between its 1st and 99th
#: percentiles (a flat grey square, e.g. a dead channel's visualization, does not)
MIN_CONTRAST = 0.1


def image_contrast(image) -> float:
    """Spread between the 1st and 99th percentile of an image, relative to its value range
    ([0, 1] floats, [0, 255] integers)."""
    import numpy as np

    array = np.asarray(image, dtype=float)
    scale = 255.0 if np.issubdtype(np.asarray(image).dtype, np.integer) else 1.0
    low, high = np.percentile(array, [1, 99])
    return (high - low) / scale


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_runs(path, tmp_path, monkeypatch):
    """Each notebook in its fast mode (``LUCID_IFV_FAST=1``, where it has one); every image it
    shows with ``imshow`` has non-trivial contrast."""
    matplotlib.use("Agg")
    from matplotlib.axes import Axes

    shown = []
    imshow = Axes.imshow

    def recording_imshow(self, X, *args, **kwargs):
        shown.append((self.get_title(), X))
        return imshow(self, X, *args, **kwargs)

    monkeypatch.setattr(Axes, "imshow", recording_imshow)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LUCID_IFV_FAST", "1")
    cells = json.loads(path.read_text())["cells"]
    namespace: dict = {}
    for i, cell in enumerate(cells):
        if cell["cell_type"] == "code":
            source = "".join(cell["source"])
            exec(compile(source, f"{path.name}[cell {i}]", "exec"), namespace)
    flat = [(n, round(image_contrast(x), 3)) for n, (_, x) in enumerate(shown) if image_contrast(x) < MIN_CONTRAST]
    assert not flat, f"{path.name} shows images without contrast (index, 1-99 percentile spread): {flat}"
    from skimage import io

    for name in FIGURES.get(path.name, ()):
        pixels = io.imread(tmp_path / name)[..., :3].astype(float)
        assert pixels.std() > 20, f"{name} has no contrast (a blank figure)"


def test_readme_quick_start_runs(tmp_path, monkeypatch):
    """The README's Python quick start, as printed."""
    import re

    monkeypatch.chdir(tmp_path)
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    code = re.search(r"## Quick start \(Python\)\n```python\n(.*?)```", readme, re.S).group(1)
    namespace: dict = {}
    exec(compile(code, "README.md quick start", "exec"), namespace)
    assert namespace["inv"].target.shape == (4, 192)
