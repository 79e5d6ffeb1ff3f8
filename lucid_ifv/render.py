"""`render_vis`: Lucid's feature-visualization loop in TF2 (Adam, then optional L-BFGS).

The data flow per step: ``param() -> transforms -> model(layers) -> objective(T)``; the
loss ``-objective`` is minimized. The Adam step is one compiled `tf.function`; L-BFGS
(SciPy's L-BFGS-B) fine-tunes the same parameters afterwards, with loss and gradient
from one compiled function, in float64 on the SciPy side. With ``converge=TOL``, L-BFGS
keeps going until every sample is stationary (`stationarity_residual` <= TOL); see
docs/rendering.md.

The compiled functions (Adam step, L-BFGS loss and gradient, per-sample gradient norms) are
cached by what determines their graphs (`_render_key`): the model, the objectives' keys
(`Objective.key`), the parametrization's structure (`Param.structure_key`), the transforms,
the optimizer's class and configuration and the ReLU-gradient override. A later render with
a fresh parametrization and an equal objective (every ``render_vis(model, "layer:n")`` call)
reuses them instead of tracing again; they take the parametrization's variables as
arguments. See `_CompiledRender`.
"""

from __future__ import annotations

import collections
import dataclasses
import warnings
import weakref
from typing import Callable, Sequence

import numpy as np
import scipy.optimize
import tensorflow as tf
from tqdm.auto import tqdm

from lucid_ifv import objectives as objectives_mod
from lucid_ifv.conv_gradient import conv2d_gradient
from lucid_ifv.gradient_overrides import overridden_gradients
from lucid_ifv.param import Param, image_for_model, numpy_seed
from lucid_ifv.param.traced import TracedParam
from lucid_ifv.validation import check_increasing

RESERVED_NAMES = ("input", "params")
CHECK_EVERY = 20  # L-BFGS iterations between stationarity checks when converging
#: Adam steps between reads of the objective values (and their NaN check) in `render_vis`:
#: reading a value waits for its step, so reading every step keeps TensorFlow from queueing
#: the next one (photos_cnn, Fourier, batch 1: 0.82 of the bare step with a read per step,
#: 0.89 without; docs/benchmarks.md). A NaN is reported with its own step, at most this
#: many steps late.
READ_EVERY = 10
# Loss changes below SMALL_CHANGE * |loss| reach SciPy as the trapezoid rule of the gradients
# along the step: float32 losses resolve only ~1e-7 |loss|, which stalls the line search
# ("ABNORMAL") short of stationarity, while float32 gradients stay accurate (float64 renders,
# `lucid_ifv.precision`, converging to ~1e-8 meet the same wall later; the rule serves both).
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
        parameters (`stationarity_residual`; 0 means stationary), always computed (None
        for a parametrization that is not per-sample, e.g. a lowres_tensor shared across the
        batch, or whose images the model only takes after the transforms, e.g. RGBA).
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

    # Lucid's render_vis returns the list of images: ``result[-1]``, ``len(result)``, loops
    def __getitem__(self, index):
        return self.images[index]

    def __len__(self) -> int:
        return len(self.images)

    def __iter__(self):
        return iter(self.images)


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
        x = param(params) if param.accepts_params else param()
        return objective(recording_T_factory(x, params))

    trace.get_concrete_function(*specs)
    return used


#: Compiled renders kept (least recently used evicted first).
RENDER_CACHE_SIZE = 8
#: Gradient functions the compiled Adam and L-BFGS steps are traced with from `STEP_MIN_BATCH`
#: images on (the convolution's input gradient as a forward convolution, `lucid_ifv.conv_gradient`):
#: measured faster there, slower at batch 1 (`benchmarks/ab_fv_step.py`, docs/performance.md).
STEP_GRADIENTS = {"Conv2D": conv2d_gradient}
STEP_MIN_BATCH = 4


def step_gradients(batch: int) -> dict:
    """The gradient overrides of an ordinary backward pass over ``batch`` images:
    `STEP_GRADIENTS` from `STEP_MIN_BATCH` on, none below."""
    return STEP_GRADIENTS if batch >= STEP_MIN_BATCH else {}


_RENDERS: "collections.OrderedDict[tuple, _CompiledRender]" = collections.OrderedDict()
#: Traces of compiled Adam steps (a Python side effect of tracing; read by tests).
_STATS = {"traces": 0, "lbfgs_traces": 0}  # traces of the Adam step and of the L-BFGS function


def clear_cache() -> None:
    """Forget the compiled renders (they hold references to models and objectives). Call it
    after changing a model's weights in place (e.g. `compat.scratch.parameter_editor`):
    the cache knows a model by identity."""
    _RENDERS.clear()


def _optimizer_key(optimizer):
    from lucid_ifv.graph_keys import NoKey, state_key

    try:
        config = {k: v for k, v in optimizer.get_config().items() if k != "name"}  # names are made unique
        return (type(optimizer).__module__, type(optimizer).__qualname__, state_key(config))
    except (NoKey, NotImplementedError):
        return None


def _render_key(model, objectives, param: Param, transforms, resize, optimizer, relu_gradient_override):
    """What determines a render's compiled functions (see the module docstring); None when an
    objective or the parametrization has no description (a user's function, a traced
    ``param_f``): such a render compiles its own functions."""
    from lucid_ifv.graph_keys import key_or_identity

    objective_keys = tuple(getattr(o, "key", None) for o in objectives)
    param_key = param.structure_key() if param.accepts_params else None
    optimizer_key = _optimizer_key(optimizer)
    if None in objective_keys or param_key is None or optimizer_key is None:
        return None
    transforms_key = ("standard",) if transforms is None else key_or_identity(list(transforms))
    return (id(model), objective_keys, param_key, transforms_key, bool(resize), optimizer_key,
            bool(relu_gradient_override))


class _CompiledRender:
    """A render's compiled functions and everything they close over, built once per key.

    It owns working copies of the parametrization's variables and an optimizer built on
    them; its Adam step takes the caller's variables as arguments (traced by shape, not
    identity), copies them in, applies the optimizer and copies the result back, so the
    caller's variables always hold the current parameters. `start` resets the optimizer to
    its freshly built state and the transforms' random generator to a seed. One `VisSetup`
    uses it at a time (`owner`); another one made while it is alive compiles its own.
    """

    def __init__(self, model, objective, print_objectives, param: Param, transforms, resize, optimizer,
                 relu_gradient_override):
        self.model, self.objective, self.print_objectives, self.param = model, objective, print_objectives, param
        self.transforms = transforms  # kept alive: identities in the key
        self.rng = tf.random.Generator.from_seed(0)
        self.transform = _resolve_transform(transforms, model, self.rng, param.shape[1:3], resize)
        self.layers = set()
        for each in [objective, *print_objectives]:
            self.layers |= layers_used(model, each, param, self.transform)
        self.work = [tf.Variable(v.read_value()) for v in param.variables]
        self.optimizer = type(optimizer).from_config(optimizer.get_config())  # the caller's stays untouched
        self.optimizer.build(self.work)
        self.optimizer_start = [v.numpy() for v in self.optimizer.variables]
        redirected = None
        if relu_gradient_override:
            from lucid_ifv.redirected_relu import redirected_model

            redirected = redirected_model(model)
        self.adam_step = self._make_adam_step(model)
        self.redirected_step = None if redirected is None else self._make_adam_step(redirected)
        self.owner = None
        self._gradient_norms = self._loss_and_grad = self._extra_values = None

    def start(self, owner, seed) -> None:
        """Hand the functions to ``owner`` (a `VisSetup`): fresh optimizer state, transforms'
        generator from ``seed`` (None: non-deterministic)."""
        self.owner = weakref.ref(owner)
        for var, value in zip(self.optimizer.variables, self.optimizer_start):
            var.assign(value)
        if seed is None:
            self.rng.reset(tf.random.Generator.from_non_deterministic_state().state)
        else:
            self.rng.reset_from_seed(seed)

    def in_use(self) -> bool:
        return self.owner is not None and self.owner() is not None

    def forward(self, params, transform="default", model=None):
        transform = self.transform if transform == "default" else transform
        x = self.param(params)
        return make_T(model or self.model, x, transform_or_identity(transform, x), params, self.layers)

    def evaluate(self, params, model=None):
        return tf.reduce_sum(self.objective(self.forward(params, model=model)))  # Lucid's vector objectives add up

    def _make_adam_step(self, model):
        @tf.function
        def adam_step(variables):
            _STATS["traces"] += 1  # Python side effect: runs once per trace
            for work, var in zip(self.work, variables):
                work.assign(var)
            with overridden_gradients(step_gradients(self.param.batch)):
                with tf.GradientTape() as tape:
                    value = self.evaluate(variables, model)
                    loss = -value
                grads = tape.gradient(loss, variables)
            self.optimizer.apply_gradients(zip(grads, self.work))
            for work, var in zip(self.work, variables):
                var.assign(work)
            return value
        return adam_step

    def gradient_norms(self):
        """`_gradient_norms_fn` of the objective without transforms (compiled once)."""
        if self._gradient_norms is None:
            self._gradient_norms = _gradient_norms_fn(lambda params: self.forward(params, None), self.objective,
                                                      self.param.variables)
        return self._gradient_norms

    def loss_and_grad(self):
        """`_loss_and_grad_fn` of the objective (compiled once)."""
        if self._loss_and_grad is None:
            self._loss_and_grad = _loss_and_grad_fn(self.evaluate, self.param.variables, self.param.batch)
        return self._loss_and_grad

    def extra_values(self, variables):
        """The print objectives' values at ``variables``."""
        if self._extra_values is None:
            @tf.function
            def extra_values(variables):
                T = self.forward(variables)
                return [tf.reduce_sum(o(T)) for o in self.print_objectives]
            self._extra_values = extra_values
        return self._extra_values(variables)


def _compiled_render(owner, seed, model, objective, print_objectives, param, transforms, resize, optimizer,
                     relu_gradient_override) -> _CompiledRender:
    """The cached `_CompiledRender` for these arguments (built and cached on a miss; a private
    one when they have no key or the cached one is in use), started for ``owner``."""
    args = (model, objective, print_objectives, param, transforms, resize, optimizer, relu_gradient_override)
    key = _render_key(model, [objective, *print_objectives], param, transforms, resize, optimizer,
                      relu_gradient_override)
    compiled = _RENDERS.get(key) if key is not None else None
    if compiled is None or compiled.in_use():
        compiled = _CompiledRender(*args)
        if key is not None and key not in _RENDERS:
            _RENDERS[key] = compiled
            while len(_RENDERS) > RENDER_CACHE_SIZE:
                _RENDERS.popitem(last=False)
    else:
        _RENDERS.move_to_end(key)
    compiled.start(owner, seed)
    return compiled


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
        if isinstance(param, Param):
            return param
        if not isinstance(param, tf.Tensor):
            raise TypeError(f"param_f must return a lucid_ifv.param.Param or a tensor built from Params, "
                            f"got {type(param).__name__}")
        with numpy_seed(seed):  # Lucid style: TF functions of Params, traced (lucid_ifv.param.traced)
            return TracedParam(param_f)
    raise TypeError(f"param_f must be None, a Param or a callable returning one, got {type(param_f).__name__}")


def _check_param_fits(param: Param, model, transforms) -> None:
    """ValueError unless the model takes the parametrization's images (channels, unless
    transforms may change them, e.g. `transform.collapse_alpha_random`; size when the model's
    input size is fixed)."""
    h, w, c = param.shape[1:]
    if c != model.image_shape[-1] and not transforms:
        raise ValueError(
            f"the parametrization makes images of {c} channels, model {model.name!r} takes "
            f"{model.image_shape[-1]} (shape {tuple(param.shape[1:])} vs {tuple(model.image_shape)})"
        )
    model.check_input_size(h, w, [])


def _resolve_transform(transforms, model, rng, size, resize=True) -> Callable | None:
    """Compose the transforms (None: Lucid's standard ones), then resize to ``size`` (the
    images' own ``(h, w)``) when `resize` or when the model's input size is fixed."""
    from lucid_ifv import transform as transform_mod

    if transforms is None:
        transforms = list(transform_mod.standard_transforms)
    transforms = list(transforms)
    if not transforms:
        return None
    if resize or model.fixed_input_size:
        transforms.append(transform_mod.resize_to(*size))
    composed = transform_mod.compose(transforms)
    return lambda images: composed(images, rng)


#: TF1 optimizers (``tf.compat.v1.train.*``, what Lucid code passes) -> Keras equivalents.
_TF1_OPTIMIZERS = {
    "AdamOptimizer": lambda o: tf.keras.optimizers.Adam(o._lr, beta_1=o._beta1, beta_2=o._beta2, epsilon=o._epsilon),
    "GradientDescentOptimizer": lambda o: tf.keras.optimizers.SGD(o._learning_rate),
    "MomentumOptimizer": lambda o: tf.keras.optimizers.SGD(o._learning_rate, momentum=o._momentum,
                                                          nesterov=o._use_nesterov),
    "RMSPropOptimizer": lambda o: tf.keras.optimizers.RMSprop(o._learning_rate, rho=o._decay, momentum=o._momentum,
                                                             epsilon=o._epsilon, centered=o._centered),
    "AdagradOptimizer": lambda o: tf.keras.optimizers.Adagrad(o._learning_rate,
                                                             initial_accumulator_value=o._initial_accumulator_value),
}


def _resolve_optimizer(optimizer):
    if optimizer is None:
        return tf.keras.optimizers.Adam(learning_rate=0.05, epsilon=1e-8)  # TF1 AdamOptimizer's
    if isinstance(optimizer, tf.compat.v1.train.Optimizer):
        convert = _TF1_OPTIMIZERS.get(type(optimizer).__name__)
        if convert is None:
            raise TypeError(
                f"the TF1 optimizer {type(optimizer).__name__} has no Keras equivalent here; pass a "
                f"tf.keras.optimizers one (TF1 Adam, GradientDescent, Momentum, RMSProp, Adagrad are mapped)"
            )
        return convert(optimizer)
    if callable(optimizer) and not isinstance(optimizer, tf.keras.optimizers.Optimizer):
        return _resolve_optimizer(optimizer())
    if not isinstance(optimizer, tf.keras.optimizers.Optimizer):
        raise TypeError(f"optimizer must be a Keras optimizer or a factory of one, got {type(optimizer).__name__}")
    return optimizer


def _report_threshold(step, value, images, print_objectives, T_values) -> None:
    """`render_vis(verbose=True)`: print the step, the objective and the extra objectives, show
    the images side by side (inline in IPython, else a PNG; `lucid_ifv.compat.misc.io.show`)."""
    from lucid_ifv.compat.misc.io import show

    print(step, value)
    for objective, extra in zip(print_objectives, T_values):
        print(f"  {objectives_mod._description(objective) or objectives_mod._name(objective)}: {extra:.4g}")
    show(np.hstack(images))


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
        total, terms_ = norms(*[np.asarray(a, v.dtype.as_numpy_dtype) for a, v in zip(arrays, variables)])
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


class VisSetup:
    """Everything one feature visualization optimizes, built once: the parametrization, the
    transforms, the layers the objective reads, the optimizer and the compiled Adam step(s).

    ``forward(params, transform, model) -> T``; ``evaluate(params, model)``: the objective
    summed over the batch; ``step()`` runs one Adam step (on the redirected-ReLU variant of
    the model for the first `redirected_relu.REDIRECT_STEPS` calls when
    ``relu_gradient_override``) and returns the objective before the update;
    ``extra_values()``: ``print_objectives`` at the current parameters. Arguments as
    `render_vis`'s.
    """

    def __init__(self, model, objective, param_f=None, optimizer=None, transforms=None, seed=None,
                 relu_gradient_override=True, print_objectives=None, resize=True):
        self.model = model
        self.objective = objectives_mod.as_objective(objective)
        self.print_objectives = [objectives_mod.as_objective(o) for o in (print_objectives or [])]
        self.param = _resolve_param(param_f, model, seed)
        _check_param_fits(self.param, model, transforms)
        optimizer = _resolve_optimizer(optimizer)
        self.variables = self.param.variables
        if not self.variables:
            raise ValueError(f"{self.param!r} has no variables to optimize (e.g. image_sample draws a new "
                             f"random image at every step: combine it with a trainable parametrization)")
        self.compiled = _compiled_render(self, seed, model, self.objective, self.print_objectives, self.param,
                                         transforms, resize, optimizer, relu_gradient_override)
        self.transform, self.layers = self.compiled.transform, self.compiled.layers
        model.check_input_size(*self.param.shape[1:3], sorted(self.layers))
        self.optimizer = self.compiled.optimizer
        self.steps_done = 0
        self._concrete_steps = {}  # redirected or not -> the compiled step's concrete function

    def forward(self, params, transform="default", model=None):
        return self.compiled.forward(params, transform, model)

    def evaluate(self, params, model=None):
        return self.compiled.evaluate(params, model)

    def step(self) -> tf.Tensor:
        from lucid_ifv.redirected_relu import REDIRECT_STEPS

        redirect = self.compiled.redirected_step is not None and self.steps_done < REDIRECT_STEPS
        step = self._concrete_steps.get(redirect)
        if step is None:  # a concrete function's call skips tf.function's argument matching (~0.25 ms)
            step = (self.compiled.redirected_step if redirect else self.compiled.adam_step)
            step = self._concrete_steps[redirect] = step.get_concrete_function(self.variables)
        value = step(self.variables)
        self.steps_done += 1
        return value

    def extra_values(self):
        return self.compiled.extra_values(self.variables)


def render_vis(model, objective, param_f=None, optimizer=None, transforms=None,
               thresholds: Sequence[int] = (512,), lbfgs_steps: int = 0, seed=None,
               progress: bool = True, lbfgs_options: dict | None = None,
               converge: float | None = None, max_lbfgs_steps: int = 10000,
               relu_gradient_override: bool = True, print_objectives=None, verbose: bool = False,
               use_fixed_seed: bool = False, resize: bool = True) -> RenderResult:
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
      relu_gradient_override: Lucid's redirected ReLU gradient for the first
        `redirected_relu.REDIRECT_STEPS` Adam steps (so that a channel dead for the initial
        noise still gets a gradient); then the true gradient. No effect on models without
        ReLU (smooth surrogates).
      print_objectives: objectives whose values are printed at each threshold with
        ``verbose`` (Lucid's keyword).
      verbose: at each threshold print the step and objective and show the images (inline
        in IPython, else a PNG; see `lucid_ifv.compat.misc.io.show`).
      use_fixed_seed: Lucid's keyword: ``seed=0`` when ``seed`` is None.
      resize: resize the transformed images back to the parametrization's size (default);
        False lets the model see them at the size the transforms make, as Lucid does (only
        for models that take any size; a model of fixed input size always gets its size).
    Returns:
      `RenderResult`; ``residual`` holds the final ``r_i`` (of the objective without
      transforms, the one the inversion assumes) whatever ``converge`` is.
    """
    thresholds = check_increasing(thresholds, "thresholds")
    lbfgs_steps = int(lbfgs_steps)
    if lbfgs_steps < 0:
        raise ValueError(f"lbfgs_steps must be >= 0, got {lbfgs_steps}")
    converge, max_steps = _check_converge(converge, max_lbfgs_steps, lbfgs_steps)
    if seed is None and use_fixed_seed:
        seed = 0
    vis = VisSetup(model, objective, param_f, optimizer, transforms, seed, relu_gradient_override,
                   print_objectives, resize)
    if (lbfgs_steps or converge is not None) and vis.transform is not None:
        raise ValueError(
            "L-BFGS and converge need a deterministic objective: pass transforms=[] with "
            f"lbfgs_steps > 0 or converge (got {lbfgs_steps} L-BFGS steps, converge={converge}, random transforms)"
        )
    param, variables, objective, print_objectives = vis.param, vis.variables, vis.objective, vis.print_objectives
    if (lbfgs_steps or converge is not None) and not param.accepts_params:
        raise ValueError(f"L-BFGS and converge need a parametrization that evaluates any parameter values; "
                         f"{param!r} (a param_f traced from TensorFlow functions) evaluates only its own variables")
    if param.per_sample and param.shape[-1] == model.image_shape[-1]:  # (not RGBA before collapse_alpha)
        gradient_norms = vis.compiled.gradient_norms()
        start_grad_norm, _ = gradient_norms(param.numpy_params())

        def residual(arrays):
            return stationarity_residual(*gradient_norms(arrays), start_grad_norm)
    elif converge is not None:
        raise ValueError(f"converge needs a per-sample parametrization (its stationarity is per sample); "
                         f"{param!r} shares variables across the batch")
    else:
        residual = lambda arrays: None  # noqa: E731 (no per-sample residual exists)

    result = RenderResult(images=[], steps=[], param=param, params=[], objective=[])
    if thresholds[0] == 0:  # the images before any step
        result.images.append(param().numpy())
        result.steps.append(0)
    bar = tqdm(total=thresholds[-1], disable=not progress, desc="render (Adam)", leave=False)
    pending = []  # the objective values of the Adam steps not read yet (tensors)

    def read_pending():
        """Move the pending values to ``result.objective``; raise at the first non-finite one."""
        for value in tf.stack(pending).numpy().tolist() if pending else []:
            if not np.isfinite(value):
                raise FloatingPointError(f"the objective became {value} at Adam step {len(result.objective) + 1}")
            result.objective.append(value)
        pending.clear()

    try:
        for step in range(1, thresholds[-1] + 1):
            pending.append(vis.step())
            bar.update(1)
            if step % READ_EVERY == 0 or step in thresholds:
                read_pending()
                bar.set_postfix(objective=f"{result.objective[-1]:.4g}")
            if step in thresholds:
                result.images.append(param().numpy())
                result.steps.append(step)
                if verbose:
                    extras = [float(v) for v in vis.extra_values()] if print_objectives else []
                    _report_threshold(step, result.objective[-1], result.images[-1], print_objectives, extras)
        bar.close()
        stop = None if converge is None else lambda flat: bool((residual(_split(flat, variables)) <= converge).all())
        if stop is not None and not lbfgs_steps and stop(_flat(variables)):
            max_steps = 0  # Adam got there
        if max_steps:
            result.lbfgs = _lbfgs(vis.compiled.loss_and_grad(), variables, lbfgs_steps, lbfgs_options, result, progress,
                                  stop=stop, max_steps=max_steps)
            result.images.append(param().numpy())
            result.steps.append("lbfgs")
    except KeyboardInterrupt:
        bar.close()
        read_pending()
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


def _stationary_message(nit: int, note: str = "") -> str:
    return f"stationary: every sample's residual <= the tolerance after {nit} iterations{note}"


def _loss_and_grad_fn(evaluate, variables, batch: int) -> Callable:
    """Compiled ``flat [D] -> (-objective, its gradient [D])`` (in the variables' dtype) for
    parameters shaped like ``variables`` (``evaluate(params)``: the objective summed over the ``batch`` images;
    traced with `step_gradients`)."""
    shapes = [tuple(v.shape) for v in variables]
    sizes = [int(np.prod(s)) for s in shapes]

    @tf.function
    def loss_and_grad(flat):
        _STATS["lbfgs_traces"] += 1  # Python side effect: runs once per trace
        parts = tf.split(flat, sizes)
        params = [tf.reshape(p, s) for p, s in zip(parts, shapes)]
        with overridden_gradients(step_gradients(batch)):
            with tf.GradientTape() as tape:
                tape.watch(params)
                loss = -evaluate(params)
            grads = tape.gradient(loss, params)
        return loss, tf.concat([tf.reshape(g, [-1]) for g in grads], 0)

    return loss_and_grad


def _lbfgs(loss_and_grad, variables, steps, options, result, progress, stop=None, max_steps=None) -> dict:
    """L-BFGS-B on the flattened variables; loss and gradient from one compiled function.

    Runs ``steps`` iterations. With ``stop`` (``flat float64 params -> bool``), it goes on up
    to ``max_steps`` iterations in all, calls ``stop`` after ``steps`` iterations and every
    `CHECK_EVERY` after, and ends when it returns True; a SciPy run that ends early (e.g. a
    failed line search) is restarted from its last point while restarts make progress.
    The variables get the last iterate, also on KeyboardInterrupt.
    """
    max_steps = steps if stop is None else max_steps
    last = {"nfev": 0}
    dtype = variables[0].dtype

    def fun(x):
        loss, grad = loss_and_grad(tf.constant(x, dtype))
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
                message = _stationary_message(state["nit"])
                break
            state["x"], message = np.array(res.x), str(res.message)
            if stop is not None and stop(state["x"]):  # SciPy ended on its own at a stationary point
                message = _stationary_message(state["nit"], f" (SciPy: {message})")
                break
            if stop is None or state["nit"] in (nit_before, max_steps):
                break
            restarts += 1  # SciPy stopped early (line search) but progressed: restart its memory
    finally:
        bar.close()
        for var, part in zip(variables, _split(state["x"], variables)):
            var.assign(part.astype(var.dtype.as_numpy_dtype))
    fun(state["x"])
    return {"nit": state["nit"], "nfev": last["nfev"], "message": message, "objective": -last["loss"],
            "grad_norm": float(np.linalg.norm(last["grad"])), "restarts": restarts}


def per_sample_objectives(objective_for: Callable, targets) -> Callable:
    """``i -> `` the objective of ``targets[i:i + 1]``, for `converge_each_sample`, built once.

    ``objective_for(target)`` is called once, on the shared ``[1, k]`` target variable
    (`objectives.target_slot`; e.g. ``lambda t: feature_objective(layer, t) - lam *
    params_L2()``); before returning it for sample ``i``, the variable gets ``targets[i:i +
    1]``. Every sample, and every later batch with the same ``k`` and objective structure,
    thus runs the same compiled functions: one trace in all instead of one per sample.

    Args:
      objective_for: ``target [1, k] -> Objective``; the target is a ``tf.Variable``
        (`objectives.feature_objective` takes one).
      targets: ``[B, k]``.
    """
    from lucid_ifv.objectives import target_slot

    targets = np.asarray(targets, np.float32)
    objective = objective_for(target_slot(targets[:1]))

    def objective_of(i):
        target_slot(targets[i:i + 1])
        return objective

    return objective_of


def converge_each_sample(model, objective_of: Callable, rendered: RenderResult, single: Param, converge: float,
                         max_lbfgs_steps: int, lbfgs_steps: int = 0, seed=None, render: Callable | None = None,
                         **render_options) -> RenderResult:
    """The convergence phase sample by sample: L-BFGS on each sample's own objective.

    ``render_vis(..., converge=TOL)`` runs SciPy's L-BFGS-B on the whole batch: one step length
    and one curvature memory for all samples, whose scales can differ by orders of magnitude,
    so the stiffest sample sets everyone's pace and a sample's realization depends on its
    batch. Measured on `densenet_small`'s softmax (30 Hoyer targets, 4000 iterations,
    `experiments/smooth_round_trip.sh`): 11-12 of 30 renders reached 1e-3 jointly, 29 of 30
    alone (docs/rendering.md, "Converging each sample").

    The compiled functions are cached by the objective's key: with `per_sample_objectives`
    (one objective whose target is a ``tf.Variable``, assigned per sample) the batch traces
    once; objectives with their targets built in trace once per sample.

    Args:
      model: the model ``rendered`` was made with.
      objective_of: ``i -> `` sample ``i``'s objective for a batch of one (e.g.
        ``per_sample_objectives(lambda t: feature_objective(layer, t) - lam * params_L2(),
        targets)``).
      rendered: a batch's `RenderResult` after its Adam phase (``converge`` unset); its
        ``param`` holds the batch's parameters and gets the converged ones.
      single: a parametrization of batch 1 and of the same structure as ``rendered.param``
        (each sample's parameters are assigned to it in turn).
      converge, max_lbfgs_steps, lbfgs_steps: as in `render_vis`, per sample.
      seed: passed to `render_vis`.
      render: `render_vis` or a wrapper of it (default `render_vis`); ``render_options`` go to it.
    Returns:
      A `RenderResult` of the batch: the Adam images, then the converged ones (step
      ``"lbfgs"``); ``params``, ``residual`` and ``converged`` per sample; ``lbfgs``:
      ``{"nit": [B], "message": [B], "grad_norm": ..., "per_sample": True}``; ``interrupted``
      when a sample's run was (the samples after it keep their Adam parameters).
    """
    render = render or render_vis
    batch_params = [np.array(a) for a in rendered.param.numpy_params()]
    batch = batch_params[0].shape[0]
    if single.batch != 1 or len(single.variables) != len(batch_params):
        raise ValueError(f"single must be a batch-1 parametrization with {len(batch_params)} variable(s) like the "
                         f"batch's; got batch {single.batch} with {len(single.variables)}")
    residuals, nits, messages, grad_norms, interrupted = np.zeros(batch), [], [], [], False
    for i in range(batch):
        single.assign([a[i:i + 1] for a in batch_params])
        result = render(model, objective_of(i), single, transforms=[], thresholds=(0,), lbfgs_steps=lbfgs_steps,
                        seed=seed, converge=converge, max_lbfgs_steps=max_lbfgs_steps, **render_options)
        for a, p in zip(batch_params, result.params):
            a[i:i + 1] = p
        residuals[i] = result.residual[0]
        nits.append(0 if result.lbfgs is None else int(result.lbfgs["nit"]))
        messages.append("stationary after Adam" if result.lbfgs is None else result.lbfgs["message"])
        grad_norms.append(0.0 if result.lbfgs is None else result.lbfgs["grad_norm"])
        if result.interrupted:
            interrupted = True
            residuals[i + 1:] = np.nan
            break
    rendered.param.assign(batch_params)
    images = rendered.param().numpy()
    return dataclasses.replace(
        rendered, images=[*rendered.images, images], steps=[*rendered.steps, "lbfgs"], params=batch_params,
        lbfgs={"nit": nits, "message": messages, "grad_norm": float(np.linalg.norm(grad_norms)), "per_sample": True},
        interrupted=interrupted, residual=residuals, converged=residuals <= converge)
