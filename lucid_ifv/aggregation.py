"""Aggregations: a layer's activations -> one value per feature (the feature response).

An aggregation maps activations ``[B, h, w, C]`` (conv) or ``[B, C]`` (dense) to a
feature response ``[B, C]``. Dense activations pass through unchanged whatever the
aggregation, since there is nothing spatial to aggregate.

Names accepted wherever an aggregation is asked for:
  "max_pool_mean" (default)  2D max-pool (kernel 3, stride 2, VALID) then spatial mean:
                             the paper's proposal (Sec. 2.3); the pool breaks the linearity
                             that a plain mean would let cancel out.
  "lse_pool_mean"            `max_pool_mean` with its max-pool replaced by log-sum-exp pooling
                             (``T log sum exp(x / T)``, T = 0.05; `lucid_ifv.smooth`).
  "lme_pool_mean"            `lse_pool_mean` minus its floor: log-mean-exp pooling
                             (``T log mean exp(x / T)``), 0 on a channel that is 0 everywhere:
                             the smooth version of "max_pool_mean" (`smooth_aggregation`), so a
                             dead unit responds 0 on the surrogate too, as on the network (not
                             ``T log 9`` = 0.11; docs/smooth.md).
  "floorless_max_pool_mean"  the same as "max_pool_mean" (the name the runs that introduced
                             `lme_pool_mean` were made with; docs/results.md).
  "floored_max_pool_mean"    `max_pool_mean` on the network itself; on a smooth surrogate its
                             pool is `lse_pool_mean`, with the floor: the smooth mode's default
                             until 2026-12-04, kept to reproduce the runs made with it
                             (experiment folders written before then are read as this).
  "homogeneous_max_pool_mean"
                             `max_pool_mean` on the network itself; on a smooth surrogate its
                             log-sum-exp pool takes each channel's temperature relative to the
                             channel's scale (`relative_lse_pool_mean`), so the response stays
                             positively homogeneous, ``f(s z) = s f(z)`` for ``s > 0``, as the
                             max-pool is. With it a feature rescaled by ``s`` has its response
                             rescaled by ``s`` on the surrogate too (docs/compare.md, "Rescaled
                             units").
  "mean"                     spatial mean.
  "center"                   the activation at position (h // 2, w // 2), as Lucid's
                             `neuron` picks it.
  "identity"                 for dense layers; raises for spatial activations.
or any callable with the same contract.
"""

from __future__ import annotations

import functools
import math
from typing import Callable, Union

import tensorflow as tf

from lucid_ifv import smooth

Aggregation = Callable[[tf.Tensor], tf.Tensor]


def _passthrough_dense(fn: Aggregation) -> Aggregation:
    @functools.wraps(fn)
    def wrapped(acts):
        acts = tf.convert_to_tensor(acts)
        if acts.shape.rank == 2:
            return acts
        if acts.shape.rank != 4:
            raise ValueError(
                f"activations of rank {acts.shape.rank} (shape {tuple(acts.shape)}); "
                "expected [B, h, w, C] or [B, C]"
            )
        return fn(acts)

    return wrapped


def _pool_mean(pool: Callable, kernel: int, stride: int, name: str, *pool_args) -> Aggregation:
    """``pool(acts, window, stride)`` (VALID) then spatial mean; ``[B, h, w, C] -> [B, C]``.

    When the map is smaller than ``kernel`` the window shrinks to the map size. The result
    carries ``.key``, what determines it (its factory, kernel, stride and ``pool_args``): two
    aggregations built alike share compiled renders and Jacobians (`lucid_ifv.graph_keys`).
    """
    if int(kernel) < 1 or int(stride) < 1:
        raise ValueError(f"{name} needs kernel >= 1 and stride >= 1, got {kernel}, {stride}")

    @_passthrough_dense
    def aggregate(acts):
        h, w = acts.shape[1], acts.shape[2]
        window = [min(kernel, h or kernel), min(kernel, w or kernel)]
        return tf.reduce_mean(pool(acts, window, stride), axis=[1, 2])

    aggregate.__name__ = name
    aggregate.key = ("aggregation", name.split("(")[0], int(kernel), int(stride), *map(float, pool_args))
    return aggregate


def max_pool_mean(kernel: int = 3, stride: int = 2) -> Aggregation:
    """Max-pool (``kernel`` x ``kernel``, ``stride``, VALID) then spatial mean.

    When the map is smaller than ``kernel`` the pool window shrinks to the map size
    (so a 2x2 map is max-pooled to 1x1). ``[B, h, w, C] -> [B, C]``.
    """

    def pool(acts, window, stride):
        return tf.nn.max_pool2d(acts, ksize=window, strides=stride, padding="VALID")

    return _pool_mean(pool, kernel, stride, f"max_pool_mean(kernel={kernel}, stride={stride})")


def lse_pool_mean(kernel: int = 3, stride: int = 2,
                  temperature: float = smooth.DEFAULT_POOL_TEMPERATURE) -> Aggregation:
    """`max_pool_mean` with log-sum-exp pooling (`smooth.lse_pool2d`) instead of the max.

    Each pooled value exceeds the window's max by at most ``temperature * log(kernel^2)``.
    ``[B, h, w, C] -> [B, C]``.
    """
    temperature = smooth.check_positive(temperature, "temperature")

    def pool(acts, window, stride):
        return smooth.lse_pool2d(acts, window, stride, "VALID", temperature)

    return _pool_mean(
        pool, kernel, stride,
        f"lse_pool_mean(kernel={kernel}, stride={stride}, temperature={temperature:g})", temperature,
    )


def lme_pool_mean(kernel: int = 3, stride: int = 2,
                  temperature: float = smooth.DEFAULT_POOL_TEMPERATURE) -> Aggregation:
    """`lse_pool_mean` minus its floor ``T log n`` (``n`` the window's size): log-mean-exp
    pooling, ``T log mean_window exp(x / T)``.

    Each pooled value lies in ``[max - T log n, max]`` and equals the window's value when the
    window is flat, so a channel that is 0 everywhere (a unit the surrogate has switched off)
    responds 0, as under the network's max-pool, where `lse_pool_mean` gives it ``T log n``
    (0.11 at T = 0.05 and a 3 x 3 window). The same gradient as `lse_pool_mean` (the two differ
    by a constant). ``[B, h, w, C] -> [B, C]``.
    """
    temperature = smooth.check_positive(temperature, "temperature")

    def pool(acts, window, stride):
        return smooth.lse_pool2d(acts, window, stride, "VALID", temperature) - temperature * math.log(window[0] * window[1])

    return _pool_mean(
        pool, kernel, stride,
        f"lme_pool_mean(kernel={kernel}, stride={stride}, temperature={temperature:g})", temperature,
    )


RMS_FLOOR = 1e-12  # added (squared) to a channel's mean square: a channel that is 0 everywhere


def relative_lse_pool_mean(kernel: int = 3, stride: int = 2,
                           temperature: float = smooth.DEFAULT_POOL_TEMPERATURE) -> Aggregation:
    """`lse_pool_mean` whose temperature is ``temperature * r`` for each image and channel, ``r``
    the root mean square of the channel over the map: ``r LSE_T(z / r)``. Positively
    homogeneous per channel (``z -> s z`` gives ``r -> s r``, the response times ``s``), like
    the max-pool it smooths; each pooled value lies in ``[max, max + T r log(kernel^2)]``.
    The gradient flows through ``r`` too (the response is a smooth function of the image).
    ``[B, h, w, C] -> [B, C]``."""
    temperature = smooth.check_positive(temperature, "temperature")

    def pool(acts, window, stride):
        rms = tf.sqrt(tf.reduce_mean(tf.square(acts), axis=[1, 2], keepdims=True) + RMS_FLOOR ** 2)  # [B, 1, 1, C]
        return smooth.lse_pool2d(acts / rms, window, stride, "VALID", temperature) * rms

    return _pool_mean(pool, kernel, stride,
                      f"relative_lse_pool_mean(kernel={kernel}, stride={stride}, temperature={temperature:g})",
                      temperature)


@_passthrough_dense
def spatial_mean(acts):
    """Mean over the spatial axes. ``[B, h, w, C] -> [B, C]``."""
    return tf.reduce_mean(acts, axis=[1, 2])


@_passthrough_dense
def center(acts):
    """The activation at ``(h // 2, w // 2)``. ``[B, h, w, C] -> [B, C]``."""
    shape = tf.shape(acts)
    return acts[:, shape[1] // 2, shape[2] // 2, :]


def identity(acts):
    """For dense layers: ``[B, C] -> [B, C]``; spatial activations are refused."""
    acts = tf.convert_to_tensor(acts)
    if acts.shape.rank != 2:
        raise ValueError(
            f"the identity aggregation takes dense activations [B, C], got shape {tuple(acts.shape)}"
        )
    return acts


def homogeneous_max_pool_mean(kernel: int = 3, stride: int = 2) -> Aggregation:
    """`max_pool_mean` (the same numbers) whose smooth version is `relative_lse_pool_mean`
    (`smooth_aggregation`) rather than `lse_pool_mean`."""
    aggregate = max_pool_mean(kernel, stride)
    aggregate.__name__ = f"homogeneous_max_pool_mean(kernel={kernel}, stride={stride})"
    return aggregate


def floorless_max_pool_mean(kernel: int = 3, stride: int = 2) -> Aggregation:
    """`max_pool_mean` (the same numbers) whose smooth version is `lme_pool_mean`, as
    `max_pool_mean`'s is (`smooth_aggregation`)."""
    aggregate = max_pool_mean(kernel, stride)
    aggregate.__name__ = f"floorless_max_pool_mean(kernel={kernel}, stride={stride})"
    return aggregate


def floored_max_pool_mean(kernel: int = 3, stride: int = 2) -> Aggregation:
    """`max_pool_mean` (the same numbers) whose smooth version is `lse_pool_mean`, which
    keeps the floor ``T log n`` (`smooth_aggregation`)."""
    aggregate = max_pool_mean(kernel, stride)
    aggregate.__name__ = f"floored_max_pool_mean(kernel={kernel}, stride={stride})"
    return aggregate


AGGREGATIONS = {
    "max_pool_mean": max_pool_mean(),
    "homogeneous_max_pool_mean": homogeneous_max_pool_mean(),
    "floorless_max_pool_mean": floorless_max_pool_mean(),
    "floored_max_pool_mean": floored_max_pool_mean(),
    "lse_pool_mean": lse_pool_mean(),
    "lme_pool_mean": lme_pool_mean(),
    "mean": spatial_mean,
    "center": center,
    "identity": identity,
}


#: the network's pooled aggregations -> the factory of their version on a smooth surrogate
SMOOTH_VERSIONS = {
    "max_pool_mean": lme_pool_mean,
    "floorless_max_pool_mean": lme_pool_mean,
    "floored_max_pool_mean": lse_pool_mean,
    "homogeneous_max_pool_mean": relative_lse_pool_mean,
}


def get_aggregation(aggregation: Union[str, Aggregation, None]) -> Aggregation:
    """Resolve a name (see module doc) or callable; None means "max_pool_mean"."""
    if aggregation is None:
        return AGGREGATIONS["max_pool_mean"]
    if callable(aggregation):
        return aggregation
    try:
        return AGGREGATIONS[aggregation]
    except (KeyError, TypeError):
        raise ValueError(
            f"unknown aggregation {aggregation!r}; expected one of {sorted(AGGREGATIONS)} or a callable"
        ) from None


def smooth_aggregation(aggregation: Union[str, Aggregation, None], temperature: float) -> Union[str, Aggregation]:
    """The aggregation to use on a smooth surrogate: "max_pool_mean" (or None, or the
    registered callable) and "floorless_max_pool_mean" -> ``lme_pool_mean(temperature=temperature)``;
    "floored_max_pool_mean" -> ``lse_pool_mean(temperature=temperature)``;
    "homogeneous_max_pool_mean" -> ``relative_lse_pool_mean(temperature=temperature)``; others
    unchanged (`SMOOTH_VERSIONS`)."""
    if aggregation is None:
        aggregation = "max_pool_mean"
    for name, smooth_version in SMOOTH_VERSIONS.items():
        if aggregation is AGGREGATIONS[name] or (isinstance(aggregation, str) and aggregation == name):
            return smooth_version(temperature=temperature)
    return aggregation
