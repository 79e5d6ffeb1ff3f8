"""``lucid.optvis``: ``objectives``, ``param``, ``render``, ``transform`` (see `lucid_ifv.compat`)."""

import sys

from lucid_ifv import objectives, transform

sys.modules[f"{__name__}.objectives"] = objectives
sys.modules[f"{__name__}.transform"] = transform
