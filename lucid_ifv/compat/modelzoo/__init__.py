"""``lucid.modelzoo``: ``vision_models`` (see `lucid_ifv.compat`)."""
