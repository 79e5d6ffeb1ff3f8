"""Smooth mode's default tolerances: what a render on the smooth surrogate converges to.

Since 2026-12-06 a realization rendered on the smooth surrogate (`lucid_ifv.smooth`) is, unless
the caller sets the tolerances, converged to `SMOOTH_CONVERGE` in float32 (each sample alone,
`render.converge_each_sample`), then continued in float64 to `SMOOTH_FLOAT64_CONVERGE` and
inverted in float64 (`lucid_ifv.precision`). Float32 alone leaves inception_small's mixed3a at
2.4-2.9 deg median and a p90 of 7.5-11 deg on live features; the float64 continuation brings it
to 0.06 / 0.77 (docs/results.md, "Smooth mode's defaults"). The experiment runner
(`ExperimentConfig`) and the CLI's ``render`` and ``experiment`` resolve `AUTO` here; ``None``
turns a stage off (CLI: ``--float32``). No TensorFlow here: the CLI resolves its defaults
before importing it.
"""

from __future__ import annotations

#: A tolerance left to smooth mode's default (`smooth_mode_tolerances`).
AUTO = "auto"
#: Smooth mode's stationarity tolerance in float32, then in float64 (`smooth_mode_tolerances`).
SMOOTH_CONVERGE = 1e-3
SMOOTH_FLOAT64_CONVERGE = 1e-8


def smooth_mode_tolerances(smooth: bool, converge, float64_converge, each_sample: bool = True):
    """``(converge, float64_converge)`` with `AUTO` resolved: on the smooth surrogate
    (``smooth``) a render converges to `SMOOTH_CONVERGE`, then each sample (``each_sample``:
    per-sample L-BFGS, which the float64 stage continues) in float64 to
    `SMOOTH_FLOAT64_CONVERGE`; on the plain network neither (its optima sit on kinks). A
    number or ``None`` (off) is kept as given.

    >>> smooth_mode_tolerances(True, AUTO, AUTO)
    (0.001, 1e-08)
    >>> smooth_mode_tolerances(True, 1e-4, None), smooth_mode_tolerances(False, AUTO, AUTO)
    ((0.0001, None), (None, None))
    """
    if converge == AUTO:
        converge = SMOOTH_CONVERGE if smooth else None
    if float64_converge == AUTO:
        float64_converge = SMOOTH_FLOAT64_CONVERGE if smooth and converge is not None and each_sample else None
    return converge, float64_converge
