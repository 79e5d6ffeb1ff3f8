"""``lucid.optvis.param``: the core `lucid_ifv.param`, with Lucid's submodule names
(``spatial``, ``color``, ``lowres``, ``images``, ``random``, ``cppn``) importable from here."""

import importlib
import sys

from lucid_ifv.param import *  # noqa: F401,F403 (Lucid's flat names: image, fft_image, ...)

for _name in ("spatial", "color", "lowres", "images", "random", "cppn"):
    _module = importlib.import_module(f"lucid_ifv.param.{_name}")
    sys.modules[f"{__name__}.{_name}"] = _module
    globals().setdefault(_name, _module)  # as in Lucid, param.cppn stays the function
del _name, _module
