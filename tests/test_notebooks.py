"""The notebooks run top to bottom (their code cells, in order, in one namespace)."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib
import pytest

NOTEBOOKS = sorted((Path(__file__).parents[1] / "notebooks").glob("*.ipynb"))
# figures a notebook writes into its working directory, which must have content
FIGURES = {"compare.ipynb": ("matching_permuted.png", "matching_two_seeds.png", "two_seeds_visualizations.png")}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_runs(path, tmp_path, monkeypatch):
    """Each notebook in its fast mode (``LUCID_IFV_FAST=1``, where it has one)."""
    matplotlib.use("Agg")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LUCID_IFV_FAST", "1")
    cells = json.loads(path.read_text())["cells"]
    namespace: dict = {}
    for i, cell in enumerate(cells):
        if cell["cell_type"] == "code":
            source = "".join(cell["source"])
            exec(compile(source, f"{path.name}[cell {i}]", "exec"), namespace)
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
