"""``lucid.modelzoo.vision_models``: `InceptionV1` (Lucid's metadata and layer names; the graph
is downloaded on first use, or set ``model.model_path = LOCAL_PB; model.load_graphdef()``),
the models that ship with lucid-ifv by name (``models.inception_small()``), and the base
classes ``Model`` (Lucid's ``vision_base.Model``) and ``Layer``."""

from lucid_ifv.model import LayerInfo as Layer
from modelzoo.shipped import SHIPPED, load_shipped
from modelzoo.vision import InceptionV1, LucidModel as Model


def __getattr__(name):
    """``models.<shipped name>`` -> a loader of that shipped model (e.g. ``inception_small()``)."""
    if name in SHIPPED:
        return lambda: load_shipped(name)
    raise AttributeError(f"module {__name__!r} has no model {name!r}; Lucid's InceptionV1 and the "
                         f"shipped models ({', '.join(SHIPPED)}) are available")


__all__ = ["InceptionV1", "Model", "Layer", *SHIPPED]
