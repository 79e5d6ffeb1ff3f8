"""``lucid.modelzoo.nets_factory``: Lucid's model registry.

``models_map`` maps each zoo class name to its class in
`lucid_ifv.compat.modelzoo.vision_models` (Lucid's 31 classes, the same names);
``get_model(name)`` instantiates one. The graphs load on first use, from Lucid's URLs
(the network) or a local ``model_path``.
"""

from __future__ import annotations

from lucid_ifv.compat.modelzoo import vision_models

#: Lucid's zoo: class name -> class (Lucid's ``nets_factory.models_map``).
models_map = dict(vision_models.LUCID_MODELS)


def get_model(name):
    """Returns a model instance such as ``model = vision_models.InceptionV1()`` (Lucid's
    ``get_model``).

    Args:
      name: the name of the model, as given by the class name in vision_models.
    Raises:
      ValueError: if network `name` is not recognized (naming the names that contain it).
    """
    if name not in models_map:
        candidates = ", ".join(key for key in models_map if name in key)
        raise ValueError(f"No network named {name}. Did you mean one of {candidates}?")
    return models_map[name]()
