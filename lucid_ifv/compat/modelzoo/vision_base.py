"""``lucid.modelzoo.vision_base``: ``Model`` (a Lucid-format model declared by metadata,
`modelzoo.vision.LucidModel`) and ``Layer`` (`lucid_ifv.model.LayerInfo`)."""

from lucid_ifv.model import LayerInfo as Layer  # noqa: F401
from modelzoo.vision import LucidModel as Model  # noqa: F401
