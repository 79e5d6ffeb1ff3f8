"""``lucid.optvis.render`` over `lucid_ifv.render`: Lucid's signature, defaults and counting.

What this layer adds to the core `lucid_ifv.render.render_vis` (nothing else):
  - Lucid's defaults: ``param_f=None`` is ``param.image(128)`` (the model's own size when its
    input size is fixed), ``verbose=True``, ``relu_gradient_override=True``;
  - Lucid's threshold counting: the loop runs ``max(thresholds) + 1`` optimizer steps and
    snapshots after step ``i + 1`` for each threshold ``i`` (so ``thresholds=(0,)`` is one step);
  - the model sees the transformed images at the size the transforms make (no resize back),
    as in Lucid, when it takes any size.
The result is the core `RenderResult`, which also behaves like Lucid's list of image batches
(``render_vis(...)[-1]``).

``make_vis_T`` and ``import_model`` are TF2 forms of Lucid's (no graph or session):
``T("vis_op")`` is a function that runs one step, ``T("input")`` the current images,
``T("loss")`` the current objective, ``T(layer)`` the layer's activations of the current images.
"""

from __future__ import annotations

from lucid_ifv import render as core
from lucid_ifv.param import image, image_for_model
from lucid_ifv.validation import check_increasing

LUCID_IMAGE_SIZE = 128


def _param_f(param_f, model):
    """Lucid's default parametrization (``param.image(128)``) unless the model's size is fixed."""
    if param_f is not None:
        return param_f
    if model.fixed_input_size:
        return lambda: image_for_model(model)
    return lambda: image(LUCID_IMAGE_SIZE, channels=None if model.image_shape[-1] == 3 else model.image_shape[-1])


def render_vis(model, objective_f, param_f=None, optimizer=None, transforms=None, thresholds=(512,),
               print_objectives=None, verbose=True, relu_gradient_override=True, use_fixed_seed=False):
    """Lucid's ``render_vis`` (see the module docstring for how it maps to the core one).

    Returns:
      `lucid_ifv.render.RenderResult`: ``result[j]`` is the images ``[B, H, W, C]`` after
      ``thresholds[j] + 1`` steps, as in Lucid; ``.objective``, ``.param`` etc. as the core's.
    """
    thresholds = check_increasing(thresholds, "thresholds")
    return core.render_vis(
        model, objective_f, _param_f(param_f, model), optimizer=optimizer, transforms=transforms,
        thresholds=[t + 1 for t in thresholds], print_objectives=print_objectives, verbose=verbose,
        relu_gradient_override=relu_gradient_override, use_fixed_seed=use_fixed_seed, progress=False,
        resize=False,
    )


def make_vis_T(model, objective_f, param_f=None, optimizer=None, transforms=None,
               relu_gradient_override=False):
    """Lucid's ``make_vis_T`` in TF2 form: returns ``T`` with ``T("vis_op")`` (call it to run
    one optimizer step; returns the objective before the step), ``T("input")`` (current images
    ``[B, H, W, C]``), ``T("loss")`` (the current objective value, summed over the batch, as
    Lucid's ``loss`` tensor), ``T("param")`` (the parametrization) and ``T(layer)``
    (activations of the current images)."""
    vis = core.VisSetup(model, objective_f, _param_f(param_f, model), optimizer, transforms,
                        relu_gradient_override=relu_gradient_override, resize=False)

    def T(name):
        if name == "vis_op":
            return vis.step
        if name == "input":
            return vis.param()
        if name == "loss":
            return vis.evaluate(vis.variables)
        if name == "param":
            return vis.param
        return model(vis.param(), [name])[name]

    return T


def import_model(model, t_image, t_image_raw=None, scope="import", input_map=None):
    """Lucid's ``import_model`` in TF2 form: `Model.import_graph` (``T(layer)`` -> activations
    of ``t_image``, ``T("input")`` -> ``t_image_raw``, ``T("labels")`` -> the labels)."""
    return model.import_graph(t_image, scope=scope, input_map=input_map, t_raw=t_image_raw)
