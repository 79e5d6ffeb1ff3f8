"""``lucid.scratch``: Lucid's experimental helpers that its notebooks import.

- ``web.svelte``: Svelte HTML widgets (``SvelteComponent``, ``%%html_define_svelte``);
- ``parameter_editor``: ``ParameterEditor``, get/set a GraphDef's constants by node name;
- ``rl_util``: the utilities of Lucid's ``misc/rl_util.ipynb`` (activations and attribution of
  a model's layers, NMF of a layer, dataset-example and feature visualization, image helpers)
  over lucid-ifv's model interface in TensorFlow 2.

Not ported: ``atlas_pipeline``, ``pretty_graphs``, ``web.observable`` and ``rl_util.arch``
(no Lucid notebook imports them; ``arch`` builds a network with TF1's ``tf.layers``).
What differs from Lucid: docs/lucid-parity.md.
"""
