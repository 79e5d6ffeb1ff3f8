"""Lucid's module path ``lucid.optvis.param.lowres``: `lowres_tensor` (implemented in
`lucid_ifv.param.spatial`, re-exported here)."""

from lucid_ifv.param.spatial import LowresParam, lowres_tensor

__all__ = ["LowresParam", "lowres_tensor"]
