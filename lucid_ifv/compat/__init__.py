"""Lucid's module layout over lucid-ifv: port Lucid code by changing the prefix ``lucid.`` to
``lucid_ifv.compat.``::

    import lucid_ifv.compat.modelzoo.vision_models as models
    import lucid_ifv.compat.optvis.objectives as objectives
    import lucid_ifv.compat.optvis.param as param
    import lucid_ifv.compat.optvis.render as render
    import lucid_ifv.compat.optvis.transform as transform
    from lucid_ifv.compat.misc.io import show, load, save

The modules are the core ones (``optvis.objectives`` *is* `lucid_ifv.objectives`,
``optvis.param.spatial`` *is* `lucid_ifv.param.spatial`, ...); only ``optvis.render`` and
``modelzoo.vision_models`` add Lucid's calling conventions (defaults, threshold counting,
TF1 optimizers, ``make_vis_T``). What differs from Lucid and why: docs/lucid-parity.md.
"""
