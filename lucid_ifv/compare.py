"""Compare two networks feature by feature: visualize in A, invert in B.

For each feature ``j`` of A's layer (a one-hot channel objective), render a feature
visualization in A and invert it in B's layer with Grad-IFV. The predicted objective
``t*_j`` (``[k_b]``) says which of B's features that image is a stationary point for;
``|t*_j| / ||t*_j||`` is row ``j`` of the **matching matrix** (``[k_a, k_b]``, entries in
[0, 1], a row's squares sum to 1) and its largest entry B's **best match** for ``j``
(``Comparison.gradient_matrix``: the same read in units of each feature's gradient, which
does not depend on the scale of B's features). Each
row carries the inversion's verdict in B (`ifv.VerdictRule`), the verdict of the same image
inverted in A (not 'identified': the visualization itself is unsound, e.g. it never activated
its channel, so no answer about it should be trusted) and, optionally, the SSIM between
the image and its re-optimization in B towards ``t*_j`` (close to 1: B holds the image
where it is, a second confidence signal).

Rendering and inversion use an `ExperimentConfig` (parametrization, prior, smooth
surrogate, steps, convergence), the same for both networks; in smooth mode both are
rendered and inverted on their surrogates (`lucid_ifv.smooth`). The ground truth for the
method is `lucid_ifv.symmetry.permute_channels` (B = A with permuted, rescaled channels).

Runs are resumable: with ``out_dir``, every finished batch is written atomically to
``<out_dir>/batch_NNNN.npz`` and reused on the next call with the same settings.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from lucid_ifv import experiment, ifv
from lucid_ifv.atomic import write_atomic
from lucid_ifv.ifv.jacobian import fixed_blocks
from lucid_ifv.ifv.solve import scale_by_gradient
from lucid_ifv.validation import check_feature_indices
from lucid_ifv import objectives as obj


MATCH_SCORES = ("target", "gradient")  # see `Comparison.match`
FEATURE_UNITS = ("raw", "rms")  # see `compare`'s feature_units


@dataclasses.dataclass
class Comparison:
    """A's features (rows) against B's (columns)."""

    layer_a: str
    layer_b: str
    features: np.ndarray  # [n] A's features that were rendered
    matrix: np.ndarray  # [n, k_b] |cosine| of t*_j with each of B's features
    predicted: np.ndarray  # [n, k_b] the predicted objectives in B (unit, signed)
    verdicts: list  # [n] the inversion verdicts in B
    ssim: np.ndarray | None = None  # [n] SSIM(image, its re-optimization in B), if asked
    render_residual: np.ndarray | None = None  # [n] A's realizations' stationarity residuals
    images: np.ndarray | None = None  # [n, H, W, C] A's visualizations
    verdicts_a: list | None = None  # [n] the same images inverted in A: is the visualization itself sound?
    attempts: np.ndarray | None = None  # [n] renders made per feature (1: no retry; see `compare`'s retries)
    sound: np.ndarray | None = None  # [n] bool: A's own inversion identifies the rendered channel
    channel_response: np.ndarray | None = None  # [n] A's aggregated response of the rendered channel
    row_norms: np.ndarray | None = None  # [n, k_b] B's Jacobian row norms at each visualization

    @property
    def negative(self) -> np.ndarray:
        """``[n]`` bool: the visualization drove its channel below zero. With odd ``p`` the
        one-hot objective ``f_c^(p+1) / |f|^p`` is even in the channel's sign, so on a layer whose
        features can be negative (no ReLU: residual streams, linear layers) such renders are
        optima too, often weak ones (`docs/compare.md`, "Which objective")."""
        if self.channel_response is None:
            return np.zeros(len(self.features), bool)
        return np.asarray(self.channel_response) < 0

    @property
    def gradient_matrix(self) -> np.ndarray:
        """``[n, k_b]`` the scale-free matching matrix: ``|t*_j| |grad f_j|`` per row, normalized
        (each of B's features measured in units of its own gradient at the image). ``matrix``
        changes when B rescales a feature by ``s > 0`` (its ``t*_j`` is divided by ``s``), which
        can reorder a spread row; this one does not (`InversionResult.gradient_scaled_target`).
        Raises if the run kept no Jacobian row norms (runs from before they were saved)."""
        if self.row_norms is None:
            raise ValueError("this comparison kept no Jacobian row norms (run before they were saved); "
                             "run it again for the scale-free matching")
        return np.abs(scale_by_gradient(self.predicted, self.row_norms))

    def _scores(self, by: str) -> np.ndarray:
        if by not in MATCH_SCORES:
            raise ValueError(f"by must be one of {MATCH_SCORES}, got {by!r}")
        return self.matrix if by == "target" else self.gradient_matrix

    def match(self, by: str = "target") -> np.ndarray:
        """``[n]``: B's best match per row by ``by``: 'target' (``matrix``, `best_match`) or
        'gradient' (``gradient_matrix``, scale-free)."""
        return np.argmax(np.nan_to_num(self._scores(by), nan=-1.0), axis=1)

    @property
    def best_match(self) -> np.ndarray:
        """``[n]``: index of B's feature that best matches each of A's (by ``matrix``)."""
        return self.match("target")

    @property
    def best_score(self) -> np.ndarray:
        """``[n]``: the best match's |cosine| (1: the image is a stationary point for that
        single feature of B; 1/sqrt(k_b): spread evenly)."""
        return self.matrix.max(axis=1)

    @property
    def identified(self) -> np.ndarray:
        """``[n]`` bool: the inversion in B was 'identified' (a stationary point, unique)."""
        return np.array([v == "identified" for v in self.verdicts])

    def represented(self, min_score: float = 0.9) -> float:
        """How much of A's layer B represents: the fraction of A's features whose
        visualization B inverts as 'identified' with a best match of |cosine| >= min_score
        (one B feature explains it)."""
        return float(np.mean(self.identified & (self.best_score >= min_score)))

    def accuracy(self, matching, only_identified: bool = False, by: str = "target") -> float:
        """Fraction of A's features whose best match (`match` by ``by``) is ``matching[feature]``
        (ground truth); ``only_identified``: among the rows whose verdict in B is 'identified'
        (NaN if none)."""
        right = self.match(by) == np.asarray(matching)[self.features]
        if only_identified:
            return float(np.mean(right[self.identified])) if self.identified.any() else float("nan")
        return float(np.mean(right))

    def to_dict(self) -> dict:
        return {"layer_a": self.layer_a, "layer_b": self.layer_b, "features": self.features.tolist(),
                "best_match": self.best_match.tolist(), "best_score": self.best_score.tolist(),
                "verdicts": list(self.verdicts), "verdicts_a": self.verdicts_a, "represented": self.represented(),
                "attempts": None if self.attempts is None else self.attempts.tolist(),
                "sound": None if self.sound is None else self.sound.tolist(),
                "negative": self.negative.tolist(),
                "ssim": None if self.ssim is None else self.ssim.tolist(),
                "render_residual": None if self.render_residual is None else
                [None if np.isnan(r) else float(r) for r in self.render_residual],
                **({} if self.row_norms is None else {
                    "best_match_gradient": self.match("gradient").tolist(),
                    "best_score_gradient": self.gradient_matrix[np.arange(len(self.features)), self.match("gradient")].tolist()})}


def _check_features(features, k: int) -> np.ndarray:
    return np.arange(k) if features is None else check_feature_indices(features, k)


def _save_atomic(path: Path, **arrays) -> None:
    write_atomic(path, lambda fh: np.savez(fh, **arrays), fsync=True)


RETRY_SEED_STRIDE = 1_000_003  # retry r of a batch seeded s uses s + r * stride (never another batch's seed)


def feature_rms(model, layer: str, images) -> np.ndarray:
    """``[k]`` root mean square of each of ``layer``'s channels over ``images`` ``[N, H, W, C]``
    and every position (1 where a channel is zero everywhere): positively homogeneous, so a
    channel rescaled by ``s > 0`` gets ``s`` times its RMS."""
    values = np.asarray(model(images, [layer])[layer], np.float64)
    rms = np.sqrt(np.mean(values.reshape(-1, values.shape[-1]) ** 2, axis=0))
    return np.where(rms > np.finfo(np.float32).tiny, rms, 1.0)


def _feature_scales(setup, config, feature_units: str):
    """The units `ifv.invert` reads ``config.layer``'s features in (None: raw)."""
    if feature_units == "raw":
        return None
    from lucid_ifv.smooth import calibration_noise

    return feature_rms(setup.model, config.layer, calibration_noise(setup.model.image_shape))


@fixed_blocks("pfor")  # a batch's numbers do not depend on which batch came first (resumes)
def _render_and_invert(setup_a, config_a, setup_b, config_b, features, k_a, seed, reoptimize_steps,
                       scales_a=None, scales_b=None):
    """Render ``features`` of A (one-hot targets) and invert them in B and in A; dict of arrays.

    ``sound`` ``[n]`` bool: A's own inversion of the image is 'identified' and its best match
    is the rendered channel (the visualization is a clean optimum of what it was made for;
    uses only A and the channel we asked A for, never B)."""
    targets = np.eye(k_a)[features]
    param = experiment.realization_param(setup_a.model, config_a, len(features), seed)
    rendered = experiment.realize(setup_a, config_a, targets, param, seed)
    prior = obj.params_L2() if setup_a.prior_weight else None

    def invert_in(setup, config, scales):
        return ifv.invert(setup.model, config.layer, rendered.params, param=param, cossim_pow=config.cossim_pow,
                          aggregation=setup.aggregation, prior=prior, method=experiment.default_solve(config_a),
                          feature_scales=scales)

    result = invert_in(setup_b, config_b, scales_b)
    in_a = invert_in(setup_a, config_a, scales_a)
    verdicts_a = np.array([str(v) for v in in_a.verdicts()], dtype="U32")  # room for every verdict a retry brings
    predicted = result.target / np.linalg.norm(result.target, axis=1, keepdims=True)
    out = {"features": features, "predicted": predicted, "images": rendered.final,
           "verdicts": np.array([str(v) for v in result.verdicts()], dtype="U32"), "verdicts_a": verdicts_a,
           "sound": (verdicts_a == "identified") & (np.argmax(np.abs(in_a.target), axis=1) == features),
           "channel_response": in_a.response[np.arange(len(features)), features],
           "row_norms": result.row_norms,
           "render_residual": (np.full(len(features), np.nan) if rendered.residual is None
                               else np.asarray(rendered.residual, float))}
    if reoptimize_steps:
        config = dataclasses.replace(config_b, reoptimize_steps=reoptimize_steps)
        out["ssim"] = experiment.reoptimize_ssim(setup_b, config, param, rendered.params,
                                                  {"predicted": predicted})["predicted"]
    return out


def _compare_batch(setup_a, config_a, setup_b, config_b, features, k_a, seed, reoptimize_steps, retries=0,
                   scales=(None, None), done=None):
    """`_render_and_invert`, then up to ``retries`` new renders (new seeds) of the features
    whose visualization is not sound; a row is replaced only by a sound retry. Adds
    ``attempts`` ``[n]``: renders made for each row (1: no retry), and ``retries_done``
    ``[n]``: the retry budget the batch has had (``retries``).

    ``done``: this batch as saved with a smaller budget (its ``retries_done``, or the
    folder's ``retries`` for batches saved before that key): the retry rounds go on from
    there, giving what ``retries`` would have given from the start (same seeds, same rows)."""
    if done is None:
        out = _render_and_invert(setup_a, config_a, setup_b, config_b, features, k_a, seed, reoptimize_steps, *scales)
        out["attempts"], first = np.ones(len(features), int), 1
    else:
        out, first = {key: np.array(value) for key, value in done.items()}, int(done["retries_done"][0]) + 1
        out.setdefault("attempts", np.full(len(features), first))
    for retry in range(first, retries + 1):
        rows = np.flatnonzero(~out["sound"])
        if not len(rows):
            break
        out["attempts"][rows] += 1
        again = _render_and_invert(setup_a, config_a, setup_b, config_b, features[rows], k_a,
                                   seed + retry * RETRY_SEED_STRIDE, reoptimize_steps, *scales)
        better = rows[again["sound"]]
        for key, value in again.items():
            out[key][better] = value[again["sound"]]
    out["retries_done"] = np.full(len(features), retries)
    return out


def compare(model_a, layer_a: str, model_b, layer_b: str, config: experiment.ExperimentConfig | None = None,
            features=None, reoptimize_steps: int = 0, retries: int = 0, out_dir=None,
            progress: bool = True, feature_units: str = "raw") -> Comparison:
    """Visualize each of ``features`` of A's ``layer_a`` and invert it in B's ``layer_b``.

    Args:
      model_a, model_b: the two networks (plain; smooth mode in ``config`` smooths both).
        Their input shapes must agree (the image is shared).
      layer_a, layer_b: the layers compared (``k_a``, ``k_b`` channels).
      config: rendering and inversion settings (`ExperimentConfig`; its ``layer``,
        ``n_hoyer``, ``n_canonical`` are ignored); default: smooth surrogates, pixel
        parametrization, ``p = 0`` (the linear channel objective ``f_c``, as Lucid's
        ``channel``; docs/compare.md), the aggregation "homogeneous_max_pool_mean" (its smooth
        pool keeps a rescaled unit's response rescaled; docs/compare.md, "Rescaled units"),
        each ReLU's softplus beta relative to the unit's input RMS (``relu_beta_relative``:
        a rescaled unit meets the rescaled softplus), relative prior 1e-4, 200 warm-up Adam steps without the prior
        (`experiment.realize`), 400 with it, then L-BFGS to 1e-3.
      features: A's channels to render (default all ``k_a``).
      reoptimize_steps: > 0 adds the re-optimization SSIM in B (that many Adam steps).
      retries: a feature whose visualization is not *sound* (A's own inversion of it is not
        'identified' with the rendered channel as its best match: the render is not a clean
        optimum of its channel) is rendered again with a new seed, up to ``retries`` times,
        and replaced by the first sound render. Uses only A, never B or the ground truth.
      out_dir: folder for resumable per-batch results (None: keep nothing).
      feature_units: "raw" (default), or "rms": both inversions read each feature of the
        compared layer divided by its RMS on the calibration noise images
        (`smooth.calibration_noise`, `feature_rms`; ``ifv.invert(..., feature_scales=)``).
        Features of B that are A's rescaled by positive factors then meet exactly A's solve,
        dead-feature rule and verdict thresholds, which all compare features on one scale;
        the matching matrix is in those units (docs/compare.md, "Feature units").
    Returns:
      `Comparison` with ``matrix`` ``[n, k_b]`` and ``best_match`` ``[n]``.
    """
    config = config or default_config()
    config_a = dataclasses.replace(config, layer=layer_a)
    config_b = dataclasses.replace(config, layer=layer_b, features=None)
    if tuple(model_a.image_shape) != tuple(model_b.image_shape):
        raise ValueError(f"the networks take different inputs: {model_a.name!r} {tuple(model_a.image_shape)}, "
                         f"{model_b.name!r} {tuple(model_b.image_shape)}; compare needs one image shape")
    k_a = model_a.layer(layer_a).depth
    model_b.layer(layer_b)
    features = _check_features(features, k_a)
    if reoptimize_steps < 0:
        raise ValueError(f"reoptimize_steps must be >= 0, got {reoptimize_steps}")
    if retries < 0:
        raise ValueError(f"retries must be >= 0, got {retries}")
    if feature_units not in FEATURE_UNITS:
        raise ValueError(f"feature_units must be one of {FEATURE_UNITS}, got {feature_units!r}")
    config_a = dataclasses.replace(config_a, features=None)
    setup_a, setup_b = experiment.prepare(model_a, config_a), experiment.prepare(model_b, config_b)
    settings = experiment.folder_settings(config_a, a=[model_a.name, layer_a], b=[model_b.name, layer_b],
                                          features=features.tolist(), reoptimize_steps=reoptimize_steps)
    if retries:  # only then: folders written before retries existed stay resumable
        settings["retries"] = retries
    if feature_units != "raw":  # likewise
        settings["feature_units"] = feature_units
    scales = _feature_scales(setup_a, config_a, feature_units), _feature_scales(setup_b, config_b, feature_units)
    out, folder_retries = _prepare_out_dir(out_dir, settings)
    starts = range(0, len(features), config.batch_size)
    parts = []
    for start in tqdm(starts, desc=f"{layer_a} -> {layer_b}", disable=not progress):
        path = out / f"batch_{start:04d}.npz" if out else None
        saved = None
        if path is not None and path.exists():
            with np.load(path) as file:
                saved = {key: file[key] for key in file.files}
            saved.setdefault("retries_done", np.full(len(saved["features"]), folder_retries))
            if saved["retries_done"][0] >= retries:
                parts.append(saved)
                continue
        batch = _compare_batch(setup_a, config_a, setup_b, config_b, features[start:start + config.batch_size],
                               k_a, config.seed + start, reoptimize_steps, retries, scales, done=saved)
        if path is not None:
            _save_atomic(path, **batch)
        parts.append(batch)
    if out is not None and folder_retries != retries:  # every batch has had the larger budget now
        _write_settings(out, settings)
    keys = set.intersection(*(set(p) for p in parts))  # batches written by older versions lack some
    joined = {key: np.concatenate([p[key] for p in parts]) for key in keys}
    return Comparison(layer_a, layer_b, joined["features"], np.abs(joined["predicted"]), joined["predicted"],
                      [str(v) for v in joined["verdicts"]], joined.get("ssim"), joined["render_residual"],
                      joined.get("images"), None if "verdicts_a" not in joined else [str(v) for v in joined["verdicts_a"]],
                      joined.get("attempts"), joined.get("sound"), joined.get("channel_response"),
                      joined.get("row_norms"))


# L-BFGS step cap of compare's renders: 4000 since 2026-12-04 (1000 before; every run stored
# before names it). With 1000, 39 of mixed4a's 86 renders stopped above the tolerance and only
# 2 of those were sound; with 4000, 82 of 86 converged (241 of all 256; docs/compare.md, "Retrying").
MAX_LBFGS_STEPS = 4000


def default_config(**overrides) -> experiment.ExperimentConfig:
    """The comparison's default settings (see `compare`)."""
    settings = dict(layer="", fft=False, decorrelate=False, cossim_pow=0.0, aggregation="homogeneous_max_pool_mean",
                    prior_weight=1e-4, prior_relative=True, smooth=True, relu_beta_relative=True, warmup_steps=200,
                    adam_steps=400, lbfgs_steps=0, converge=1e-3, max_lbfgs_steps=MAX_LBFGS_STEPS, batch_size=16,
                    float64_converge=None)  # float32: the comparison tables' runs
    settings.update(overrides)
    return experiment.ExperimentConfig(**settings)


def _prepare_out_dir(out_dir, settings: dict) -> tuple[Path | None, int]:
    """The batches' folder and the retry budget its batches were saved with (`compare`).

    A folder saved with fewer ``retries`` and otherwise the same settings is accepted: its
    batches get the remaining retry rounds (`_compare_batch`'s ``done``), and its settings
    are updated once all have them. Any other difference is refused."""
    if out_dir is None:
        return None, 0
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "settings.json"
    if not path.exists():
        _write_settings(out, settings)
        return out, settings.get("retries", 0)
    saved = experiment.with_settings_added_since(json.loads(path.read_text()), settings)
    saved_retries = saved.pop("retries", 0)
    ours = {key: value for key, value in settings.items() if key != "retries"}
    if _settings_text(saved) != _settings_text(ours):
        raise ValueError(f"{out} holds a comparison with other settings "
                         f"({experiment.settings_difference(saved, ours)}); use another folder")
    if saved_retries > settings.get("retries", 0):
        raise ValueError(f"{out} holds a comparison with retries={saved_retries}, got retries="
                         f"{settings.get('retries', 0)}: give at least {saved_retries} (a replaced row cannot be "
                         f"put back) or use another folder")
    return out, saved_retries


def _settings_text(settings: dict) -> str:
    return json.dumps(settings, indent=1, sort_keys=True)


def _write_settings(out: Path, settings: dict) -> None:
    experiment.write_text_atomic(out / "settings.json", _settings_text(settings))


def activation_correlation(model_a, layer_a: str, model_b, layer_b: str, images, batch_size: int = 250) -> np.ndarray:
    """The usual baseline: |Pearson correlation| of A's and B's channels on natural images.

    Activations are compared position by position when both layers have the same spatial
    size (the same receptive fields), else by their spatial means per image.

    Args:
      images: ``[N, H, W, C]`` in [0, 1] (e.g. `modelzoo.shipped.heldout`).
    Returns:
      ``[k_a, k_b]`` in [0, 1]; a channel that never varies correlates 0 with everything.
    """
    images = np.asarray(images, np.float32)
    acts_a, acts_b = [], []
    for start in range(0, len(images), batch_size):
        chunk = images[start:start + batch_size]
        acts_a.append(model_a(chunk, [layer_a])[layer_a].numpy())
        acts_b.append(model_b(chunk, [layer_b])[layer_b].numpy())
    a, b = np.concatenate(acts_a), np.concatenate(acts_b)
    if a.shape[1:-1] != b.shape[1:-1]:
        a, b = a.reshape(len(a), -1, a.shape[-1]).mean(axis=1), b.reshape(len(b), -1, b.shape[-1]).mean(axis=1)
    a, b = a.reshape(-1, a.shape[-1]).astype(np.float64), b.reshape(-1, b.shape[-1]).astype(np.float64)
    a, b = a - a.mean(axis=0), b - b.mean(axis=0)
    norms = np.linalg.norm(a, axis=0)[:, None] * np.linalg.norm(b, axis=0)[None, :]
    with np.errstate(invalid="ignore", divide="ignore"):
        corr = np.abs(a.T @ b) / norms
    return np.nan_to_num(corr, nan=0.0)
