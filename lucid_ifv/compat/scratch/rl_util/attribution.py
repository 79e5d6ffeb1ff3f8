"""``lucid.scratch.rl_util.attribution``: activations, gradients and (integrated-gradient,
multi-path) attributions of a model's layers for given observations, in TF2.

Lucid evaluates these in a TF1 session, feeding intermediate tensors through ``feed_dict``.
Here (see `lucid_ifv.compat.scratch.rl_util.graph`):

- `get_acts` works on any lucid-ifv model (``model(obses, [layer])``);
- gradients and attributions with respect to the observations (``prev_layer_name=None``,
  `get_grad`) work on any lucid-ifv model through ``tf.GradientTape``;
- attributions to an intermediate layer (``prev_layer_name``), and any ``override`` (e.g.
  `maxpool_override`), need the model's frozen graph (`modelzoo.graph.GraphModel` or a
  `LucidModel` such as Lucid's ``Model.load`` results and the zoo classes): the graph is
  imported with that layer's tensor replaced by the values to evaluate at, as TF1's feed did.
  Other models raise NotImplementedError.

Observations are images in [0, 1] (``[B, H, W, C]``, any H and W a graph allows), mapped to
the model's value range as Lucid's ``import_model`` does.
"""

from __future__ import annotations

import itertools

import numpy as np
import tensorflow as tf

from lucid_ifv.compat.misc.gradient_override import gradient_override_map  # noqa: F401 (Lucid re-exports it)
from lucid_ifv.compat.scratch.rl_util.graph import GraphFunction, graph_model_of, tensor_name


def maxpool_override():
    """``{"MaxPool": grad_fn}``: the gradient of a smooth stand-in for max pooling,
    ``avg_pool(x ** 2) / (1e-2 + avg_pool(|x|))`` (pass as ``override=``)."""

    def MaxPoolGrad(op, grad):
        inp = op.inputs[0]
        padding = op.get_attr("padding")
        data_format = op.get_attr("data_format")
        op_args = [
            op.get_attr("ksize"),
            op.get_attr("strides"),
            padding.decode() if isinstance(padding, bytes) else padding,
        ]
        data_format = data_format.decode() if isinstance(data_format, bytes) else data_format
        smooth_out = tf.nn.avg_pool(inp ** 2, *op_args, data_format=data_format) / (
            1e-2 + tf.nn.avg_pool(tf.abs(inp), *op_args, data_format=data_format)
        )
        inp_smooth_grad = tf.gradients(smooth_out, [inp], grad)[0]
        return inp_smooth_grad

    return {"MaxPool": MaxPoolGrad}


def _observations(obses) -> np.ndarray:
    obses = np.asarray(obses, np.float32)
    if obses.ndim != 4:
        raise ValueError(f"observations must be a batch [B, H, W, C], got shape {obses.shape}")
    return obses


def _model_interface(model, what: str):
    from lucid_ifv.model import Model

    if not isinstance(model, Model):
        raise TypeError(f"{what} needs a lucid-ifv model (lucid_ifv.model.Model: GraphModel, LucidModel, "
                        f"KerasModel), got {type(model).__name__}")
    return model


def _is_graph_model(model) -> bool:
    from modelzoo.graph import GraphModel
    from modelzoo.vision import LucidModel

    return isinstance(model, (GraphModel, LucidModel))


def get_acts(model, layer_name, obses):
    """Activations of `layer_name` (any tensor name of a graph model) for `obses`, NumPy."""
    obses = _observations(obses)
    return _model_interface(model, "get_acts")(obses, [layer_name])[layer_name].numpy()


def default_score_fn(t):
    return tf.reduce_sum(t, axis=list(range(len(t.shape)))[1:])


def _scorer(obses, act_dir, act_poses, score_fn):
    """Activations -> the summed score, as Lucid builds it (``act_dir``, ``act_poses``)."""

    def score(t_acts):
        if act_dir is not None:
            t_acts = tf.cast(np.asarray(act_dir)[None, None, None], t_acts.dtype) * t_acts
        if act_poses is not None:
            t_acts = tf.gather_nd(
                t_acts,
                tf.concat([tf.range(obses.shape[0])[..., None], tf.cast(act_poses, tf.int32)], axis=-1),
            )
        t_scores = score_fn(t_acts)
        if len(t_scores.shape) < 1:
            raise ValueError("score_fn should not reduce the batch dim")
        return tf.reduce_sum(t_scores)

    return score


class _Gradient:
    """``grad(acts_prev)``: the gradient of the score of `layer_name` with respect to
    `prev_layer_name` (None: the observations) when that tensor takes the value
    ``acts_prev`` (the observations themselves stay `obses`); ``acts_prev0``: its value for
    `obses`."""

    def __init__(self, model, layer_name, prev_layer_name, obses, *, act_dir, act_poses, score_fn, override,
                 what):
        self.obses = obses
        self.score = _scorer(obses, act_dir, act_poses, score_fn)
        self.layer_name, self.prev_layer_name = layer_name, prev_layer_name
        if _is_graph_model(model):
            graph_model = graph_model_of(model, what)
            image_shape = obses.shape[1:]
            if prev_layer_name is None:
                self._fn = GraphFunction(graph_model, [layer_name], override=override, image_shape=image_shape)
                self.acts_prev0 = obses
            else:
                plain = GraphFunction(graph_model, [prev_layer_name], image_shape=image_shape)
                self.acts_prev0 = plain(obses)[0].numpy()
                shape = [None, *self.acts_prev0.shape[1:]]
                self._fn = GraphFunction(graph_model, [layer_name], feeds=[prev_layer_name], override=override,
                                         image_shape=image_shape, feed_shapes=[shape])
            self._model = None
        else:
            model = _model_interface(model, what)
            if prev_layer_name is not None or override:
                raise NotImplementedError(
                    f"{what}: attribution to an intermediate layer ({prev_layer_name!r}) or with a gradient "
                    f"override needs the model's frozen graph (a GraphModel or LucidModel) to replace that "
                    f"layer's values, as Lucid's session feed did; {type(model).__name__} has none. Export a "
                    f"Keras model with modelzoo.export_keras and load it with modelzoo.load_model")
            self._model = model
            self.acts_prev0 = obses

    def __call__(self, acts_prev) -> np.ndarray:
        acts_prev = tf.convert_to_tensor(np.asarray(acts_prev, np.float32))
        with tf.GradientTape() as tape:
            tape.watch(acts_prev)
            if self._model is not None:
                acts = self._model(acts_prev, [self.layer_name])[self.layer_name]
            elif self.prev_layer_name is None:
                acts = self._fn(acts_prev)[0]
            else:
                acts = self._fn(self.obses, acts_prev)[0]
            score = self.score(acts)
        grad = tape.gradient(score, acts_prev)
        if grad is None:
            raise ValueError(f"{self.layer_name!r} does not depend on "
                             f"{self.prev_layer_name or 'the observations'!r}: no gradient")
        return grad.numpy()


def get_grad_or_attr(
    model,
    layer_name,
    prev_layer_name,
    obses,
    *,
    act_dir=None,
    act_poses=None,
    score_fn=default_score_fn,
    grad_or_attr,
    override=None,
    integrate_steps=1
):
    """The gradient (``grad_or_attr="grad"``) of the summed score of `layer_name` with respect
    to `prev_layer_name` (None: the observations), or the attribution (``"attr"``: activations
    times that gradient). With ``integrate_steps > 1`` the gradient is averaged over
    ``acts_prev * alpha`` for alpha in ``linspace(0, 1, integrate_steps + 1)[1:]``
    (integrated gradients). `act_dir` weights the channels, `act_poses` ``[B, 2]`` picks one
    position per observation, `score_fn` reduces all but the batch axis."""
    if grad_or_attr not in ("grad", "attr"):
        raise NotImplementedError(f"grad_or_attr must be 'grad' or 'attr', got {grad_or_attr!r}")
    obses = _observations(obses)
    gradient = _Gradient(model, layer_name, prev_layer_name, obses, act_dir=act_dir, act_poses=act_poses,
                         score_fn=score_fn, override=override, what=f"get_{grad_or_attr}")
    acts_prev = gradient.acts_prev0
    if integrate_steps > 1:
        grad = sum(gradient(acts_prev * alpha) for alpha in np.linspace(0, 1, integrate_steps + 1)[1:]) / integrate_steps
    else:
        grad = gradient(acts_prev)
    if grad_or_attr == "grad":
        return grad
    return acts_prev * grad


def get_attr(model, layer_name, prev_layer_name, obses, **kwargs):
    """Attribution of `layer_name`'s score to `prev_layer_name` (see `get_grad_or_attr`)."""
    kwargs["grad_or_attr"] = "attr"
    return get_grad_or_attr(model, layer_name, prev_layer_name, obses, **kwargs)


def get_grad(model, layer_name, obses, **kwargs):
    """Gradient of `layer_name`'s score with respect to the observations (see `get_grad_or_attr`)."""
    kwargs["grad_or_attr"] = "grad"
    return get_grad_or_attr(model, layer_name, None, obses, **kwargs)


def get_paths(acts, nmf, *, max_paths, integrate_steps):
    """Integration paths from 0 to `acts` through the NMF factors of `nmf` (a `LayerNMF`):
    for splits of the factors in two halves, each half grows first (quadratically) then the
    other; a generator of paths, each a list of `integrate_steps` activations. Draws random
    splits from NumPy's global state when `max_paths` is smaller than their number."""
    acts_reduced = nmf.transform(acts)
    residual = acts - nmf.inverse_transform(acts_reduced)
    combs = itertools.combinations(range(nmf.features), nmf.features // 2)
    if nmf.features % 2 == 0:
        combs = np.array([comb for comb in combs if 0 in comb])
    else:
        combs = np.array(list(combs))
    if max_paths is None:
        splits = combs
    else:
        num_splits = min((max_paths + 1) // 2, combs.shape[0])
        splits = combs[
            np.random.choice(combs.shape[0], size=num_splits, replace=False), :
        ]
    for i, split in enumerate(splits):
        indices = np.zeros(nmf.features)
        indices[split] = 1.0
        indices = indices[tuple(None for _ in range(acts_reduced.ndim - 1))]
        complements = [False, True]
        if max_paths is not None and i * 2 + 1 == max_paths:
            complements = [np.random.choice(complements)]
        for complement in complements:
            path = []
            for alpha in np.linspace(0, 1, integrate_steps + 1)[1:]:
                if complement:
                    coordinates = (1.0 - indices) * alpha ** 2 + indices * (
                        1.0 - (1.0 - alpha) ** 2
                    )
                else:
                    coordinates = indices * alpha ** 2 + (1.0 - indices) * (
                        1.0 - (1.0 - alpha) ** 2
                    )
                path.append(
                    nmf.inverse_transform(acts_reduced * coordinates) + residual * alpha
                )
            yield path


def get_multi_path_attr(
    model,
    layer_name,
    prev_layer_name,
    obses,
    prev_nmf,
    *,
    act_dir=None,
    act_poses=None,
    score_fn=default_score_fn,
    override=None,
    max_paths=50,
    integrate_steps=10
):
    """Attribution of `layer_name`'s score to `prev_layer_name` averaged over the paths of
    `get_paths` (through the factors of `prev_nmf`, a `LayerNMF` of `prev_layer_name`)."""
    obses = _observations(obses)
    gradient = _Gradient(model, layer_name, prev_layer_name, obses, act_dir=act_dir, act_poses=act_poses,
                         score_fn=score_fn, override=override, what="get_multi_path_attr")
    acts_prev = gradient.acts_prev0
    path_acts = get_paths(acts_prev, prev_nmf, max_paths=max_paths, integrate_steps=integrate_steps)
    deltas_of_path = lambda path: np.array(  # noqa: E731 (Lucid's code)
        [b - a for a, b in zip([np.zeros_like(acts_prev)] + path[:-1], path)]
    )
    grads_of_path = lambda path: np.array([gradient(acts) for acts in path])  # noqa: E731
    path_attrs = map(
        lambda path: (deltas_of_path(path) * grads_of_path(path)).sum(axis=0),
        path_acts,
    )
    total_attr = 0
    num_paths = 0
    for attr in path_attrs:
        total_attr += attr
        num_paths += 1
    return total_attr / num_paths


__all__ = ["gradient_override_map", "maxpool_override", "get_acts", "default_score_fn", "get_grad_or_attr",
           "get_attr", "get_grad", "get_paths", "get_multi_path_attr"]
