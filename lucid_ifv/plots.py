"""Figures for papers: angle distributions (the paper's box plots), realizations, Fig. 3."""

from __future__ import annotations

from pathlib import Path

import numpy as np

ANGLE_LABELS = {
    "angle_alive_{solve}": "t* ({solve}),\nlive features",
    "angle_{solve}": "t* ({solve}),\noverall",
    "angle_paper": "t* (paper's solve)",
    "angle_response": "feature response f",
    "angle_random": "random",
}


def _figure(path, fig) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=150, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return path


def plot_angles(records: list, path, title: str = "", solve: str | None = None) -> Path:
    """Box plots of the angle to the target, one box per estimate (as in the paper's Fig. 2):
    the ``solve``'s answer (default: the records' ``"solve"``) on live features and overall,
    the paper's solve, the feature response and a random direction."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    solve = solve or records[0].get("solve", "paper")
    labels = {key.format(solve=solve): label.format(solve=solve) for key, label in ANGLE_LABELS.items()}
    columns = [c for c in labels if any(r.get(c) is not None for r in records)]
    data = [[r[c] for r in records if r.get(c) is not None] for c in columns]
    fig, ax = plt.subplots(figsize=(1.6 * len(columns) + 1, 3.2))
    ax.boxplot(data, showfliers=True)
    ax.set_xticks(range(1, len(columns) + 1), [labels[c] for c in columns], rotation=15)
    ax.set_ylabel("angle to the target t (degrees)")
    ax.set_ylim(0, max(90, max(max(d) for d in data) + 5))
    ax.set_title(title or f"n = {len(records)}")
    ax.grid(axis="y", alpha=0.3)
    return _figure(path, fig)


def plot_images(images, path, titles=None, columns: int = 8) -> Path:
    """A grid of images ``[B, H, W, C]`` in [0, 1] with optional titles."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    images = np.clip(np.asarray(images), 0, 1)
    n = len(images)
    cols = min(columns, n)
    rows = int(np.ceil(n / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(1.6 * cols, 1.75 * rows), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for i, (ax, img) in enumerate(zip(axes.ravel(), images)):
        ax.imshow(img[..., 0] if img.shape[-1] == 1 else img, cmap="gray" if img.shape[-1] == 1 else None,
                  vmin=0, vmax=1, interpolation="nearest")
        if titles is not None:
            ax.set_title(titles[i], fontsize=7)
    return _figure(path, fig)


def plot_geometry_images(images, path, titles=None) -> Path:
    """Geometry images ``[B, H, W, 5]`` (`lucid_ifv.param.geometry`) as three rows: the normals
    as RGB ``(n + 1) / 2``, the depth in grey (white off the mask) and the mask."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from lucid_ifv.param.geometry import geometry_to_rgb

    images = np.asarray(images)
    rgb, depth = geometry_to_rgb(images)
    n = len(images)
    fig, axes = plt.subplots(3, n, figsize=(1.6 * n, 5.0), squeeze=False)
    for i in range(n):
        for row, (img, kwargs) in enumerate([(rgb[i], {}), (depth[i], {"cmap": "gray"}),
                                             (images[i, ..., 4], {"cmap": "gray"})]):
            axes[row, i].imshow(img, vmin=0, vmax=1, interpolation="nearest", **kwargs)
            axes[row, i].axis("off")
        if titles is not None:
            axes[0, i].set_title(titles[i], fontsize=7)
    for row, name in enumerate(["normals", "depth", "mask"]):
        axes[row, 0].text(-0.1, 0.5, name, transform=axes[row, 0].transAxes, ha="right", va="center", fontsize=8)
    return _figure(path, fig)


def plot_singular_coefficients(coefficients, path, title: str = "") -> Path:
    """Mean squared coefficients of targets in the left-singular basis (the paper's Fig. 3).

    ``coefficients``: ``[n, m]`` from `metrics.singular_coefficients` (ascending singular
    values); the first bar is the share of the target the smallest singular vector holds.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    mean_sq = np.nanmean(np.asarray(coefficients, np.float64) ** 2, axis=0)
    fig, ax = plt.subplots(figsize=(5, 3))
    ax.bar(np.arange(1, mean_sq.size + 1), mean_sq)
    ax.set_xlabel("left-singular vector (ascending singular value)")
    ax.set_ylabel("mean squared coefficient")
    ax.set_title(title)
    return _figure(path, fig)


def plot_matching(matrix, path, title: str = "", truth=None, labels=("A", "B")) -> Path:
    """Heatmap of a matching matrix ``[n, k_b]`` (|cosine|, `lucid_ifv.compare`).

    Columns are reordered so that ``truth`` (``[n]``, B's index of each row's feature; default
    each row's best match) falls on the diagonal where it can; red dots mark ``truth``.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    matrix = np.asarray(matrix, np.float64)
    n, k_b = matrix.shape
    expected = np.argmax(matrix, axis=1) if truth is None else np.asarray(truth)
    first = list(dict.fromkeys(expected.tolist()))
    order = np.array(first + [j for j in range(k_b) if j not in set(first)])
    position = np.argsort(order)
    fig, ax = plt.subplots(figsize=(min(2 + 0.06 * k_b, 14), min(1.5 + 0.06 * n, 12)))
    shown = ax.imshow(matrix[:, order], cmap="viridis", vmin=0, vmax=1, aspect="auto", interpolation="nearest")
    if truth is not None:
        ax.plot(position[expected], np.arange(n), "r.", markersize=3, label="ground truth")
        ax.legend(loc="lower right", fontsize=7)
    ax.set_xlabel(f"{labels[1]}'s features (reordered)")
    ax.set_ylabel(f"{labels[0]}'s features")
    fig.colorbar(shown, ax=ax, label="|cosine| of the inverted objective")
    ax.set_title(title)
    return _figure(path, fig)
