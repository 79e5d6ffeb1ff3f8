"""The paper's round trip as a resumable experiment: sample -> realize -> invert -> record.

For each batch of targets ``t`` (Hoyer-sparse, then canonical): render realizations with
``feature_objective(layer, t, p) - prior_weight * params_L2()`` (Adam, then L-BFGS),
invert them with the paper's solve and, when the FV had a prior, with the prior-aware
solve (angles to ``t``, and to ``t`` restricted to the features alive at the realization:
a feature whose channel is dead there has no gradient, so its target weight cannot be
recovered from that realization), optionally re-optimize from the realization towards ``t*``, ``f``, ``t`` and a
random objective (SSIM before/after), and append one JSON record per sample to
``<out>/records.jsonl`` (flushed and fsynced per batch). Realizations go to
``<out>/realizations/batch_NNNN.npz`` with the Gram statistics of their Jacobians
(`ifv.GramStatistics`), enough to re-solve offline in any critical space
(`critical_space_analysis`).

Nothing unfinished is ever recorded (`docs/reliability.md`):

- batches are fixed by the sample index (``batch_size`` consecutive samples, seeded by the
  first index), so a resumed run equals an uninterrupted one exactly;
- a batch's ``.npz`` is written to a temporary file, fsynced and renamed, and only then are
  its records appended (one write, fsynced); a failed write leaves no partial file behind;
- on resume, ``records.jsonl`` is truncated to its last complete batch (a torn line from a
  hard kill is dropped), realization files without records and temporary files are deleted,
  and the missing batches are redone; a finished run is left as it is;
- Ctrl-C stops the run with `ExperimentInterrupted` (a KeyboardInterrupt): the batch in
  flight is not recorded, even when `render_vis` returned its partial result;
- a lock (``<out>/.lock``, holding the owner's pid and host) refuses a second process on the
  same folder; an unusable folder and invalid settings are refused before any work.
Other settings in the same folder are refused.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import os
import signal
import socket
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from lucid_ifv import ifv, metrics, sampling
from lucid_ifv import objectives as obj
from lucid_ifv.atomic import write_atomic
from lucid_ifv.ifv.jacobian import fixed_blocks
from lucid_ifv.validation import check_feature_indices
from lucid_ifv.param import image_for_model
from lucid_ifv.param.images import check_mask_for_model
from lucid_ifv.precision import check_float64_support, converge_in_float64, float64_model
from lucid_ifv.smooth_defaults import AUTO, smooth_mode_tolerances
from lucid_ifv.render import converge_each_sample, per_sample_objectives, render_vis

SATURATION_MARGIN = 1e-3  # a pixel within this of 0 or 1 counts as saturated
TEMP_SUFFIX = ".tmp"  # files being written: `.<name>.<random>.tmp` next to their destination
KILL_AT_ENV = "LUCID_IFV_TEST_KILL_AT"  # test hook, see `_checkpoint`
KILL_SIGNAL_ENV = "LUCID_IFV_TEST_KILL_SIGNAL"


class ExperimentInterrupted(KeyboardInterrupt):
    """Ctrl-C stopped a batch: nothing of it was recorded; run again to resume."""


class ExperimentError(ValueError):
    """The experiment folder cannot be used: not writable, a write failed, or another
    process holds it. A ValueError, so the CLI prints it as a one-line error."""


def _checkpoint(name: str) -> None:
    """Test hook: when ``$LUCID_IFV_TEST_KILL_AT`` is ``name``, send this process the signal
    ``$LUCID_IFV_TEST_KILL_SIGNAL`` (default SIGKILL; SIGINT, SIGSTOP...), to interrupt a run
    at an exact point (`tests/test_experiment_durability.py`). Costs one lookup otherwise.

    Points: ``batch`` (a batch starts), ``jacobian`` (after rendering, before the Jacobian),
    ``npz_temp`` (arrays in the temporary file, not renamed), ``arrays_written`` (arrays on
    disk, records not appended), ``record_flushed`` (records appended and fsynced),
    ``summary`` (`summarize` starts).
    """
    if os.environ.get(KILL_AT_ENV) == name:
        os.kill(os.getpid(), getattr(signal, os.environ.get(KILL_SIGNAL_ENV, "SIGKILL")))


# integer settings and their minimum; then the real-valued settings that must be finite and >= 0
COUNT_SETTINGS = {"n_hoyer": 0, "n_canonical": 0, "adam_steps": 1, "lbfgs_steps": 0, "max_lbfgs_steps": 0,
                  "batch_size": 1, "reoptimize_steps": 0, "seed": 0, "warmup_steps": 0}
NONNEGATIVE_SETTINGS = ("prior_weight", "cossim_pow", "decay_power", "relu_beta", "pool_temperature")


def _is_integer(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


@dataclasses.dataclass
class ExperimentConfig:
    """Settings of one round-trip experiment (all saved next to the results)."""

    layer: str
    features: list | None = None  # channel subset (default: all channels of the layer)
    n_hoyer: int = 30
    n_canonical: int = 0
    seed: int = 0
    cossim_pow: float = 1
    aggregation: str = "max_pool_mean"
    fft: bool = True
    decorrelate: bool = True
    decay_power: float = 1.0
    geometry_mask: str = "continuous"  # geometry-image models only: "continuous" or "one" (`param.geometry`)
    adam_steps: int = 800
    lbfgs_steps: int = 300
    warmup_steps: int = 0  # Adam steps without the prior first (lets channels dead at the start activate)
    prior_weight: float = 0.0  # lambda of params_L2; 0 is the paper's setting
    prior_relative: bool = False  # prior_weight is relative to the layer's response scale (`obj.relative_prior`)
    smooth: bool = False  # render and invert on the smooth surrogate (`lucid_ifv.smooth`)
    relu_beta: float = 10.0
    relu_beta_relative: bool = False  # each ReLU unit's beta is relu_beta / its input's RMS (`smooth_model`)
    pool_temperature: float = 0.05
    # continue L-BFGS until each sample's relative residual <= this; "auto": 1e-3 in smooth mode, else None (off)
    converge: float | str | None = AUTO
    max_lbfgs_steps: int = 4000  # step cap of the convergence phase (10000 before 2026-12-06)
    per_sample_lbfgs: bool = True  # converge each sample alone (`render.converge_each_sample`); False: the batch jointly
    # then continue each sample in float64 to this residual and invert in float64; "auto": 1e-8 in smooth mode
    # with per-sample convergence, else None (`smooth_defaults.smooth_mode_tolerances`)
    float64_converge: float | str | None = AUTO
    batch_size: int = 8
    reoptimize_steps: int = 0  # the paper's check uses 500; 0 skips it
    invert_8bit: bool = False  # also invert the realization after 8-bit quantization (as saved in a PNG)

    def __post_init__(self):
        self.converge, self.float64_converge = smooth_mode_tolerances(self.smooth, self.converge,
                                                                      self.float64_converge, self.per_sample_lbfgs)

    def validate(self, model) -> None:
        """Refuse settings that cannot run (NaN, inf, negative or non-integer values, unknown
        layer or features) with a message naming the value and what was expected."""
        info = model.layer(self.layer)
        if self.features is not None:
            check_feature_indices(self.features, info.depth, f"features of layer {self.layer!r}")
        for name, minimum in COUNT_SETTINGS.items():
            value = getattr(self, name)
            if not (_is_integer(value) and value >= minimum):
                raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
        for name in NONNEGATIVE_SETTINGS:
            value = getattr(self, name)
            if not (_is_number(value) and np.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
        from lucid_ifv.param.geometry import MASK_MODES

        if self.geometry_mask not in MASK_MODES:
            raise ValueError(f"geometry_mask must be one of {MASK_MODES}, got {self.geometry_mask!r}")
        check_mask_for_model(model, self.geometry_mask)
        if self.invert_8bit and getattr(model, "input_kind", "image") != "image":
            raise ValueError(f"invert_8bit applies to images; model {model.name!r} takes "
                             f"{model.input_kind} inputs, which no 8-bit file holds")
        if self.n_hoyer + self.n_canonical == 0:
            raise ValueError("the experiment has no targets: n_hoyer and n_canonical are both 0")
        if self.smooth and not (self.relu_beta > 0 and self.pool_temperature > 0):
            raise ValueError(f"smooth mode needs relu_beta > 0 and pool_temperature > 0, got "
                             f"{self.relu_beta} and {self.pool_temperature}")
        if self.relu_beta_relative and not self.smooth:
            raise ValueError("relu_beta_relative=True needs smooth=True (it sets the surrogate's softplus)")
        for name in ("converge", "float64_converge"):
            value = getattr(self, name)
            if value is not None and not (_is_number(value) and np.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a relative tolerance > 0 or None, got {value!r}")
        if self.float64_converge is not None and not (self.converge is not None and self.per_sample_lbfgs):
            raise ValueError(f"float64_converge={self.float64_converge} continues converged realizations: it needs "
                             f"converge (got {self.converge}) and per-sample L-BFGS (per_sample_lbfgs=True)")

    def feature_count(self, model) -> int:
        return len(self.features) if self.features is not None else model.layer(self.layer).depth


def make_targets(config: ExperimentConfig, k: int):
    """``[n, k]`` unit targets (Hoyer-sparse first, then canonical) and their sparseness."""
    parts, sparse = [], []
    if config.n_hoyer:
        t, s = sampling.sample_hoyer_targets(k, config.n_hoyer, config.seed)
        parts.append(t)
        sparse.append(s)
    if config.n_canonical:
        t = sampling.canonical_targets(k)
        picks = np.random.default_rng(config.seed + 1).choice(k, size=config.n_canonical, replace=config.n_canonical > k)
        parts.append(t[picks])
        sparse.append(np.ones(config.n_canonical))
    if not parts:
        raise ValueError("the experiment has no targets: n_hoyer and n_canonical are both 0")
    return np.concatenate(parts), np.concatenate(sparse)


SOLVES = ("paper", "prior_aware", "anchored", "nonneg")  # every solve a run reports (those that apply)
GOOD_DEG = 5.0  # an answer within this angle of the (live) target counts as right: the verdict's calibration


@dataclasses.dataclass
class Setup:
    """What a config makes of a model: the network FV and IFV run on (the smooth surrogate
    in smooth mode), the aggregation (its max-pool smoothed too) and the absolute prior weight."""

    model: object
    aggregation: object
    prior_weight: float


def prepare(model, config: ExperimentConfig) -> Setup:
    """`Setup` of ``config`` for ``model`` (checks the config first; with ``float64_converge``
    builds the network's float64 copy now, so a network that has none fails before any work)."""
    config.validate(model)
    setup = prepare_network(model, config.layer, config.aggregation, config.prior_weight,
                            prior_relative=config.prior_relative, features=config.features, smooth=config.smooth,
                            relu_beta=config.relu_beta, pool_temperature=config.pool_temperature,
                            relu_beta_relative=config.relu_beta_relative)
    if config.float64_converge is not None:  # the model's copy is cached: run_batch gets it
        check_float64_support(setup.model, realization_param(setup.model, config, 1, 0),
                              "float64_converge=None (lucid-ifv experiment --float32)")
    return setup


def prepare_network(model, layer: str, aggregation: str, prior_weight: float, *, prior_relative: bool = True,
                    features=None, smooth: bool = False, relu_beta: float = 10.0, pool_temperature: float = 0.05,
                    relu_beta_relative: bool = False) -> Setup:
    """The network, aggregation and absolute prior weight that FV and IFV use (the experiment
    runner's and the CLI's one rule): with ``smooth`` the surrogate `smooth_model(model,
    relu_beta, pool_temperature)` (per-unit betas on `calibration_noise` with
    ``relu_beta_relative``) and the aggregation's max-pool smoothed at the same temperature;
    a relative ``prior_weight`` is scaled by `objectives.relative_prior` on that network."""
    from lucid_ifv.aggregation import get_aggregation, smooth_aggregation
    from lucid_ifv.smooth import smooth_model

    pooling = get_aggregation(aggregation)
    if smooth:
        model = smooth_model(model, relu_beta, pool_temperature, "noise" if relu_beta_relative else None)
        pooling = smooth_aggregation(aggregation, pool_temperature)
    weight = prior_weight
    if prior_relative and weight:
        weight = obj.relative_prior(model, layer, weight, pooling, features)
    return Setup(model, pooling, float(weight))


def realization_param(model, config, batch, seed):
    """The parametrization of a batch of ``batch`` realizations (``config``'s Fourier/pixel,
    colours, decay power; the mask mode for geometry-image models), initialized from ``seed``."""
    return image_for_model(model, batch=batch, fft=config.fft, decorrelate=config.decorrelate,
                           decay_power=config.decay_power, seed=seed, mask=config.geometry_mask)


def fv_objective(config, setup, targets):
    """The FV objective of ``targets`` ``[B, k]``: the paper's feature objective minus the
    setup's prior weight times ``params_L2``."""
    objective = obj.feature_objective(config.layer, targets, config.cossim_pow, setup.aggregation, config.features)
    if setup.prior_weight:
        objective = objective - setup.prior_weight * obj.params_L2()
    return objective


def _render(*args, **kwargs):
    """`render_vis`, except that an interrupted optimization raises `ExperimentInterrupted`
    instead of returning half-optimized images (which an experiment must never record)."""
    kwargs.setdefault("relu_gradient_override", False)  # records stay comparable with earlier runs
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="render_vis interrupted")
        result = render_vis(*args, **kwargs)
    if result.interrupted:
        raise ExperimentInterrupted("interrupted while rendering a batch; nothing of it was recorded")
    return result


def realize(setup: Setup, config: ExperimentConfig, targets, param, seed: int):
    """Render realizations of ``targets`` ``[B, k]`` into ``param`` on ``setup.model``:
    ``config.warmup_steps`` Adam steps of the feature objective alone (without them, a
    channel that is dead at the start stays dead: the prior's gradient outweighs its
    vanishing one), then Adam and L-BFGS on the whole objective; `RenderResult`."""
    if config.warmup_steps and setup.prior_weight:
        features_only = obj.feature_objective(config.layer, obj.target_slot(targets), config.cossim_pow,
                                              setup.aggregation, config.features)
        _render(setup.model, features_only, param, transforms=[], thresholds=(config.warmup_steps,), seed=seed,
                progress=False)
    each = config.converge is not None and config.per_sample_lbfgs
    # the targets in a shared variable: every batch of this shape runs the same compiled functions
    rendered = _render(setup.model, fv_objective(config, setup, obj.target_slot(targets)), param, transforms=[],
                       thresholds=(config.adam_steps,), lbfgs_steps=0 if each else config.lbfgs_steps, seed=seed,
                       progress=False, converge=None if each else config.converge,
                       max_lbfgs_steps=config.max_lbfgs_steps)
    if not each:
        return rendered
    objective_of = per_sample_objectives(lambda target: fv_objective(config, setup, target), targets)
    return converge_each_sample(setup.model, objective_of, rendered,
                                realization_param(setup.model, config, 1, seed), config.converge,
                                config.max_lbfgs_steps, config.lbfgs_steps, seed=seed, render=_render, progress=False)


def continue_in_float64(setup: Setup, config: ExperimentConfig, targets, rendered, seed: int):
    """`precision.converge_in_float64` of converged realizations (``rendered``, float32) to
    ``config.float64_converge`` (at most ``max_lbfgs_steps`` L-BFGS iterations)."""
    objective_of = per_sample_objectives(lambda target: fv_objective(config, setup, target), targets)
    return converge_in_float64(setup.model, objective_of, rendered, realization_param(setup.model, config, 1, seed),
                               config.float64_converge, config.max_lbfgs_steps, seed=seed, render=_render,
                               progress=False)


def reoptimize_ssim(setup, config, param, params, objectives_by_name):
    """SSIM between the realization and the result of re-optimizing it towards each objective."""
    before = param(params).numpy()
    out = {}
    for name, targets in objectives_by_name.items():
        param.assign(params)
        result = _render(setup.model, fv_objective(config, setup, targets), param, transforms=[],
                            thresholds=(config.reoptimize_steps,), progress=False)
        out[name] = metrics.ssim(before, result.final)
    param.assign(params)
    return out


def _invert_8bit(setup, config, param, images, method):
    """Invert the realizations as an 8-bit file would hold them (through the parametrization's
    inverse), with the run's default solve; re-dithered (`ifv.dither`, `invert`'s default for
    images on the 8-bit grid), so the verdict judges the answer, not the rounding."""
    from lucid_ifv.imageio import quantize_8bit

    prior = obj.params_L2() if setup.prior_weight else None
    return ifv.invert(setup.model, config.layer, quantize_8bit(images), param=param, cossim_pow=config.cossim_pow,
                      aggregation=setup.aggregation, features=config.features, prior=prior, method=method)


def _angle_or_none(a, b, cossim_pow):
    """`metrics.objective_angle_deg` (modulo sign for odd p), None for a zero ``b`` or a NaN ``a``."""
    if np.linalg.norm(b) > 0 and np.all(np.isfinite(a)):
        return float(metrics.objective_angle_deg(a, b, cossim_pow))
    return None


def solves_for(config) -> list:
    """The solves that apply to a run: the paper's always; the prior methods with a prior."""
    return list(SOLVES) if config.prior_weight else ["paper"]


def default_solve(config) -> str:
    """The solve a run's headline figures use (`docs/ifv.md`, "Which solve")."""
    return ifv.DEFAULT_METHOD_WITH_PRIOR if config.prior_weight else "paper"


def _solve_records(result, targets, expected_weight, cossim_pow, rule=None) -> list:
    """Per-sample angle (overall and on live features; modulo sign for odd ``cossim_pow``),
    verdict (by ``rule``, default the library's) and diagnostics of one solve."""
    verdicts = result.verdicts(rule)
    alive_targets = targets * ~result.dead_features  # what a realization can still tell about t
    identifiable = result.angles_identifiable(targets, cossim_pow) if result.unidentifiable is not None else None
    determined_angles = result.angles_determined(targets, cossim_pow)
    determined = result.determined()
    rows = []
    for i in range(len(targets)):
        norm = np.linalg.norm(targets[i])
        unit = targets[i] / norm if norm > 0 else targets[i]
        row = {
            "angle": _angle_or_none(result.target[i], targets[i], cossim_pow),
            "angle_alive": _angle_or_none(result.target[i], alive_targets[i], cossim_pow),
            "verdict": str(verdicts[i]), "residual": float(result.residual[i]), "gap": float(result.gap[i]),
            "null_dim": None if result.null_dim is None else int(result.null_dim[i]),
            "dead": int(result.dead_features[i].sum()),
            "dead_target_mass": float(np.sum(targets[i][result.dead_features[i]] ** 2)),
        }
        if result.unidentifiable is not None:  # the per-sample trivial space (`InversionResult.unidentifiable`)
            directions = result.unidentifiable[i]
            row.update(angle_identifiable=None if np.isnan(identifiable[i]) else float(identifiable[i]),
                       unidentifiable_dim=int(directions.shape[1]),
                       unidentifiable_target_mass=float(np.sum((directions.T @ unit) ** 2)))
        if result.sensitivity is not None:  # per-feature error bars (`InversionResult.sensitivity`)
            live_undetermined = ~determined[i] & ~result.dead_features[i]
            row.update(angle_determined=None if np.isnan(determined_angles[i]) else float(determined_angles[i]),
                       undetermined=int(live_undetermined.sum()),
                       undetermined_target_mass=float(np.sum(unit[live_undetermined] ** 2)))
        if result.prior_weights is not None:
            row["prior_weight_estimate"] = float(result.prior_weights[i, 0])
            row["prior_weight_ratio"] = float(result.prior_weights[i, 0] / expected_weight) if expected_weight else None
        rows.append(row)
    return rows


@fixed_blocks("pfor")
def run_batch(model, config: ExperimentConfig, targets, batch_seed: int, setup: Setup | None = None):
    """Realize and invert one batch of targets; returns (records, arrays to save).

    ``model`` is the plain model; ``setup`` (default ``prepare(model, config)``) what the run
    renders and inverts on. Its Jacobians always use the vectorized blocks
    (`jacobian.fixed_blocks`): a batch's records do not depend on whether it came first in
    its process (resumes and Dask workers give the serial run's numbers, bit for bit).
    """
    setup = setup or prepare(model, config)
    k = targets.shape[1]
    param = realization_param(setup.model, config, len(targets), batch_seed)
    started = time.perf_counter()
    rendered = realize(setup, config, targets, param, batch_seed)
    residual_float32 = rendered.residual
    network = setup.model  # what the Jacobian is taken on: the float64 copy after a float64 continuation
    if config.float64_converge is not None:
        rendered = continue_in_float64(setup, config, targets, rendered, batch_seed)
        network = float64_model(setup.model)
    fv_time = time.perf_counter() - started
    images = rendered.final
    _checkpoint("jacobian")
    started = time.perf_counter()
    f, jac = ifv.feature_jacobian(network, config.layer, rendered.params, rendered.param, setup.aggregation,
                                  config.features)
    jac_time = time.perf_counter() - started
    grads = (ifv.prior_gradients(network, obj.params_L2(), rendered.params, rendered.param) if setup.prior_weight
             else None)
    started = time.perf_counter()
    stats = ifv.gram_statistics(jac, grads, equation_precision(config))
    results = {method: ifv.solve_gram(f, stats, config.cossim_pow, method=method,
                                      expected_prior_weight=None if method == "paper" else setup.prior_weight)
               for method in solves_for(config)}
    solve_time = time.perf_counter() - started
    default = default_solve(config)
    from_8bit = _invert_8bit(setup, config, param, images, default) if config.invert_8bit else None
    rng = np.random.default_rng(batch_seed + 7)
    random = sampling.random_unit_vectors(k, len(targets), rng, nonneg=True)
    ssim = {}
    if config.reoptimize_steps:
        ssim = reoptimize_ssim(setup, config, param, rendered.params,
                                {"predicted": results[default].target,
                                 "response": f / np.linalg.norm(f, axis=1, keepdims=True),
                                 "target": targets, "random": random})
    per_solve = {method: _solve_records(result, targets, setup.prior_weight, config.cossim_pow)
                 for method, result in results.items()}
    saturated = param.saturated(images, SATURATION_MARGIN).reshape(len(targets), -1)
    records = []
    for i in range(len(targets)):
        rec = {
            "solve": default, "prior_weight_abs": setup.prior_weight,
            "angle_response": float(metrics.objective_angle_deg(f[i], targets[i], config.cossim_pow)),
            "angle_random": float(metrics.objective_angle_deg(random[i], targets[i], config.cossim_pow)),
            "saturated_fraction": float(saturated[i].mean()),
            "unsaturated_pixels": int((~saturated[i]).sum()),
            "render_residual": None if rendered.residual is None else float(rendered.residual[i]),
            "render_residual_float32": (float(residual_float32[i]) if config.float64_converge is not None
                                        and residual_float32 is not None else None),
            "lbfgs_grad_norm": None if rendered.lbfgs is None else rendered.lbfgs["grad_norm"],
            "target": targets[i].tolist(), "response": f[i].tolist(),
            "seconds_fv": fv_time / len(targets), "seconds_jacobian": jac_time / len(targets),
            "seconds_solve": solve_time / len(targets),
        }
        for method, rows in per_solve.items():
            rec.update({f"{key}_{method}": value for key, value in rows[i].items()})
            rec[f"predicted_{method}"] = results[method].target[i].tolist()
        rec["dead_features"] = rec[f"dead_{default}"]
        if from_8bit is not None:
            rec["angle_8bit"] = _angle_or_none(from_8bit.target[i], targets[i], config.cossim_pow)
            rec["angle_alive_8bit"] = _angle_or_none(from_8bit.target[i], targets[i] * ~from_8bit.dead_features[i],
                                                     config.cossim_pow)
            rec["verdict_8bit"] = str(from_8bit.verdicts()[i])
            if from_8bit.dither_spread is not None:  # re-dithered (`ifv.dither`; invert's default for 8-bit images)
                rec["dither_spread_8bit"] = float(from_8bit.dither_spread[i])
        for name, values in ssim.items():
            rec[f"ssim_{name}"] = float(values[i])
        records.append(rec)
    arrays = {"images": images, "targets": targets, "response": f, "jjt": stats.jjt, "root": stats.root}
    if grads is not None:
        arrays.update(jg=stats.jg, gg=stats.gg)
    for j, p in enumerate(rendered.params):
        arrays[f"param_{j}"] = p
    return records, arrays


def _complete_lines(path: Path):
    """``(end offset, record)`` of each complete line of a JSON-lines file, up to the first
    torn (no newline) or unreadable one."""
    if not path.exists():
        return
    offset = 0
    for line in path.read_bytes().splitlines(keepends=True):
        offset += len(line)
        if not line.endswith(b"\n"):
            return  # a torn last line from a hard kill
        try:
            yield offset, json.loads(line)
        except ValueError:
            return


def load_records(path: Path) -> list:
    """The records of ``records.jsonl``, up to its first torn or unreadable line."""
    return [record for _, record in _complete_lines(Path(path))]


def batch_indices(n: int, batch_size: int) -> list:
    """The batches of an ``n``-sample run: consecutive sample indices, fixed by the index
    alone (never by what is left to do), so a resumed run equals an uninterrupted one."""
    return [list(range(start, min(start + batch_size, n))) for start in range(0, n, batch_size)]


def batch_seed(config: ExperimentConfig, batch: list) -> int:
    """The seed of a batch, fixed by its first sample index."""
    return config.seed * 100003 + batch[0]


def _whole_batches(path: Path, batches: list) -> tuple:
    """The records of the longest prefix of ``path`` made of whole batches, each sample once,
    and that prefix's length in bytes."""
    batch_of = {i: batch for batch in batches for i in batch}
    kept, seen, missing = [], set(), set()
    records, end = [], 0
    for offset, record in _complete_lines(path):
        index = record.get("index") if isinstance(record, dict) else None
        if index not in batch_of or index in seen:
            break
        seen.add(index)
        kept.append(record)
        missing = (missing | set(batch_of[index])) - seen
        if not missing:
            records, end = list(kept), offset
    return records, end


def _truncate(path: Path, size: int) -> None:
    """Cut ``path`` to ``size`` bytes (and fsync) when it is longer."""
    if path.exists() and path.stat().st_size > size:
        with open(path, "r+b") as fh:
            fh.truncate(size)
            os.fsync(fh.fileno())


def _fsync_dir(folder: Path) -> None:
    """Make a rename or a new file in ``folder`` durable."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_error(path: Path, err: OSError) -> ExperimentError:
    return ExperimentError(f"cannot write {path}: {err.strerror or err}")


def _atomic_write(path: Path, write) -> None:
    """Write ``path`` through ``write(binary file)`` atomically: a temporary file in the same
    folder, fsynced, then renamed over ``path``. On any failure the temporary file is removed
    and ``path`` is untouched; an OSError becomes an `ExperimentError`."""
    path = Path(path)
    try:
        write_atomic(path, write, fsync=True, suffix=TEMP_SUFFIX)
        _fsync_dir(path.parent)
    except OSError as err:
        raise _write_error(path, err) from err


def write_text_atomic(path, text: str) -> None:
    """`_atomic_write` of a text file (settings, summaries)."""
    _atomic_write(path, lambda fh: fh.write(text.encode()))


def _save_batch(path: Path, indices: list, arrays: dict) -> None:
    """A batch's arrays as ``.npz``, atomically."""
    def write(fh):
        np.savez_compressed(fh, indices=np.array(indices), **arrays)
        _checkpoint("npz_temp")

    _atomic_write(path, write)


def _write_all(fd: int, data: bytes) -> None:
    while data:
        data = data[os.write(fd, data):]


def _append_records(path: Path, records: list) -> None:
    """Append records as JSON lines in one write, fsynced; on failure (disk full, Ctrl-C)
    the file is cut back to its previous length, so no partial line stays behind."""
    data = "".join(json.dumps(record) + "\n" for record in records).encode()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    except OSError as err:
        raise _write_error(path, err) from err
    try:
        size = os.fstat(fd).st_size
        try:
            _write_all(fd, data)
            os.fsync(fd)
        except BaseException:
            os.ftruncate(fd, size)
            raise
        if size == 0:
            _fsync_dir(path.parent)
    except OSError as err:
        raise _write_error(path, err) from err
    finally:
        os.close(fd)


def check_out_dir(out: Path) -> None:
    """Create ``out`` if needed and prove it writable (create, write and fsync a probe file),
    or raise a one-line `ExperimentError` before any computation."""
    if out.exists() and not out.is_dir():
        raise ExperimentError(f"cannot use {out} as the experiment folder: it is a file")
    try:
        out.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=out, prefix=".probe.", suffix=TEMP_SUFFIX)
        try:
            _write_all(fd, b"probe\n" * 512)
            os.fsync(fd)
        finally:
            os.close(fd)
            os.unlink(probe)
    except OSError as err:
        raise ExperimentError(f"cannot write the experiment folder {out}: {err.strerror or err}") from err


@contextlib.contextmanager
def folder_lock(out: Path):
    """Hold ``<out>/.lock`` (`fcntl.flock`, released when the process ends, even by SIGKILL)
    for the block; a second holder is refused at once with the first one's pid and host."""
    path = out / ".lock"
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as err:
        raise _write_error(path, err) from err
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = path.read_text().strip() or "holder unknown"
            raise ExperimentError(f"{out} is in use by another experiment ({holder}); "
                                  "wait for it to finish or choose another folder") from None
        os.ftruncate(fd, 0)
        _write_all(fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode())
        yield
    finally:
        os.close(fd)


SURROGATE_AGGREGATION = "surrogate_aggregation"  # settings key: the aggregation used on the surrogate


def surrogate_aggregation_name(config: dict) -> str | None:
    """The name of the aggregation a smooth-mode ``config`` (a saved config dict) renders and
    inverts with on the surrogate (`aggregation.smooth_aggregation`), e.g.
    ``"lme_pool_mean(kernel=3, stride=2, temperature=0.05)"``; None outside smooth mode."""
    from lucid_ifv.aggregation import smooth_aggregation

    if not config.get("smooth"):
        return None
    aggregation = smooth_aggregation(config.get("aggregation", "max_pool_mean"),
                                     config.get("pool_temperature", ExperimentConfig.pool_temperature))
    return getattr(aggregation, "__name__", aggregation)


def folder_settings(config: ExperimentConfig, **other) -> dict:
    """What a folder's settings.json records of ``config`` (and ``other`` entries): the config
    and, in smooth mode, the aggregation it resolves to on the surrogate (so a folder keeps
    its meaning when a name's smooth version changes; `read_as_today`)."""
    settings = {**other, "config": dataclasses.asdict(config)}
    name = surrogate_aggregation_name(settings["config"])
    if name is not None:
        settings[SURROGATE_AGGREGATION] = name
    return settings


def read_as_today(saved: dict) -> dict:
    """A folder's saved settings as today's code reads them.

    * A smooth-mode folder without ``surrogate_aggregation`` was written before the
      log-mean-exp pool became the default (2026-12-04), when "max_pool_mean" was smoothed
      with the log-sum-exp pool (with its floor ``T log 9``): its aggregation is read as
      "floored_max_pool_mean", which still means that, and the pool is named.
    * A folder without ``per_sample_lbfgs`` was rendered before the per-sample L-BFGS became
      the default (2026-12-04, evening): read as ``per_sample_lbfgs=False`` (joint L-BFGS).
    * A folder without ``converge`` or ``float64_converge`` was rendered before they existed:
      read as ``None`` (off), not as smooth mode's defaults of today (2026-12-06).
    """
    saved = json.loads(json.dumps(saved))
    config = saved.get("config")
    for name in ("converge", "float64_converge"):
        if isinstance(config, dict) and name not in config:
            config[name] = None
    if isinstance(config, dict) and "per_sample_lbfgs" not in config:
        config["per_sample_lbfgs"] = False
    if isinstance(config, dict) and config.get("smooth") and SURROGATE_AGGREGATION not in saved:
        if config.get("aggregation", "max_pool_mean") == "max_pool_mean":
            config["aggregation"] = "floored_max_pool_mean"
        saved[SURROGATE_AGGREGATION] = surrogate_aggregation_name(config)
    return saved


def load_settings(folder) -> dict:
    """An experiment folder's settings.json, read as today's code reads it (`read_as_today`)."""
    return read_as_today(json.loads((Path(folder) / "settings.json").read_text()))


def with_settings_added_since(saved: dict, settings: dict) -> dict:
    """``saved`` (a folder's settings, ``{"config": {...}, ...}``) read as today
    (`read_as_today`), with every config setting that ``settings`` has and ``saved`` lacks
    filled in, when its value is the default: a setting added to `ExperimentConfig` after the
    folder was written, left at its default, changes nothing, so the folder can still be
    resumed."""
    saved = read_as_today(saved)
    defaults = {f.name: f.default for f in dataclasses.fields(ExperimentConfig)}
    for key, value in settings.get("config", {}).items():
        if key not in saved.get("config", {}) and value == defaults.get(key, dataclasses.MISSING):
            saved.setdefault("config", {})[key] = value
    return saved


def settings_difference(saved: dict, settings: dict) -> str:
    """The entries where two folders' settings differ, for an error message, e.g.
    ``"aggregation: saved 'floored_max_pool_mean', given 'max_pool_mean'"`` (config entries by
    their name, the others at the top level, as ``config.<name>`` where a name is both)."""
    def differences(a: dict, b: dict) -> list:
        return [f"{key}: saved {a.get(key)!r}, given {b.get(key)!r}"
                for key in sorted(set(a) | set(b)) if key != "config" and a.get(key) != b.get(key)]

    config_a, config_b = saved.get("config", {}), settings.get("config", {})
    both = (set(saved) | set(settings)) & (set(config_a) | set(config_b))
    top = differences(saved, settings)
    inner = [d if d.split(":")[0] not in both else "config." + d for d in differences(config_a, config_b)]
    return "; ".join(inner + top)


def _write_settings(out: Path, settings: dict) -> None:
    """Save the settings, or refuse a folder that holds another experiment's."""
    path = out / "settings.json"
    if path.exists():
        saved = with_settings_added_since(json.loads(path.read_text()), settings)
        if saved != settings:
            raise ValueError(f"{out} holds an experiment with other settings ({path}: "
                             f"{settings_difference(saved, settings)}); use another folder")
    else:
        write_text_atomic(path, json.dumps(settings, indent=2))


def _batch_path(out: Path, batch: list) -> Path:
    return out / "realizations" / f"batch_{batch[0]:04d}.npz"


def _clean_leftovers(out: Path, recorded: list) -> None:
    """Delete temporary files and the realization files of batches without records (written
    just before a kill); those batches are redone."""
    keep = {_batch_path(out, batch) for batch in recorded}
    for path in [*out.glob(f".*{TEMP_SUFFIX}"), *(out / "realizations").glob(f".*{TEMP_SUFFIX}")]:
        path.unlink()
    for path in (out / "realizations").glob("batch_*.npz"):
        if path not in keep:
            path.unlink()


def serial_runner(model):
    """The in-process batch runner: ``runner(config, batches, targets)`` yields ``(batch,
    records, arrays)`` for each batch in order (`lucid_ifv.distributed.dask_runner` is the
    same on a Dask cluster)."""

    def runner(config, batches, targets):
        setup = prepare(model, config)
        for batch in batches:
            _checkpoint("batch")
            records, arrays = run_batch(model, config, targets[batch], batch_seed(config, batch), setup)
            yield batch, records, arrays

    return runner


def run_experiment(model, config: ExperimentConfig, out_dir, progress: bool = True, runner=None) -> list:
    """Run (or resume) an experiment in ``out_dir``; returns all records so far, by index.

    Invalid settings and an unusable or busy folder are refused before any computation.
    Ctrl-C raises `ExperimentInterrupted` without recording the batch in flight.
    ``runner`` computes the batches (default `serial_runner`; on a Dask cluster
    `lucid_ifv.distributed.dask_runner`); this process alone writes them, each once, in the
    order they finish.
    """
    config.validate(model)
    out = Path(out_dir)
    check_out_dir(out)
    runner = runner or serial_runner(model)
    with folder_lock(out):
        settings = folder_settings(config, model=model.name)
        if getattr(model, "input_kind", "image") != "image":  # (image runs keep their old settings files)
            settings["input_kind"] = model.input_kind
        _write_settings(out, settings)
        (out / "realizations").mkdir(exist_ok=True)
        targets, sparseness = make_targets(config, config.feature_count(model))
        batches = batch_indices(len(targets), config.batch_size)
        records_path = out / "records.jsonl"
        records, end = _whole_batches(records_path, batches)
        _truncate(records_path, end)
        done = {record["index"] for record in records}
        _clean_leftovers(out, [batch for batch in batches if batch[0] in done])
        todo = [batch for batch in batches if batch[0] not in done]
        bar = tqdm(total=len(targets), initial=len(done), disable=not progress, desc=f"IFV {config.layer}")
        try:
            for batch, batch_records, arrays in runner(config, todo, targets):
                _save_batch(_batch_path(out, batch), batch, arrays)
                _checkpoint("arrays_written")
                for i, rec in zip(batch, batch_records):
                    rec.update({"index": i, "sparseness": float(sparseness[i]),
                                "kind": "hoyer" if i < config.n_hoyer else "canonical"})
                _append_records(records_path, batch_records)
                _checkpoint("record_flushed")
                records.extend(batch_records)
                bar.update(len(batch))
        finally:
            bar.close()
    return sorted(records, key=lambda r: r["index"])


SUMMARY_COLUMNS = (
    [f"{key}_{method}" for method in SOLVES
     for key in ("angle", "angle_alive", "angle_identifiable", "angle_determined", "undetermined",
                 "unidentifiable_dim", "residual", "gap", "null_dim", "dead",
                 "prior_weight_estimate")]
    + ["angle_response", "angle_random", "angle_8bit", "angle_alive_8bit", "dead_features", "render_residual",
       "lbfgs_grad_norm", "saturated_fraction", "unsaturated_pixels", "ssim_predicted", "ssim_response",
       "ssim_target", "ssim_random", "seconds_fv", "seconds_jacobian", "seconds_solve"]
)


def summarize(records: list) -> dict:
    """Distribution summaries (median, quartiles...) of the angles and diagnostics, and the
    share of each verdict per solve."""
    _checkpoint("summary")
    if not records:
        raise ValueError("no records to summarize")
    summary = {"n": len(records)}
    for column in SUMMARY_COLUMNS:
        values = [r[column] for r in records if r.get(column) is not None]
        if values:
            summary[column] = metrics.summary(np.asarray(values, dtype=np.float64))
    for method in SOLVES:
        verdicts = [r[f"verdict_{method}"] for r in records if f"verdict_{method}" in r]
        if verdicts:
            names, counts = np.unique(verdicts, return_counts=True)
            summary[f"verdicts_{method}"] = {str(n): int(c) for n, c in zip(names, counts)}
    summary.update(gap_reliability(records))
    return summary


def gap_reliability(records: list) -> dict:
    """Is the singular-value gap a reliability signal? Median angle of the samples with the
    larger half of gaps vs the smaller half, for each solve; and Spearman's rank correlation."""
    import scipy.stats

    out = {}
    for solve in SOLVES:
        pairs = [(r[f"gap_{solve}"], r[f"angle_{solve}"]) for r in records
                 if r.get(f"gap_{solve}") is not None and r.get(f"angle_{solve}") is not None]
        if len(pairs) < 4:
            continue
        gaps, angles = np.asarray(pairs).T
        high = gaps >= np.median(gaps)
        out[f"gap_reliability_{solve}"] = {
            "median_angle_large_gap": float(np.median(angles[high])),
            "median_angle_small_gap": float(np.median(angles[~high])),
            "spearman_gap_angle": float(scipy.stats.spearmanr(gaps, angles)[0]),
        }
    return out


def markdown_table(summary: dict) -> str:
    """The summary as a Markdown table: median [q1, q3] per quantity."""
    rows = ["| quantity | median | q1 | q3 | min | max |", "|---|---|---|---|---|---|"]
    for key, stats in summary.items():
        if isinstance(stats, dict) and "median" in stats:
            rows.append(f"| {key} | {stats['median']:.4g} | {stats['q1']:.4g} | {stats['q3']:.4g} | "
                        f"{stats['min']:.4g} | {stats['max']:.4g} |")
    notes = [f"\nn = {summary['n']} samples"]
    for key, counts in summary.items():
        if key.startswith("verdicts_"):
            notes.append(f"verdicts of the {key[len('verdicts_'):]} solve: "
                         + ", ".join(f"{name} {count}" for name, count in sorted(counts.items())))
    for key, rel in summary.items():
        if key.startswith("gap_reliability_"):
            notes.append(f"{key[len('gap_reliability_'):]} solve: median angle {rel['median_angle_large_gap']:.2f} deg "
                         f"for the larger-gap half vs {rel['median_angle_small_gap']:.2f} deg for the smaller; "
                         f"Spearman(gap, angle) = {rel['spearman_gap_angle']:.2f}")
    return "\n".join(rows + notes)


def saved_statistics(data: dict, precision: float, keep=None) -> ifv.GramStatistics:
    """The `ifv.GramStatistics` in an experiment's realizations (`load_realizations`), of the
    samples ``keep`` (a mask or indices; default all); without ``root`` when saved before it was kept."""
    def saved(key):
        return None if key not in data else data[key] if keep is None else data[key][keep]

    return ifv.GramStatistics(saved("jjt"), saved("jg"), saved("gg"), precision, saved("root"))


def load_realizations(out_dir) -> dict:
    """All saved batches of an experiment folder, concatenated in sample order."""
    files = sorted(Path(out_dir, "realizations").glob("batch_*.npz"))
    if not files:
        raise FileNotFoundError(f"no realizations in {out_dir}/realizations (run the experiment first)")
    parts = [dict(np.load(f)) for f in files]
    keys = set.intersection(*(set(p) for p in parts))
    merged = {key: np.concatenate([p[key] for p in parts]) for key in keys}
    order = np.argsort(merged["indices"])
    return {key: value[order] for key, value in merged.items()}


def equation_precision(config) -> float:
    """The relative rounding of a run's saved Gram statistics (`ifv.GramStatistics.precision`):
    float64's when ``config`` (an `ExperimentConfig` or a saved config dict) continued its
    realizations in float64 (``float64_converge``), else float32's."""
    from lucid_ifv.ifv import diagnostics

    value = config.get("float64_converge") if isinstance(config, dict) else config.float64_converge
    return diagnostics.EQUATION_PRECISION if value is None else diagnostics.EQUATION_PRECISION_FLOAT64


def resolve_records(out_dir, rule=None) -> list:
    """An experiment's records with every solve's fields recomputed from the saved Gram
    statistics by today's solves and verdict ``rule`` (`ifv.VerdictRule`; default the
    library's): tables and verdict calibrations then reflect the current code, offline."""
    out_dir = Path(out_dir)
    config = ExperimentConfig(**load_settings(out_dir)["config"])
    records = {r["index"]: r for r in load_records(out_dir / "records.jsonl")}
    data = load_realizations(out_dir)
    keep = np.isin(data["indices"], list(records))
    indices, f, targets = data["indices"][keep], data["response"][keep], data["targets"][keep]
    stats = saved_statistics(data, equation_precision(config), keep)
    expected = records[int(indices[0])].get("prior_weight_abs")  # absent in older records:
    if expected is None and not config.prior_relative:
        expected = config.prior_weight
    expected = expected or None
    for method in solves_for(config):
        result = ifv.solve_gram(f, stats, config.cossim_pow, method=method,
                                expected_prior_weight=None if method == "paper" else expected)
        for index, row in zip(indices, _solve_records(result, targets, expected, config.cossim_pow, rule)):
            records[int(index)].update({f"{key}_{method}": value for key, value in row.items()})
    for index, response, target in zip(indices, f, targets):  # older runs measured this one modulo nothing
        records[int(index)]["angle_response"] = float(metrics.objective_angle_deg(response, target, config.cossim_pow))
    return [records[i] for i in sorted(records)]


def _trivial_directions(basis: np.ndarray, within_deg: float = 5.0) -> dict:
    """Which familiar directions lie in a trivial space ``[k, r]``: the angle of the
    all-ones direction (softmax's shift) and the features whose canonical vector is within
    ``within_deg`` (dead features)."""
    k = basis.shape[0]
    if basis.shape[1] == 0:
        return {"ones_angle_deg": 90.0, "dead_like_features": []}
    cos_ones = np.linalg.norm(basis.T @ np.ones(k)) / np.sqrt(k)
    cos_canonical = np.linalg.norm(basis, axis=1)  # |B^T e_j|
    angles = np.degrees(np.arccos(np.clip(cos_canonical, 0, 1)))
    return {"ones_angle_deg": float(np.degrees(np.arccos(min(1.0, cos_ones)))),
            "dead_like_features": np.flatnonzero(angles < within_deg).tolist()}


def critical_space_analysis(out_dir, eps_lo: float = 1e-6, eps_hi: float = 0.5, max_angle_deg: float = 30.0,
                            max_trivial_fraction: float = 0.5) -> list:
    """Algorithm 1 on an experiment's realizations, then the inversion inside each candidate
    critical space (paper Sec. 2.2 and 3.5).

    The eps search enumerates every trivial-space dimension the samples support; for each
    candidate the saved Gram statistics are re-solved in its critical space (prior-aware
    when the FV had a prior) and compared with the known targets modulo the trivial space
    (`ifv.angle_modulo_trivial`). The candidate with the lowest median angle among those
    whose trivial space is at most ``max_trivial_fraction`` of the features is marked
    ``selected`` (tiny critical spaces make every comparison trivially small).

    Each candidate's inversions are judged too (`ifv.verdicts`, the library's rule), as
    `ifv.invert(..., critical_space=...)` judges them: inside the critical space the
    trivial directions are gone, so an answer that was "ambiguous" only through them (e.g.
    softmax's shift) can be "identified"; the known targets say how often that is right.

    Returns:
      one dict per candidate: ``dim``, ``eps``, ``median_angle``, ``q1``, ``q3``, ``p90``, ``selected``,
      ``ones_angle_deg`` and ``dead_like_features`` (see `_trivial_directions`), ``n`` (samples),
      ``identified`` (verdicts "identified"), ``right`` (angles modulo the trivial space below
      `GOOD_DEG`), ``identified_right`` (both), ``trivial_basis`` (``[k, r]``) and ``angles``
      (``[n]``, each sample's angle modulo the trivial space).
    """
    from lucid_ifv import critical_space

    settings = load_settings(out_dir)["config"]
    data = load_realizations(out_dir)
    f, targets, p = data["response"], data["targets"], settings["cossim_pow"]
    stats = saved_statistics(data, equation_precision(settings))
    spectra = ifv.jacobian_spectra(f, stats)
    candidates = critical_space.enumerate_trivial_spaces(spectra, eps_lo, eps_hi, max_angle_deg)
    k = f.shape[1]
    rows = []
    for cand in candidates:
        if cand.dim >= k:
            continue
        result = ifv.solve_gram(f, stats, p, critical_space=cand)
        angles = ifv.angle_modulo_trivial(result.target, targets, f, cand.basis, p)
        identified, right = result.verdicts() == "identified", np.nan_to_num(angles, nan=np.inf) < GOOD_DEG
        rows.append({"dim": cand.dim, "eps": float(cand.eps), "median_angle": float(np.nanmedian(angles)),
                     "q1": float(np.nanpercentile(angles, 25)), "q3": float(np.nanpercentile(angles, 75)),
                     "p90": float(np.nanpercentile(angles, 90)), "selected": False, **_trivial_directions(cand.basis),
                     "n": len(angles), "identified": int(identified.sum()), "right": int(right.sum()),
                     "identified_right": int((identified & right).sum()), "trivial_basis": cand.basis,
                     "angles": angles})
    eligible = [r for r in rows if r["dim"] <= max_trivial_fraction * k]
    if eligible:
        min(eligible, key=lambda r: r["median_angle"])["selected"] = True
    return rows
