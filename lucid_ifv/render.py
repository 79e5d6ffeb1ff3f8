"""`render_vis`: Lucid's feature-visualization loop in TF2 (Adam, then optional L-BFGS).

The data flow per step: ``param() -> transforms -> model(layers) -> objective(T)``; the
loss ``-objective`` is minimized. The Adam step is one compiled `tf.function`; L-BFGS
(SciPy's L-BFGS-B) fine-tunes the same parameters afterwards, with loss and gradient
from one compiled function, in float64 on the SciPy side. With ``converge=TOL``, L-BFGS
keeps going until every sample is stationary (`stationarity_residual` <= TOL); see
docs/rendering.md.
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
CHECK_EVERY = 20  # L-BFGS iterations between stationarity checks when converging
# Loss changes below SMALL_CHANGE * |loss| reach SciPy as the trapezoid rule of the gradients
# along the step: float32 losses resolve only ~1e-7 |loss|, which stalls the line search
# ("ABNORMAL") short of stationarity, while float32 gradients stay accurate.
SMALL_CHANGE = 1e-4


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
      residual: ``[B]`` relative stationarity residual of each sample at the final
        parameters (`stationarity_residual`; 0 means stationary), always computed.
      converged: ``[B]`` bool, ``residual <= converge``; None when ``converge`` was None.
    """

    images: list
    steps: list
    param: Param
    params: list
    objective: list
    lbfgs: dict | None = None
    interrupted: bool = False
    residual: np.ndarray | None = None
    converged: np.ndarray | None = None

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


def _flat(variables) -> np.ndarray:
    """The variables' values as one float64 vector ``[D]``."""
    return np.concatenate([v.numpy().ravel() for v in variables]).astype(np.float64)


def _split(flat, variables) -> list[np.ndarray]:
    """Flat vector ``[D]`` -> arrays shaped like ``variables``."""
    sizes = [int(np.prod(v.shape)) for v in variables]
    parts = np.split(np.asarray(flat), np.cumsum(sizes)[:-1])
    return [part.reshape(tuple(v.shape)) for part, v in zip(parts, variables)]


def _gradient_norms_fn(forward, objective, variables) -> Callable:
    """Compiled ``params -> (|grad phi|, |grad phi_j|)`` per sample, ``[B]`` and ``[J, B]``.

    ``phi`` is ``objective`` summed over the batch, ``phi_j = factor_j * term_j`` its additive
    terms (`objectives.terms_of`); the gradient of sample ``i`` is the slice ``i`` of each
    parameter's gradient. ``forward(params) -> T``. Takes arrays shaped like ``variables``.
    """
    terms = objectives_mod.terms_of(objective)
    zero = tf.UnconnectedGradients.ZERO

    def per_sample_norm(grads):
        return tf.sqrt(tf.add_n([tf.reduce_sum(tf.reshape(g * g, [g.shape[0], -1]), 1) for g in grads]))

    @tf.function(input_signature=[tf.TensorSpec(v.shape, v.dtype) for v in variables])
    def norms(*params):
        params = list(params)
        with tf.GradientTape(persistent=True) as tape:
            tape.watch(params)
            T = forward(params)
            total = tf.reduce_sum(objective(T))
            values = [factor * tf.reduce_sum(term(T)) for factor, term in terms]
        total_norm = per_sample_norm(tape.gradient(total, params, unconnected_gradients=zero))
        term_norms = [per_sample_norm(tape.gradient(v, params, unconnected_gradients=zero)) for v in values]
        return total_norm, tf.stack(term_norms)

    def run(arrays):
        total, terms_ = norms(*[np.asarray(a, np.float32) for a in arrays])
        return total.numpy().astype(np.float64), terms_.numpy().astype(np.float64)

    return run


def stationarity_residual(grad_norm, term_grad_norms, reference) -> np.ndarray:
    """Relative stationarity residual ``r_i`` of each sample (0: stationary; scale-free).

    With ``g_i = grad_{z_i} phi`` and ``g_ij = grad_{z_i} phi_j`` for the objective's additive
    terms ``phi_j`` (each with its factor, e.g. the feature objective and ``-lam R``):

    * at least two terms move sample ``i`` (``g_ij != 0``): ``r_i = |g_i| / max_j |g_ij|``;
      at a stationary point the terms' gradients cancel, so ``r_i -> 0``;
    * otherwise (one term, e.g. no prior): ``r_i = |g_i| / |g_i^0|``, relative to the
      gradient at the parameters the render started from (``inf`` if that was 0).

    ``r_i = 0`` when ``g_i = 0``.

    Args:
      grad_norm: ``|g_i|``, ``[B]``.
      term_grad_norms: ``|g_ij|``, ``[J, B]``.
      reference: ``|g_i^0|``, ``[B]``.
    Returns:
      ``[B]`` float64.
    """
    grad_norm = np.asarray(grad_norm, np.float64)
    term_grad_norms = np.asarray(term_grad_norms, np.float64)
    several = (term_grad_norms > 0).sum(0) >= 2
    scale = np.where(several, term_grad_norms.max(0), np.asarray(reference, np.float64))
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(grad_norm == 0, 0.0, grad_norm / scale)


def _check_converge(converge, max_lbfgs_steps, lbfgs_steps) -> tuple[float | None, int]:
    """``(converge, L-BFGS iteration cap)``; without ``converge`` the cap is ``lbfgs_steps``."""
    if converge is None:
        return None, lbfgs_steps
    number = isinstance(converge, (int, float, np.number)) and not isinstance(converge, bool)
    if not (number and np.isfinite(converge) and converge > 0):
        raise ValueError(f"converge must be None or a finite relative tolerance > 0, got {converge!r}")
    least = max(lbfgs_steps, 1)
    integer = isinstance(max_lbfgs_steps, (int, np.integer)) and not isinstance(max_lbfgs_steps, bool)
    if not (integer and max_lbfgs_steps >= least):
        raise ValueError(f"max_lbfgs_steps must be an integer >= max(lbfgs_steps, 1) = {least}; got {max_lbfgs_steps!r}")
    return float(converge), int(max_lbfgs_steps)


def render_vis(model, objective, param_f=None, optimizer=None, transforms=None,
               thresholds: Sequence[int] = (512,), lbfgs_steps: int = 0, seed=None,
               progress: bool = True, lbfgs_options: dict | None = None,
               converge: float | None = None, max_lbfgs_steps: int = 10000) -> RenderResult:
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
      thresholds: Adam step counts at which to keep the images (strictly increasing; 0 keeps
        the initial images, so ``(0,)`` runs no Adam step).
      lbfgs_steps: L-BFGS iterations after Adam (0: none). Needs ``transforms=[]``: a
        quasi-Newton method needs a deterministic objective.
      seed: seeds the parameter initialization (when this function creates it or calls
        ``param_f``) and the transforms' random generator.
      progress: show a tqdm bar with the objective.
      lbfgs_options: passed to SciPy's L-BFGS-B (defaults: ``ftol=0, gtol=0, maxls=50``:
        stop on the step budget, not on float32-level progress).
      converge: None, or a relative tolerance TOL (e.g. 1e-3): after Adam and the
        ``lbfgs_steps``, L-BFGS continues until every sample's stationarity residual
        ``r_i`` (`stationarity_residual`: ``|grad_{z_i} phi| / max_j |grad_{z_i} phi_j|``
        over the objective's additive terms ``phi_j``, or relative to the starting gradient
        for a single term) is <= TOL, checked every `CHECK_EVERY` iterations, or until
        ``max_lbfgs_steps``. Needs ``transforms=[]``. The batch objective must be a sum of
        per-sample objectives for ``r_i`` to be sample ``i``'s own (no ``diversity``).
      max_lbfgs_steps: cap on all L-BFGS iterations (the ``lbfgs_steps`` included) when
        converging.
    Returns:
      `RenderResult`; ``residual`` holds the final ``r_i`` (of the objective without
      transforms, the one the inversion assumes) whatever ``converge`` is.
    """
    thresholds = check_increasing(thresholds, "thresholds")
    lbfgs_steps = int(lbfgs_steps)
    if lbfgs_steps < 0:
        raise ValueError(f"lbfgs_steps must be >= 0, got {lbfgs_steps}")
    converge, max_steps = _check_converge(converge, max_lbfgs_steps, lbfgs_steps)
    objective = objectives_mod.as_objective(objective)
    param = _resolve_param(param_f, model, seed)
    if tuple(param.shape[1:]) != tuple(model.image_shape):
        raise ValueError(
            f"the parametrization makes inputs of shape {param.shape[1:]}, model {model.name!r} "
            f"expects {tuple(model.image_shape)}"
        )
    rng = tf.random.Generator.from_seed(seed) if seed is not None else tf.random.Generator.from_non_deterministic_state()
    transform = _resolve_transform(transforms, model, rng)
    if (lbfgs_steps or converge is not None) and transform is not None:
        raise ValueError(
            "L-BFGS and converge need a deterministic objective: pass transforms=[] with "
            f"lbfgs_steps > 0 or converge (got {lbfgs_steps} L-BFGS steps, converge={converge}, random transforms)"
        )
    layers = layers_used(model, objective, param, transform)
    optimizer = _resolve_optimizer(optimizer)
    variables = param.variables

    def forward(params, transform=transform):
        x = param(params)
        return make_T(model, x, transform_or_identity(transform, x), params, layers)

    def evaluate(params):
        return tf.reduce_sum(objective(forward(params)))  # Lucid's vector objectives add up

    gradient_norms = _gradient_norms_fn(lambda params: forward(params, None), objective, variables)
    start_grad_norm, _ = gradient_norms(param.numpy_params())

    def residual(arrays):
        return stationarity_residual(*gradient_norms(arrays), start_grad_norm)

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
    if thresholds[0] == 0:  # as Lucid allows: the images before any step
        result.images.append(param().numpy())
        result.steps.append(0)
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
        stop = None if converge is None else lambda flat: bool((residual(_split(flat, variables)) <= converge).all())
        if stop is not None and not lbfgs_steps and stop(_flat(variables)):
            max_steps = 0  # Adam got there
        if max_steps:
            result.lbfgs = _lbfgs(evaluate, variables, lbfgs_steps, lbfgs_options, result, progress,
                                  stop=stop, max_steps=max_steps)
            result.images.append(param().numpy())
            result.steps.append("lbfgs")
    except KeyboardInterrupt:
        bar.close()
        warnings.warn(f"render_vis interrupted after {len(result.objective)} evaluations; returning results so far")
        result.interrupted = True
        result.images.append(param().numpy())
        result.steps.append(f"interrupted@{len(result.objective)}")
    result.params = param.numpy_params()
    result.residual = residual(result.params)
    result.converged = None if converge is None else result.residual <= converge
    return result


class _Stationary(Exception):
    """Raised from the L-BFGS callback to stop SciPy once every sample is stationary."""


def _lbfgs(evaluate, variables, steps, options, result, progress, stop=None, max_steps=None) -> dict:
    """L-BFGS-B on the flattened variables; loss and gradient from one compiled function.

    Runs ``steps`` iterations. With ``stop`` (``flat float64 params -> bool``), it goes on up
    to ``max_steps`` iterations in all, calls ``stop`` after ``steps`` iterations and every
    `CHECK_EVERY` after, and ends when it returns True; a SciPy run that ends early (e.g. a
    failed line search) is restarted from its last point while restarts make progress.
    The variables get the last iterate, also on KeyboardInterrupt.
    """
    shapes = [tuple(v.shape) for v in variables]
    sizes = [int(np.prod(s)) for s in shapes]
    max_steps = steps if stop is None else max_steps

    @tf.function
    def loss_and_grad(flat):
        parts = tf.split(flat, sizes)
        params = [tf.reshape(p, s) for p, s in zip(parts, shapes)]
        with tf.GradientTape() as tape:
            tape.watch(params)
            loss = -evaluate(params)
        grads = tape.gradient(loss, params)
        return loss, tf.concat([tf.reshape(g, [-1]) for g in grads], 0)

    last = {"nfev": 0}

    def fun(x):
        loss, grad = loss_and_grad(tf.constant(x, tf.float32))
        loss, grad = float(loss), grad.numpy().astype(np.float64)
        value = loss
        if "x" in last:  # a small change: trapezoid rule of the gradients along the step
            change = 0.5 * float((last["grad"] + grad) @ (x - last["x"]))
            if abs(change) <= SMALL_CHANGE * abs(loss):
                value = last["value"] + change
        last.update(x=np.array(x), loss=loss, value=value, grad=grad, nfev=last["nfev"] + 1)
        return value, grad

    bar = tqdm(total=max_steps, disable=not progress, desc="render (L-BFGS)", leave=False)
    state = {"x": _flat(variables), "nit": 0}

    def callback(xk):
        # L-BFGS-B's last evaluation is normally at the accepted iterate: reuse its loss
        if not np.array_equal(xk, last["x"]):
            fun(xk)
        loss = last["loss"]
        state["x"], state["nit"] = np.array(xk), state["nit"] + 1
        result.objective.append(-loss)
        bar.update(1)
        bar.set_postfix(objective=f"{-loss:.4g}")
        nit = state["nit"]
        if stop is not None and nit >= steps and (nit == steps or nit % CHECK_EVERY == 0) and stop(state["x"]):
            raise _Stationary

    opts = {"ftol": 0.0, "gtol": 0.0, "maxls": 50}
    opts.update(options or {})
    restarts, message = 0, ""
    try:
        while state["nit"] < max_steps:
            remaining = max_steps - state["nit"]
            run_opts = {"maxiter": remaining, "maxfun": 4 * remaining, **opts}
            nit_before = state["nit"]
            try:
                res = scipy.optimize.minimize(fun, state["x"], jac=True, method="L-BFGS-B",
                                              callback=callback, options=run_opts)
            except _Stationary:
                message = f"stationary: every sample's residual <= the tolerance after {state['nit']} iterations"
                break
            state["x"], message = np.array(res.x), str(res.message)
            if stop is None or state["nit"] in (nit_before, max_steps) or stop(state["x"]):
                break
            restarts += 1  # SciPy stopped early (line search) but progressed: restart its memory
    finally:
        bar.close()
        for var, part in zip(variables, _split(state["x"], variables)):
            var.assign(part.astype(np.float32))
    fun(state["x"])
    return {"nit": state["nit"], "nfev": last["nfev"], "message": message, "objective": -last["loss"],
            "grad_norm": float(np.linalg.norm(last["grad"])), "restarts": restarts}
