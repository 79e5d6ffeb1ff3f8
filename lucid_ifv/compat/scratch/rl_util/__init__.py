"""``lucid.scratch.rl_util``: the utilities of Lucid's ``misc/rl_util.ipynb`` notebook
("Understanding RL vision"), in TensorFlow 2 over lucid-ifv's model interface.

``from lucid_ifv.compat.scratch.rl_util import *`` binds the names Lucid's does (``all_()``
lists them): NumPy/TensorFlow, Lucid's compat modules (``param``, ``objectives``, ``render``,
``transform``, ``show``, ``save``, ``ChannelReducer``, ``Model``, ``lucid_svelte``, ...) and

- image helpers (NumPy, as Lucid's): `zoom_to`, `concatenate_horizontally`, `hue_to_rgb`,
  `channels_to_rgb`, `conv2d`, `norm_filter`, `brightness_to_opacity`, `argmax_nd`,
  `rescale_opacity`;
- graph look-ups: `get_var` (a constant of the frozen graph), `get_shape`;
- activations and attribution (`get_acts`, `get_grad`, `get_attr`, `get_grad_or_attr`,
  `get_multi_path_attr`, `get_paths`, `maxpool_override`, `gradient_override_map`): see
  `lucid_ifv.compat.scratch.rl_util.attribution` for which models each needs;
- `LayerNMF`: NMF directions of a layer (of activations or of attributions), visualized by
  feature visualization (``vis_traditional``) and by dataset examples (``vis_dataset``,
  ``vis_dataset_thumbnail``);
- `load_joblib` / `save_joblib` (local files only; joblib files are pickles).
"""

import importlib
import sys

import numpy as np
import tensorflow as tf

import lucid_ifv.compat.optvis.objectives as objectives
import lucid_ifv.compat.optvis.param as param
import lucid_ifv.compat.optvis.render as render
import lucid_ifv.compat.optvis.transform as transform
from lucid_ifv.compat.misc.channel_reducer import ChannelReducer
from lucid_ifv.compat.misc.io import save, show
from lucid_ifv.compat.misc.io.showing import _display_html, _image_url
from lucid_ifv.compat.modelzoo.vision_base import Model

try:
    import lucid_ifv.compat.scratch.web.svelte as lucid_svelte
except NameError:  # Lucid's guard (its svelte module needs a running IPython); ours imports anywhere
    lucid_svelte = None
from .attribution import (
    get_acts,
    get_attr,
    get_grad,
    get_grad_or_attr,
    get_multi_path_attr,
    get_paths,
    gradient_override_map,
    maxpool_override,
)
from .joblib_wrapper import load_joblib, save_joblib
from .nmf import LayerNMF, argmax_nd, rescale_opacity
from .util import (
    brightness_to_opacity,
    channels_to_rgb,
    concatenate_horizontally,
    conv2d,
    get_shape,
    get_var,
    hue_to_rgb,
    norm_filter,
    zoom_to,
)


def all_():
    return __all__


def reload(globals_dict):
    m = importlib.reload(sys.modules[__name__])
    for f in m.__all__:
        globals_dict.update({f: getattr(m, f)})


__all__ = [
    "np",
    "tf",
    "Model",
    "ChannelReducer",
    "param",
    "objectives",
    "render",
    "transform",
    "show",
    "save",
    "_image_url",
    "_display_html",
    "lucid_svelte",
    "load_joblib",
    "save_joblib",
    "zoom_to",
    "get_var",
    "get_shape",
    "concatenate_horizontally",
    "hue_to_rgb",
    "channels_to_rgb",
    "conv2d",
    "norm_filter",
    "brightness_to_opacity",
    "gradient_override_map",
    "maxpool_override",
    "get_acts",
    "get_grad_or_attr",
    "get_attr",
    "get_grad",
    "get_paths",
    "get_multi_path_attr",
    "argmax_nd",
    "LayerNMF",
    "rescale_opacity",
    "all_",
    "reload",
]
