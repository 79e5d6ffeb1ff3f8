"""Feature visualization runs on every shipped model's studied layers (frozen-graph path)."""

from __future__ import annotations

import pytest

from lucid_ifv import objectives as obj
from lucid_ifv import param
from lucid_ifv.render import render_vis
from modelzoo import SHIPPED, load_shipped


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_fv_raises_a_studied_channel(name):
    model = load_shipped(name)
    layer = next(iter(SHIPPED[name].studied_layers))
    objective = obj.channel(layer, 1)
    result = render_vis(model, objective, param.image_for_model(model, seed=0), transforms=[],
                        thresholds=(40,), seed=0, progress=False)
    start = result.objective[0]
    end = float(model(result.final, [layer])[layer].numpy()[..., 1].mean())
    assert end > start + max(0.5 * abs(start), 0.1), (start, end)
