"""`render_vis`: Lucid's feature-visualization loop in TF2 (Adam, then optional L-BFGS).

The data flow per step: ``param() -> transforms -> model(layers) -> objective(T)``; the
loss ``-objective`` is minimized. The Adam step is one compiled `tf.function`; L-BFGS
(SciPy's L-BFGS-B) fine-tunes the same parameters afterwards, with loss and gradient
from one compiled function, in float64 on the SciPy side.
"""

from __future__ import annotations

import dataclasses
import warnings
from typing import Callable, Sequence

import numpy as np
import scipy.optimize
import tensorflow as tf
from tqdm.auto import tqdm

from lucid_ifv import objectives as objectives_mod
from lucid_ifv.param import Param, image_for_model, numpy_seed
from lucid_ifv.validation import check_increasing

RESERVED_NAMES = ("input", "params")


@dataclasses.dataclass
class RenderResult:
    """What `render_vis` returns.

    Attributes:
      images: images ``[B, H, W, C]`` (numpy, in [0, 1]) at each threshold, then after L-BFGS.
      steps: the Adam step count of each entry of ``images`` (L-BFGS entry: ``"lbfgs"``).
      param: the parametrization (its variables hold the final parameters).
      params: final parameter arrays (one per variable).
      objective: the objective at each Adam step, evaluated before that step's update
        (``objective[k]`` belongs to the parameters after k steps), then after each L-BFGS
        iteration.
      lbfgs: SciPy's result summary (``nit``, ``message``, ``grad_norm``...) or None.
      interrupted: True when a KeyboardInterrupt stopped the run early (results so far kept).
    """

    images: list
    steps: list
    param: Param
    params: list
    objective: list
    lbfgs: dict | None = None
    interrupted: bool = False

    @property
    def final(self) -> np.ndarray:
        """The last images ``[B, H, W, C]``."""
        return self.images[-1]


def make_T(model, images, transformed, params, layers):
    """The ``T`` function objectives see, for one evaluation.

    ``layers`` is the set of layer names to fetch in one forward pass of ``transformed``.
    """
    acts = model(transformed, sorted(layers)) if layers else {}

    def T(name):
        if name == "input":
            return images
        if name == "params":
            return list(params)
        if name not in acts:
            model.layer(name)  # KeyError naming the known layers
            raise KeyError(f"layer {name!r} was not requested when this T was built")
        return acts[name]

    return T


def layers_used(model, objective, param: Param, transform=None) -> set:
    """Names of the model layers ``objective`` reads, found by tracing it once (no run)."""
    used = set()

    def recording_T_factory(x, params):
        def T(name):
            if name in RESERVED_NAMES:
                return x if name == "input" else list(params)
            model.layer(name)  # KeyError naming the known layers
            used.add(name)
            return model(transform_or_identity(transform, x), [name])[name]
        return T

    specs = [tf.TensorSpec(v.shape, v.dtype) for v in param.variables]

    @tf.function(autograph=False)
    def trace(*params):
        x = param(params)
        return objective(recording_T_factory(x, params))

    trace.get_concrete_function(*specs)
    return used


def transform_or_identity(transform, images):
    return images if transform is None else transform(images)


def _resolve_param(param_f, model, seed) -> Param:
    if param_f is None:
        return image_for_model(model, seed=seed)
    if isinstance(param_f, Param):
        return param_f
    if callable(param_f):
        with numpy_seed(seed):
            param = param_f()
        if not isinstance(param, Param):
            raise TypeError(f"param_f must return a lucid_ifv.param.Param, got {type(param).__name__}")
        return param
    raise TypeError(f"param_f must be None, a Param or a callable returning one, got {type(param_f).__name__}")


def _resolve_transform(transforms, model, rng) -> Callable | None:
    """Compose the transforms (None: Lucid's standard ones) and resize to the model's input."""
    from lucid_ifv import transform as transform_mod

    if transforms is None:
        transforms = list(transform_mod.standard_transforms)
    transforms = list(transforms)
    if not transforms:
        return None
    h, w, _ = model.image_shape
    composed = transform_mod.compose(transforms + [transform_mod.resize_to(h, w)])
    return lambda images: composed(images, rng)


def _resolve_optimizer(optimizer):
    if optimizer is None:
        return tf.keras.optimizers.Adam(learning_rate=0.05, epsilon=1e-8)  # TF1 AdamOptimizer's
    if callable(optimizer) and not isinstance(optimizer, tf.keras.optimizers.Optimizer):
        optimizer = optimizer()
    if not isinstance(optimizer, tf.keras.optimizers.Optimizer):
        raise TypeError(f"optimizer must be a Keras optimizer or a factory of one, got {type(optimizer).__name__}")
    return optimizer


def render_vis(model, objective, param_f=None, optimizer=None, transforms=None,
               thresholds: Sequence[int] = (512,), lbfgs_steps: int = 0, seed=None,
               progress: bool = True, lbfgs_options: dict | None = None) -> RenderResult:
    """Optimize inputs to maximize ``objective`` (Lucid's `render_vis`, eager TF2).

    Args:
      model: a `lucid_ifv.model.Model` (e.g. `KerasModel`, a modelzoo graph).
      objective: an `Objective`, a real Lucid objective, any ``T -> scalar`` callable, or
        ``"layer:n"``. A batch is optimized at once; use ``batch=`` in objectives or a
        ``[B, k]`` target in `feature_objective` for one objective per batch element.
      param_f: a `Param`, a callable returning one, or None for
        ``image_for_model(model)`` (Fourier + decorrelated colours + sigmoid, batch 1).
      optimizer: a Keras optimizer (or factory); default Adam(0.05) with TF1's epsilon 1e-8.
      transforms: list of transforms ``t(images, rng)`` (see `lucid_ifv.transform`); None
        means Lucid's ``standard_transforms``, ``[]`` none. The result is resized to the
        model's input size.
      thresholds: Adam step counts at which to keep the images (strictly increasing).
      lbfgs_steps: L-BFGS iterations after Adam (0: none). Needs ``transforms=[]``: a
        quasi-Newton method needs a deterministic objective.
      seed: seeds the parameter initialization (when this function creates it or calls
        ``param_f``) and the transforms' random generator.
      progress: show a tqdm bar with the objective.
      lbfgs_options: passed to SciPy's L-BFGS-B (defaults: ``ftol=0, gtol=0, maxls=50``:
        stop on the step budget, not on float32-level progress).
    Returns:
      `RenderResult`.
    """
    thresholds = check_increasing(thresholds, "thresholds")
    lbfgs_steps = int(lbfgs_steps)
    if lbfgs_steps < 0:
        raise ValueError(f"lbfgs_steps must be >= 0, got {lbfgs_steps}")
    objective = objectives_mod.as_objective(objective)
    param = _resolve_param(param_f, model, seed)
    if tuple(param.shape[1:]) != tuple(model.image_shape):
        raise ValueError(
            f"the parametrization makes inputs of shape {param.shape[1:]}, model {model.name!r} "
            f"expects {tuple(model.image_shape)}"
        )
    rng = tf.random.Generator.from_seed(seed) if seed is not None else tf.random.Generator.from_non_deterministic_state()
    transform = _resolve_transform(transforms, model, rng)
    if lbfgs_steps and transform is not None:
        raise ValueError(
            "L-BFGS needs a deterministic objective: pass transforms=[] with lbfgs_steps > 0 "
            f"(got {lbfgs_steps} L-BFGS steps and random transforms)"
        )
    layers = layers_used(model, objective, param, transform)
    optimizer = _resolve_optimizer(optimizer)
    variables = param.variables

    def evaluate(params):
        x = param(params)
        T = make_T(model, x, transform_or_identity(transform, x), params, layers)
        value = objective(T)
        return tf.reduce_sum(value)  # Lucid's vector objectives add up

    optimizer.build(variables)

    @tf.function
    def adam_step():
        with tf.GradientTape() as tape:
            value = evaluate(variables)
            loss = -value
        grads = tape.gradient(loss, variables)
        optimizer.apply_gradients(zip(grads, variables))
        return value

    result = RenderResult(images=[], steps=[], param=param, params=[], objective=[])
    bar = tqdm(total=thresholds[-1], disable=not progress, desc="render (Adam)", leave=False)
    try:
        for step in range(1, thresholds[-1] + 1):
            value = float(adam_step())
            if not np.isfinite(value):
                raise FloatingPointError(f"the objective became {value} at Adam step {step}")
            result.objective.append(value)
            bar.update(1)
            if step % 10 == 0 or step == thresholds[-1]:
                bar.set_postfix(objective=f"{value:.4g}")
            if step in thresholds:
                result.images.append(param().numpy())
                result.steps.append(step)
        bar.close()
        if lbfgs_steps:
            result.lbfgs = _lbfgs(evaluate, variables, lbfgs_steps, lbfgs_options, result, progress)
            result.images.append(param().numpy())
            result.steps.append("lbfgs")
    except KeyboardInterrupt:
        bar.close()
        warnings.warn(f"render_vis interrupted after {len(result.objective)} evaluations; returning results so far")
        result.interrupted = True
        result.images.append(param().numpy())
        result.steps.append(f"interrupted@{len(result.objective)}")
    result.params = param.numpy_params()
    return result


def _lbfgs(evaluate, variables, steps, options, result, progress) -> dict:
    """L-BFGS-B on the flattened variables; loss and gradient from one compiled function."""
    shapes = [tuple(v.shape) for v in variables]
    sizes = [int(np.prod(s)) for s in shapes]

    @tf.function
    def loss_and_grad(flat):
        parts = tf.split(flat, sizes)
        params = [tf.reshape(p, s) for p, s in zip(parts, shapes)]
        with tf.GradientTape() as tape:
            tape.watch(params)
            loss = -evaluate(params)
        grads = tape.gradient(loss, params)
        return loss, tf.concat([tf.reshape(g, [-1]) for g in grads], 0)

    def fun(x):
        loss, grad = loss_and_grad(tf.constant(x, tf.float32))
        return float(loss), grad.numpy().astype(np.float64)

    bar = tqdm(total=steps, disable=not progress, desc="render (L-BFGS)", leave=False)

    def callback(xk):
        loss, _ = fun(xk)
        result.objective.append(-loss)
        bar.update(1)
        bar.set_postfix(objective=f"{-loss:.4g}")

    x0 = np.concatenate([v.numpy().ravel() for v in variables]).astype(np.float64)
    opts = {"maxiter": steps, "maxfun": 4 * steps, "ftol": 0.0, "gtol": 0.0, "maxls": 50}
    opts.update(options or {})
    try:
        res = scipy.optimize.minimize(fun, x0, jac=True, method="L-BFGS-B", callback=callback, options=opts)
    finally:
        bar.close()
    best = res.x
    for var, part, shape in zip(variables, np.split(best, np.cumsum(sizes)[:-1]), shapes):
        var.assign(part.reshape(shape).astype(np.float32))
    _, grad = fun(best)
    return {"nit": int(res.nit), "nfev": int(res.nfev), "message": str(res.message),
            "objective": float(-res.fun), "grad_norm": float(np.linalg.norm(grad))}
