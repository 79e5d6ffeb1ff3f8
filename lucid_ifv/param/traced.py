"""Lucid ``param_f``s that build their image with TensorFlow functions of parametrizations.

Lucid's parametrizations are tensors, so notebooks write ``param_f``s such as::

    def arbitrary_channels_to_rgb(w, channels=10):
        full = param.image(w, channels=channels)
        r = tf.reduce_mean(full[..., :channels // 3] ** 2, axis=-1)
        ...
        return tf.stack([r, g, b], axis=-1)

Here ``param.image`` is a `Param`, and a TF function given a Param converts it with
`Param.__tf_tensor__` (``param()``, a read of its variables). Called eagerly that is a
snapshot. `TracedParam` calls ``param_f`` once eagerly to create the variables (recorded in
order), then traces it in a `tf.function` in which every ``tf.Variable`` the Params create is
replaced by the recorded one: the TF ops read the variables symbolically, and the compiled
function maps their current values to the image, so the optimizer reaches them. `render_vis` wraps a ``param_f`` that returns a tensor this way.

Limits: the function can only be evaluated at its own variables (`accepts_params` is False),
so there is no L-BFGS, no stationarity residual and no inverse; `per_sample` is False.
"""

from __future__ import annotations

import tensorflow as tf

from lucid_ifv.param.base import Param


class TracedParam(Param):
    """``param_f`` (returning a tensor ``[B, H, W, C]`` built from Params) traced once; see the
    module docstring."""

    accepts_params = False

    def __init__(self, param_f):
        created = []

        def record(next_creator, **kwargs):
            variable = next_creator(**kwargs)
            created.append(variable)
            return variable

        with tf.variable_creator_scope(record):  # once, eagerly: the variables
            image = tf.convert_to_tensor(param_f(), tf.float32)

        def traced_image():
            replay = iter(created)  # every trace: param_f's Params get those same variables, in order
            with tf.variable_creator_scope(lambda next_creator, **kwargs: next(replay)):
                return tf.convert_to_tensor(param_f(), tf.float32)

        if image.shape.rank != 4:
            raise ValueError(f"param_f must build images [B, H, W, C], got shape {image.shape}")
        variables = [v for v in created if v.trainable]
        if not variables:
            raise ValueError("param_f builds its image from no trainable variable (is it made from parametrizations?)")
        self._image = tf.function(traced_image, autograph=False)
        super().__init__(variables, image.shape.as_list())

    @property
    def per_sample(self) -> bool:
        return False

    def forward(self, params):
        if len(params) != len(self.variables) or any(p is not v for p, v in zip(params, self.variables)):
            raise NotImplementedError(
                "a param_f traced from TensorFlow functions can only be evaluated at its own variables "
                "(no L-BFGS, converge or inversion); compose Params with their operators to get a full Param"
            )
        return self._image()

    def inverse(self, values):
        raise NotImplementedError("a param_f traced from TensorFlow functions has no inverse")

    def structure_key(self):
        return None
