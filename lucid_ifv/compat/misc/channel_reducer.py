"""``lucid.misc.channel_reducer``: `ChannelReducer`, a scikit-learn decomposition (NMF, PCA,
FastICA, ...) applied to the innermost (channel) axis of an activation tensor of any rank.
Needs scikit-learn (``pip install lucid-ifv[train]``)."""

from __future__ import annotations

import numpy as np


def _decompositions() -> dict:
    try:
        import sklearn.decomposition
        from sklearn.base import BaseEstimator
    except ImportError:
        raise ImportError("ChannelReducer needs scikit-learn: pip install 'lucid-ifv[train]'") from None
    return {name: obj for name, obj in vars(sklearn.decomposition).items()
            if isinstance(obj, type) and issubclass(obj, BaseEstimator)}


class ChannelReducer:
    """Reduce the innermost axis of ``acts`` ``[..., C]`` to ``n_components`` (Lucid's class).

    Args:
      n_components: int, the reduced channel count.
      reduction_alg: a name in ``sklearn.decomposition`` ("NMF", "PCA", "FastICA", ...) or such
        a class.
      **kwargs: passed to the reducer.
    Fitted attributes of the reducer are readable without their trailing underscore
    (``reducer.components`` for ``components_``), as in Lucid.
    """

    def __init__(self, n_components=3, reduction_alg="NMF", **kwargs):
        if isinstance(n_components, bool) or not isinstance(n_components, int) or n_components < 1:
            raise ValueError(f"n_components must be an int >= 1, got {n_components!r}")
        if isinstance(reduction_alg, str):
            algorithms = _decompositions()
            if reduction_alg not in algorithms:
                raise ValueError(f"unknown dimensionality reduction method {reduction_alg!r}; "
                                 f"expected one of sklearn.decomposition's: {', '.join(sorted(algorithms))}")
            reduction_alg = algorithms[reduction_alg]
        self.n_components = n_components
        self._reducer = reduction_alg(n_components=n_components, **kwargs)
        self._is_fit = False

    @staticmethod
    def _apply_flat(f, acts):
        """``f`` on ``acts`` flattened to ``[N, C]``; array results get back the leading axes."""
        acts = np.asarray(acts)
        flat = f(acts.reshape([-1, acts.shape[-1]]))
        return flat.reshape([*acts.shape[:-1], -1]) if isinstance(flat, np.ndarray) else flat

    def fit(self, acts):
        self._is_fit = True
        return self._apply_flat(self._reducer.fit, acts)

    def fit_transform(self, acts):
        self._is_fit = True
        return self._apply_flat(self._reducer.fit_transform, acts)

    def transform(self, acts):
        return self._apply_flat(self._reducer.transform, acts)

    def __call__(self, acts):
        return self.transform(acts) if self._is_fit else self.fit_transform(acts)

    def __getattr__(self, name):
        reducer = self.__dict__.get("_reducer")
        if reducer is not None and name + "_" in vars(reducer):
            return vars(reducer)[name + "_"]
        raise AttributeError(f"ChannelReducer has no attribute {name!r}")
